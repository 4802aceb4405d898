//! The `snapshots` table: a user's folded state at a sequence, a shortcut
//! for loading. A snapshot is never wrong, only possibly old, so it is
//! written after the events commit, outside their transaction.
use serde_json::Value;
use sqlx::PgPool;

/// Stores the state at `sequence` and drops older snapshots of the stream.
pub async fn save(
    pool: &PgPool,
    aggregate_type: &str,
    id: &str,
    sequence: usize,
    payload: &Value,
) -> Result<(), sqlx::Error> {
    let sequence = i64::try_from(sequence).unwrap_or(i64::MAX);
    sqlx::query(
        "WITH older AS (
             DELETE FROM snapshots
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND last_sequence < $3)
         INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
         VALUES ($1, $2, $3, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(aggregate_type)
    .bind(id)
    .bind(sequence)
    .bind(sqlx::types::Json(payload))
    .execute(pool)
    .await?;
    Ok(())
}
