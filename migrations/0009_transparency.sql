-- A verifiable history.
--
-- 1. Only the application can write a valid event or snapshot: each event
--    carries an HMAC made with a key of the server's keyring, over its
--    stream, sequence, type, version, payload, metadata and the previous
--    event's MAC; each snapshot one over its state and the MAC of the last
--    event it folds. Someone who can write to the database but does not
--    hold the key can no longer forge, edit or re-chain an event.
-- 2. A Merkle tree (RFC 9162) over the log in its global order, kept by a
--    projection, and heads of it signed with Ed25519: anyone holding the
--    public key and a saved head can check that the log only grew.

ALTER TABLE events
    ADD COLUMN mac     bytea,
    ADD COLUMN mac_key text;

-- Events written before this migration have no MAC. The application gives
-- them one when it first starts on this schema, once, up to the position
-- recorded here, and then seals this row with a MAC of its own: a row
-- inserted later without a MAC is never adopted, and loading it fails.
CREATE TABLE event_mac_adoption
(
    only_row       boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    until_position bigint NOT NULL,
    key_id         text,
    mac            bytea
);
INSERT INTO event_mac_adoption (until_position)
SELECT coalesce(max(position), 0) FROM events;

-- Still append-only; the one change allowed is to an event's MAC: giving
-- one to an event that has none (the adoption above), or sealing it again
-- under a newer key (`authledger keys rotate`). Only the application can
-- make a MAC that verifies, so this lets nobody else forge anything.
CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.mac IS NOT NULL AND NEW.mac_key IS NOT NULL
            AND (NEW.aggregate_type, NEW.aggregate_id, NEW.sequence, NEW.event_type, NEW.event_version,
                 NEW.payload::text, NEW.metadata::text, NEW.position, NEW.transaction_id, NEW.recorded_at,
                 NEW.chain_hash)
                IS NOT DISTINCT FROM
                (OLD.aggregate_type, OLD.aggregate_id, OLD.sequence, OLD.event_type, OLD.event_version,
                 OLD.payload::text, OLD.metadata::text, OLD.position, OLD.transaction_id, OLD.recorded_at,
                 OLD.chain_hash)
        THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP;
END
$$;

-- Snapshots are shortcuts: the old ones, without a MAC, go.
DELETE FROM snapshots;
ALTER TABLE snapshots
    ADD COLUMN head_mac bytea NOT NULL,
    ADD COLUMN mac      bytea NOT NULL,
    ADD COLUMN mac_key  text  NOT NULL;

-- The commit statement now stores each event's MAC, made by the caller.
DROP FUNCTION authledger_commit(text, text, bigint[], text[], text[], json[], json[], uuid, jsonb, jsonb, timestamptz);

CREATE FUNCTION authledger_commit(
    p_aggregate_type text,
    p_aggregate_id text,
    p_sequences bigint[],
    p_event_types text[],
    p_event_versions text[],
    p_payloads json[],
    p_metadata json[],
    p_macs bytea[],
    p_mac_key text,
    p_previous_mac bytea,
    p_user uuid,
    p_claims jsonb,
    p_data_key jsonb,
    p_now timestamptz
) RETURNS void
    LANGUAGE plpgsql AS
$$
DECLARE
    op jsonb;
    previous bytea;
BEGIN
    -- The first event's MAC chains from its predecessor's as the caller
    -- read it; if that MAC changed since (a key rotation sealed the stream
    -- again), this commit is a conflict and is decided again. The shared
    -- lock (the stream's; a rotation takes it exclusively) holds a rotation
    -- off until this commit is done, without writing to any row.
    PERFORM pg_advisory_xact_lock_shared(1919905121, hashtext(p_aggregate_id));
    IF p_sequences[1] > 1 THEN
        SELECT mac INTO previous
          FROM events
         WHERE aggregate_type = p_aggregate_type AND aggregate_id = p_aggregate_id
           AND sequence = p_sequences[1] - 1;
        IF previous IS DISTINCT FROM p_previous_mac THEN
            RAISE EXCEPTION USING ERRCODE = 'unique_violation', CONSTRAINT = 'events_pkey',
                MESSAGE = 'the event before this commit is not the one it was decided on';
        END IF;
    END IF;
    -- One statement, so one NOTIFY; in sequence order, so the chain
    -- trigger finds each row's predecessor.
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
                        mac, mac_key)
    SELECT p_aggregate_type, p_aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.metadata,
           e.mac, p_mac_key
      FROM unnest(p_sequences, p_event_types, p_event_versions, p_payloads, p_metadata, p_macs)
               AS e(sequence, event_type, event_version, payload, metadata, mac)
     ORDER BY e.sequence;

    FOR op IN SELECT value FROM jsonb_array_elements(coalesce(p_claims, '[]'::jsonb)) WITH ORDINALITY ORDER BY ordinality
        LOOP
            CASE op ->> 'op'
                WHEN 'claim' THEN
                    -- A hold that ran out frees its address, and an account
                    -- may take back an address held for itself.
                    DELETE FROM email_claims
                     WHERE blind_index IN (SELECT decode(i ->> 'index', 'hex')
                                             FROM jsonb_array_elements(op -> 'indexes') i)
                       AND (held_until < p_now OR (user_id = p_user AND held_until IS NOT NULL));
                    INSERT INTO email_claims (blind_index, key_id, user_id)
                    SELECT decode(i ->> 'index', 'hex'), i ->> 'key_id', p_user
                      FROM jsonb_array_elements(op -> 'indexes') i;
                WHEN 'hold_current' THEN
                    UPDATE email_claims SET held_until = (op ->> 'until')::timestamptz
                     WHERE user_id = p_user AND held_until IS NULL;
                WHEN 'restore' THEN
                    UPDATE email_claims SET held_until = NULL
                     WHERE user_id = p_user
                       AND blind_index IN (SELECT decode(value, 'hex') FROM jsonb_array_elements_text(op -> 'indexes'));
                    -- Its rows must be there, held or already current.
                    IF NOT FOUND THEN
                        RAISE EXCEPTION USING ERRCODE = 'unique_violation', CONSTRAINT = 'email_claims_pkey',
                            MESSAGE = 'the address to restore is no longer held for this account';
                    END IF;
                WHEN 'release' THEN
                    DELETE FROM email_claims
                     WHERE user_id = p_user
                       AND blind_index IN (SELECT decode(value, 'hex') FROM jsonb_array_elements_text(op -> 'indexes'));
                WHEN 'release_all' THEN
                    DELETE FROM email_claims WHERE user_id = p_user;
                END CASE;
        END LOOP;

    CASE p_data_key ->> 'op'
        WHEN 'create' THEN
            INSERT INTO user_keys (user_id, key_id, nonce, wrapped)
            VALUES (p_user, p_data_key ->> 'key_id', decode(p_data_key ->> 'nonce', 'hex'),
                    decode(p_data_key ->> 'wrapped', 'hex'));
        WHEN 'delete' THEN
            DELETE FROM user_keys WHERE user_id = p_user;
            DELETE FROM snapshots WHERE aggregate_type = p_aggregate_type AND aggregate_id = p_aggregate_id;
        ELSE NULL;
        END CASE;
END
$$;

-- The Merkle tree. Each event is a leaf, numbered from 0 in the log's
-- global order; `merkle_nodes` holds the hash of every complete subtree:
-- level 0 the leaves, level k the subtree over leaves
-- [index * 2^k, (index + 1) * 2^k). Any size's root and any proof is a
-- few of these.
CREATE TABLE merkle_leaves
(
    position       bigint PRIMARY KEY,
    -- With `position`, the event's key in the log's global order.
    transaction_id xid8   NOT NULL,
    leaf_index     bigint NOT NULL UNIQUE
);

CREATE TABLE merkle_nodes
(
    level smallint NOT NULL,
    index bigint   NOT NULL,
    hash  bytea    NOT NULL,
    PRIMARY KEY (level, index)
);

-- Signed tree heads: the root at a size, signed with Ed25519.
CREATE TABLE tree_heads
(
    tree_size  bigint PRIMARY KEY,
    root_hash  bytea       NOT NULL,
    signed_at  timestamptz NOT NULL,
    key_id     text        NOT NULL,
    public_key bytea       NOT NULL,
    signature  bytea       NOT NULL
);
