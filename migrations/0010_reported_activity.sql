-- "This wasn't me": when an account's user last reported a sign-in or a
-- change of credentials as not theirs, for the operators' list to filter
-- by and the account's page to show. No such report was recorded before
-- this migration, so the model needs no rebuild.
ALTER TABLE users ADD COLUMN reported_at timestamptz;

CREATE INDEX users_reported ON users (reported_at DESC) WHERE reported_at IS NOT NULL;

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
                WHEN 'reported' THEN
                    UPDATE users SET reported_at = (op ->> 'at')::timestamptz
                     WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'erased' THEN
                    DELETE FROM users WHERE user_id = (op ->> 'user')::uuid;
                END CASE;
        END LOOP;
END
$$;
