//! Signing in with a TOTP code: ±1 step of skew, and a step once accepted
//! is never accepted again, not even an older one inside the window.
use chrono::{DateTime, Utc};

use super::Decision;
use crate::user_auth::state::Factor;
use crate::user_auth::{
    check_code, FailedFactor, Reference, SealPurpose, Sealed, SignInMethod, TotpCheck, TotpCode,
    TotpRejection, TotpSecret, UserAuth, UserAuthError as Error, UserAuthEvent as E,
    UserAuthServices,
};

impl UserAuth {
    pub(in crate::user_auth) fn submit_totp(
        &self,
        attempt: Reference,
        code: &TotpCode,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.open_attempt(&attempt, now, &s.policy)?;
        if !self.is_enrolled() {
            return Err(Error::EnrollmentRequired);
        }
        // Every app is tried, so a code from any of them signs in; a step
        // once accepted from one app is never accepted from it again.
        let mut replayed = false;
        for authenticator in &self.authenticators {
            let Factor::Totp {
                secret,
                last_used_step,
            } = &authenticator.factor
            else {
                continue;
            };
            let secret = self.totp_secret(secret, s)?;
            match check_code(
                &secret,
                code,
                unix_secs(now),
                s.policy.totp_skew_steps,
                Some(*last_used_step),
            ) {
                TotpCheck::Accepted { step } => {
                    return Ok(self.sign_in(
                        vec![E::TotpVerified {
                            attempt,
                            step,
                            authenticator: Some(authenticator.id),
                            at: now,
                        }],
                        SignInMethod::Totp,
                        s,
                        now,
                    ));
                }
                TotpCheck::Replayed => replayed = true,
                TotpCheck::Wrong => {}
            }
        }
        if replayed {
            return Ok(self.failure(
                E::TotpRejected {
                    attempt,
                    reason: TotpRejection::Replayed,
                    enrolling: false,
                    at: now,
                },
                FailedFactor::ReplayedTotpCode,
                s,
                now,
            ));
        }
        Ok(self.failure(
            E::TotpRejected {
                attempt,
                reason: TotpRejection::WrongCode,
                enrolling: false,
                at: now,
            },
            FailedFactor::TotpCode,
            s,
            now,
        ))
    }

    pub(super) fn totp_secret(
        &self,
        sealed: &Sealed,
        s: &UserAuthServices,
    ) -> Result<TotpSecret, Error> {
        let bytes = s.keeper.unseal(SealPurpose::TotpSecret, sealed)?;
        TotpSecret::from_slice(&bytes)
            .ok_or_else(|| Error::Service("a sealed TOTP secret has the wrong length".into()))
    }
}

pub(super) fn unix_secs(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    #[test]
    fn a_current_totp_code_starts_a_session() {
        let now = later(10);
        at(now)
            .given(enrolled_with_attempt(now))
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(now),
            })
            .then_expect_events(vec![
                E::TotpVerified {
                    attempt: reference(7),
                    step: step_at(now),
                    authenticator: Some(AuthenticatorId::FIRST),
                    at: now,
                },
                session_started(1, SignInMethod::Totp, now),
                new_device(1, 2, now),
            ]);
    }

    #[test]
    fn a_wrong_totp_code_is_recorded_as_a_failure() {
        let now = later(10);
        let wrong = code_for_step(step_at(now) + 5);
        at(now)
            .given(enrolled_with_attempt(now))
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: wrong,
            })
            .then_expect_events(vec![E::TotpRejected {
                attempt: reference(7),
                reason: TotpRejection::WrongCode,
                enrolling: false,
                at: now,
            }]);
    }

    #[test]
    fn codes_one_step_early_or_late_are_accepted() {
        let now = later(10);
        for step in [step_at(now) - 1, step_at(now) + 1] {
            let events = events_of(
                at(now),
                enrolled_with_attempt(now),
                UserAuthCommand::SubmitTotp {
                    attempt: reference(7),
                    code: code_for_step(step),
                },
            );
            assert!(matches!(events[0], E::TotpVerified { step: s, .. } if s == step));
        }
    }

    #[test]
    fn codes_two_steps_early_or_late_are_refused() {
        let now = later(10);
        for step in [step_at(now) - 2, step_at(now) + 2] {
            let events = events_of(
                at(now),
                enrolled_with_attempt(now),
                UserAuthCommand::SubmitTotp {
                    attempt: reference(7),
                    code: code_for_step(step),
                },
            );
            assert!(matches!(
                events[0],
                E::TotpRejected {
                    reason: TotpRejection::WrongCode,
                    ..
                }
            ));
        }
    }

    #[test]
    fn second_use_of_the_same_time_step_is_refused() {
        let now = later(10);
        let mut given = enrolled_with_attempt(now);
        given.extend([
            E::TotpVerified {
                attempt: reference(7),
                step: step_at(now),
                authenticator: Some(AuthenticatorId::FIRST),
                at: now,
            },
            session_started(8, SignInMethod::Totp, now),
            attempt_opened(9, now, SecondFactor::Totp),
        ]);
        at(now)
            .given(given)
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(9),
                code: code_at(now),
            })
            .then_expect_events(vec![E::TotpRejected {
                attempt: reference(9),
                reason: TotpRejection::Replayed,
                enrolling: false,
                at: now,
            }]);
    }

    #[test]
    fn an_older_step_inside_the_window_is_refused_after_a_newer_one() {
        let now = later(10);
        let mut given = enrolled_with_attempt(now);
        given.extend([
            E::TotpVerified {
                attempt: reference(7),
                step: step_at(now),
                authenticator: Some(AuthenticatorId::FIRST),
                at: now,
            },
            session_started(8, SignInMethod::Totp, now),
            attempt_opened(9, now, SecondFactor::Totp),
        ]);
        let events = events_of(
            at(now),
            given,
            UserAuthCommand::SubmitTotp {
                attempt: reference(9),
                code: code_for_step(step_at(now) - 1),
            },
        );
        assert!(matches!(
            events[0],
            E::TotpRejected {
                reason: TotpRejection::Replayed,
                ..
            }
        ));
    }

    #[test]
    fn the_enrollment_code_cannot_be_replayed_for_a_sign_in() {
        // enrolled() used the step of t0.
        let mut given = enrolled();
        given.push(attempt_opened(7, t0(), SecondFactor::Totp));
        let events = events_of(
            at(t0()),
            given,
            UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(t0()),
            },
        );
        assert!(matches!(
            events[0],
            E::TotpRejected {
                reason: TotpRejection::Replayed,
                ..
            }
        ));
    }

    #[test]
    fn totp_without_an_authenticator_asks_for_enrollment() {
        let now = later(1);
        let mut given = registered();
        given.push(attempt_opened(7, now, SecondFactor::Enroll));
        at(now)
            .given(given)
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(now),
            })
            .then_expect_error(UserAuthError::EnrollmentRequired);
    }

    #[test]
    fn a_wrong_totp_code_is_rejected_with_nothing_more_below_the_threshold() {
        let now = later(10);
        let verdict = decided(
            now,
            enrolled_with_attempt(now),
            UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_for_step(step_at(now) + 5),
            },
        )
        .verdict;
        assert_eq!(
            verdict,
            Verdict::Rejected(Rejection {
                factor: FailedFactor::TotpCode,
                consequence: Consequence::None,
                attempt_over: false,
            })
        );
    }

    #[test]
    fn a_replayed_step_is_rejected_as_a_replay() {
        // enrolled() used the step of t0.
        let mut given = enrolled();
        given.push(attempt_opened(7, t0(), SecondFactor::Totp));
        let verdict = decided(
            t0(),
            given,
            UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(t0()),
            },
        )
        .verdict;
        assert_eq!(
            verdict,
            Verdict::Rejected(Rejection {
                factor: FailedFactor::ReplayedTotpCode,
                consequence: Consequence::None,
                attempt_over: false,
            })
        );
    }

    #[test]
    fn a_current_totp_code_reports_the_session_it_started() {
        let now = later(10);
        let verdict = decided(
            now,
            enrolled_with_attempt(now),
            UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(now),
            },
        )
        .verdict;
        assert_eq!(
            verdict,
            Verdict::SessionStarted(StartedSession {
                session: reference(1),
                method: SignInMethod::Totp,
                aal: Assurance::Aal2,
                expires_at: now + Duration::hours(12),
            })
        );
    }
}
