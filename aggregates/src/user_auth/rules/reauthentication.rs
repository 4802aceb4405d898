//! Proving the owner again before a sensitive change: a session started a
//! few minutes ago has just done so; any other gives the password again,
//! which counts like any password step, throttling and locks included.
use chrono::{DateTime, Utc};

use crate::user_auth::{
    Assurance, Decided, FailedFactor, Password, PasswordCheck, Reference, UserAuth,
    UserAuthError as Error, UserAuthEvent as E, UserAuthServices,
};

/// What giving the password again came to.
pub(super) enum Reauthentication {
    Proven,
    /// A wrong password: the failure to record instead of the change.
    Failed(Decided),
}

impl UserAuth {
    /// For a change only the owner with their device may make: from a live
    /// `aal2` session (one won by email link proves only the password and
    /// the mailbox), with the password again unless that session is recent.
    pub(super) async fn reauthenticate_aal2(
        &self,
        session: &Reference,
        password: Option<&Password>,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Result<Reauthentication, Error> {
        let live = self
            .live_session(session, now, &s.policy)
            .ok_or(Error::SessionInvalid)?;
        if live.aal != Assurance::Aal2 {
            return Err(Error::SecondFactorRequired);
        }
        let fresh = !self.reauthentication_required(session, now, &s.policy);
        self.reauthenticate(fresh, password, s, now).await
    }

    /// `fresh` when the session itself is proof enough; otherwise the
    /// password is required.
    pub(super) async fn reauthenticate(
        &self,
        fresh: bool,
        password: Option<&Password>,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Result<Reauthentication, Error> {
        if fresh {
            return Ok(Reauthentication::Proven);
        }
        let password = password.ok_or(Error::ReauthenticationRequired)?;
        if self.locked {
            return Err(Error::AccountLocked);
        }
        if let Some(until) = self.throttled_at(now) {
            return Err(Error::Throttled { retry_after: until });
        }
        let hash = self.password_hash(s)?;
        if s.hasher.verify(Some(&hash), password).await? == PasswordCheck::Mismatch {
            return Ok(Reauthentication::Failed(self.failure(
                E::PasswordRejected { at: now },
                FailedFactor::Password,
                s,
                now,
            )));
        }
        Ok(Reauthentication::Proven)
    }
}
