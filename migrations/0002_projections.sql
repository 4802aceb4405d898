-- Projections: each keeps its position in the global order here, and
-- locks its row while it applies a batch, so one instance runs it at a time.
CREATE TABLE projection_checkpoints
(
    name           text PRIMARY KEY,
    transaction_id xid8        NOT NULL DEFAULT '0',
    position       bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The `users` read model: for profiles, admin lists and metrics. Security
-- decisions never read it; they ask the aggregate.
CREATE TABLE users
(
    user_id             uuid PRIMARY KEY,
    email               text        NOT NULL,
    registered_at       timestamptz NOT NULL,
    mfa_enrolled_at     timestamptz,
    locked_at           timestamptz,
    throttled_until     timestamptz,
    last_sign_in_at     timestamptz,
    last_sign_in_method text
);

CREATE INDEX users_email ON users (email);

CREATE TABLE user_sessions
(
    user_id        uuid        NOT NULL REFERENCES users ON DELETE CASCADE,
    session        text        NOT NULL,
    method         text        NOT NULL,
    aal            text        NOT NULL,
    started_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    last_active_at timestamptz NOT NULL,
    ended_at       timestamptz,
    PRIMARY KEY (user_id, session)
);

-- The email relay's own state, built from the same log: where each user's
-- mail goes, and which login attempts already had a failure notice.
CREATE TABLE mail_recipients
(
    user_id uuid PRIMARY KEY,
    email   text NOT NULL
);

CREATE TABLE mail_attempt_notices
(
    attempt text PRIMARY KEY
);

-- The email worker's record of what the SMTP server accepted, so a
-- redelivered message is not sent twice.
CREATE TABLE sent_mail
(
    message_id text PRIMARY KEY,
    sent_at    timestamptz NOT NULL DEFAULT now()
);
