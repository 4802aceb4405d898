//! Registration: one account per email. The caller picks the user id, a
//! random one for an address it has no account for, so ids say nothing of
//! the address and keeping addresses unique is the caller's index's job.
//! The address is recorded only sealed with the user's data key.
//! An account is unverified until its verification link is opened; until
//! then a new registration of the address replaces it. A verified address
//! is never answered differently: its owner is told by mail instead.
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Decision;
use crate::user_auth::{
    Decided, Email, NewPassword, Registration, SealPurpose, UserAuth, UserAuthEvent as E,
    UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) async fn register(
        &self,
        user_id: Uuid,
        email: &Email,
        password: &NewPassword,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        // Every case hashes, so timing does not tell a taken address apart.
        let hash = s.hasher.hash(password.as_password()).await?;
        let answer = |events, outcome| Decided {
            events,
            verdict: Verdict::Registered { user_id, outcome },
        };
        if self.registration_mails_exhausted(s, now) {
            // The limit protects the owner's inbox from whoever keeps
            // registering their address.
            return Ok(answer(vec![], Registration::Dropped));
        }
        if self.is_verified() {
            return Ok(answer(
                vec![E::RegistrationAttempted { at: now }],
                Registration::OwnerNotified,
            ));
        }
        let outcome = if self.is_registered() {
            Registration::Replaced
        } else {
            Registration::New
        };
        let events = vec![
            E::UserRegistered {
                user_id,
                email: s
                    .keeper
                    .seal(SealPurpose::Email, email.as_str().as_bytes())?,
                password_hash: s
                    .keeper
                    .seal(SealPurpose::PasswordHash, hash.0.as_bytes())?,
                at: now,
            },
            E::EmailVerificationRequested {
                link: s.randomness.reference(),
                expires_at: now + s.policy.email_verification_ttl,
                reason: None,
                at: now,
            },
        ];
        Ok(answer(events, outcome))
    }

    pub(super) fn registration_mails_exhausted(
        &self,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> bool {
        let window_start = now - s.policy.registration_mail_window;
        let recent = self
            .registration_mails
            .iter()
            .filter(|at| **at > window_start)
            .count();
        recent >= s.policy.registration_mails_per_window
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::user_auth::testing::*;

    fn register(password: &str) -> UserAuthCommand {
        UserAuthCommand::RegisterUser {
            user_id: user_id(),
            email: email(),
            password: NewPassword::parse(password, &[]).unwrap(),
        }
    }

    #[test]
    fn registering_records_an_unverified_user_and_mails_a_verification_link() {
        let mut expected = registered();
        expected.push(verification_requested(1, t0()));
        at(t0())
            .given_no_previous_events()
            .when(register(PASSWORD))
            .then_expect_events(expected);
    }

    #[test]
    fn registering_a_verified_address_notifies_its_owner_and_changes_nothing() {
        let now = later(10);
        let events = events_of(at(now), signed_in(now), register(NEW_PASSWORD));
        assert_eq!(events, vec![E::RegistrationAttempted { at: now }]);
        let mut after = signed_in(now);
        after.extend(events);
        let (before, after) = (folded(signed_in(now)), folded(after));
        assert_eq!(after.account, before.account);
        assert_eq!(after.sessions, before.sessions);
        assert!(after.is_verified());
    }

    #[test]
    fn registering_an_unverified_address_again_replaces_its_password_and_link() {
        let now = later(10);
        at(now)
            .given(unverified())
            .when(register(NEW_PASSWORD))
            .then_expect_events(vec![
                E::UserRegistered {
                    user_id: user_id(),
                    email: sealed_email("alice@example.com"),
                    password_hash: sealed_hash(NEW_PASSWORD),
                    at: now,
                },
                verification_requested(1, now),
            ]);
    }

    #[test]
    fn a_fourth_registration_mail_within_an_hour_is_silently_dropped() {
        let now = later(10);
        let mut given = unverified();
        given.extend([
            verification_requested(51, now),
            E::RegistrationAttempted { at: now },
        ]);
        at(t0() + Duration::minutes(59))
            .given(given.clone())
            .when(register(PASSWORD))
            .then_expect_events(vec![]);
        // An hour after the first mail, another may be sent.
        let events = events_of(at(t0() + Duration::hours(1)), given, register(PASSWORD));
        assert!(matches!(
            events.as_slice(),
            [
                E::UserRegistered { .. },
                E::EmailVerificationRequested { .. }
            ]
        ));
    }

    #[test]
    fn notices_to_a_verified_owner_count_against_the_same_limit() {
        let now = later(10);
        let mut given = registered();
        given.extend((0..3).map(|_| E::RegistrationAttempted { at: now }));
        at(now)
            .given(given)
            .when(register(PASSWORD))
            .then_expect_events(vec![]);
    }

    #[test]
    fn every_registration_costs_one_hash_whatever_the_address_holds() {
        let now = later(10);
        let mut over_the_limit = unverified();
        over_the_limit.extend((0..2).map(|_| E::RegistrationAttempted { at: now }));
        for given in [vec![], unverified(), registered(), over_the_limit] {
            let (outcome, work) = with_hashing_work(now, given, register(PASSWORD));
            assert!(outcome.is_ok());
            assert_eq!(work, 1);
        }
    }

    #[test]
    fn the_user_id_is_the_one_the_caller_chose_and_the_address_is_only_sealed() {
        let chosen = Uuid::from_u128(0x0b0b);
        let events = decided(
            t0(),
            vec![],
            UserAuthCommand::RegisterUser {
                user_id: chosen,
                email: Email::parse("  Alice@Example.COM ").unwrap(),
                password: NewPassword::parse(PASSWORD, &[]).unwrap(),
            },
        )
        .events;
        let E::UserRegistered { user_id, email, .. } = &events[0] else {
            panic!("expected a registration");
        };
        assert_eq!(*user_id, chosen);
        assert_eq!(
            keeper().unseal(SealPurpose::Email, email).unwrap(),
            b"alice@example.com"
        );
        let stored = serde_json::to_string(&events).unwrap();
        assert!(!stored.contains("alice"), "{stored}");
    }

    #[test]
    fn registering_names_the_user_and_what_became_of_the_registration() {
        let now = later(10);
        let mut over_the_limit = registered();
        over_the_limit.extend((0..3).map(|_| E::RegistrationAttempted { at: now }));
        for (given, outcome) in [
            (vec![], Registration::New),
            (unverified(), Registration::Replaced),
            (registered(), Registration::OwnerNotified),
            (over_the_limit, Registration::Dropped),
        ] {
            assert_eq!(
                decided(now, given, register(PASSWORD)).verdict,
                Verdict::Registered {
                    user_id: user_id(),
                    outcome,
                },
                "{outcome:?}"
            );
        }
    }
}
