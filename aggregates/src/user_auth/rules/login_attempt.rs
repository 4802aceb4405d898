//! The login attempt: opened by a correct password, it takes second factors
//! for a few minutes, allows a few wrong ones, and ends when a session
//! starts. Every second factor passes this gate first.
use chrono::{DateTime, Utc};

use crate::user_auth::{Policy, Reference, UserAuth, UserAuthError as Error};

impl UserAuth {
    /// Checks that a second factor may be tried in `attempt` now.
    pub(super) fn open_attempt(
        &self,
        attempt: &Reference,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Result<(), Error> {
        self.live_attempt(attempt, now, policy)
            .ok_or(Error::LoginAttemptInvalid)?;
        if self.locked {
            return Err(Error::AccountLocked);
        }
        // An attempt from a known device waits only for that device's own
        // failures, not for a stranger's.
        let device = self
            .attempt
            .as_ref()
            .filter(|a| &a.reference == attempt)
            .and_then(|a| a.device.as_ref());
        if let Some(until) = self.source_throttled_at(device, now) {
            return Err(Error::Throttled { retry_after: until });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    #[test]
    fn an_expired_attempt_takes_no_second_factor() {
        let opened = later(10);
        let now = opened + Duration::minutes(5);
        at(now)
            .given(enrolled_with_attempt(opened))
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(now),
            })
            .then_expect_error(UserAuthError::LoginAttemptInvalid);
    }

    #[test]
    fn an_attempt_ends_after_five_wrong_second_factors() {
        let now = later(10);
        let mut given = enrolled_with_attempt(now);
        given.extend((0..5).map(|_| E::TotpRejected {
            attempt: reference(7),
            reason: TotpRejection::WrongCode,
            enrolling: false,
            at: now,
        }));
        given.push(E::AccountUnlocked {
            reason: sealed_text("clears the throttle so only the attempt rule is tested"),
            at: now,
        });
        at(now)
            .given(given)
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(now),
            })
            .then_expect_error(UserAuthError::LoginAttemptInvalid);
    }

    #[test]
    fn an_attempt_ends_once_a_session_starts() {
        let now = later(10);
        let mut given = enrolled_with_attempt(now);
        given.push(session_started(8, SignInMethod::Totp, now));
        at(now)
            .given(given)
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_for_step(step_at(now) + 1),
            })
            .then_expect_error(UserAuthError::LoginAttemptInvalid);
    }

    #[test]
    fn an_unknown_attempt_takes_no_second_factor() {
        let now = later(10);
        at(now)
            .given(enrolled_with_attempt(now))
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(8),
                code: code_at(now),
            })
            .then_expect_error(UserAuthError::LoginAttemptInvalid);
    }

    #[test]
    fn a_failed_second_factor_says_whether_it_used_up_the_attempt() {
        let now = later(10);
        let wrong_code = |at| E::TotpRejected {
            attempt: reference(7),
            reason: TotpRejection::WrongCode,
            enrolling: false,
            at,
        };
        let mut given = enrolled_with_attempt(now);
        given.extend([wrong_code(now), wrong_code(now), wrong_code(now)]);
        let fourth = decided(
            now,
            given.clone(),
            UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_for_step(step_at(now) + 5),
            },
        )
        .verdict;
        assert_eq!(
            fourth,
            Verdict::Rejected(Rejection {
                factor: FailedFactor::TotpCode,
                consequence: Consequence::None,
                attempt_over: false,
            })
        );
        // Every second factor draws on the same tries.
        given.push(wrong_code(now));
        let fifth = decided(
            now,
            given,
            UserAuthCommand::UseRecoveryCode {
                attempt: reference(7),
                code: recovery(9),
                replacement: recovery(2),
            },
        )
        .verdict;
        assert_eq!(
            fifth,
            Verdict::Rejected(Rejection {
                factor: FailedFactor::RecoveryCode,
                consequence: Consequence::ThrottledUntil(now + Duration::seconds(30)),
                attempt_over: true,
            })
        );
    }
}
