-- Identity over time. Accounts get random ids; an address is claimed
-- through a blind index (an HMAC of the normalised address under a server
-- key), so the database enforces one account per address without holding
-- the address. Personal data in events is sealed with a per-user data key
-- kept here, wrapped by a server key: deleting the row erases it.

-- An address is claimed under every key of the ring at once, one row per
-- key: whichever key a process computes an index with, the primary key
-- sees a second claim of the address, also while keys are being rotated.
CREATE TABLE email_claims
(
    -- HMAC-SHA256 of the normalised address under the key `key_id`.
    blind_index bytea PRIMARY KEY,
    key_id      text        NOT NULL,
    user_id     uuid        NOT NULL,
    -- NULL: the account's address. Otherwise an address the account gave
    -- up, held for it until then so that "this wasn't me" can restore it.
    held_until  timestamptz
);

CREATE INDEX email_claims_user ON email_claims (user_id);

-- One current address per account (under each key).
CREATE UNIQUE INDEX email_claims_current ON email_claims (user_id, key_id) WHERE held_until IS NULL;

CREATE TABLE user_keys
(
    user_id    uuid PRIMARY KEY,
    -- The server key that wraps this data key.
    key_id     text        NOT NULL,
    nonce      bytea       NOT NULL,
    wrapped    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- From here on every event is written sealed (version 2 and later): a
-- process of an older version still running would write addresses in the
-- clear that could never be erased.
ALTER TABLE events ADD CONSTRAINT events_sealed_personal_data CHECK (event_version <> '1');

-- Read models keep no address: the mail relay keeps the sealed one, which
-- only the worker opens, and nothing else needs it.
ALTER TABLE users DROP COLUMN email;
DROP TABLE mail_recipients;
CREATE TABLE mail_recipients
(
    user_id uuid PRIMARY KEY,
    email   jsonb NOT NULL
);

-- One command's events, address claims and data key, committed by one
-- statement: a registration that loses the race for its address commits
-- nothing, and no claim exists without the events that made it.
--
-- `claims` is an array of operations, in order:
--   {"op": "claim", "indexes": [{"index": hex, "key_id": id}]}
--                                                 the account's new address
--   {"op": "hold_current", "until": t}            its address, given up, held
--   {"op": "restore", "indexes": [hex]}           a held address back in use
--   {"op": "release", "indexes": [hex]}           addresses it no longer holds
--   {"op": "release_all"}                         every address it holds
-- `data_key` is {"op": "create", "key_id", "nonce", "wrapped"} (hex) or
-- {"op": "delete"} or null.
CREATE FUNCTION authledger_commit(
    p_aggregate_type text,
    p_aggregate_id text,
    p_sequences bigint[],
    p_event_types text[],
    p_event_versions text[],
    p_payloads json[],
    p_metadata json[],
    p_user uuid,
    p_claims jsonb,
    p_data_key jsonb,
    p_now timestamptz
) RETURNS void
    LANGUAGE plpgsql AS
$$
DECLARE
    op jsonb;
BEGIN
    -- One statement, so one NOTIFY; in sequence order, so the chain
    -- trigger finds each row's predecessor.
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    SELECT p_aggregate_type, p_aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.metadata
      FROM unnest(p_sequences, p_event_types, p_event_versions, p_payloads, p_metadata)
               AS e(sequence, event_type, event_version, payload, metadata)
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
