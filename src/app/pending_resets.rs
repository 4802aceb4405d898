//! Pending MFA resets whose waiting period is over are carried out by a
//! sweep every server runs; the aggregate decides whether each is due, so
//! two servers sweeping at once reset a user once.
use authledger_aggregates::{UserAuthCommand, UserAuthError};

use super::{App, AppError, AppResult, Caller};
use crate::command_bus::BusError;

impl App {
    /// Carries out every pending MFA reset that is due; answers how many.
    pub async fn complete_due_mfa_resets(&self) -> AppResult<usize> {
        let candidates = crate::audit::pending_mfa_reset_candidates(&self.pool)
            .await
            .map_err(|cause| AppError::Unavailable {
                what: "Postgres",
                cause,
            })?;
        let system = Caller {
            request_id: uuid::Uuid::new_v4().to_string(),
            client_request_id: None,
            client_ip: "local".into(),
            user_agent: "authledger reset sweep".into(),
        };
        let mut done = 0;
        for user in candidates {
            match self
                .bus
                .execute(
                    user,
                    UserAuthCommand::CompletePendingMfaReset,
                    &system.as_system(),
                )
                .await
            {
                Ok(_) => done += 1,
                Err(BusError::Refused(
                    UserAuthError::MfaResetNotDue | UserAuthError::NoPendingMfaReset,
                )) => {}
                // One user's failure must not hold back everyone else's
                // reset; the next sweep tries again.
                Err(err) => {
                    tracing::warn!(%user, error = %self.refused(err), "a due MFA reset was not carried out");
                }
            }
        }
        Ok(done)
    }
}
