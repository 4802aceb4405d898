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

    async fn apply(&self, tx: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for stored in events {
            let user: Uuid = stored.aggregate_id.parse()?;
            sqlx::query(
                "INSERT INTO audit_index (transaction_id, position, user_id, sequence, event_type, occurred_at, recorded_at)
                 VALUES ($1::text::xid8, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(stored.transaction_id.to_string())
            .bind(stored.position)
            .bind(user)
            .bind(stored.sequence)
            .bind(&stored.event_type)
            .bind(stored.event.at())
            .bind(stored.recorded_at)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut PgConnection) -> anyhow::Result<()> {
        sqlx::query("TRUNCATE audit_index")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
