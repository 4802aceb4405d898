//! The audit index: every event by user, type and time, for auditors.
use sqlx::PgConnection;
use uuid::Uuid;

use crate::runtime::{Projection, StoredEvent};

pub const NAME: &str = "audit_index";

pub struct AuditIndex;

#[async_trait::async_trait]
impl Projection for AuditIndex {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The whole batch in one statement.
    async fn apply(&self, tx: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut transaction_ids = Vec::with_capacity(events.len());
        let mut positions = Vec::with_capacity(events.len());
        let mut users = Vec::with_capacity(events.len());
        let mut sequences = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut occurred = Vec::with_capacity(events.len());
        let mut recorded = Vec::with_capacity(events.len());
        for stored in events {
            transaction_ids.push(stored.transaction_id.to_string());
            positions.push(stored.position);
            users.push(stored.aggregate_id.parse::<Uuid>()?);
            sequences.push(stored.sequence);
            types.push(stored.event_type.clone());
            occurred.push(stored.event.at());
            recorded.push(stored.recorded_at);
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

    async fn reset(&self, tx: &mut PgConnection) -> anyhow::Result<()> {
        sqlx::query("TRUNCATE audit_index")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
