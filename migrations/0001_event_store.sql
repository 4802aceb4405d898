-- The event store: postgres-es's `events` and `snapshots` tables, plus
-- columns of our own that only defaults and triggers fill, never the
-- application.

CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    -- Global order is (transaction_id, position). Readers only read rows
    -- whose transaction_id < pg_snapshot_xmin(pg_current_snapshot()), so an
    -- event committed late by a slow transaction is never skipped.
    position       bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    -- SHA-256 over the previous event's chain_hash in the same stream and
    -- this row's content: the history is tamper-evident.
    chain_hash     bytea       NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_order ON events (transaction_id, position);
CREATE INDEX events_recorded_at ON events (recorded_at);

CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    timestamp        timestamptz DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- The bytes a chain hash covers, besides the previous hash. json keeps its
-- text as inserted, so the payload hashes exactly as written; the time is
-- taken in microseconds so no session setting changes its text.
CREATE FUNCTION event_chain_content(e events) RETURNS bytea
    LANGUAGE sql STABLE AS
$$
SELECT convert_to(json_build_array(
    e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version,
    e.payload, e.metadata,
    (extract(epoch FROM e.recorded_at) * 1000000)::bigint
)::text, 'UTF8')
$$;

CREATE FUNCTION events_set_chain_hash() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    previous bytea;
BEGIN
    IF NEW.sequence = 1 THEN
        previous := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    ELSE
        SELECT chain_hash INTO previous
          FROM events
         WHERE aggregate_type = NEW.aggregate_type
           AND aggregate_id = NEW.aggregate_id
           AND sequence = NEW.sequence - 1;
        IF previous IS NULL THEN
            RAISE EXCEPTION 'event % of stream %/% has no predecessor',
                NEW.sequence, NEW.aggregate_type, NEW.aggregate_id;
        END IF;
    END IF;
    NEW.chain_hash := sha256(previous || event_chain_content(NEW));
    RETURN NEW;
END
$$;

CREATE TRIGGER events_chain_hash
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_set_chain_hash();

-- Events are facts: they are appended, never changed. (The chain hash
-- still catches whoever disables this trigger.)
CREATE FUNCTION events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP;
END
$$;

CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- Wakes projectors; they also poll, so a lost notification only delays.
CREATE FUNCTION events_notify() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('authledger_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
