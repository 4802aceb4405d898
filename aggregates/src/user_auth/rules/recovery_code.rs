//! Signing in with the recovery code: one at a time, single use, replaced
//! (and shown once) in the same decision that spends it. A signed-in user
//! may also replace it, from a session that proved a device.
use chrono::{DateTime, Utc};

use super::reauthentication::Reauthentication;
use super::Decision;
use crate::user_auth::{
    recovery_code_matches, seal_recovery_code, Assurance, Decided, FailedFactor, Password,
    RecoveryCode, Reference, SignInMethod, UserAuth, UserAuthError as Error, UserAuthEvent as E,
    UserAuthServices, Verdict,
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
        let matches = match &self.recovery_code {
            Some(stored) => recovery_code_matches(&*s.keeper, code, stored)?,
            None => false,
        };
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
                    digest: seal_recovery_code(&*s.keeper, replacement)?,
                    at: now,
                },
            ],
            SignInMethod::RecoveryCode,
            s,
            now,
        ))
    }

    pub(in crate::user_auth) async fn regenerate_recovery_code(
        &self,
        session: Reference,
        password: Option<Password>,
        code: &RecoveryCode,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        let live = self
            .live_session(&session, now, &s.policy)
            .ok_or(Error::SessionInvalid)?;
        // The recovery code stands in for the device; a session won by the
        // mailbox alone must not mint one.
        if live.aal != Assurance::Aal2 {
            return Err(Error::SecondFactorRequired);
        }
        if !self.is_enrolled() {
            return Err(Error::EnrollmentRequired);
        }
        let fresh = !self.reauthentication_required(&session, now, &s.policy);
        if let Reauthentication::Failed(rejected) = self
            .reauthenticate(fresh, password.as_ref(), s, now)
            .await?
        {
            return Ok(rejected);
        }
        Ok(Decided {
            events: vec![E::RecoveryCodeIssued {
                digest: seal_recovery_code(&*s.keeper, code)?,
                at: now,
            }],
            verdict: Verdict::RecoveryCodeReplaced,
        })
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
                new_device(1, 2, now),
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

    fn regenerate(password: Option<Password>) -> UserAuthCommand {
        UserAuthCommand::RegenerateRecoveryCode {
            session: reference(8),
            password,
            code: recovery(2),
        }
    }

    fn issued(at: DateTime<Utc>) -> UserAuthEvent {
        E::RecoveryCodeIssued {
            digest: digest(&recovery(2)),
            at,
        }
    }

    #[test]
    fn a_fresh_aal2_session_replaces_the_recovery_code() {
        let now = later(10);
        let when = now + Duration::minutes(10);
        let events = events_of(at(when), signed_in(now), regenerate(None));
        assert_eq!(events, vec![issued(when)]);
        let mut given = signed_in(now);
        given.extend(events);
        given.push(attempt_opened(9, when, SecondFactor::Totp));
        at(when)
            .given(given)
            .when(UserAuthCommand::UseRecoveryCode {
                attempt: reference(9),
                code: recovery(1),
                replacement: recovery(3),
            })
            .then_expect_events(vec![E::RecoveryCodeRejected {
                attempt: reference(9),
                at: when,
            }]);
    }

    #[test]
    fn an_old_aal2_session_replaces_the_recovery_code_only_with_the_password() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut given = signed_in(now);
        given.push(E::SessionActive {
            session: reference(8),
            at: when,
        });
        at(when)
            .given(given.clone())
            .when(regenerate(None))
            .then_expect_error(UserAuthError::ReauthenticationRequired);
        at(when)
            .given(given.clone())
            .when(regenerate(Some(wrong_password())))
            .then_expect_events(vec![E::PasswordRejected { at: when }]);
        at(when)
            .given(given)
            .when(regenerate(Some(password())))
            .then_expect_events(vec![issued(when)]);
    }

    #[test]
    fn an_aal1_session_cannot_replace_the_recovery_code_even_with_the_password() {
        let now = later(10);
        let mut given = enrolled();
        given.push(session_started(8, SignInMethod::EmailLink, now));
        at(now)
            .given(given)
            .when(regenerate(Some(password())))
            .then_expect_error(UserAuthError::SecondFactorRequired);
    }

    #[test]
    fn without_an_authenticator_there_is_no_recovery_code_to_replace() {
        let now = later(10);
        let mut given = registered();
        given.push(session_started(8, SignInMethod::Totp, now));
        at(now)
            .given(given)
            .when(regenerate(None))
            .then_expect_error(UserAuthError::EnrollmentRequired);
    }

    #[test]
    fn an_ended_session_cannot_replace_the_recovery_code() {
        let now = later(10);
        at(now + Duration::hours(1))
            .given(signed_in(now))
            .when(regenerate(Some(password())))
            .then_expect_error(UserAuthError::SessionInvalid);
    }

    #[test]
    fn replacing_the_recovery_code_says_so() {
        let now = later(10);
        assert_eq!(
            decided(now, signed_in(now), regenerate(None)).verdict,
            Verdict::RecoveryCodeReplaced
        );
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
