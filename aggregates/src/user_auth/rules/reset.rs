//! The user's MFA reset: from a session started in the last few minutes, or
//! with the password again. It forgets the authenticator and recovery code
//! and ends every session at once; the next sign-in enrolls anew.
use chrono::{DateTime, Utc};

use super::reauthentication::Reauthentication;
use super::Decision;
use crate::user_auth::{
    Actor, Decided, Password, Reference, SessionEndReason, UserAuth, UserAuthError as Error,
    UserAuthEvent as E, UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) async fn reset_mfa(
        &self,
        session: Reference,
        password: Option<Password>,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.live_session(&session, now, &s.policy)
            .ok_or(Error::SessionInvalid)?;
        let fresh = !self.reauthentication_required(&session, now, &s.policy);
        if let Reauthentication::Failed(rejected) = self
            .reauthenticate(fresh, password.as_ref(), s, now)
            .await?
        {
            return Ok(rejected);
        }
        Ok(self.mfa_reset(Actor::User, None, s, now))
    }

    /// The reset itself, by whoever asked: the authenticator is forgotten
    /// and every live session ends with it.
    pub(super) fn mfa_reset(
        &self,
        actor: Actor,
        reason: Option<String>,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decided {
        let ended = self.end_sessions(SessionEndReason::MfaReset, None, s, now);
        let sessions_ended = ended.len();
        let mut events = vec![E::MfaReset {
            actor,
            reason,
            at: now,
        }];
        events.extend(ended);
        Decided {
            events,
            verdict: Verdict::MfaReset { sessions_ended },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    #[test]
    fn a_session_needs_the_password_again_once_fifteen_minutes_have_passed_since_it_started() {
        let start = later(10);
        let state = folded(signed_in(start));
        let policy = policy();
        let fresh = start + Duration::minutes(15);
        let stale = start + Duration::minutes(16);
        assert!(!state.reauthentication_required(&reference(8), fresh, &policy));
        assert!(state.reauthentication_required(&reference(8), stale, &policy));
        assert!(
            state.reauthentication_required(&reference(99), fresh, &policy),
            "an unknown session proves nothing"
        );
    }

    #[test]
    fn resetting_mfa_in_a_fresh_session_forgets_the_authenticator_and_ends_every_session() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(session_started(9, SignInMethod::Totp, now));
        at(now + Duration::minutes(14))
            .given(given)
            .when(UserAuthCommand::ResetMfa {
                session: reference(8),
                password: None,
            })
            .then_expect_events(vec![
                E::MfaReset {
                    actor: Actor::User,
                    reason: None,
                    at: now + Duration::minutes(14),
                },
                E::SessionEnded {
                    session: reference(8),
                    reason: SessionEndReason::MfaReset,
                    at: now + Duration::minutes(14),
                },
                E::SessionEnded {
                    session: reference(9),
                    reason: SessionEndReason::MfaReset,
                    at: now + Duration::minutes(14),
                },
            ]);
    }

    #[test]
    fn resetting_mfa_without_a_fresh_session_or_the_password_is_refused() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(E::SessionActive {
            session: reference(8),
            at: now + Duration::minutes(20),
        });
        at(now + Duration::minutes(20))
            .given(given)
            .when(UserAuthCommand::ResetMfa {
                session: reference(8),
                password: None,
            })
            .then_expect_error(UserAuthError::ReauthenticationRequired);
    }

    #[test]
    fn resetting_mfa_in_an_old_session_works_with_the_password() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut given = signed_in(now);
        given.push(E::SessionActive {
            session: reference(8),
            at: when,
        });
        let events = events_of(
            at(when),
            given,
            UserAuthCommand::ResetMfa {
                session: reference(8),
                password: Some(password()),
            },
        );
        assert!(matches!(
            events.as_slice(),
            [E::MfaReset { .. }, E::SessionEnded { .. }]
        ));
    }

    #[test]
    fn a_wrong_password_at_reset_is_a_failure_and_resets_nothing() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut given = signed_in(now);
        given.push(E::SessionActive {
            session: reference(8),
            at: when,
        });
        at(when)
            .given(given)
            .when(UserAuthCommand::ResetMfa {
                session: reference(8),
                password: Some(wrong_password()),
            })
            .then_expect_events(vec![E::PasswordRejected { at: when }]);
    }

    #[test]
    fn after_a_reset_the_next_sign_in_must_enroll() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(E::MfaReset {
            actor: Actor::User,
            reason: None,
            at: now,
        });
        at(now)
            .given(given)
            .when(UserAuthCommand::SubmitPassword {
                password: password(),
            })
            .then_expect_events(vec![attempt_opened(1, now, SecondFactor::Enroll)]);
    }

    #[test]
    fn after_a_reset_the_old_recovery_code_is_gone() {
        let now = later(10);
        let mut given = signed_in(now);
        given.extend([
            E::MfaReset {
                actor: Actor::User,
                reason: None,
                at: now,
            },
            attempt_opened(9, now, SecondFactor::Enroll),
        ]);
        at(now)
            .given(given)
            .when(UserAuthCommand::UseRecoveryCode {
                attempt: reference(9),
                code: recovery(1),
                replacement: recovery(2),
            })
            .then_expect_error(UserAuthError::EnrollmentRequired);
    }

    #[test]
    fn resetting_mfa_in_a_fresh_session_reports_how_many_sessions_ended() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(session_started(9, SignInMethod::Totp, now));
        let verdict = decided(
            now + Duration::minutes(14),
            given,
            UserAuthCommand::ResetMfa {
                session: reference(8),
                password: None,
            },
        )
        .verdict;
        assert_eq!(verdict, Verdict::MfaReset { sessions_ended: 2 });
    }

    #[test]
    fn a_wrong_password_at_reset_is_rejected_as_a_password_failure() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut given = signed_in(now);
        given.push(E::SessionActive {
            session: reference(8),
            at: when,
        });
        let verdict = decided(
            when,
            given,
            UserAuthCommand::ResetMfa {
                session: reference(8),
                password: Some(wrong_password()),
            },
        )
        .verdict;
        assert_eq!(
            verdict,
            Verdict::Rejected(Rejection {
                factor: FailedFactor::Password,
                consequence: Consequence::None,
                attempt_over: false,
            })
        );
    }
}
