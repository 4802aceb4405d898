//! What a user's own timeline reads of the event log: their events of the
//! kinds it shows, newest first, and the one event a report names.
use std::collections::HashMap;

use authledger_aggregates::UserAuthEvent;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

/// An event of a user's stream as their timeline reads it.
#[derive(Debug, Clone)]
pub struct ActivityRow {
    pub sequence: i64,
    pub event: UserAuthEvent,
    /// Where the sealed IP and browser of the request are kept.
    pub metadata: HashMap<String, String>,
    /// A sign-in the domain judged to come from a new device.
    pub new_device: bool,
}

/// `user`'s events of the types `types` before sequence `before` (all when
/// `None`), newest first, at most `limit`.
pub async fn user_activity(
    pool: &PgPool,
    user: Uuid,
    types: &[&str],
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ActivityRow>, sqlx::Error> {
    type Row = (
        i64,
        Json<UserAuthEvent>,
        Json<HashMap<String, String>>,
        bool,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT e.sequence, e.payload, e.metadata,
                e.event_type = 'SessionStarted' AND EXISTS (
                    SELECT 1 FROM events n
                     WHERE n.aggregate_type = e.aggregate_type AND n.aggregate_id = e.aggregate_id
                       AND n.event_type = 'SignedInFromNewDevice'
                       AND n.payload -> 'SignedInFromNewDevice' ->> 'session'
                           = e.payload -> 'SessionStarted' ->> 'session')
           FROM events e
          WHERE e.aggregate_type = 'UserAuth' AND e.aggregate_id = $1
            AND e.event_type = ANY($2)
            AND e.sequence < coalesce($3, 9223372036854775807)
          ORDER BY e.sequence DESC
          LIMIT $4",
    )
    .bind(user.to_string())
    .bind(types)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(sequence, event, metadata, new_device)| ActivityRow {
            sequence,
            event: event.0,
            metadata: metadata.0,
            new_device,
        })
        .collect())
}

/// The event at `sequence` of `user`'s stream.
pub async fn user_event(
    pool: &PgPool,
    user: Uuid,
    sequence: i64,
) -> Result<Option<UserAuthEvent>, sqlx::Error> {
    let payload: Option<Json<UserAuthEvent>> = sqlx::query_scalar(
        "SELECT payload FROM events
          WHERE aggregate_type = 'UserAuth' AND aggregate_id = $1 AND sequence = $2",
    )
    .bind(user.to_string())
    .bind(sequence)
    .fetch_optional(pool)
    .await?;
    Ok(payload.map(|p| p.0))
}

/// The sequence and event of the sign-in whose new-device notice carried
/// the report link `report` (its reference, as the events write it).
pub async fn reported_sign_in(
    pool: &PgPool,
    user: Uuid,
    report: &str,
) -> Result<Option<(i64, UserAuthEvent)>, sqlx::Error> {
    let row: Option<(i64, Json<UserAuthEvent>)> = sqlx::query_as(
        "SELECT s.sequence, s.payload
           FROM events n
           JOIN events s
             ON s.aggregate_type = n.aggregate_type AND s.aggregate_id = n.aggregate_id
            AND s.event_type = 'SessionStarted'
            AND s.payload -> 'SessionStarted' ->> 'session'
                = n.payload -> 'SignedInFromNewDevice' ->> 'session'
          WHERE n.aggregate_type = 'UserAuth' AND n.aggregate_id = $1
            AND n.event_type = 'SignedInFromNewDevice'
            AND n.payload -> 'SignedInFromNewDevice' ->> 'report' = $2",
    )
    .bind(user.to_string())
    .bind(report)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(sequence, event)| (sequence, event.0)))
}
