//! Changing the password from a session won with a second factor: a
//! recent one is proof enough, an older one gives the current password. A
//! session won by email link may not: it proves the password and the
//! mailbox, and whoever holds those could otherwise set a new password,
//! end the owner's sessions and wait out an MFA reset the owner could no
//! longer sign in to cancel. Every other session ends, since whoever knew
//! the old password may hold one; the session that changed it stays.
use chrono::{DateTime, Utc};

use super::reauthentication::Reauthentication;
use super::Decision;
use crate::user_auth::{
    Assurance, Decided, NewPassword, Password, Policy, Reference, SealPurpose, SessionEndReason,
    UserAuth, UserAuthEvent as E, UserAuthServices, Verdict,
};

impl UserAuth {
    /// Whether changing the password from `session` needs the current one:
    /// unless the session was won with a second factor within the
    /// reauthentication window. Only an `aal2` session may change it at
    /// all; for any other this answers true.
    pub fn current_password_required(
        &self,
        session: &Reference,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> bool {
        !self
            .live_session(session, now, policy)
            .is_some_and(|live| live.aal == Assurance::Aal2)
            || self.reauthentication_required(session, now, policy)
    }

    pub(in crate::user_auth) async fn change_password(
        &self,
        session: Reference,
        current: Option<Password>,
        new: &NewPassword,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if let Reauthentication::Failed(rejected) = self
            .reauthenticate_aal2(&session, current.as_ref(), s, now)
            .await?
        {
            return Ok(rejected);
        }
        let hash = s.hasher.hash(new.as_password()).await?;
        let mut events = vec![E::PasswordChanged {
            password_hash: s
                .keeper
                .seal(SealPurpose::PasswordHash, hash.0.as_bytes())?,
            at: now,
        }];
        let ended = self.end_sessions(SessionEndReason::PasswordChanged, Some(&session), s, now);
        let sessions_ended = ended.len();
        events.extend(ended);
        Ok(Decided {
            events,
            verdict: Verdict::PasswordChanged { sessions_ended },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    fn change(current: Option<Password>) -> UserAuthCommand {
        UserAuthCommand::ChangePassword {
            session: reference(8),
            current,
            new: new_password(),
        }
    }

    fn changed(at: DateTime<Utc>) -> UserAuthEvent {
        E::PasswordChanged {
            password_hash: sealed_hash(NEW_PASSWORD),
            at,
        }
    }

    /// Signed in with session 8 at `now` by `method`, still active at `when`.
    fn signed_in_by(
        method: SignInMethod,
        now: DateTime<Utc>,
        when: DateTime<Utc>,
    ) -> Vec<UserAuthEvent> {
        let mut events = enrolled();
        events.extend([
            session_started(8, method, now),
            E::SessionActive {
                session: reference(8),
                at: when,
            },
        ]);
        events
    }

    #[test]
    fn a_fresh_aal2_session_changes_the_password_without_the_current_one_and_ends_the_others() {
        let now = later(10);
        let when = now + Duration::minutes(10);
        let mut given = signed_in(now);
        given.extend([
            session_started(9, SignInMethod::Totp, now),
            session_started(10, SignInMethod::EmailLink, now),
        ]);
        at(when)
            .given(given)
            .when(change(None))
            .then_expect_events(vec![
                changed(when),
                E::SessionEnded {
                    session: reference(9),
                    reason: SessionEndReason::PasswordChanged,
                    at: when,
                },
                E::SessionEnded {
                    session: reference(10),
                    reason: SessionEndReason::PasswordChanged,
                    at: when,
                },
            ]);
    }

    #[test]
    fn an_old_aal2_session_needs_the_current_password() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let given = signed_in_by(SignInMethod::Totp, now, when);
        at(when)
            .given(given.clone())
            .when(change(None))
            .then_expect_error(UserAuthError::ReauthenticationRequired);
        at(when)
            .given(given)
            .when(change(Some(password())))
            .then_expect_events(vec![changed(when)]);
    }

    #[test]
    fn an_aal1_session_cannot_change_the_password_even_with_the_current_one() {
        let now = later(10);
        let given = signed_in_by(SignInMethod::EmailLink, now, now);
        at(now)
            .given(given.clone())
            .when(change(None))
            .then_expect_error(UserAuthError::SecondFactorRequired);
        at(now)
            .given(given)
            .when(change(Some(password())))
            .then_expect_error(UserAuthError::SecondFactorRequired);
    }

    #[test]
    fn a_wrong_password_from_an_aal1_session_is_refused_before_it_is_checked() {
        let now = later(10);
        let (outcome, work) = with_hashing_work(
            now,
            signed_in_by(SignInMethod::EmailLink, now, now),
            change(Some(wrong_password())),
        );
        assert_eq!(outcome, Err(UserAuthError::SecondFactorRequired));
        assert_eq!(work, 0);
    }

    #[test]
    fn whether_the_current_password_is_required_follows_the_session() {
        let now = later(10);
        let policy = policy();
        let fresh = folded(signed_in_by(SignInMethod::Totp, now, now));
        assert!(!fresh.current_password_required(&reference(8), now, &policy));
        let old = now + Duration::minutes(20);
        let stale = folded(signed_in_by(SignInMethod::Totp, now, old));
        assert!(stale.current_password_required(&reference(8), old, &policy));
        let by_email = folded(signed_in_by(SignInMethod::EmailLink, now, now));
        assert!(by_email.current_password_required(&reference(8), now, &policy));
    }

    #[test]
    fn a_wrong_current_password_is_a_failure_and_changes_nothing() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        at(when)
            .given(signed_in_by(SignInMethod::Totp, now, when))
            .when(change(Some(wrong_password())))
            .then_expect_events(vec![E::PasswordRejected { at: when }]);
    }

    #[test]
    fn the_current_password_is_not_checked_on_a_locked_or_throttled_account() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut throttled = signed_in_by(SignInMethod::Totp, now, when);
        throttled.push(E::SignInThrottled {
            failures: 5,
            until: when + Duration::seconds(30),
            at: when,
        });
        at(when)
            .given(throttled)
            .when(change(Some(password())))
            .then_expect_error(UserAuthError::Throttled {
                retry_after: when + Duration::seconds(30),
            });
        let mut locked = signed_in_by(SignInMethod::Totp, now, when);
        locked.push(E::AccountLocked {
            failures: 100,
            at: when,
        });
        at(when)
            .given(locked)
            .when(change(Some(password())))
            .then_expect_error(UserAuthError::AccountLocked);
    }

    #[test]
    fn an_ended_session_cannot_change_the_password() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(E::SessionEnded {
            session: reference(8),
            reason: SessionEndReason::Logout,
            at: now,
        });
        at(now)
            .given(given)
            .when(change(Some(password())))
            .then_expect_error(UserAuthError::SessionInvalid);
    }

    #[test]
    fn the_session_that_changed_the_password_stays_and_the_new_password_signs_in() {
        let now = later(10);
        let mut given = signed_in(now);
        given.extend(events_of(at(now), signed_in(now), change(None)));
        assert!(folded(given.clone())
            .live_session(&reference(8), now, &policy())
            .is_some());
        at(now)
            .given(given)
            .when(UserAuthCommand::SubmitPassword {
                password: new_password().as_password().clone(),
                device: None,
            })
            .then_expect_events(vec![attempt_opened(1, now, SecondFactor::Totp)]);
    }

    #[test]
    fn changing_the_password_reports_how_many_other_sessions_ended() {
        let now = later(10);
        let mut given = signed_in(now);
        given.extend([
            session_started(9, SignInMethod::Totp, now),
            session_started(10, SignInMethod::EmailLink, now),
        ]);
        assert_eq!(
            decided(now, given, change(None)).verdict,
            Verdict::PasswordChanged { sessions_ended: 2 }
        );
    }

    #[test]
    fn a_wrong_current_password_is_rejected_as_a_password_failure() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        assert_eq!(
            decided(
                when,
                signed_in_by(SignInMethod::Totp, now, when),
                change(Some(wrong_password()))
            )
            .verdict,
            Verdict::Rejected(Rejection {
                factor: FailedFactor::Password,
                consequence: Consequence::None,
                attempt_over: false,
            })
        );
    }
}
