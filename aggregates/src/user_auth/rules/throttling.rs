//! Throttling and locking, per account: after a few consecutive failures of
//! any factor the next try must wait, doubling up to a ceiling; at the limit
//! the account locks until an administrator unlocks it. Only a completed
//! sign-in (or an unlock) clears the count.
use chrono::{DateTime, Utc};

use crate::user_auth::{
    Consequence, Decided, FailedFactor, Rejection, UserAuth, UserAuthEvent as E, UserAuthEvent,
    UserAuthServices, Verdict,
};

impl UserAuth {
    /// A failed factor and what it brings: a delay once failures pile up,
    /// a lock at the limit.
    pub(super) fn failure(
        &self,
        failed: UserAuthEvent,
        factor: FailedFactor,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decided {
        let failures = self.consecutive_failures.saturating_add(1);
        // Counted as `apply` counts: against the attempt the failure names.
        let attempt_over = match &failed {
            E::TotpRejected { attempt, .. } | E::RecoveryCodeRejected { attempt, .. } => self
                .attempt
                .as_ref()
                .filter(|open| open.reference == *attempt)
                .is_some_and(|open| {
                    open.failures.saturating_add(1) >= s.policy.second_factor_tries
                }),
            _ => false,
        };
        let mut events = vec![failed];
        let consequence = if failures >= s.policy.lock_after_failures {
            if !self.locked {
                events.push(E::AccountLocked { failures, at: now });
            }
            Consequence::Locked
        } else if let Some(delay) = s.policy.throttle_delay(failures) {
            let until = now + delay;
            events.push(E::SignInThrottled {
                failures,
                until,
                at: now,
            });
            Consequence::ThrottledUntil(until)
        } else {
            Consequence::None
        };
        Decided {
            events,
            verdict: Verdict::Rejected(Rejection {
                factor,
                consequence,
                attempt_over,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    fn failures(n: u32, now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        (0..n).map(|_| E::PasswordRejected { at: now }).collect()
    }

    #[test]
    fn the_fifth_consecutive_failure_makes_the_next_attempt_wait_thirty_seconds() {
        let mut given = registered();
        given.extend(failures(4, later(1)));
        at(later(1))
            .given(given)
            .when(UserAuthCommand::SubmitPassword {
                password: wrong_password(),
            })
            .then_expect_events(vec![
                E::PasswordRejected { at: later(1) },
                E::SignInThrottled {
                    failures: 5,
                    until: later(1) + Duration::seconds(30),
                    at: later(1),
                },
            ]);
    }

    #[test]
    fn each_further_failure_doubles_the_wait_up_to_an_hour() {
        let policy = policy();
        assert_eq!(policy.throttle_delay(4), None);
        assert_eq!(policy.throttle_delay(5), Some(Duration::seconds(30)));
        assert_eq!(policy.throttle_delay(6), Some(Duration::seconds(60)));
        assert_eq!(policy.throttle_delay(7), Some(Duration::seconds(120)));
        assert_eq!(policy.throttle_delay(12), Some(Duration::hours(1)));
        assert_eq!(policy.throttle_delay(99), Some(Duration::hours(1)));
    }

    #[test]
    fn a_throttled_account_answers_a_correct_password_like_a_wrong_one() {
        let mut given = registered();
        given.push(E::SignInThrottled {
            failures: 5,
            until: later(1) + Duration::seconds(30),
            at: later(1),
        });
        at(later(1) + Duration::seconds(10))
            .given(given)
            .when(UserAuthCommand::SubmitPassword {
                password: password(),
            })
            .then_expect_error(UserAuthError::InvalidCredentials);
    }

    #[test]
    fn the_wait_is_over_once_its_time_has_passed() {
        let mut given = registered();
        given.push(E::SignInThrottled {
            failures: 5,
            until: later(1) + Duration::seconds(30),
            at: later(1),
        });
        let events = events_of(
            at(later(2)),
            given,
            UserAuthCommand::SubmitPassword {
                password: password(),
            },
        );
        assert!(matches!(events.as_slice(), [E::PasswordVerified { .. }]));
    }

    #[test]
    fn the_hundredth_consecutive_failure_locks_the_account() {
        let mut given = registered();
        given.extend(failures(99, later(1)));
        at(later(120))
            .given(given)
            .when(UserAuthCommand::SubmitPassword {
                password: wrong_password(),
            })
            .then_expect_events(vec![
                E::PasswordRejected { at: later(120) },
                E::AccountLocked {
                    failures: 100,
                    at: later(120),
                },
            ]);
    }

    #[test]
    fn a_locked_account_answers_a_correct_password_like_a_wrong_one() {
        let mut given = registered();
        given.push(E::AccountLocked {
            failures: 100,
            at: later(1),
        });
        at(later(600))
            .given(given)
            .when(UserAuthCommand::SubmitPassword {
                password: password(),
            })
            .then_expect_error(UserAuthError::InvalidCredentials);
    }

    #[test]
    fn a_correct_password_does_not_reset_the_failure_count() {
        let mut given = registered();
        given.extend(failures(4, later(1)));
        given.push(attempt_opened(7, later(2), SecondFactor::Enroll));
        at(later(2))
            .given(given)
            .when(UserAuthCommand::SubmitPassword {
                password: wrong_password(),
            })
            .then_expect_events(vec![
                E::PasswordRejected { at: later(2) },
                E::SignInThrottled {
                    failures: 5,
                    until: later(2) + Duration::seconds(30),
                    at: later(2),
                },
            ]);
    }

    #[test]
    fn a_completed_sign_in_resets_the_failure_count() {
        let mut given = enrolled();
        given.extend(failures(4, later(1)));
        given.push(session_started(8, SignInMethod::Totp, later(2)));
        at(later(3))
            .given(given)
            .when(UserAuthCommand::SubmitPassword {
                password: wrong_password(),
            })
            .then_expect_events(vec![E::PasswordRejected { at: later(3) }]);
    }

    #[test]
    fn a_second_factor_while_throttled_says_when_to_retry() {
        let mut given = enrolled_with_attempt(later(1));
        let until = later(1) + Duration::seconds(30);
        given.push(E::SignInThrottled {
            failures: 5,
            until,
            at: later(1),
        });
        at(later(1))
            .given(given)
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(later(1)),
            })
            .then_expect_error(UserAuthError::Throttled { retry_after: until });
    }

    #[test]
    fn the_fifth_failure_says_to_wait_thirty_seconds_and_ends_the_attempt() {
        let mut given = enrolled();
        given.push(attempt_opened(7, t0(), SecondFactor::Totp));
        given.extend((0..4).map(|_| E::TotpRejected {
            attempt: reference(7),
            reason: TotpRejection::WrongCode,
            at: t0(),
        }));
        let outcome = decided(
            t0(),
            given,
            UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_for_step(step_at(t0()) + 5),
            },
        );
        assert_eq!(
            outcome.verdict,
            Verdict::Rejected(Rejection {
                factor: FailedFactor::TotpCode,
                consequence: Consequence::ThrottledUntil(t0() + Duration::seconds(30)),
                attempt_over: true,
            })
        );
        assert_eq!(
            outcome.events,
            vec![
                E::TotpRejected {
                    attempt: reference(7),
                    reason: TotpRejection::WrongCode,
                    at: t0(),
                },
                E::SignInThrottled {
                    failures: 5,
                    until: t0() + Duration::seconds(30),
                    at: t0(),
                },
            ]
        );
    }

    #[test]
    fn the_hundredth_failure_says_the_account_is_locked() {
        let mut given = registered();
        given.extend(failures(99, later(1)));
        let verdict = decided(
            later(120),
            given,
            UserAuthCommand::SubmitPassword {
                password: wrong_password(),
            },
        )
        .verdict;
        assert_eq!(
            verdict,
            Verdict::Rejected(Rejection {
                factor: FailedFactor::Password,
                consequence: Consequence::Locked,
                attempt_over: false,
            })
        );
    }
}
