//! Email verification: the link mailed at registration shows that the
//! registrant receives the address's mail. Only the newest link counts, for
//! its day of life, once.
use chrono::{DateTime, Utc};

use super::Decision;
use crate::user_auth::{
    Decided, Reference, UserAuth, UserAuthError as Error, UserAuthEvent as E, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) fn verify_email(
        &self,
        link: Reference,
        now: DateTime<Utc>,
    ) -> Decision {
        self.verification_link
            .as_ref()
            .filter(|pending| pending.reference == link && now < pending.expires_at)
            .ok_or(Error::EmailVerificationInvalid)?;
        Ok(Decided {
            events: vec![E::EmailVerified { at: now }],
            verdict: Verdict::EmailVerified,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    fn verify(link: u64) -> UserAuthCommand {
        UserAuthCommand::VerifyEmail {
            link: reference(link),
        }
    }

    #[test]
    fn opening_the_verification_link_verifies_the_address() {
        let now = later(30);
        at(now)
            .given(unverified())
            .when(verify(50))
            .then_expect_events(vec![E::EmailVerified { at: now }]);
    }

    #[test]
    fn a_verification_link_works_once() {
        let now = later(30);
        let mut given = unverified();
        given.push(E::EmailVerified { at: now });
        at(now)
            .given(given)
            .when(verify(50))
            .then_expect_error(UserAuthError::EmailVerificationInvalid);
    }

    #[test]
    fn a_replaced_registration_voids_its_link_and_the_new_one_works() {
        let now = later(30);
        let mut given = unverified();
        given.extend(events_of(
            at(now),
            unverified(),
            UserAuthCommand::RegisterUser {
                email: email(),
                password: new_password(),
            },
        ));
        at(now)
            .given(given.clone())
            .when(verify(50))
            .then_expect_error(UserAuthError::EmailVerificationInvalid);
        at(now)
            .given(given)
            .when(verify(1))
            .then_expect_events(vec![E::EmailVerified { at: now }]);
    }

    #[test]
    fn a_verification_link_expires_after_a_day() {
        at(t0() + Duration::hours(24))
            .given(unverified())
            .when(verify(50))
            .then_expect_error(UserAuthError::EmailVerificationInvalid);
    }

    #[test]
    fn an_unknown_link_verifies_nothing() {
        at(later(30))
            .given(unverified())
            .when(verify(51))
            .then_expect_error(UserAuthError::EmailVerificationInvalid);
    }

    #[test]
    fn an_account_from_before_verification_has_no_link_to_open() {
        at(later(30))
            .given(registered())
            .when(verify(50))
            .then_expect_error(UserAuthError::EmailVerificationInvalid);
    }

    #[test]
    fn opening_the_verification_link_says_the_address_is_verified() {
        let now = later(30);
        let outcome = decided(now, unverified(), verify(50));
        assert_eq!(outcome.verdict, Verdict::EmailVerified);
        let mut after = unverified();
        after.extend(outcome.events);
        assert!(!folded(unverified()).is_verified());
        assert!(folded(after).is_verified());
    }
}
