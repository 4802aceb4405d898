//! Enrolling an authenticator: begun in a login attempt with a fresh secret,
//! confirmed with a code from it, which issues the first recovery code and
//! starts a session. An enrolled account cannot add another one this way.
use chrono::{DateTime, Utc};

use super::totp::unix_secs;
use super::Decision;
use crate::user_auth::{
    check_code, seal_recovery_code, AuthenticatorId, Decided, FailedFactor, NewWebAuthnCredential,
    RecoveryCode, Reference, SealPurpose, SignInMethod, TotpCheck, TotpCode, TotpRejection,
    TotpSecret, UserAuth, UserAuthError as Error, UserAuthEvent as E, UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) fn begin_enrollment(
        &self,
        attempt: Reference,
        secret: &TotpSecret,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.open_attempt(&attempt, now, &s.policy)?;
        if self.is_enrolled() {
            return Err(Error::AlreadyEnrolled);
        }
        Ok(Decided {
            events: vec![E::MfaEnrollmentStarted {
                attempt,
                secret: s.keeper.seal(SealPurpose::TotpSecret, secret.expose())?,
                at: now,
            }],
            verdict: Verdict::EnrollmentStarted,
        })
    }

    pub(in crate::user_auth) fn enroll(
        &self,
        attempt: Reference,
        authenticator: AuthenticatorId,
        code: &TotpCode,
        recovery_code: &RecoveryCode,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.open_attempt(&attempt, now, &s.policy)?;
        if self.is_enrolled() {
            return Err(Error::AlreadyEnrolled);
        }
        let pending = self
            .pending_enrollment
            .as_ref()
            .filter(|p| p.attempt == attempt)
            .ok_or(Error::EnrollmentNotStarted)?;
        let secret = self.totp_secret(&pending.secret, s)?;
        match check_code(
            &secret,
            code,
            unix_secs(now),
            s.policy.totp_skew_steps,
            None,
        ) {
            TotpCheck::Accepted { step } => Ok(self.sign_in(
                vec![
                    E::MfaEnrolled {
                        attempt,
                        step,
                        authenticator: Some(authenticator),
                        name: None,
                        credential: None,
                        at: now,
                    },
                    E::RecoveryCodeIssued {
                        digest: seal_recovery_code(&*s.keeper, recovery_code)?,
                        at: now,
                    },
                ],
                SignInMethod::Enrollment,
                s,
                now,
            )),
            // No step of a pending secret was ever accepted, so nothing can
            // be a replay yet.
            TotpCheck::Replayed | TotpCheck::Wrong => Ok(self.failure(
                E::TotpRejected {
                    attempt,
                    reason: TotpRejection::WrongCode,
                    enrolling: true,
                    at: now,
                },
                FailedFactor::TotpCode,
                s,
                now,
            )),
        }
    }

    /// The first authenticator is a security key or passkey, registered in
    /// the attempt instead of the app begun there, if one was.
    pub(in crate::user_auth) fn enroll_webauthn(
        &self,
        attempt: Reference,
        key: NewWebAuthnCredential,
        recovery_code: &RecoveryCode,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.open_attempt(&attempt, now, &s.policy)?;
        if self.is_enrolled() {
            return Err(Error::AlreadyEnrolled);
        }
        Ok(self.sign_in(
            vec![
                E::MfaEnrolled {
                    attempt,
                    step: 0,
                    authenticator: Some(key.authenticator),
                    name: Some(
                        s.keeper
                            .seal(SealPurpose::FreeText, key.name.as_str().as_bytes())?,
                    ),
                    credential: Some(key.credential),
                    at: now,
                },
                E::RecoveryCodeIssued {
                    digest: seal_recovery_code(&*s.keeper, recovery_code)?,
                    at: now,
                },
            ],
            // The key signed its registration: what the session was won
            // with, for introspection's `amr` too.
            SignInMethod::WebAuthn,
            s,
            now,
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    fn enrollment_started(now: DateTime<Utc>) -> UserAuthEvent {
        E::MfaEnrollmentStarted {
            attempt: reference(7),
            secret: sealed(SealPurpose::TotpSecret, secret().expose()),
            at: now,
        }
    }

    #[test]
    fn beginning_enrollment_records_the_sealed_secret() {
        let now = later(1);
        at(now)
            .given(registered_with_attempt(now))
            .when(UserAuthCommand::BeginEnrollment {
                attempt: reference(7),
                secret: secret(),
            })
            .then_expect_events(vec![enrollment_started(now)]);
    }

    #[test]
    fn an_enrolled_account_cannot_enroll_another_authenticator_with_just_a_password() {
        let now = later(1);
        at(now)
            .given(enrolled_with_attempt(now))
            .when(UserAuthCommand::BeginEnrollment {
                attempt: reference(7),
                secret: secret(),
            })
            .then_expect_error(UserAuthError::AlreadyEnrolled);
    }

    #[test]
    fn confirming_enrollment_with_a_right_code_enrolls_issues_a_recovery_code_and_signs_in() {
        let now = later(1);
        let mut given = registered_with_attempt(now);
        given.push(enrollment_started(now));
        at(now)
            .given(given)
            .when(UserAuthCommand::EnrollMfa {
                attempt: reference(7),
                authenticator: authenticator_id(1),
                code: code_at(now),
                recovery_code: recovery(2),
            })
            .then_expect_events(vec![
                E::MfaEnrolled {
                    attempt: reference(7),
                    step: step_at(now),
                    authenticator: Some(authenticator_id(1)),
                    name: None,
                    credential: None,
                    at: now,
                },
                E::RecoveryCodeIssued {
                    digest: digest(&recovery(2)),
                    at: now,
                },
                session_started(1, SignInMethod::Enrollment, now),
            ]);
    }

    #[test]
    fn a_wrong_code_while_enrolling_is_a_failure_recorded_as_an_enrollment_attempt() {
        let now = later(1);
        let mut given = registered_with_attempt(now);
        given.push(enrollment_started(now));
        at(now)
            .given(given)
            .when(UserAuthCommand::EnrollMfa {
                attempt: reference(7),
                authenticator: authenticator_id(1),
                code: code_for_step(step_at(now) + 3),
                recovery_code: recovery(2),
            })
            .then_expect_events(vec![E::TotpRejected {
                attempt: reference(7),
                reason: TotpRejection::WrongCode,
                enrolling: true,
                at: now,
            }]);
    }

    #[test]
    fn confirming_without_beginning_enrollment_is_refused() {
        let now = later(1);
        at(now)
            .given(registered_with_attempt(now))
            .when(UserAuthCommand::EnrollMfa {
                attempt: reference(7),
                authenticator: authenticator_id(1),
                code: code_at(now),
                recovery_code: recovery(2),
            })
            .then_expect_error(UserAuthError::EnrollmentNotStarted);
    }

    #[test]
    fn an_enrollment_begun_in_another_attempt_cannot_be_confirmed() {
        let now = later(1);
        let mut given = registered_with_attempt(now);
        given.push(enrollment_started(now));
        given.push(attempt_opened(8, now, SecondFactor::Enroll));
        at(now)
            .given(given)
            .when(UserAuthCommand::EnrollMfa {
                attempt: reference(8),
                authenticator: authenticator_id(1),
                code: code_at(now),
                recovery_code: recovery(2),
            })
            .then_expect_error(UserAuthError::EnrollmentNotStarted);
    }

    #[test]
    fn the_pending_secret_is_shown_only_to_its_attempt_while_it_is_live() {
        let now = later(1);
        let policy = policy();
        let mut state = UserAuth::default();
        for event in registered_with_attempt(now) {
            cqrs_es::Aggregate::apply(&mut state, event);
        }
        cqrs_es::Aggregate::apply(&mut state, enrollment_started(now));
        let expected = sealed(SealPurpose::TotpSecret, secret().expose());
        assert_eq!(
            state.pending_enrollment_secret(&reference(7), now, &policy),
            Some(&expected)
        );
        assert_eq!(
            state.pending_enrollment_secret(&reference(8), now, &policy),
            None
        );
        let expired = now + policy.login_attempt_ttl;
        assert_eq!(
            state.pending_enrollment_secret(&reference(7), expired, &policy),
            None
        );
    }

    #[test]
    fn beginning_enrollment_says_it_started() {
        let now = later(1);
        let verdict = decided(
            now,
            registered_with_attempt(now),
            UserAuthCommand::BeginEnrollment {
                attempt: reference(7),
                secret: secret(),
            },
        )
        .verdict;
        assert_eq!(verdict, Verdict::EnrollmentStarted);
    }

    #[test]
    fn confirming_enrollment_reports_the_session_it_started() {
        let now = later(1);
        let mut given = registered_with_attempt(now);
        given.push(enrollment_started(now));
        let verdict = decided(
            now,
            given,
            UserAuthCommand::EnrollMfa {
                attempt: reference(7),
                authenticator: authenticator_id(1),
                code: code_at(now),
                recovery_code: recovery(2),
            },
        )
        .verdict;
        assert_eq!(
            verdict,
            Verdict::SessionStarted(StartedSession {
                session: reference(1),
                method: SignInMethod::Enrollment,
                aal: Assurance::Aal2,
                expires_at: now + Duration::hours(12),
            })
        );
    }

    #[test]
    fn a_wrong_enrollment_code_is_rejected_as_a_totp_failure() {
        let now = later(1);
        let mut given = registered_with_attempt(now);
        given.push(enrollment_started(now));
        let verdict = decided(
            now,
            given,
            UserAuthCommand::EnrollMfa {
                attempt: reference(7),
                authenticator: authenticator_id(1),
                code: code_for_step(step_at(now) + 3),
                recovery_code: recovery(2),
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
}
