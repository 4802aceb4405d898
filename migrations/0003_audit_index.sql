-- The audit index: one row per event, by user, type and time, so auditors'
-- queries stay fast on millions of events. A projection of the log
-- (`authledger projections rebuild audit_index`); the payloads stay in
-- `events`.
CREATE TABLE audit_index
(
    transaction_id xid8        NOT NULL,
    position       bigint      NOT NULL,
    user_id        uuid        NOT NULL,
    sequence       bigint      NOT NULL,
    event_type     text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (transaction_id, position)
);

CREATE INDEX audit_index_user ON audit_index (user_id, sequence);
CREATE INDEX audit_index_type_time ON audit_index (event_type, occurred_at);
CREATE INDEX audit_index_time ON audit_index (occurred_at);
