//! The signed-in user: their profile, "Reset my multi-factor
//! authentication", and signing out.
use authledger_aggregates::{Password, Session, UserAuthCommand, Verdict};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{App, AppError, AppResult, Caller};

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
}

#[derive(Debug)]
pub struct ResetDone {
    /// Sessions ended, this one included.
    pub sessions_ended: usize,
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
        let profile = state.profile().ok_or(AppError::Unauthenticated)?;
        Ok(Me {
            user_id: profile.user_id,
            email: profile.email,
            enrolled_at: profile.enrolled_at,
            idle_expires_at: live.idle_expires_at(policy),
            reauthentication_required: state.reauthentication_required(&session, now, policy),
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
            Verdict::MfaReset { sessions_ended } => Ok(ResetDone { sessions_ended }),
            Verdict::Rejected(rejection) => Err(self.rejected(rejection, AppError::WrongPassword)),
            _ => Err(AppError::internal(anyhow::anyhow!(
                "a reset answered neither a reset nor a rejection"
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
