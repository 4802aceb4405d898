//! Signing in with a security key or passkey. The caller checked the
//! assertion's signature against the challenge it kept for this attempt;
//! the rule checks that the credential is still the account's and that its
//! signature count went up since the count held now, not the one the
//! challenge was made from. A count that did not go up is a cloned key: it
//! is refused, recorded, and counts as a failed factor; the key is refused
//! from then on, whichever copy answers, until its owner removes it.
use chrono::{DateTime, Utc};

use super::Decision;
use crate::user_auth::state::Factor;
use crate::user_auth::{
    FailedFactor, Reference, SignInMethod, UserAuth, UserAuthError as Error, UserAuthEvent as E,
    UserAuthServices, WebAuthnAssertion, WebAuthnRejection,
};

impl UserAuth {
    pub(in crate::user_auth) fn submit_webauthn(
        &self,
        attempt: Reference,
        assertion: WebAuthnAssertion,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.open_attempt(&attempt, now, &s.policy)?;
        if !self.is_enrolled() {
            return Err(Error::EnrollmentRequired);
        }
        let rejected = |reason, factor| {
            Ok(self.failure(
                E::WebAuthnRejected {
                    attempt,
                    reason,
                    at: now,
                },
                factor,
                s,
                now,
            ))
        };
        let WebAuthnAssertion::Valid {
            credential_id,
            sign_count,
            user_verified,
        } = assertion
        else {
            return rejected(WebAuthnRejection::InvalidAssertion, FailedFactor::WebAuthn);
        };
        let held = self.authenticators.iter().find_map(|a| match &a.factor {
            Factor::WebAuthn(credential) if credential.credential_id == credential_id => {
                Some((a.id, credential.sign_count, a.suspected_copy_at))
            }
            _ => None,
        });
        let Some((authenticator, stored, suspected)) = held else {
            // Removed between the challenge and the answer.
            return rejected(WebAuthnRejection::UnknownCredential, FailedFactor::WebAuthn);
        };
        // Two copies were seen: neither can be told to be the owner's.
        if suspected.is_some() {
            return rejected(
                WebAuthnRejection::SuspectedCopy { authenticator },
                FailedFactor::WebAuthnSignCount,
            );
        }
        // WebAuthn §6.1.1: authenticators without a counter always say 0;
        // once either side counts, the count must go up.
        if (sign_count != 0 || stored != 0) && sign_count <= stored {
            return rejected(
                WebAuthnRejection::SignCountRegressed {
                    authenticator,
                    stored,
                    presented: sign_count,
                },
                FailedFactor::WebAuthnSignCount,
            );
        }
        Ok(self.sign_in(
            vec![E::WebAuthnVerified {
                attempt,
                authenticator,
                sign_count,
                user_verified,
                at: now,
            }],
            SignInMethod::WebAuthn,
            s,
            now,
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    /// With key 3 (count 5) and attempt 7 opened at `now`.
    fn key_with_attempt(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = with_key(now);
        events.extend([
            E::WebAuthnVerified {
                attempt: reference(70),
                authenticator: authenticator_id(3),
                sign_count: 5,
                user_verified: true,
                at: now,
            },
            attempt_opened(7, now, SecondFactor::Totp),
        ]);
        events
    }

    fn assertion(credential: u64, sign_count: u32) -> UserAuthCommand {
        UserAuthCommand::SubmitWebAuthn {
            attempt: reference(7),
            assertion: WebAuthnAssertion::Valid {
                credential_id: format!("credential-{credential}"),
                sign_count,
                user_verified: false,
            },
        }
    }

    #[test]
    fn a_valid_assertion_with_a_higher_count_starts_an_aal2_session() {
        let now = later(10);
        let Decided { events, verdict } = decided(now, key_with_attempt(now), assertion(3, 6));
        assert_eq!(
            events[0],
            E::WebAuthnVerified {
                attempt: reference(7),
                authenticator: authenticator_id(3),
                sign_count: 6,
                user_verified: false,
                at: now,
            }
        );
        assert!(matches!(
            &events[1],
            E::SessionStarted {
                method: SignInMethod::WebAuthn,
                aal: Assurance::Aal2,
                ..
            }
        ));
        assert!(matches!(verdict, Verdict::SessionStarted(_)));
        let mut given = key_with_attempt(now);
        given.extend(events);
        let used = folded(given).authenticators();
        assert_eq!(used[1].last_used_at, Some(now));
    }

    #[test]
    fn a_count_that_did_not_go_up_is_a_cloned_key_refused_and_recorded() {
        let now = later(10);
        for presented in [5, 2, 0] {
            at(now)
                .given(key_with_attempt(now))
                .when(assertion(3, presented))
                .then_expect_events(vec![E::WebAuthnRejected {
                    attempt: reference(7),
                    reason: WebAuthnRejection::SignCountRegressed {
                        authenticator: authenticator_id(3),
                        stored: 5,
                        presented,
                    },
                    at: now,
                }]);
        }
        let Decided { verdict, .. } = decided(now, key_with_attempt(now), assertion(3, 5));
        let Verdict::Rejected(rejection) = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(rejection.factor, FailedFactor::WebAuthnSignCount);
    }

    #[test]
    fn once_a_copy_was_seen_the_key_is_refused_whichever_copy_answers() {
        let now = later(10);
        let mut given = key_with_attempt(now);
        given.push(E::WebAuthnRejected {
            attempt: reference(7),
            reason: WebAuthnRejection::SignCountRegressed {
                authenticator: authenticator_id(3),
                stored: 5,
                presented: 2,
            },
            at: now,
        });
        let state = folded(given.clone());
        assert_eq!(state.authenticators()[1].suspected_copy_at, Some(now));
        assert_eq!(state.usable_webauthn_credentials().count(), 0);
        assert_eq!(state.webauthn_credentials().count(), 1);
        at(now)
            .given(given)
            .when(assertion(3, 9))
            .then_expect_events(vec![E::WebAuthnRejected {
                attempt: reference(7),
                reason: WebAuthnRejection::SuspectedCopy {
                    authenticator: authenticator_id(3),
                },
                at: now,
            }]);
    }

    #[test]
    fn a_key_without_a_counter_signs_in_at_zero_every_time() {
        let now = later(10);
        let mut given = with_key(now);
        given.push(attempt_opened(7, now, SecondFactor::Totp));
        let events = events_of(at(now), given, assertion(3, 0));
        assert!(matches!(
            events[0],
            E::WebAuthnVerified { sign_count: 0, .. }
        ));
    }

    #[test]
    fn an_invalid_assertion_is_a_failed_factor() {
        let now = later(10);
        at(now)
            .given(key_with_attempt(now))
            .when(UserAuthCommand::SubmitWebAuthn {
                attempt: reference(7),
                assertion: WebAuthnAssertion::Invalid,
            })
            .then_expect_events(vec![E::WebAuthnRejected {
                attempt: reference(7),
                reason: WebAuthnRejection::InvalidAssertion,
                at: now,
            }]);
    }

    #[test]
    fn a_key_removed_since_the_challenge_no_longer_signs_in() {
        let now = later(10);
        let mut given = key_with_attempt(now);
        given.push(E::AuthenticatorRemoved {
            authenticator: authenticator_id(3),
            last: false,
            at: now,
        });
        at(now)
            .given(given)
            .when(assertion(3, 9))
            .then_expect_events(vec![E::WebAuthnRejected {
                attempt: reference(7),
                reason: WebAuthnRejection::UnknownCredential,
                at: now,
            }]);
    }

    #[test]
    fn an_assertion_needs_a_live_attempt() {
        let now = later(10);
        let expired = now + Duration::minutes(11);
        at(expired)
            .given(key_with_attempt(now))
            .when(assertion(3, 6))
            .then_expect_error(UserAuthError::LoginAttemptInvalid);
        let mut used = key_with_attempt(now);
        used.extend(events_of(at(now), key_with_attempt(now), assertion(3, 6)));
        at(now)
            .given(used)
            .when(assertion(3, 7))
            .then_expect_error(UserAuthError::LoginAttemptInvalid);
    }

    #[test]
    fn a_security_key_can_be_the_first_authenticator() {
        let now = later(10);
        let mut given = registered();
        given.push(attempt_opened(7, now, SecondFactor::Enroll));
        let Decided { events, verdict } = decided(
            now,
            given.clone(),
            UserAuthCommand::EnrollWebAuthn {
                attempt: reference(7),
                key: NewWebAuthnCredential {
                    authenticator: authenticator_id(3),
                    name: name("Laptop"),
                    credential: credential(3, 0),
                },
                recovery_code: recovery(1),
            },
        );
        assert_eq!(
            events[..2],
            [
                E::MfaEnrolled {
                    attempt: reference(7),
                    step: 0,
                    authenticator: Some(authenticator_id(3)),
                    name: Some(sealed_text("Laptop")),
                    credential: Some(credential(3, 0)),
                    at: now,
                },
                E::RecoveryCodeIssued {
                    digest: digest(&recovery(1)),
                    at: now,
                },
            ]
        );
        assert!(matches!(
            &events[2],
            E::SessionStarted {
                method: SignInMethod::WebAuthn,
                ..
            }
        ));
        assert!(matches!(verdict, Verdict::SessionStarted(_)));
        given.extend(events);
        let state = folded(given);
        assert!(state.is_enrolled());
        assert_eq!(state.webauthn_credentials().count(), 1);
    }
}
