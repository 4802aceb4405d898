//! Admin commands: reset a user's MFA, unlock an account. The events record
//! the admin's credential as actor, and the reason.
use authledger_aggregates::{AdminReason, UserAuthCommand, Verdict};

use super::{App, AppError, AppResult, Caller, Staff};

#[derive(Debug)]
pub struct AdminDone {
    pub sessions_ended: usize,
}

impl App {
    /// Forgets `user`'s authenticator and recovery code and ends every
    /// session (lost phone, identity checked out of band).
    pub async fn admin_reset_mfa(
        &self,
        caller: &Caller,
        admin: &Staff,
        user: &str,
        reason: &str,
    ) -> AppResult<AdminDone> {
        self.admin_command(caller, admin, user, reason, |reason| {
            UserAuthCommand::AdminResetMfa { reason }
        })
        .await
    }

    /// Unlocks a locked or throttled account and clears its failure count.
    pub async fn unlock_account(
        &self,
        caller: &Caller,
        admin: &Staff,
        user: &str,
        reason: &str,
    ) -> AppResult<AdminDone> {
        self.admin_command(caller, admin, user, reason, |reason| {
            UserAuthCommand::UnlockAccount { reason }
        })
        .await
    }

    async fn admin_command(
        &self,
        caller: &Caller,
        admin: &Staff,
        user: &str,
        reason: &str,
        command: fn(AdminReason) -> UserAuthCommand,
    ) -> AppResult<AdminDone> {
        let user = self
            .resolve_user(user)
            .await?
            .ok_or(AppError::UnknownUser)?;
        let reason = AdminReason::parse(reason)?;
        let executed = self
            .bus
            .execute(user, command(reason), &caller.as_staff(admin))
            .await
            .map_err(|err| self.refused(err))?;
        Ok(AdminDone {
            sessions_ended: match executed.verdict {
                Verdict::MfaReset { sessions_ended } => sessions_ended,
                _ => 0,
            },
        })
    }
}
