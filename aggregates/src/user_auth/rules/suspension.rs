//! Suspension: an administrator takes an account out of use without
//! erasing it. Every session ends, and no route signs it in until it is
//! reactivated: the password answers as a wrong one (after the same work,
//! counting nothing), no open login attempt or mailed sign-in link
//! survives, and a forgotten password mails nothing. The links that
//! protect the owner (a reset's "this wasn't me", a change of address's
//! undo) still work.
use chrono::{DateTime, Utc};

use super::admin::seal_reason;
use super::Decision;
use crate::user_auth::{
    AdminReason, Decided, SessionEndReason, UserAuth, UserAuthError as Error, UserAuthEvent as E,
    UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) fn suspend(
        &self,
        reason: AdminReason,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if !self.is_registered() {
            return Err(Error::UnknownUser);
        }
        if self.suspended {
            return Err(Error::AlreadySuspended);
        }
        let mut events = self.end_sessions(SessionEndReason::AccountSuspended, None, s, now);
        let sessions_ended = events.len();
        events.push(E::AccountSuspended {
            reason: seal_reason(&reason, s)?,
            at: now,
        });
        Ok(Decided {
            events,
            verdict: Verdict::Suspended { sessions_ended },
        })
    }

    pub(in crate::user_auth) fn reactivate(
        &self,
        reason: AdminReason,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if !self.is_registered() {
            return Err(Error::UnknownUser);
        }
        if !self.suspended {
            return Err(Error::NotSuspended);
        }
        Ok(Decided {
            events: vec![E::AccountReactivated {
                reason: seal_reason(&reason, s)?,
                at: now,
            }],
            verdict: Verdict::Reactivated,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    fn suspend() -> UserAuthCommand {
        UserAuthCommand::SuspendAccount {
            reason: AdminReason::parse("left the company").unwrap(),
        }
    }

    fn reactivate() -> UserAuthCommand {
        UserAuthCommand::ReactivateAccount {
            reason: AdminReason::parse("back from leave").unwrap(),
        }
    }

    fn suspended_at(now: DateTime<Utc>) -> UserAuthEvent {
        E::AccountSuspended {
            reason: sealed_text("left the company"),
            at: now,
        }
    }

    /// Signed in at `now` (session 8), then suspended.
    fn suspended(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut given = signed_in(now);
        given.extend([
            E::SessionEnded {
                session: reference(8),
                reason: SessionEndReason::AccountSuspended,
                at: now,
            },
            suspended_at(now),
        ]);
        given
    }

    #[test]
    fn suspending_ends_every_session_then_records_the_reason() {
        let now = later(10);
        at(now)
            .given(signed_in(now))
            .when(suspend())
            .then_expect_events(vec![
                E::SessionEnded {
                    session: reference(8),
                    reason: SessionEndReason::AccountSuspended,
                    at: now,
                },
                suspended_at(now),
            ]);
        assert_eq!(
            decided(now, signed_in(now), suspend()).verdict,
            Verdict::Suspended { sessions_ended: 1 }
        );
    }

    #[test]
    fn a_suspended_account_is_not_suspended_twice() {
        let now = later(10);
        at(now)
            .given(suspended(now))
            .when(suspend())
            .then_expect_error(UserAuthError::AlreadySuspended);
    }

    #[test]
    fn an_unknown_account_is_neither_suspended_nor_reactivated() {
        for command in [suspend(), reactivate()] {
            at(later(10))
                .given_no_previous_events()
                .when(command)
                .then_expect_error(UserAuthError::UnknownUser);
        }
    }

    #[test]
    fn reactivating_lifts_the_suspension() {
        let now = later(10);
        at(now)
            .given(suspended(now))
            .when(reactivate())
            .then_expect_events(vec![E::AccountReactivated {
                reason: sealed_text("back from leave"),
                at: now,
            }]);
        let mut after = suspended(now);
        after.push(E::AccountReactivated {
            reason: sealed_text("back from leave"),
            at: now,
        });
        assert!(folded(suspended(now)).is_suspended());
        assert!(!folded(after).is_suspended());
    }

    #[test]
    fn an_account_in_use_is_not_reactivated() {
        at(later(10))
            .given(signed_in(later(10)))
            .when(reactivate())
            .then_expect_error(UserAuthError::NotSuspended);
    }

    #[test]
    fn a_suspended_account_answers_its_right_password_as_a_wrong_one_and_counts_nothing() {
        let now = later(10);
        let (outcome, work) = with_hashing_work(
            now,
            suspended(now),
            UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            },
        );
        assert_eq!(outcome.unwrap_err(), UserAuthError::InvalidCredentials);
        assert_eq!(work, 1, "the same work as for any password");
    }

    #[test]
    fn suspension_voids_an_open_login_attempt_and_its_mailed_link() {
        let now = later(10);
        let mut given = enrolled_with_attempt(now);
        given.extend([
            E::EmailLinkRequested {
                link: reference(20),
                attempt: reference(7),
                expires_at: now + Duration::minutes(15),
                at: now,
            },
            suspended_at(now),
        ]);
        at(now)
            .given(given.clone())
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(now),
            })
            .then_expect_error(UserAuthError::LoginAttemptInvalid);
        at(now)
            .given(given)
            .when(UserAuthCommand::UseEmailLink {
                link: reference(20),
            })
            .then_expect_error(UserAuthError::EmailLinkInvalid);
    }

    #[test]
    fn a_suspended_account_gets_no_password_reset_link_and_an_earlier_one_is_void() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(E::PasswordResetRequested {
            link: reference(30),
            expires_at: now + Duration::minutes(30),
            at: now,
        });
        given.push(suspended_at(now));
        assert_eq!(
            decided(now, given.clone(), UserAuthCommand::RequestPasswordReset).verdict,
            Verdict::PasswordResetRequested { mailed: false }
        );
        at(now)
            .given(given)
            .when(UserAuthCommand::ResetPassword {
                link: reference(30),
                password: new_password(),
            })
            .then_expect_error(UserAuthError::PasswordResetInvalid);
    }

    #[test]
    fn after_reactivation_the_password_opens_a_login_attempt_again() {
        let now = later(10);
        let mut given = suspended(now);
        given.push(E::AccountReactivated {
            reason: sealed_text("back from leave"),
            at: now,
        });
        let events = events_of(
            at(now),
            given,
            UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            },
        );
        assert!(matches!(events.as_slice(), [E::PasswordVerified { .. }]));
    }
}
