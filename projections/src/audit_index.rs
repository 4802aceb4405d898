//! The audit index: every event by user, type and time, for auditors.
//!
//! [`reduce`] turns an event into its row, without I/O; [`write`] inserts
//! a batch of rows in one statement.
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::runtime::{Projection, StoredEvent};

pub const NAME: &str = "audit_index";

pub struct AuditIndex;

/// The row an event adds to the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub transaction_id: i64,
    pub position: i64,
    pub user: Uuid,
    pub sequence: i64,
    pub event_type: String,
    /// The event's own time, as the domain decided it.
    pub occurred_at: DateTime<Utc>,
    /// When the log stored it.
    pub recorded_at: DateTime<Utc>,
}

/// The index entry of `stored`, which is in `user`'s stream.
pub fn reduce(user: Uuid, stored: &StoredEvent) -> AuditEntry {
    AuditEntry {
        transaction_id: stored.transaction_id,
        position: stored.position,
        user,
        sequence: stored.sequence,
        event_type: stored.event_type.clone(),
        occurred_at: stored.event.at(),
        recorded_at: stored.recorded_at,
    }
}

/// Inserts `entries` in one statement; an entry already there is kept.
pub async fn write(tx: &mut PgConnection, entries: &[AuditEntry]) -> anyhow::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut transaction_ids = Vec::with_capacity(entries.len());
    let mut positions = Vec::with_capacity(entries.len());
    let mut users = Vec::with_capacity(entries.len());
    let mut sequences = Vec::with_capacity(entries.len());
    let mut types = Vec::with_capacity(entries.len());
    let mut occurred = Vec::with_capacity(entries.len());
    let mut recorded = Vec::with_capacity(entries.len());
    for entry in entries {
        // Sent as text: sqlx has no encoding for `xid8`.
        transaction_ids.push(entry.transaction_id.to_string());
        positions.push(entry.position);
        users.push(entry.user);
        sequences.push(entry.sequence);
        types.push(entry.event_type.as_str());
        occurred.push(entry.occurred_at);
        recorded.push(entry.recorded_at);
    }
    sqlx::query(
        "INSERT INTO audit_index (transaction_id, position, user_id, sequence, event_type, occurred_at, recorded_at)
         SELECT t::xid8, p, u, s, e, o, r
           FROM UNNEST($1::text[], $2::bigint[], $3::uuid[], $4::bigint[], $5::text[], $6::timestamptz[], $7::timestamptz[])
             AS batch (t, p, u, s, e, o, r)
         ON CONFLICT DO NOTHING",
    )
    .bind(transaction_ids)
    .bind(positions)
    .bind(users)
    .bind(sequences)
    .bind(types)
    .bind(occurred)
    .bind(recorded)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Projection for AuditIndex {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, tx: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        let entries = events
            .iter()
            .map(|stored| Ok(reduce(stored.user_id()?, stored)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        write(tx, &entries).await
    }

    async fn reset(&self, tx: &mut PgConnection) -> anyhow::Result<()> {
        sqlx::query("TRUNCATE audit_index")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use authledger_aggregates::UserAuthEvent;
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn an_entry_holds_when_the_event_happened_and_when_it_was_stored() {
        let user = Uuid::from_u128(7);
        let happened = Utc.timestamp_opt(1_772_366_400, 0).unwrap();
        let stored_at = Utc.timestamp_opt(1_772_366_402, 500_000_000).unwrap();
        let stored = StoredEvent {
            transaction_id: 981,
            position: 3,
            aggregate_id: user.to_string(),
            sequence: 12,
            event_type: "AccountLocked".into(),
            event: UserAuthEvent::AccountLocked {
                failures: 10,
                at: happened,
            },
            metadata: Default::default(),
            recorded_at: stored_at,
        };
        assert_eq!(
            reduce(user, &stored),
            AuditEntry {
                transaction_id: 981,
                position: 3,
                user,
                sequence: 12,
                event_type: "AccountLocked".into(),
                occurred_at: happened,
                recorded_at: stored_at,
            }
        );
    }
}
