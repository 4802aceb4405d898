-- The `users` read model without addresses (0005 dropped the column): a
-- registration adds the row without one, and an erased account leaves the
-- model, its sessions with it (ON DELETE CASCADE). Otherwise as in 0004.
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
                    INSERT INTO users (user_id, registered_at)
                    VALUES ((op ->> 'user')::uuid, (op ->> 'at')::timestamptz)
                    ON CONFLICT (user_id) DO NOTHING;
                WHEN 'enrolled' THEN
                    UPDATE users SET mfa_enrolled_at = (op ->> 'at')::timestamptz
                     WHERE user_id = (op ->> 'user')::uuid;
                WHEN 'mfa-reset' THEN
                    UPDATE users SET mfa_enrolled_at = NULL WHERE user_id = (op ->> 'user')::uuid;
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
