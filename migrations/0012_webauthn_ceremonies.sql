-- The server's half of a WebAuthn ceremony between its two requests: the
-- challenge sent to the browser and what the answer is checked against.
-- One per login attempt or session and purpose; asking again replaces it.
-- It is consumed with DELETE ... RETURNING, so a challenge is answered once
-- however many answers arrive at the same time. It holds no secret of the
-- account: a challenge is worth nothing without the authenticator's key.
CREATE TABLE webauthn_ceremonies
(
    purpose    text        NOT NULL CHECK (purpose IN ('sign-in', 'enroll', 'register')),
    -- The login attempt's or session's reference.
    bound_to   bytea       NOT NULL,
    user_id    uuid        NOT NULL,
    state      jsonb       NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (purpose, bound_to)
);

CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_at);
