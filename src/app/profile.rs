//! The signed-in user: their profile, "Reset my multi-factor
//! authentication", and signing out.
use authledger_aggregates::{Password, SealPurpose, Session, UserAuthCommand, Verdict};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{App, AppError, AppResult, Caller};
use crate::services::new_recovery_code;
use crate::tokens::TokenKind;

/// The signed-in user and how this session was won.
#[derive(Debug)]
pub struct Me {
    pub user_id: Uuid,
    pub email: String,
    pub enrolled_at: Option<DateTime<Utc>>,
    pub session: Session,
    /// When an hour (or the configured idle time) without use ends it.
    pub idle_expires_at: DateTime<Utc>,
    /// Whether a reset needs the password again: the session was not won
    /// within the reauthentication window.
    pub reauthentication_required: bool,
    /// Whether changing the password needs the current one.
    pub current_password_required: bool,
    /// When a waiting MFA reset takes effect.
    pub pending_mfa_reset: Option<DateTime<Utc>>,
    /// Every authenticator, oldest first, names opened.
    pub authenticators: Vec<super::AuthenticatorEntry>,
}

/// What "Reset my multi-factor authentication" did.
#[derive(Debug)]
pub enum ResetDone {
    /// Done: every session ended, this one included.
    Reset { sessions_ended: usize },
    /// Asked from a session won by email link: it waits until then.
    Pending { effective_at: DateTime<Utc> },
}

impl App {
    /// Checks the session is live and records its use, then answers the
    /// profile as of that moment.
    pub async fn profile(&self, caller: &Caller, session_token: &str) -> AppResult<Me> {
        let (user, session) = self.session_token(session_token)?;
        let executed = self
            .bus
            .execute(
                user,
                UserAuthCommand::TouchSession { session },
                &caller.as_user(),
            )
            .await
            .map_err(|err| self.refused(err))?;
        let (now, policy) = (self.now(), self.policy());
        let state = executed.state;
        let live = state
            .live_session(&session, now, policy)
            .cloned()
            .ok_or(AppError::Unauthenticated)?;
        let profile = state
            .profile()
            .filter(|profile| !profile.erased)
            .ok_or(AppError::Unauthenticated)?;
        let email = executed
            .keeper
            .open_text(SealPurpose::Email, &profile.email)
            .ok_or(AppError::Unauthenticated)?;
        Ok(Me {
            user_id: profile.user_id,
            email,
            enrolled_at: profile.enrolled_at,
            idle_expires_at: live.idle_expires_at(policy),
            reauthentication_required: state.reauthentication_required(&session, now, policy),
            current_password_required: state.current_password_required(&session, now, policy),
            pending_mfa_reset: state.pending_mfa_reset(),
            authenticators: super::authenticators::entries(
                state.authenticators(),
                &executed.keeper,
            ),
            session: live,
        })
    }

    /// Forgets the authenticator and recovery code and ends every session.
    /// `password` is needed when the session is not recent.
    pub async fn reset_mfa(
        &self,
        caller: &Caller,
        session_token: &str,
        password: Option<&str>,
    ) -> AppResult<ResetDone> {
        let (user, session) = self.session_token(session_token)?;
        let password = password
            .map(Password::parse)
            .transpose()
            .map_err(AppError::UnacceptablePassword)?;
        match self
            .run(
                user,
                caller,
                UserAuthCommand::ResetMfa { session, password },
            )
            .await?
        {
            Verdict::MfaReset { sessions_ended } => Ok(ResetDone::Reset { sessions_ended }),
            Verdict::MfaResetPending { effective_at } => Ok(ResetDone::Pending { effective_at }),
            Verdict::Rejected(rejection) => Err(self.rejected(rejection, AppError::WrongPassword)),
            _ => Err(AppError::internal(anyhow::anyhow!(
                "a reset answered neither a reset nor a rejection"
            ))),
        }
    }

    /// Cancels the signed-in user's pending MFA reset. Every session won by
    /// email link ends with it; answers whether this one is still live.
    pub async fn cancel_mfa_reset(&self, caller: &Caller, session_token: &str) -> AppResult<bool> {
        let (user, session) = self.session_token(session_token)?;
        let executed = self
            .bus
            .execute(
                user,
                UserAuthCommand::CancelMfaReset { session },
                &caller.as_user(),
            )
            .await
            .map_err(|err| self.refused(err))?;
        Ok(executed
            .state
            .live_session(&session, self.now(), self.policy())
            .is_some())
    }

    /// "This wasn't me": the link mailed with a pending reset cancels it
    /// and ends every session of the account.
    pub async fn deny_mfa_reset(&self, caller: &Caller, token: &str) -> AppResult<usize> {
        let (user, link) = self
            .tokens
            .decode(TokenKind::ResetDenial, token)
            .map_err(|_| AppError::InvalidLinkToken)?;
        match self
            .run(user, caller, UserAuthCommand::DenyMfaReset { link })
            .await?
        {
            Verdict::MfaResetCancelled { sessions_ended } => Ok(sessions_ended),
            _ => Err(AppError::internal(anyhow::anyhow!(
                "a denial answered something else"
            ))),
        }
    }

    /// A new password for the signed-in user; `current` is needed unless
    /// the session was won with a second factor recently. Every other
    /// session ends.
    pub async fn change_password(
        &self,
        caller: &Caller,
        session_token: &str,
        current: Option<&str>,
        new: &str,
    ) -> AppResult<usize> {
        self.shed_when_hashing_is_full()?;
        let (user, session) = self.session_token(session_token)?;
        let current = current
            .map(Password::parse)
            .transpose()
            .map_err(AppError::UnacceptablePassword)?;
        let (state, keeper) = self
            .bus
            .load_with_keeper(user)
            .await
            .map_err(|err| self.refused(err))?;
        let email =
            super::identity::address_of(&state, &keeper).ok_or(AppError::Unauthenticated)?;
        let new = super::registration::new_password(&email, new)?;
        match self
            .run(
                user,
                caller,
                UserAuthCommand::ChangePassword {
                    session,
                    current,
                    new,
                },
            )
            .await?
        {
            Verdict::PasswordChanged { sessions_ended } => Ok(sessions_ended),
            Verdict::Rejected(rejection) => Err(self.rejected(rejection, AppError::WrongPassword)),
            _ => Err(AppError::internal(anyhow::anyhow!(
                "a password change answered something else"
            ))),
        }
    }

    /// A new recovery code, shown this once; the old one dies.
    pub async fn regenerate_recovery_code(
        &self,
        caller: &Caller,
        session_token: &str,
        password: Option<&str>,
    ) -> AppResult<String> {
        let (user, session) = self.session_token(session_token)?;
        let password = password
            .map(Password::parse)
            .transpose()
            .map_err(AppError::UnacceptablePassword)?;
        let code = new_recovery_code();
        match self
            .run(
                user,
                caller,
                UserAuthCommand::RegenerateRecoveryCode {
                    session,
                    password,
                    code: code.clone(),
                },
            )
            .await?
        {
            Verdict::RecoveryCodeReplaced => Ok(code.display()),
            Verdict::Rejected(rejection) => Err(self.rejected(rejection, AppError::WrongPassword)),
            _ => Err(AppError::internal(anyhow::anyhow!(
                "a recovery code request answered something else"
            ))),
        }
    }

    /// Ends this session.
    pub async fn logout(&self, caller: &Caller, session_token: &str) -> AppResult<()> {
        let (user, session) = self.session_token(session_token)?;
        self.run(user, caller, UserAuthCommand::Logout { session })
            .await?;
        Ok(())
    }
}
