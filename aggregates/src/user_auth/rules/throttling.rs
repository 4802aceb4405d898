//! Throttling and locking, per account: after a few consecutive failures of
//! any factor the next try must wait, doubling up to a ceiling; at the limit
//! the account locks until an administrator unlocks it. Only a completed
//! sign-in (or an unlock) clears the count. A failure calls off a waiting
//! MFA reset.
use chrono::{DateTime, Utc};

use crate::user_auth::state::KnownDevice;
use crate::user_auth::{
    Consequence, Decided, DeviceDigest, FailedFactor, Rejection, ResetCancellation, UserAuth,
    UserAuthEvent as E, UserAuthEvent, UserAuthServices, Verdict,
};

impl UserAuth {
    /// A failed factor and what it brings: a delay once failures pile up,
    /// a lock at the limit, and the end of a waiting MFA reset.
    pub(super) fn failure(
        &self,
        failed: UserAuthEvent,
        factor: FailedFactor,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decided {
        // A second factor tried in an attempt from a known device counts
        // against that device: it waits for its own failures, not the
        // account's.
        let known = match &failed {
            E::TotpRejected { attempt, .. }
            | E::RecoveryCodeRejected { attempt, .. }
            | E::WebAuthnRejected { attempt, .. } => self.attempt_device(attempt),
            _ => None,
        };
        if let Some(known) = known {
            let mut decided = self.device_throttle(known, failed, factor, s, now);
            if let Verdict::Rejected(rejection) = &mut decided.verdict {
                rejection.attempt_over = self.uses_up_attempt(&decided.events[0], s);
            }
            return decided;
        }
        let failures = self.consecutive_failures.saturating_add(1);
        let attempt_over = self.uses_up_attempt(&failed, s);
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
        self.rejected(
            events,
            Rejection {
                factor,
                consequence,
                attempt_over,
            },
            now,
        )
    }

    /// A wrong password from a known device: counted against it alone.
    pub(super) fn device_failure(
        &self,
        device: DeviceDigest,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decided {
        let failed = E::DevicePasswordRejected {
            device: device.clone(),
            at: now,
        };
        match self.known_device(Some(&device)) {
            Some(known) => self.device_throttle(known, failed, FailedFactor::Password, s, now),
            None => self.failure(failed, FailedFactor::Password, s, now),
        }
    }

    /// A known device's failure and the wait it brings on that device; it
    /// never locks the account nor throttles anyone else.
    fn device_throttle(
        &self,
        known: &KnownDevice,
        failed: UserAuthEvent,
        factor: FailedFactor,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decided {
        let failures = known.failures.saturating_add(1);
        let mut events = vec![failed];
        let consequence = match s.policy.throttle_delay(failures) {
            Some(delay) => {
                let until = now + delay;
                events.push(E::DeviceThrottled {
                    device: known.digest.clone(),
                    failures,
                    until,
                    at: now,
                });
                Consequence::ThrottledUntil(until)
            }
            None => Consequence::None,
        };
        self.rejected(
            events,
            Rejection {
                factor,
                consequence,
                attempt_over: false,
            },
            now,
        )
    }

    /// A recorded failure and its verdict. It also calls off a waiting MFA
    /// reset: whoever asked for it could otherwise keep the account
    /// throttled or locked with wrong tries, so that the owner cannot sign
    /// in to call it off before the wait runs out.
    fn rejected(
        &self,
        mut events: Vec<UserAuthEvent>,
        rejection: Rejection,
        now: DateTime<Utc>,
    ) -> Decided {
        if self.pending_mfa_reset.is_some() {
            events.push(E::MfaResetCancelled {
                reason: ResetCancellation::SignInFailed,
                at: now,
            });
        }
        Decided {
            events,
            verdict: Verdict::Rejected(rejection),
        }
    }

    /// Whether `failed` uses up its attempt's second-factor tries, counted
    /// as `apply` counts: against the attempt the failure names.
    fn uses_up_attempt(&self, failed: &UserAuthEvent, s: &UserAuthServices) -> bool {
        match failed {
            E::TotpRejected { attempt, .. }
            | E::RecoveryCodeRejected { attempt, .. }
            | E::WebAuthnRejected { attempt, .. } => self
                .attempt
                .as_ref()
                .filter(|open| open.reference == *attempt)
                .is_some_and(|open| {
                    open.failures.saturating_add(1) >= s.policy.second_factor_tries
                }),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;
    use crate::user_auth::DeviceDigest;

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
                device: None,
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
                device: None,
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
                device: None,
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
                device: None,
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
                device: None,
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
                device: None,
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
                device: None,
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
            enrolling: false,
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
                    enrolling: false,
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

    /// Enrolled, with an MFA reset asked at `now` from email-link session
    /// 8, and login attempt 7 opened right after.
    fn reset_pending_with_attempt(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = enrolled();
        events.extend([
            session_started(8, SignInMethod::EmailLink, now),
            E::MfaResetRequested {
                effective_at: now + Duration::hours(24),
                denial: reference(30),
                at: now,
            },
            attempt_opened(7, now, SecondFactor::Totp),
        ]);
        events
    }

    fn called_off(at: DateTime<Utc>) -> UserAuthEvent {
        E::MfaResetCancelled {
            reason: ResetCancellation::SignInFailed,
            at,
        }
    }

    #[test]
    fn a_wrong_password_calls_off_a_waiting_mfa_reset() {
        let now = later(10);
        let given = reset_pending_with_attempt(now);
        let events = events_of(
            at(now),
            given.clone(),
            UserAuthCommand::SubmitPassword {
                password: wrong_password(),
                device: None,
            },
        );
        assert_eq!(
            events,
            vec![E::PasswordRejected { at: now }, called_off(now)]
        );
        let mut after = given;
        after.extend(events);
        at(now + Duration::hours(24))
            .given(after)
            .when(UserAuthCommand::CompletePendingMfaReset)
            .then_expect_error(UserAuthError::NoPendingMfaReset);
    }

    #[test]
    fn a_wrong_totp_code_that_throttles_calls_off_a_waiting_mfa_reset_after_the_throttle() {
        let now = later(10);
        let mut given = reset_pending_with_attempt(now);
        given.extend(failures(4, now));
        at(now)
            .given(given)
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_for_step(step_at(now) + 5),
            })
            .then_expect_events(vec![
                E::TotpRejected {
                    attempt: reference(7),
                    reason: TotpRejection::WrongCode,
                    enrolling: false,
                    at: now,
                },
                E::SignInThrottled {
                    failures: 5,
                    until: now + Duration::seconds(30),
                    at: now,
                },
                called_off(now),
            ]);
    }

    #[test]
    fn a_wrong_recovery_code_calls_off_a_waiting_mfa_reset() {
        let now = later(10);
        at(now)
            .given(reset_pending_with_attempt(now))
            .when(UserAuthCommand::UseRecoveryCode {
                attempt: reference(7),
                code: recovery(9),
                replacement: recovery(2),
            })
            .then_expect_events(vec![
                E::RecoveryCodeRejected {
                    attempt: reference(7),
                    at: now,
                },
                called_off(now),
            ]);
    }

    #[test]
    fn a_wrong_password_given_again_calls_off_a_waiting_mfa_reset() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut given = reset_pending_with_attempt(now);
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
            .then_expect_events(vec![E::PasswordRejected { at: when }, called_off(when)]);
    }

    #[test]
    fn a_failure_that_calls_off_a_waiting_reset_is_still_rejected_as_that_failure() {
        let now = later(10);
        let verdict = decided(
            now,
            reset_pending_with_attempt(now),
            UserAuthCommand::SubmitPassword {
                password: wrong_password(),
                device: None,
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

    #[test]
    fn the_hundredth_failure_says_the_account_is_locked() {
        let mut given = registered();
        given.extend(failures(99, later(1)));
        let verdict = decided(
            later(120),
            given,
            UserAuthCommand::SubmitPassword {
                password: wrong_password(),
                device: None,
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

    // ---- devices the owner signed in from ------------------------------

    fn device() -> DeviceDigest {
        DeviceDigest("owner-browser".into())
    }

    /// Enrolled, then signed in at t0 from `device()`: it is known.
    fn known_device() -> Vec<UserAuthEvent> {
        let mut events = enrolled();
        events.extend([
            attempt_opened(20, t0(), SecondFactor::Totp),
            E::AttemptFromDevice {
                attempt: reference(20),
                device: device(),
                at: t0(),
            },
            session_started(21, SignInMethod::Totp, t0()),
        ]);
        events
    }

    /// A stranger's guesses from elsewhere: enough to throttle the account.
    fn strangers_guesses(mut events: Vec<UserAuthEvent>) -> Vec<UserAuthEvent> {
        events.extend(failures(10, later(1)));
        events.push(E::SignInThrottled {
            failures: 10,
            until: later(61),
            at: later(1),
        });
        events
    }

    fn from(device: Option<DeviceDigest>, password: Password) -> UserAuthCommand {
        UserAuthCommand::SubmitPassword { password, device }
    }

    #[test]
    fn a_known_device_signs_in_while_a_strangers_guesses_throttle_the_account() {
        at(later(2))
            .given(strangers_guesses(known_device()))
            .when(from(Some(device()), password()))
            .then_expect_events(vec![
                attempt_opened(1, later(2), SecondFactor::Totp),
                E::AttemptFromDevice {
                    attempt: reference(1),
                    device: device(),
                    at: later(2),
                },
            ]);
    }

    #[test]
    fn any_other_source_still_waits_and_is_answered_like_a_wrong_password() {
        for other in [None, Some(DeviceDigest("someone-else".into()))] {
            at(later(2))
                .given(strangers_guesses(known_device()))
                .when(from(other, password()))
                .then_expect_error(UserAuthError::InvalidCredentials);
        }
    }

    #[test]
    fn a_second_factor_from_a_known_device_is_not_held_back_by_the_account_wait() {
        let mut given = strangers_guesses(known_device());
        given.extend([
            attempt_opened(30, later(2), SecondFactor::Totp),
            E::AttemptFromDevice {
                attempt: reference(30),
                device: device(),
                at: later(2),
            },
        ]);
        let decided = decided(
            later(2),
            given,
            UserAuthCommand::SubmitTotp {
                attempt: reference(30),
                code: code_at(later(2)),
            },
        );
        assert!(
            matches!(decided.verdict, Verdict::SessionStarted(_)),
            "{:?}",
            decided.verdict
        );
    }

    #[test]
    fn a_known_devices_wrong_passwords_count_against_it_alone() {
        let mut given = known_device();
        given.extend((0..4).map(|_| E::DevicePasswordRejected {
            device: device(),
            at: later(1),
        }));
        at(later(1))
            .given(given.clone())
            .when(from(Some(device()), wrong_password()))
            .then_expect_events(vec![
                E::DevicePasswordRejected {
                    device: device(),
                    at: later(1),
                },
                E::DeviceThrottled {
                    device: device(),
                    failures: 5,
                    until: later(1) + Duration::seconds(30),
                    at: later(1),
                },
            ]);
        // Another source is not held back by the device's typos.
        at(later(1))
            .given(given)
            .when(from(None, password()))
            .then_expect_events(vec![attempt_opened(1, later(1), SecondFactor::Totp)]);
    }

    #[test]
    fn a_device_is_known_only_after_it_completed_a_sign_in() {
        // An attempt opened from the device, never finished: not known.
        let mut given = enrolled();
        given.extend([
            attempt_opened(20, t0(), SecondFactor::Totp),
            E::AttemptFromDevice {
                attempt: reference(20),
                device: device(),
                at: t0(),
            },
        ]);
        at(later(2))
            .given(strangers_guesses(given))
            .when(from(Some(device()), password()))
            .then_expect_error(UserAuthError::InvalidCredentials);
    }

    #[test]
    fn a_sign_in_link_asked_from_a_known_device_is_not_held_back_by_the_account_wait() {
        let mut given = strangers_guesses(known_device());
        given.extend([
            attempt_opened(30, later(2), SecondFactor::Totp),
            E::AttemptFromDevice {
                attempt: reference(30),
                device: device(),
                at: later(2),
            },
            E::EmailLinkRequested {
                link: reference(31),
                attempt: reference(30),
                expires_at: later(17),
                at: later(2),
            },
        ]);
        let decided = decided(
            later(3),
            given,
            UserAuthCommand::UseEmailLink {
                link: reference(31),
            },
        );
        assert!(
            matches!(decided.verdict, Verdict::SessionStarted(_)),
            "{:?}",
            decided.verdict
        );
    }

    #[test]
    fn a_known_devices_wrong_codes_do_not_count_against_other_sources() {
        let mut given = known_device();
        given.extend([
            attempt_opened(30, later(1), SecondFactor::Totp),
            E::AttemptFromDevice {
                attempt: reference(30),
                device: device(),
                at: later(1),
            },
        ]);
        given.extend((0..4).map(|_| E::TotpRejected {
            attempt: reference(30),
            reason: TotpRejection::WrongCode,
            enrolling: false,
            at: later(1),
        }));
        // A stranger's first wrong password is the account's first failure,
        // not its fifth: no wait yet.
        at(later(1))
            .given(given)
            .when(from(None, wrong_password()))
            .then_expect_events(vec![E::PasswordRejected { at: later(1) }]);
    }
}
