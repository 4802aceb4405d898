//! Registration: one account per email. The user id derives from the email
//! (see `Email::user_id`), so the event store's key enforces uniqueness.
use chrono::{DateTime, Utc};

use super::Decision;
use crate::user_auth::{
    Decided, Email, NewPassword, Registration, SealPurpose, UserAuth, UserAuthError as Error,
    UserAuthEvent as E, UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) async fn register(
        &self,
        email: Email,
        password: &NewPassword,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if self.is_registered() {
            return Err(Error::AlreadyRegistered);
        }
        let hash = s.hasher.hash(password.as_password()).await?;
        let user_id = email.user_id();
        Ok(Decided {
            events: vec![E::UserRegistered {
                user_id,
                email: email.into(),
                password_hash: s
                    .keeper
                    .seal(SealPurpose::PasswordHash, hash.0.as_bytes())?,
                at: now,
            }],
            verdict: Verdict::Registered {
                user_id,
                outcome: Registration::New,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::user_auth::testing::*;

    #[test]
    fn registering_records_the_user_with_a_sealed_password_hash() {
        at(t0())
            .given_no_previous_events()
            .when(UserAuthCommand::RegisterUser {
                email: email(),
                password: NewPassword::parse(PASSWORD, &[]).unwrap(),
            })
            .then_expect_events(registered());
    }

    #[test]
    fn registering_an_existing_email_is_refused() {
        at(t0())
            .given(registered())
            .when(UserAuthCommand::RegisterUser {
                email: email(),
                password: NewPassword::parse(PASSWORD, &[]).unwrap(),
            })
            .then_expect_error(UserAuthError::AlreadyRegistered);
    }

    #[test]
    fn the_user_id_is_derived_from_the_email_however_it_is_written() {
        // Fixed: changing the namespace or the derivation would orphan every
        // stored stream.
        let alice = Uuid::parse_str("ba3dcbb2-86cd-5971-97ad-b0032be24d84").unwrap();
        for written in ["alice@example.com", "  Alice@Example.COM "] {
            let events = decided(
                t0(),
                vec![],
                UserAuthCommand::RegisterUser {
                    email: Email::parse(written).unwrap(),
                    password: NewPassword::parse(PASSWORD, &[]).unwrap(),
                },
            )
            .events;
            let E::UserRegistered { user_id, .. } = &events[0] else {
                panic!("expected a registration");
            };
            assert_eq!(*user_id, alice, "{written:?}");
        }
        let bob = Email::parse("bob@example.com").unwrap().user_id();
        assert_ne!(bob, alice);
    }

    #[test]
    fn registering_names_the_new_user() {
        let verdict = decided(
            t0(),
            vec![],
            UserAuthCommand::RegisterUser {
                email: email(),
                password: NewPassword::parse(PASSWORD, &[]).unwrap(),
            },
        )
        .verdict;
        let alice = Uuid::parse_str("ba3dcbb2-86cd-5971-97ad-b0032be24d84").unwrap();
        assert_eq!(
            verdict,
            Verdict::Registered {
                user_id: alice,
                outcome: Registration::New,
            }
        );
    }
}
