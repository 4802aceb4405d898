//! Admin commands: reset a user's MFA, unlock, suspend and reactivate an
//! account, end its sessions, mail its verification link again. The events
//! record the admin's credential as actor, and the reason.
use authledger_aggregates::{AdminReason, UserAuthCommand, Verdict};

use super::{App, AppError, AppResult, Caller, Staff};

#[derive(Debug)]
pub struct AdminDone {
    pub sessions_ended: usize,
}

/// What an administrator may do to an account, always with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// Forgets the authenticator and recovery code and ends every session
    /// (lost phone, identity checked out of band).
    ResetMfa,
    /// Lifts a lock or throttle and clears the failure count.
    Unlock,
    /// Takes the account out of use: every session ends, and no route signs
    /// it in until it is reactivated.
    Suspend,
    Reactivate,
    /// Ends every session (a stolen laptop).
    EndSessions,
    /// Mails a new verification link to an account that has not confirmed
    /// its address.
    ResendVerification,
}

impl AdminAction {
    pub const ALL: [Self; 6] = [
        Self::ResetMfa,
        Self::Unlock,
        Self::Suspend,
        Self::Reactivate,
        Self::EndSessions,
        Self::ResendVerification,
    ];

    /// The action's name in a console URL.
    pub fn slug(self) -> &'static str {
        match self {
            Self::ResetMfa => "reset-mfa",
            Self::Unlock => "unlock",
            Self::Suspend => "suspend",
            Self::Reactivate => "reactivate",
            Self::EndSessions => "end-sessions",
            Self::ResendVerification => "resend-verification",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.slug() == slug)
    }

    fn command(self, reason: AdminReason) -> UserAuthCommand {
        match self {
            Self::ResetMfa => UserAuthCommand::AdminResetMfa { reason },
            Self::Unlock => UserAuthCommand::UnlockAccount { reason },
            Self::Suspend => UserAuthCommand::SuspendAccount { reason },
            Self::Reactivate => UserAuthCommand::ReactivateAccount { reason },
            Self::EndSessions => UserAuthCommand::AdminEndSessions { reason },
            Self::ResendVerification => UserAuthCommand::ResendVerification { reason },
        }
    }
}

impl App {
    /// Runs `action` on `user` (an id or an address) for `admin`.
    pub async fn admin_act(
        &self,
        caller: &Caller,
        admin: &Staff,
        user: &str,
        action: AdminAction,
        reason: &str,
    ) -> AppResult<AdminDone> {
        let user = self
            .resolve_user(user)
            .await?
            .ok_or(AppError::UnknownUser)?;
        let reason = AdminReason::parse(reason)?;
        let executed = self
            .bus
            .execute(user, action.command(reason), &caller.as_staff(admin))
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

#[cfg(test)]
mod tests {
    use super::AdminAction;

    #[test]
    fn every_action_is_found_by_its_slug_and_nothing_else_is() {
        for action in AdminAction::ALL {
            assert_eq!(AdminAction::from_slug(action.slug()), Some(action));
        }
        assert_eq!(AdminAction::from_slug("erase"), None);
    }
}
