-- The sessions each account holds, kept by the database in the statement
-- that inserts their events (not a projection: it never lags the log), so
-- that introspection answers with one read by primary key instead of
-- loading the account. It mirrors the aggregate: a session starts with
-- `SessionStarted` (which also drops the account's sessions past their
-- absolute expiry, as the aggregate does), is used with `SessionActive`,
-- ends with `SessionEnded`; an erased account keeps none. Whether a row is
-- live at an instant is the aggregate's rule: before its absolute expiry
-- and within the idle time of its last activity.
CREATE TABLE live_sessions
(
    user_id        uuid        NOT NULL,
    session        text        NOT NULL,
    method         text        NOT NULL,
    aal            text        NOT NULL,
    started_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    last_active_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, session)
);

CREATE FUNCTION live_sessions_follow() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    p jsonb;
BEGIN
    IF NEW.aggregate_type <> 'UserAuth' THEN
        RETURN NULL;
    END IF;
    CASE NEW.event_type
        WHEN 'SessionStarted' THEN
            p := NEW.payload -> 'SessionStarted';
            DELETE FROM live_sessions
             WHERE user_id = NEW.aggregate_id::uuid AND expires_at <= (p ->> 'at')::timestamptz;
            INSERT INTO live_sessions (user_id, session, method, aal, started_at, expires_at, last_active_at)
            VALUES (NEW.aggregate_id::uuid, p ->> 'session', p ->> 'method', p ->> 'aal',
                    (p ->> 'at')::timestamptz, (p ->> 'expires_at')::timestamptz, (p ->> 'at')::timestamptz)
            ON CONFLICT (user_id, session) DO NOTHING;
        WHEN 'SessionActive' THEN
            p := NEW.payload -> 'SessionActive';
            UPDATE live_sessions SET last_active_at = (p ->> 'at')::timestamptz
             WHERE user_id = NEW.aggregate_id::uuid AND session = p ->> 'session';
        WHEN 'SessionEnded' THEN
            DELETE FROM live_sessions
             WHERE user_id = NEW.aggregate_id::uuid AND session = NEW.payload -> 'SessionEnded' ->> 'session';
        WHEN 'AccountErased' THEN
            DELETE FROM live_sessions WHERE user_id = NEW.aggregate_id::uuid;
        ELSE
            NULL;
        END CASE;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_live_sessions
    AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION live_sessions_follow();

-- The sessions open when this migration runs, folded from the log.
INSERT INTO live_sessions (user_id, session, method, aal, started_at, expires_at, last_active_at)
SELECT s.aggregate_id::uuid,
       p ->> 'session',
       p ->> 'method',
       p ->> 'aal',
       (p ->> 'at')::timestamptz,
       (p ->> 'expires_at')::timestamptz,
       coalesce((SELECT max((a.payload -> 'SessionActive' ->> 'at')::timestamptz)
                   FROM events a
                  WHERE a.aggregate_type = 'UserAuth' AND a.aggregate_id = s.aggregate_id
                    AND a.event_type = 'SessionActive'
                    AND a.payload -> 'SessionActive' ->> 'session' = p ->> 'session'),
                (p ->> 'at')::timestamptz)
  FROM events s
       CROSS JOIN LATERAL (SELECT s.payload -> 'SessionStarted' AS p) started
 WHERE s.aggregate_type = 'UserAuth'
   AND s.event_type = 'SessionStarted'
   AND (p ->> 'expires_at')::timestamptz > now()
   AND NOT EXISTS (SELECT 1
                     FROM events e
                    WHERE e.aggregate_type = 'UserAuth' AND e.aggregate_id = s.aggregate_id
                      AND ((e.event_type = 'SessionEnded'
                                AND e.payload -> 'SessionEnded' ->> 'session' = p ->> 'session')
                           OR (e.event_type = 'AccountErased' AND e.sequence > s.sequence)))
ON CONFLICT (user_id, session) DO NOTHING;
