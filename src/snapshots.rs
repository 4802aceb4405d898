//! The `snapshots` table: a user's folded state at a sequence, a shortcut
//! for loading. A snapshot is never wrong, only possibly old, so it is
//! written after the events commit, outside their transaction. It carries
//! a MAC over its state and the MAC of the last event it folds, so an
//! edited snapshot is refused like an edited event.
use sqlx::PgPool;

use crate::integrity::{Stamp, Tag};

/// Stores the state at `sequence` (its JSON text `payload`, the MAC of the
/// event at `sequence` and its own) and drops older snapshots of the stream.
pub async fn save(
    pool: &PgPool,
    aggregate_type: &str,
    id: &str,
    sequence: usize,
    payload: &str,
    head: &Tag,
    stamp: &Stamp,
) -> Result<(), sqlx::Error> {
    let sequence = i64::try_from(sequence).unwrap_or(i64::MAX);
    // As text, so the row keeps the JSON exactly as its MAC covers it.
    sqlx::query(
        "WITH older AS (
             DELETE FROM snapshots
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND last_sequence < $3)
         INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload,
                                head_mac, mac, mac_key)
         VALUES ($1, $2, $3, $3, $4::text::json, $5, $6, $7)
         ON CONFLICT DO NOTHING",
    )
    .bind(aggregate_type)
    .bind(id)
    .bind(sequence)
    .bind(payload)
    .bind(head.as_slice())
    .bind(stamp.tag.as_slice())
    .bind(&stamp.key_id)
    .execute(pool)
    .await?;
    Ok(())
}
