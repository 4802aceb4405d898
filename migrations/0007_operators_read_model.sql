-- What the operators' console lists and filters by: whether the address
-- is verified, suspension, a pending MFA reset, and the address itself,
-- sealed with the user's data key (the console opens it in memory to search
-- by prefix; erasure deletes the row and the key). The model is rebuilt
-- from the log: its checkpoint goes back to the start.
ALTER TABLE users
    ADD COLUMN email_sealed     jsonb,
    ADD COLUMN email_verified   boolean NOT NULL DEFAULT true,
    ADD COLUMN suspended_at     timestamptz,
    ADD COLUMN mfa_reset_due_at timestamptz;

-- The console's list pages by registration, newest first.
CREATE INDEX users_registered ON users (registered_at DESC, user_id DESC);
CREATE INDEX user_sessions_live ON user_sessions (user_id) WHERE ended_at IS NULL;

TRUNCATE user_sessions, users;
UPDATE projection_checkpoints SET transaction_id = '0', position = 0, updated_at = now() WHERE name = 'users';

CREATE OR REPLACE FUNCTION users_projection_apply(ops jsonb) RETURNS void
    LANGUAGE plpgsql AS
$$
DECLARE
    op jsonb;
BEGIN
    FOR op IN SELECT value FROM jsonb_array_elements(ops) WITH ORDINALITY ORDER BY ordinality
        LOOP
            CASE op ->> 'op'
                WHEN 'registered' THEN
                    INSERT INTO users (user_id, registered_at, email_sealed)
                    VALUES ((op ->> 'user')::uuid, (op ->> 'at')::timestamptz, op -> 'email')
                    ON CONFLICT (user_id) DO UPDATE SET email_sealed = EXCLUDED.email_sealed;
                WHEN 'address' THEN
                    UPDATE users SET email_sealed = op -> 'email' WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'verification-requested' THEN
                    UPDATE users SET email_verified = false WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'verified' THEN
                    UPDATE users SET email_verified = true WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'suspended' THEN
                    UPDATE users SET suspended_at = (op ->> 'at')::timestamptz
                     WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'reactivated' THEN
                    UPDATE users SET suspended_at = NULL WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'mfa-reset-pending' THEN
                    UPDATE users SET mfa_reset_due_at = (op ->> 'due')::timestamptz
                     WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'mfa-reset-called-off' THEN
                    UPDATE users SET mfa_reset_due_at = NULL WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'enrolled' THEN
                    UPDATE users SET mfa_enrolled_at = (op ->> 'at')::timestamptz
                     WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'mfa-reset' THEN
                    UPDATE users SET mfa_enrolled_at = NULL, mfa_reset_due_at = NULL
                     WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'session-started' THEN
                    UPDATE users
                       SET last_sign_in_at = (op ->> 'at')::timestamptz,
                           last_sign_in_method = op ->> 'method',
                           throttled_until = NULL
                     WHERE user_id = (op ->> 'user')::uuid;
                    INSERT INTO user_sessions (user_id, session, method, aal, started_at, expires_at, last_active_at)
                    VALUES ((op ->> 'user')::uuid, op ->> 'session', op ->> 'method', op ->> 'aal',
                            (op ->> 'at')::timestamptz, (op ->> 'expires_at')::timestamptz, (op ->> 'at')::timestamptz)
                    ON CONFLICT DO NOTHING;
                WHEN 'session-active' THEN
                    UPDATE user_sessions SET last_active_at = (op ->> 'at')::timestamptz
                     WHERE user_id = (op ->> 'user')::uuid AND session = op ->> 'session';
                WHEN 'session-ended' THEN
                    UPDATE user_sessions SET ended_at = (op ->> 'at')::timestamptz
                     WHERE user_id = (op ->> 'user')::uuid AND session = op ->> 'session';
                WHEN 'throttled' THEN
                    UPDATE users SET throttled_until = (op ->> 'until')::timestamptz
                     WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'locked' THEN
                    UPDATE users SET locked_at = (op ->> 'at')::timestamptz WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'unlocked' THEN
                    UPDATE users SET locked_at = NULL, throttled_until = NULL
                     WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'erased' THEN
                    DELETE FROM users WHERE user_id = (op ->> 'user')::uuid;
                END CASE;
        END LOOP;
END
$$;
