//! The password step: a correct password opens a login attempt that asks
//! for a second factor (or for enrollment), a wrong one counts as a failure.
//! Unknown, unverified, throttled, locked and suspended accounts answer like
//! a wrong password.
use chrono::{DateTime, Utc};

use super::Decision;
use crate::user_auth::{
    Decided, DeviceDigest, FailedFactor, Password, PasswordCheck, PasswordHash, SealPurpose,
    SecondFactor, ServiceError, UserAuth, UserAuthError as Error, UserAuthEvent as E,
    UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) async fn submit_password(
        &self,
        password: Password,
        device: Option<DeviceDigest>,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if !self.is_verified() {
            // Same work as for a known account, so timing tells nothing. An
            // unverified account may be someone else's claim on the address:
            // it signs nobody in, and says nothing of its existence.
            s.hasher.verify(None, &password).await?;
            return Err(Error::InvalidCredentials);
        }
        let hash = self.password_hash(s)?;
        let check = s.hasher.verify(Some(&hash), &password).await?;
        // A throttled or locked account answers like a wrong password, after
        // the same work; its owner learns of it by mail, not an attacker here.
        // A device the owner signed in from waits only for its own failures.
        let known = self.known_device(device.as_ref()).map(|k| k.digest.clone());
        if self.locked || self.suspended || self.source_throttled_at(device.as_ref(), now).is_some()
        {
            return Err(Error::InvalidCredentials);
        }
        match check {
            PasswordCheck::Mismatch => Ok(match known {
                Some(device) => self.device_failure(device, s, now),
                None => self.failure(
                    E::PasswordRejected { at: now },
                    FailedFactor::Password,
                    s,
                    now,
                ),
            }),
            PasswordCheck::Match { needs_rehash } => {
                let mut events = Vec::with_capacity(2);
                // The rehash is best effort: refused at capacity, it waits for
                // the next sign-in rather than answer a right password
                // differently from a wrong one.
                let fresh = match needs_rehash {
                    true => match s.hasher.hash(&password).await {
                        Ok(fresh) => Some(fresh),
                        Err(ServiceError::Busy) => None,
                        Err(other) => return Err(other.into()),
                    },
                    false => None,
                };
                if let Some(fresh) = fresh {
                    events.push(E::PasswordRehashed {
                        password_hash: s
                            .keeper
                            .seal(SealPurpose::PasswordHash, fresh.0.as_bytes())?,
                        at: now,
                    });
                }
                let attempt = s.randomness.reference();
                let expires_at = now + s.policy.login_attempt_ttl;
                let next = if self.is_enrolled() {
                    SecondFactor::Totp
                } else {
                    SecondFactor::Enroll
                };
                events.push(E::PasswordVerified {
                    attempt,
                    expires_at,
                    next,
                    at: now,
                });
                if let Some(device) = device {
                    events.push(E::AttemptFromDevice {
                        attempt,
                        device,
                        at: now,
                    });
                }
                Ok(Decided {
                    events,
                    verdict: Verdict::AttemptOpened {
                        attempt,
                        next,
                        expires_at,
                        email_link_available: self.email_link_available(),
                        totp_available: self.totp_available(),
                        webauthn_available: self.usable_webauthn_credentials().next().is_some(),
                    },
                })
            }
        }
    }

    pub(super) fn password_hash(&self, s: &UserAuthServices) -> Result<PasswordHash, Error> {
        let account = self.account.as_ref().ok_or(Error::UnknownUser)?;
        let bytes = s
            .keeper
            .unseal(SealPurpose::PasswordHash, &account.password_hash)?;
        String::from_utf8(bytes)
            .map(PasswordHash)
            .map_err(|_| Error::Service("a sealed password hash is not text".into()))
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    #[test]
    fn a_correct_password_opens_an_attempt_that_asks_to_enroll_when_there_is_no_authenticator() {
        at(later(1))
            .given(registered())
            .when(UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            })
            .then_expect_events(vec![attempt_opened(1, later(1), SecondFactor::Enroll)]);
    }

    #[test]
    fn a_correct_password_asks_for_a_totp_code_when_enrolled() {
        at(later(1))
            .given(enrolled())
            .when(UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            })
            .then_expect_events(vec![attempt_opened(1, later(1), SecondFactor::Totp)]);
    }

    #[test]
    fn a_wrong_password_is_recorded_as_a_failure() {
        at(later(1))
            .given(registered())
            .when(UserAuthCommand::SubmitPassword {
                password: wrong_password(),
                device: None,
            })
            .then_expect_events(vec![E::PasswordRejected { at: later(1) }]);
    }

    #[test]
    fn an_unknown_account_answers_like_a_wrong_password_and_records_nothing() {
        at(t0())
            .given_no_previous_events()
            .when(UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            })
            .then_expect_error(UserAuthError::InvalidCredentials);
    }

    #[test]
    fn sign_in_before_verification_answers_like_an_unknown_account_and_records_nothing() {
        at(later(1))
            .given(unverified())
            .when(UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            })
            .then_expect_error(UserAuthError::InvalidCredentials);
        let submit = || UserAuthCommand::SubmitPassword {
            password: password(),
            device: None,
        };
        let (unknown, unknown_work) = with_hashing_work(later(1), vec![], submit());
        let (unverified, unverified_work) = with_hashing_work(later(1), unverified(), submit());
        assert_eq!(unverified, unknown);
        assert_eq!(unverified_work, unknown_work);
    }

    #[test]
    fn a_verified_account_signs_in() {
        let mut given = unverified();
        given.push(E::EmailVerified { at: later(1) });
        at(later(2))
            .given(given)
            .when(UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            })
            .then_expect_events(vec![attempt_opened(1, later(2), SecondFactor::Enroll)]);
    }

    #[test]
    fn a_hash_made_with_old_parameters_is_rehashed_at_sign_in() {
        Framework::with(services_with(later(1), 2, 1))
            .given(registered())
            .when(UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            })
            .then_expect_events(vec![
                E::PasswordRehashed {
                    password_hash: sealed(
                        SealPurpose::PasswordHash,
                        format!("v2:{PASSWORD}").as_bytes(),
                    ),
                    at: later(1),
                },
                attempt_opened(1, later(1), SecondFactor::Enroll),
            ]);
    }

    #[test]
    fn a_correct_password_says_which_attempt_it_opened_and_what_comes_next() {
        let verdict = decided(
            later(1),
            enrolled(),
            UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            },
        )
        .verdict;
        assert_eq!(
            verdict,
            Verdict::AttemptOpened {
                attempt: reference(1),
                next: SecondFactor::Totp,
                expires_at: later(6),
                email_link_available: true,
                totp_available: true,
                webauthn_available: false,
            }
        );
    }

    #[test]
    fn the_email_method_is_offered_only_when_enrolled_and_not_after_a_reset_by_email() {
        let offered = |given| {
            let Verdict::AttemptOpened {
                email_link_available,
                ..
            } = decided(
                later(1),
                given,
                UserAuthCommand::SubmitPassword {
                    password: password(),
                    device: None,
                },
            )
            .verdict
            else {
                panic!("expected an attempt");
            };
            email_link_available
        };
        let reset_by_email = E::PasswordReset {
            password_hash: sealed_hash(PASSWORD),
            at: later(1),
        };
        let mut after_reset = enrolled();
        after_reset.push(reset_by_email.clone());
        let mut after_email_sign_in = after_reset.clone();
        after_email_sign_in.push(session_started(8, SignInMethod::EmailLink, later(1)));
        let mut after_totp_sign_in = after_reset.clone();
        after_totp_sign_in.push(session_started(8, SignInMethod::Totp, later(1)));
        assert!(offered(enrolled()));
        assert!(!offered(registered()));
        assert!(!offered(after_reset));
        assert!(!offered(after_email_sign_in));
        assert!(offered(after_totp_sign_in));
    }

    #[test]
    fn a_wrong_password_is_rejected_as_a_password_failure() {
        let verdict = decided(
            later(1),
            registered(),
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
}
