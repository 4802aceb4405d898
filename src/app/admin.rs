//! Admin commands: reset a user's MFA, unlock, suspend and reactivate an
//! account, end its sessions, mail its verification link again. The events
//! record the admin's credential as actor, and the reason.
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

    /// Takes the account out of use: every session ends, and no route
    /// signs it in until it is reactivated.
    pub async fn suspend_account(
        &self,
        caller: &Caller,
        admin: &Staff,
        user: &str,
        reason: &str,
    ) -> AppResult<AdminDone> {
        self.admin_command(caller, admin, user, reason, |reason| {
            UserAuthCommand::SuspendAccount { reason }
        })
        .await
    }

    pub async fn reactivate_account(
        &self,
        caller: &Caller,
        admin: &Staff,
        user: &str,
        reason: &str,
    ) -> AppResult<AdminDone> {
        self.admin_command(caller, admin, user, reason, |reason| {
            UserAuthCommand::ReactivateAccount { reason }
        })
        .await
    }

    /// Ends every session of the account (a stolen laptop).
    pub async fn admin_end_sessions(
        &self,
        caller: &Caller,
        admin: &Staff,
        user: &str,
        reason: &str,
    ) -> AppResult<AdminDone> {
        self.admin_command(caller, admin, user, reason, |reason| {
            UserAuthCommand::AdminEndSessions { reason }
        })
        .await
    }

    /// Mails a new verification link to an account that has not confirmed
    /// its address.
    pub async fn resend_verification(
        &self,
        caller: &Caller,
        admin: &Staff,
        user: &str,
        reason: &str,
    ) -> AppResult<AdminDone> {
        self.admin_command(caller, admin, user, reason, |reason| {
            UserAuthCommand::ResendVerification { reason }
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
                Verdict::MfaReset { sessions_ended }
                | Verdict::Suspended { sessions_ended }
                | Verdict::SessionsEnded { sessions_ended } => sessions_ended,
                _ => 0,
            },
        })
    }
}
