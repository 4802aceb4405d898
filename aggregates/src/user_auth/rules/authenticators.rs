//! Several authenticators per account, managed from a session: another
//! authenticator app (begun with a fresh secret, confirmed with a code from
//! it), a security key or passkey, and the removal of any of them. Each
//! needs an `aal2` session that is recent or the password again; the last
//! one goes only when its owner confirms that the next sign-in will enroll
//! a new one.
use chrono::{DateTime, Utc};

use super::reauthentication::Reauthentication;

/// How many authenticators an account may hold: each sign-in with a code
/// tries every app, so each one more is one more code that would pass.
pub const MAX_AUTHENTICATORS: usize = 16;
use super::totp::unix_secs;
use super::Decision;
use crate::user_auth::{
    check_code, AuthenticatorId, AuthenticatorName, Decided, NewWebAuthnCredential, Password,
    Reference, ResetCancellation, SealPurpose, SessionEndReason, TotpCheck, TotpCode, TotpSecret,
    UserAuth, UserAuthError as Error, UserAuthEvent as E, UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) async fn begin_totp_device(
        &self,
        session: Reference,
        password: Option<Password>,
        secret: &TotpSecret,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.may_add_authenticator()?;
        if let Some(refused) = self
            .authorise_change(&session, password.as_ref(), s, now)
            .await?
        {
            return Ok(refused);
        }
        Ok(Decided {
            events: vec![E::TotpDeviceSetupStarted {
                session,
                secret: s.keeper.seal(SealPurpose::TotpSecret, secret.expose())?,
                at: now,
            }],
            verdict: Verdict::TotpDeviceSetupStarted,
        })
    }

    /// A wrong code refuses and records nothing: the session already
    /// proved its owner, and the secret is theirs to read off the page.
    pub(in crate::user_auth) fn add_totp_device(
        &self,
        session: Reference,
        authenticator: AuthenticatorId,
        name: &AuthenticatorName,
        code: &TotpCode,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.second_factor_session(&session, s, now)?;
        // Removing the last one while this app waited leaves the account to
        // enroll, which issues the recovery code an authenticator needs.
        self.may_add_authenticator()?;
        let pending = self
            .pending_totp_device(&session, now, &s.policy)
            .ok_or(Error::TotpDeviceSetupNotStarted)?;
        self.fresh_id(authenticator)?;
        let secret = self.totp_secret(&pending.secret, s)?;
        let TotpCheck::Accepted { step } = check_code(
            &secret,
            code,
            unix_secs(now),
            s.policy.totp_skew_steps,
            None,
        ) else {
            return Err(Error::WrongSetupCode);
        };
        Ok(Decided {
            events: vec![E::TotpDeviceAdded {
                authenticator,
                name: s
                    .keeper
                    .seal(SealPurpose::FreeText, name.as_str().as_bytes())?,
                secret: pending.secret.clone(),
                step,
                at: now,
            }],
            verdict: Verdict::AuthenticatorAdded { authenticator },
        })
    }

    pub(in crate::user_auth) async fn add_webauthn_credential(
        &self,
        session: Reference,
        password: Option<Password>,
        key: NewWebAuthnCredential,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        let NewWebAuthnCredential {
            authenticator,
            name,
            credential,
        } = key;
        if self
            .webauthn_credentials()
            .any(|held| held.credential_id == credential.credential_id)
        {
            return Err(Error::CredentialAlreadyRegistered);
        }
        self.may_add_authenticator()?;
        self.fresh_id(authenticator)?;
        if let Some(refused) = self
            .authorise_change(&session, password.as_ref(), s, now)
            .await?
        {
            return Ok(refused);
        }
        Ok(Decided {
            events: vec![E::WebAuthnCredentialAdded {
                authenticator,
                name: s
                    .keeper
                    .seal(SealPurpose::FreeText, name.as_str().as_bytes())?,
                credential,
                at: now,
            }],
            verdict: Verdict::AuthenticatorAdded { authenticator },
        })
    }

    pub(in crate::user_auth) async fn remove_authenticator(
        &self,
        session: Reference,
        password: Option<Password>,
        authenticator: AuthenticatorId,
        confirm_last: bool,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        // Which authenticators exist is not told to a session that could
        // not remove one.
        self.second_factor_session(&session, s, now)?;
        self.authenticator(authenticator)
            .ok_or(Error::UnknownAuthenticator)?;
        let last = self.authenticators.len() == 1;
        if last && !confirm_last {
            return Err(Error::LastAuthenticator);
        }
        if let Some(refused) = self
            .authorise_change(&session, password.as_ref(), s, now)
            .await?
        {
            return Ok(refused);
        }
        let mut events = Vec::new();
        // A waiting reset has nothing left to forget: the account enrolls
        // at its next sign-in either way.
        // As the user's own cancel does, the sessions won by email link
        // end with it: whoever asked for the reset may hold one.
        if last && self.pending_mfa_reset.is_some() {
            events.push(E::MfaResetCancelled {
                reason: ResetCancellation::CancelledByUser,
                at: now,
            });
            events.extend(self.end_aal1_sessions(SessionEndReason::ResetCancelled, s, now));
        }
        events.push(E::AuthenticatorRemoved {
            authenticator,
            last,
            at: now,
        });
        Ok(Decided {
            events,
            verdict: Verdict::AuthenticatorRemoved { last },
        })
    }

    /// An enrolled account's `aal2` session, recent or with the password
    /// again; `Some` is a wrong password's recorded failure.
    async fn authorise_change(
        &self,
        session: &Reference,
        password: Option<&Password>,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Result<Option<Decided>, Error> {
        self.live_session(session, now, &s.policy)
            .ok_or(Error::SessionInvalid)?;
        // After the last one was removed the next sign-in enrolls, which
        // issues the recovery code that goes with an authenticator.
        if !self.is_enrolled() {
            return Err(Error::EnrollmentRequired);
        }
        match self.reauthenticate_aal2(session, password, s, now).await? {
            Reauthentication::Proven => Ok(None),
            Reauthentication::Failed(rejected) => Ok(Some(rejected)),
        }
    }

    /// Whether another authenticator may be added from a session now:
    /// the account is enrolled (after the last one was removed, the next
    /// sign-in enrolls, with the recovery code that goes with it) and holds
    /// fewer than the most it may. Callers ask before a WebAuthn ceremony,
    /// so that a key does not make a credential the account then refuses.
    pub fn may_add_authenticator(&self) -> Result<(), Error> {
        if !self.is_enrolled() {
            return Err(Error::EnrollmentRequired);
        }
        if self.authenticators.len() >= MAX_AUTHENTICATORS {
            return Err(Error::TooManyAuthenticators);
        }
        Ok(())
    }

    /// The caller mints ids; one already held would make two authenticators
    /// answer to one name.
    fn fresh_id(&self, authenticator: AuthenticatorId) -> Result<(), Error> {
        match self.authenticator(authenticator) {
            Some(_) => Err(Error::Service(
                "an authenticator id was minted twice".into(),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    fn begin(session: u64) -> UserAuthCommand {
        UserAuthCommand::BeginTotpDevice {
            session: reference(session),
            password: None,
            secret: second_secret(),
        }
    }

    /// Signed in as session 8 at `now`, a second app begun from it.
    fn second_app_begun(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = signed_in(now);
        events.push(E::TotpDeviceSetupStarted {
            session: reference(8),
            secret: sealed(SealPurpose::TotpSecret, second_secret().expose()),
            at: now,
        });
        events
    }

    fn add_second_app(code: TotpCode) -> UserAuthCommand {
        UserAuthCommand::AddTotpDevice {
            session: reference(8),
            authenticator: authenticator_id(2),
            name: name("Spare phone"),
            code,
        }
    }

    fn add_key(password: Option<Password>) -> UserAuthCommand {
        UserAuthCommand::AddWebAuthnCredential {
            session: reference(8),
            password,
            key: NewWebAuthnCredential {
                authenticator: authenticator_id(3),
                name: name("Work key"),
                credential: credential(3, 0),
            },
        }
    }

    fn remove(authenticator: u64, confirm_last: bool) -> UserAuthCommand {
        UserAuthCommand::RemoveAuthenticator {
            session: reference(8),
            password: None,
            authenticator: authenticator_id(authenticator),
            confirm_last,
        }
    }

    #[test]
    fn a_recent_aal2_session_begins_another_authenticator_app() {
        let now = later(10);
        at(now)
            .given(signed_in(now))
            .when(begin(8))
            .then_expect_events(vec![E::TotpDeviceSetupStarted {
                session: reference(8),
                secret: sealed(SealPurpose::TotpSecret, second_secret().expose()),
                at: now,
            }]);
    }

    #[test]
    fn a_session_won_by_email_link_cannot_add_an_authenticator() {
        let now = later(10);
        let mut given = enrolled();
        given.push(session_started(8, SignInMethod::EmailLink, now));
        at(now)
            .given(given.clone())
            .when(begin(8))
            .then_expect_error(UserAuthError::SecondFactorRequired);
        at(now)
            .given(given)
            .when(add_key(None))
            .then_expect_error(UserAuthError::SecondFactorRequired);
    }

    #[test]
    fn an_older_session_gives_the_password_again() {
        let now = later(10);
        let much_later = now + Duration::minutes(30);
        at(much_later)
            .given(signed_in(now))
            .when(add_key(None))
            .then_expect_error(UserAuthError::ReauthenticationRequired);
        let events = events_of(at(much_later), signed_in(now), add_key(Some(password())));
        assert!(matches!(events[..], [E::WebAuthnCredentialAdded { .. }]));
        let events = events_of(
            at(much_later),
            signed_in(now),
            add_key(Some(wrong_password())),
        );
        assert!(
            matches!(events[0], E::PasswordRejected { .. }),
            "{events:?}"
        );
    }

    #[test]
    fn a_code_from_the_new_app_adds_it_under_its_name() {
        let now = later(10);
        let step = step_at(now);
        at(now)
            .given(second_app_begun(now))
            .when(add_second_app(second_code_for_step(step)))
            .then_expect_events(vec![E::TotpDeviceAdded {
                authenticator: authenticator_id(2),
                name: sealed_text("Spare phone"),
                secret: sealed(SealPurpose::TotpSecret, second_secret().expose()),
                step,
                at: now,
            }]);
    }

    #[test]
    fn a_wrong_code_for_the_new_app_is_refused_and_counts_for_nothing() {
        let now = later(10);
        at(now)
            .given(second_app_begun(now))
            .when(add_second_app(code_at(now)))
            .then_expect_error(UserAuthError::WrongSetupCode);
    }

    #[test]
    fn an_app_begun_from_another_session_or_too_long_ago_cannot_be_added() {
        let now = later(10);
        at(now)
            .given(signed_in(now))
            .when(add_second_app(second_code_for_step(step_at(now))))
            .then_expect_error(UserAuthError::TotpDeviceSetupNotStarted);
        let mut other = second_app_begun(now);
        other.push(session_started(9, SignInMethod::Totp, now));
        at(now)
            .given(other)
            .when(UserAuthCommand::AddTotpDevice {
                session: reference(9),
                authenticator: authenticator_id(2),
                name: name("Spare phone"),
                code: second_code_for_step(step_at(now)),
            })
            .then_expect_error(UserAuthError::TotpDeviceSetupNotStarted);
        let stale = now + Duration::minutes(11);
        at(stale)
            .given(second_app_begun(now))
            .when(add_second_app(second_code_for_step(step_at(stale))))
            .then_expect_error(UserAuthError::TotpDeviceSetupNotStarted);
    }

    #[test]
    fn a_security_key_is_added_under_its_name() {
        let now = later(10);
        at(now)
            .given(signed_in(now))
            .when(add_key(None))
            .then_expect_events(vec![E::WebAuthnCredentialAdded {
                authenticator: authenticator_id(3),
                name: sealed_text("Work key"),
                credential: credential(3, 0),
                at: now,
            }]);
    }

    #[test]
    fn the_same_security_key_cannot_be_added_twice() {
        let now = later(10);
        at(now)
            .given(with_key(now))
            .when(UserAuthCommand::AddWebAuthnCredential {
                session: reference(8),
                password: None,
                key: NewWebAuthnCredential {
                    authenticator: authenticator_id(4),
                    name: name("Again"),
                    credential: credential(3, 0),
                },
            })
            .then_expect_error(UserAuthError::CredentialAlreadyRegistered);
    }

    #[test]
    fn the_profile_lists_every_authenticator_with_its_use() {
        let now = later(10);
        let state = folded(with_key(now));
        let held = state.authenticators();
        assert_eq!(held.len(), 2);
        assert_eq!(held[0].id, AuthenticatorId::FIRST);
        assert_eq!(held[0].kind, AuthenticatorKind::Totp);
        assert_eq!(held[0].name, None);
        assert_eq!(held[1].kind, AuthenticatorKind::WebAuthn);
        assert_eq!(held[1].name, Some(sealed_text("Work key")));
        assert_eq!(held[1].last_used_at, None);
        assert_eq!(held[1].credential_id.as_deref(), Some("credential-3"));
    }

    #[test]
    fn one_of_several_authenticators_is_removed() {
        let now = later(10);
        at(now)
            .given(with_key(now))
            .when(remove(3, false))
            .then_expect_events(vec![E::AuthenticatorRemoved {
                authenticator: authenticator_id(3),
                last: false,
                at: now,
            }]);
    }

    #[test]
    fn the_last_authenticator_goes_only_when_confirmed_and_then_the_next_sign_in_enrolls() {
        let now = later(10);
        let first = |confirm| UserAuthCommand::RemoveAuthenticator {
            session: reference(8),
            password: None,
            authenticator: AuthenticatorId::FIRST,
            confirm_last: confirm,
        };
        at(now)
            .given(signed_in(now))
            .when(first(false))
            .then_expect_error(UserAuthError::LastAuthenticator);
        let events = events_of(at(now), signed_in(now), first(true));
        assert_eq!(
            events,
            vec![E::AuthenticatorRemoved {
                authenticator: AuthenticatorId::FIRST,
                last: true,
                at: now,
            }]
        );
        let mut given = signed_in(now);
        given.extend(events);
        let state = folded(given.clone());
        assert!(!state.is_enrolled());
        assert!(!state.audit_state(now, &policy()).recovery_code_present);
        let Decided { verdict, .. } = decided(
            now,
            given,
            UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            },
        );
        assert!(
            matches!(
                verdict,
                Verdict::AttemptOpened {
                    next: SecondFactor::Enroll,
                    ..
                }
            ),
            "{verdict:?}"
        );
    }

    #[test]
    fn an_unknown_authenticator_cannot_be_removed() {
        let now = later(10);
        at(now)
            .given(signed_in(now))
            .when(remove(5, true))
            .then_expect_error(UserAuthError::UnknownAuthenticator);
    }

    #[test]
    fn resetting_mfa_forgets_every_authenticator_at_once() {
        let now = later(10);
        let mut given = with_key(now);
        given.push(E::TotpDeviceAdded {
            authenticator: authenticator_id(2),
            name: sealed_text("Spare phone"),
            secret: sealed(SealPurpose::TotpSecret, second_secret().expose()),
            step: step_at(now),
            at: now,
        });
        assert_eq!(folded(given.clone()).authenticators().len(), 3);
        let events = events_of(
            at(now),
            given.clone(),
            UserAuthCommand::ResetMfa {
                session: reference(8),
                password: None,
            },
        );
        assert!(events.iter().any(|e| matches!(e, E::MfaReset { .. })));
        given.extend(events);
        let state = folded(given);
        assert!(state.authenticators().is_empty() && !state.is_enrolled());
    }

    #[test]
    fn a_code_from_either_app_signs_in_and_each_app_keeps_its_own_steps() {
        let now = later(10);
        let mut given = with_second_app(now);
        given.push(attempt_opened(7, now, SecondFactor::Totp));
        let step = step_at(now);
        let events = events_of(
            at(now),
            given.clone(),
            UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: second_code_for_step(step + 1),
            },
        );
        assert_eq!(
            events[0],
            E::TotpVerified {
                attempt: reference(7),
                step: step + 1,
                authenticator: Some(authenticator_id(2)),
                at: now,
            }
        );
        // The first app's current step was never used, so it still counts.
        given.extend(events);
        given.push(attempt_opened(9, now, SecondFactor::Totp));
        let events = events_of(
            at(now),
            given,
            UserAuthCommand::SubmitTotp {
                attempt: reference(9),
                code: code_at(now),
            },
        );
        assert!(
            matches!(events[0], E::TotpVerified { authenticator: Some(id), .. } if id == AuthenticatorId::FIRST),
            "{events:?}"
        );
    }

    #[test]
    fn a_key_resealed_moves_every_app_secret_to_the_current_key() {
        let now = later(10);
        let events = events_of(
            Framework::with(services_with_key(now, "k2")),
            with_second_app(now),
            UserAuthCommand::ResealSecrets,
        );
        let E::SecretsResealed {
            totp_secret,
            totp_devices,
            ..
        } = &events[0]
        else {
            panic!("{events:?}");
        };
        assert_eq!(totp_secret, &None);
        let ids: Vec<_> = totp_devices.iter().map(|d| d.authenticator).collect();
        assert_eq!(ids, vec![AuthenticatorId::FIRST, authenticator_id(2)]);
        assert!(totp_devices.iter().all(|d| d.secret.key_id == "k2"));
        let mut given = with_second_app(now);
        given.extend(events);
        let state = folded(given);
        assert_eq!(state.authenticators().len(), 2);
    }

    #[test]
    fn an_app_begun_before_the_last_authenticator_went_cannot_be_added_after() {
        let now = later(10);
        let mut given = second_app_begun(now);
        given.push(E::AuthenticatorRemoved {
            authenticator: AuthenticatorId::FIRST,
            last: true,
            at: now,
        });
        at(now)
            .given(given)
            .when(add_second_app(second_code_for_step(step_at(now))))
            .then_expect_error(UserAuthError::EnrollmentRequired);
    }

    #[test]
    fn removing_the_last_authenticator_calls_off_a_waiting_reset_and_its_email_sessions() {
        let now = later(10);
        let mut given = signed_in(now);
        given.extend([
            session_started(9, SignInMethod::EmailLink, now),
            E::MfaResetRequested {
                effective_at: now + Duration::hours(24),
                denial: reference(30),
                at: now,
            },
        ]);
        at(now)
            .given(given)
            .when(UserAuthCommand::RemoveAuthenticator {
                session: reference(8),
                password: None,
                authenticator: AuthenticatorId::FIRST,
                confirm_last: true,
            })
            .then_expect_events(vec![
                E::MfaResetCancelled {
                    reason: ResetCancellation::CancelledByUser,
                    at: now,
                },
                E::SessionEnded {
                    session: reference(9),
                    reason: SessionEndReason::ResetCancelled,
                    at: now,
                },
                E::AuthenticatorRemoved {
                    authenticator: AuthenticatorId::FIRST,
                    last: true,
                    at: now,
                },
            ]);
    }

    #[test]
    fn a_session_won_by_email_link_learns_nothing_of_the_authenticators() {
        let now = later(10);
        let mut given = enrolled();
        given.push(session_started(8, SignInMethod::EmailLink, now));
        for id in [5, 0] {
            at(now)
                .given(given.clone())
                .when(remove(id, false))
                .then_expect_error(UserAuthError::SecondFactorRequired);
        }
    }

    #[test]
    fn an_account_holds_at_most_sixteen_authenticators() {
        let now = later(10);
        let mut given = signed_in(now);
        given.extend((2..=16).map(|n| E::WebAuthnCredentialAdded {
            authenticator: authenticator_id(100 + n),
            name: sealed_text("key"),
            credential: credential(100 + n, 0),
            at: now,
        }));
        assert_eq!(folded(given.clone()).authenticators().len(), 16);
        at(now)
            .given(given.clone())
            .when(begin(8))
            .then_expect_error(UserAuthError::TooManyAuthenticators);
        at(now)
            .given(given)
            .when(add_key(None))
            .then_expect_error(UserAuthError::TooManyAuthenticators);
    }

    #[test]
    fn an_app_being_set_up_is_sealed_again_with_the_current_key() {
        let now = later(10);
        let events = events_of(
            Framework::with(services_with_key(now, "k2")),
            second_app_begun(now),
            UserAuthCommand::ResealSecrets,
        );
        let E::SecretsResealed {
            totp_device_setup: Some(sealed),
            ..
        } = &events[0]
        else {
            panic!("{events:?}");
        };
        assert_eq!(sealed.key_id, "k2");
        let mut given = second_app_begun(now);
        given.extend(events);
        at(now)
            .given(given)
            .when(add_second_app(second_code_for_step(step_at(now))))
            .then_expect_events(vec![E::TotpDeviceAdded {
                authenticator: authenticator_id(2),
                name: sealed_text("Spare phone"),
                secret: sealed_with("k2", SealPurpose::TotpSecret, second_secret().expose()),
                step: step_at(now),
                at: now,
            }]);
    }
}
