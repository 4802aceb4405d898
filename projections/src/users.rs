//! The `users` read model: email, MFA status, lock, last sign-in and
//! sessions, for profiles, admin lists and metrics.
use authledger_aggregates::UserAuthEvent as E;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::runtime::{Projection, StoredEvent};

pub struct UsersProjection;

pub const NAME: &str = "users";

fn user_id(event: &StoredEvent) -> anyhow::Result<Uuid> {
    Ok(Uuid::parse_str(&event.aggregate_id)?)
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

    async fn apply(&self, tx: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for stored in events {
            let user = user_id(stored)?;
            match &stored.event {
                E::UserRegistered { email, at, .. } => {
                    sqlx::query(
                        "INSERT INTO users (user_id, email, registered_at) VALUES ($1, $2, $3)
                         ON CONFLICT (user_id) DO NOTHING",
                    )
                    .bind(user)
                    .bind(email)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                E::MfaEnrolled { at, .. } => {
                    sqlx::query("UPDATE users SET mfa_enrolled_at = $2 WHERE user_id = $1")
                        .bind(user)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                E::MfaReset { .. } => {
                    sqlx::query("UPDATE users SET mfa_enrolled_at = NULL WHERE user_id = $1")
                        .bind(user)
                        .execute(&mut *tx)
                        .await?;
                }
                E::SessionStarted {
                    session,
                    method,
                    aal,
                    expires_at,
                    at,
                } => {
                    sqlx::query(
                        "UPDATE users SET last_sign_in_at = $2, last_sign_in_method = $3, throttled_until = NULL
                          WHERE user_id = $1",
                    )
                    .bind(user)
                    .bind(at)
                    .bind(label(method))
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO user_sessions (user_id, session, method, aal, started_at, expires_at, last_active_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(user)
                    .bind(session.to_string())
                    .bind(label(method))
                    .bind(label(aal))
                    .bind(at)
                    .bind(expires_at)
                    .execute(&mut *tx)
                    .await?;
                }
                E::SessionActive { session, at } => {
                    sqlx::query("UPDATE user_sessions SET last_active_at = $3 WHERE user_id = $1 AND session = $2")
                        .bind(user)
                        .bind(session.to_string())
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                E::SessionEnded { session, at, .. } => {
                    sqlx::query("UPDATE user_sessions SET ended_at = $3 WHERE user_id = $1 AND session = $2")
                        .bind(user)
                        .bind(session.to_string())
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                E::SignInThrottled { until, .. } => {
                    sqlx::query("UPDATE users SET throttled_until = $2 WHERE user_id = $1")
                        .bind(user)
                        .bind(until)
                        .execute(&mut *tx)
                        .await?;
                }
                E::AccountLocked { at, .. } => {
                    sqlx::query("UPDATE users SET locked_at = $2 WHERE user_id = $1")
                        .bind(user)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                E::AccountUnlocked { .. } => {
                    sqlx::query("UPDATE users SET locked_at = NULL, throttled_until = NULL WHERE user_id = $1")
                        .bind(user)
                        .execute(&mut *tx)
                        .await?;
                }
                _ => {}
            }
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
