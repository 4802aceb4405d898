//! The `users` read model: email, MFA status, lock, last sign-in and
//! sessions, for profiles, admin lists and metrics.
use authledger_aggregates::UserAuthEvent as E;
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::runtime::{Projection, StoredEvent};

pub struct UsersProjection;

pub const NAME: &str = "users";

fn user_id(event: &StoredEvent) -> anyhow::Result<Uuid> {
    Ok(Uuid::parse_str(&event.aggregate_id)?)
}

/// Postgres keeps microseconds: truncated here as a bound parameter would
/// be, rather than rounded by the text input of `timestamptz`.
fn micros(at: &DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

fn label<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    /// One round trip per batch: the operations go to
    /// `users_projection_apply`, which runs them in order.
    async fn apply(&self, tx: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        let mut ops = Vec::new();
        for stored in events {
            let user = user_id(stored)?;
            let op = match &stored.event {
                E::UserRegistered { email, at, .. } => {
                    json!({"op": "registered", "user": user, "email": email, "at": micros(at)})
                }
                E::MfaEnrolled { at, .. } => {
                    json!({"op": "enrolled", "user": user, "at": micros(at)})
                }
                E::MfaReset { .. } => json!({"op": "mfa-reset", "user": user}),
                E::SessionStarted {
                    session,
                    method,
                    aal,
                    expires_at,
                    at,
                } => json!({
                    "op": "session-started", "user": user, "session": session.to_string(),
                    "method": label(method), "aal": label(aal), "at": micros(at), "expires_at": micros(expires_at),
                }),
                E::SessionActive { session, at } => {
                    json!({"op": "session-active", "user": user, "session": session.to_string(), "at": micros(at)})
                }
                E::SessionEnded { session, at, .. } => {
                    json!({"op": "session-ended", "user": user, "session": session.to_string(), "at": micros(at)})
                }
                E::SignInThrottled { until, .. } => {
                    json!({"op": "throttled", "user": user, "until": micros(until)})
                }
                E::AccountLocked { at, .. } => {
                    json!({"op": "locked", "user": user, "at": micros(at)})
                }
                E::AccountUnlocked { .. } => json!({"op": "unlocked", "user": user}),
                _ => continue,
            };
            ops.push(op);
        }
        if !ops.is_empty() {
            sqlx::query("SELECT users_projection_apply($1)")
                .bind(sqlx::types::Json(ops))
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut PgConnection) -> anyhow::Result<()> {
        sqlx::query("TRUNCATE user_sessions, users")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
