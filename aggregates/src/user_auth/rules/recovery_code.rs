//! Signing in with the recovery code: one at a time, single use, replaced
//! (and shown once) in the same decision that spends it.
use chrono::{DateTime, Utc};

use super::Decision;
use crate::user_auth::{
    FailedFactor, RecoveryCode, Reference, SignInMethod, UserAuth, UserAuthError as Error,
    UserAuthEvent as E, UserAuthServices,
};

impl UserAuth {
    pub(in crate::user_auth) fn use_recovery_code(
        &self,
        attempt: Reference,
        code: &RecoveryCode,
        replacement: &RecoveryCode,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.open_attempt(&attempt, now, &s.policy)?;
        if !self.is_enrolled() {
            return Err(Error::EnrollmentRequired);
        }
        let offered = s.keeper.digest_recovery_code(code);
        let matches = self
            .recovery_code
            .as_ref()
            .is_some_and(|stored| stored.matches(&offered));
        if !matches {
            return Ok(self.failure(
                E::RecoveryCodeRejected { attempt, at: now },
                FailedFactor::RecoveryCode,
                s,
                now,
            ));
        }
        Ok(self.sign_in(
            vec![
                E::RecoveryCodeUsed { attempt, at: now },
                E::RecoveryCodeIssued {
                    digest: s.keeper.digest_recovery_code(replacement),
                    at: now,
                },
            ],
            SignInMethod::RecoveryCode,
            s,
            now,
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    #[test]
    fn the_recovery_code_signs_in_and_is_replaced() {
        let now = later(10);
        at(now)
            .given(enrolled_with_attempt(now))
            .when(UserAuthCommand::UseRecoveryCode {
                attempt: reference(7),
                code: recovery(1),
                replacement: recovery(2),
            })
            .then_expect_events(vec![
                E::RecoveryCodeUsed {
                    attempt: reference(7),
                    at: now,
                },
                E::RecoveryCodeIssued {
                    digest: digest(&recovery(2)),
                    at: now,
                },
                session_started(1, SignInMethod::RecoveryCode, now),
            ]);
    }

    #[test]
    fn a_spent_recovery_code_is_refused() {
        let now = later(10);
        let mut given = enrolled_with_attempt(now);
        given.extend([
            E::RecoveryCodeUsed {
                attempt: reference(7),
                at: now,
            },
            E::RecoveryCodeIssued {
                digest: digest(&recovery(2)),
                at: now,
            },
            session_started(8, SignInMethod::RecoveryCode, now),
            attempt_opened(9, now, SecondFactor::Totp),
        ]);
        at(now)
            .given(given)
            .when(UserAuthCommand::UseRecoveryCode {
                attempt: reference(9),
                code: recovery(1),
                replacement: recovery(3),
            })
            .then_expect_events(vec![E::RecoveryCodeRejected {
                attempt: reference(9),
                at: now,
            }]);
    }

    #[test]
    fn the_recovery_code_reports_the_session_it_started() {
        let now = later(10);
        let verdict = decided(
            now,
            enrolled_with_attempt(now),
            UserAuthCommand::UseRecoveryCode {
                attempt: reference(7),
                code: recovery(1),
                replacement: recovery(2),
            },
        )
        .verdict;
        assert_eq!(
            verdict,
            Verdict::SessionStarted(StartedSession {
                session: reference(1),
                method: SignInMethod::RecoveryCode,
                aal: Assurance::Aal2,
                expires_at: now + Duration::hours(12),
            })
        );
    }

    #[test]
    fn a_wrong_recovery_code_is_rejected_as_a_recovery_code_failure() {
        let now = later(10);
        let verdict = decided(
            now,
            enrolled_with_attempt(now),
            UserAuthCommand::UseRecoveryCode {
                attempt: reference(7),
                code: recovery(9),
                replacement: recovery(2),
            },
        )
        .verdict;
        assert_eq!(
            verdict,
            Verdict::Rejected(Rejection {
                factor: FailedFactor::RecoveryCode,
                consequence: Consequence::None,
                attempt_over: false,
            })
        );
    }
}
