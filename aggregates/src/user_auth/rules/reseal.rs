//! Moving secrets to the current server key, so that an older key can be
//! retired once no account holds anything sealed with it. Only what the
//! account holds now is sealed again; older events keep their old seals and
//! are never read for a secret again. The address and reasons are sealed
//! with the user's own data key, which is deleted rather than rotated, so
//! they are left alone.
use chrono::{DateTime, Utc};

use super::Decision;
use crate::user_auth::state::Factor;
use crate::user_auth::{
    Decided, ResealedSecret, SealPurpose, Sealed, ServiceError, UserAuth, UserAuthError as Error,
    UserAuthEvent as E, UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) fn reseal_secrets(
        &self,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        let account = self.account.as_ref().ok_or(Error::UnknownUser)?;
        let password_hash = resealed(s, SealPurpose::PasswordHash, Some(&account.password_hash))?;
        let mut totp_devices = Vec::new();
        for authenticator in &self.authenticators {
            if let Factor::Totp { secret, .. } = &authenticator.factor {
                if let Some(secret) = resealed(s, SealPurpose::TotpSecret, Some(secret))? {
                    totp_devices.push(ResealedSecret {
                        authenticator: authenticator.id,
                        secret,
                    });
                }
            }
        }
        let totp_device_setup = resealed(
            s,
            SealPurpose::TotpSecret,
            self.pending_totp_device.as_ref().map(|p| &p.secret),
        )?;
        let enrollment_secret = resealed(
            s,
            SealPurpose::TotpSecret,
            self.pending_enrollment.as_ref().map(|p| &p.secret),
        )?;
        let recovery_code = resealed(s, SealPurpose::RecoveryCode, self.recovery_code.as_ref())?;
        let resealed = [
            &password_hash,
            &enrollment_secret,
            &recovery_code,
            &totp_device_setup,
        ]
        .into_iter()
        .filter(|sealed| sealed.is_some())
        .count()
            + totp_devices.len();
        let events = if resealed == 0 {
            vec![]
        } else {
            vec![E::SecretsResealed {
                password_hash,
                totp_secret: None,
                totp_devices,
                totp_device_setup,
                enrollment_secret,
                recovery_code,
                at: now,
            }]
        };
        Ok(Decided {
            events,
            verdict: Verdict::SecretsResealed { resealed },
        })
    }
}

/// `held` sealed again with the current key, if it was sealed with another.
fn resealed(
    s: &UserAuthServices,
    purpose: SealPurpose,
    held: Option<&Sealed>,
) -> Result<Option<Sealed>, ServiceError> {
    match held {
        Some(sealed) if !s.keeper.is_current(purpose, sealed) => {
            let plaintext = s.keeper.unseal(purpose, sealed)?;
            s.keeper.seal(purpose, &plaintext).map(Some)
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    const NEW_KEY: &str = "k2";

    fn rotated(now: DateTime<Utc>) -> Framework {
        Framework::with(services_with_key(now, NEW_KEY))
    }

    fn password_hash_under(key_id: &str) -> Sealed {
        sealed_with(
            key_id,
            SealPurpose::PasswordHash,
            format!("v1:{PASSWORD}").as_bytes(),
        )
    }

    fn totp_secret_under(key_id: &str) -> Sealed {
        sealed_with(key_id, SealPurpose::TotpSecret, secret().expose())
    }

    /// Registered with an attempt 7 that began enrolling at `now`.
    fn enrolling(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = registered_with_attempt(now);
        events.push(E::MfaEnrollmentStarted {
            attempt: reference(7),
            secret: sealed(SealPurpose::TotpSecret, secret().expose()),
            at: now,
        });
        events
    }

    #[test]
    fn secrets_sealed_with_a_retired_key_are_sealed_again_with_the_current_one() {
        let now = later(10);
        rotated(now)
            .given(enrolled())
            .when(UserAuthCommand::ResealSecrets)
            .then_expect_events(vec![E::SecretsResealed {
                password_hash: Some(password_hash_under(NEW_KEY)),
                totp_secret: None,
                totp_device_setup: None,
                totp_devices: vec![ResealedSecret {
                    authenticator: AuthenticatorId::FIRST,
                    secret: totp_secret_under(NEW_KEY),
                }],
                enrollment_secret: None,
                recovery_code: Some(digest_with(NEW_KEY, &recovery(1))),
                at: now,
            }]);
    }

    #[test]
    fn a_pending_enrollment_secret_is_sealed_again_too() {
        let now = later(10);
        rotated(now)
            .given(enrolling(now))
            .when(UserAuthCommand::ResealSecrets)
            .then_expect_events(vec![E::SecretsResealed {
                password_hash: Some(password_hash_under(NEW_KEY)),
                totp_secret: None,
                totp_device_setup: None,
                totp_devices: vec![],
                enrollment_secret: Some(totp_secret_under(NEW_KEY)),
                recovery_code: None,
                at: now,
            }]);
    }

    #[test]
    fn only_the_secrets_sealed_with_an_older_key_are_sealed_again() {
        let now = later(10);
        let mut given = enrolled();
        given.push(E::PasswordRehashed {
            password_hash: password_hash_under(NEW_KEY),
            at: now,
        });
        rotated(now)
            .given(given)
            .when(UserAuthCommand::ResealSecrets)
            .then_expect_events(vec![E::SecretsResealed {
                password_hash: None,
                totp_secret: None,
                totp_device_setup: None,
                totp_devices: vec![ResealedSecret {
                    authenticator: AuthenticatorId::FIRST,
                    secret: totp_secret_under(NEW_KEY),
                }],
                enrollment_secret: None,
                recovery_code: Some(digest_with(NEW_KEY, &recovery(1))),
                at: now,
            }]);
    }

    #[test]
    fn nothing_is_recorded_when_every_secret_uses_the_current_key() {
        let now = later(10);
        at(now)
            .given(enrolled())
            .when(UserAuthCommand::ResealSecrets)
            .then_expect_events(vec![]);
    }

    #[test]
    fn once_resealed_nothing_is_left_under_the_retired_key() {
        let now = later(10);
        for history in [enrolled(), enrolling(now)] {
            let mut given = history.clone();
            given.extend(events_of(
                rotated(now),
                history,
                UserAuthCommand::ResealSecrets,
            ));
            rotated(now)
                .given(given)
                .when(UserAuthCommand::ResealSecrets)
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn the_address_is_left_under_the_users_own_key() {
        let now = later(10);
        let mut given = enrolled();
        given.extend(events_of(
            rotated(now),
            enrolled(),
            UserAuthCommand::ResealSecrets,
        ));
        let state = folded(given);
        assert_eq!(
            state.profile().unwrap().email,
            sealed_email("alice@example.com")
        );
    }

    #[test]
    fn resealed_secrets_still_sign_in() {
        let now = later(10);
        let mut given = enrolled();
        given.extend(events_of(
            rotated(now),
            enrolled(),
            UserAuthCommand::ResealSecrets,
        ));
        let mut attempt = given.clone();
        attempt.extend(events_of(
            rotated(now),
            given,
            UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            },
        ));
        assert_eq!(
            attempt.last(),
            Some(&attempt_opened(1, now, SecondFactor::Totp))
        );
        let with_code = |code| UserAuthCommand::SubmitTotp {
            attempt: reference(1),
            code,
        };
        let events = events_of(rotated(now), attempt.clone(), with_code(code_at(now)));
        assert!(matches!(events[0], E::TotpVerified { .. }));
        let events = events_of(
            rotated(now),
            attempt,
            UserAuthCommand::UseRecoveryCode {
                attempt: reference(1),
                code: recovery(1),
                replacement: recovery(2),
            },
        );
        assert!(matches!(events[0], E::RecoveryCodeUsed { .. }));
    }

    #[test]
    fn an_unregistered_or_erased_account_has_nothing_to_reseal() {
        let now = later(10);
        let mut erased = signed_in(now);
        erased.extend([
            E::SessionEnded {
                session: reference(8),
                reason: SessionEndReason::AccountErased,
                at: now,
            },
            E::AccountErased {
                actor: Actor::User,
                reason: None,
                at: now,
            },
        ]);
        for given in [vec![], erased] {
            rotated(now)
                .given(given)
                .when(UserAuthCommand::ResealSecrets)
                .then_expect_error(UserAuthError::UnknownUser);
        }
    }

    #[test]
    fn resealing_says_how_many_secrets_were_sealed_again() {
        let now = later(10);
        let services = services_with_key(now, NEW_KEY);
        assert_eq!(
            decided_by(&services, enrolled(), UserAuthCommand::ResealSecrets).verdict,
            Verdict::SecretsResealed { resealed: 3 }
        );
        assert_eq!(
            decided(now, enrolled(), UserAuthCommand::ResealSecrets).verdict,
            Verdict::SecretsResealed { resealed: 0 }
        );
    }
}
