//! Email verification: the link mailed at registration shows that the
//! registrant receives the address's mail. Only the newest link counts, for
//! its day of life, once, and only with the password chosen at
//! registration: anyone may register someone else's address, and the
//! owner, clicking the link in their own inbox, would otherwise confirm the
//! account for whoever registered it.
use chrono::{DateTime, Utc};

use super::admin::seal_reason;
use super::Decision;
use crate::user_auth::{
    AdminReason, Decided, MailedLink, Password, PasswordCheck, Reference, UserAuth,
    UserAuthError as Error, UserAuthEvent as E, UserAuthServices, Verdict,
};

impl UserAuth {
    /// An administrator has a new link mailed (the old one is void). The
    /// limit on verification mails holds for them too: it protects an
    /// inbox that may not be the registrant's.
    pub(in crate::user_auth) fn resend_verification(
        &self,
        reason: AdminReason,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if !self.is_registered() {
            return Err(Error::UnknownUser);
        }
        if self.is_verified() {
            return Err(Error::AlreadyVerified);
        }
        if self.registration_mails_exhausted(s, now) {
            return Err(Error::VerificationMailsExhausted);
        }
        Ok(Decided {
            events: vec![E::EmailVerificationRequested {
                link: s.randomness.reference(),
                expires_at: now + s.policy.email_verification_ttl,
                reason: Some(seal_reason(&reason, s)?),
                at: now,
            }],
            verdict: Verdict::VerificationResent,
        })
    }

    pub(in crate::user_auth) async fn verify_email(
        &self,
        link: Reference,
        password: &Password,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if !self.mailed_link_live(MailedLink::Verification, &link, now, &s.policy) {
            return Err(Error::EmailVerificationInvalid);
        }
        let hash = self.password_hash(s)?;
        // Not a failure to count: an unverified account has no owner yet
        // whose sign-in it could protect, and the link already limits who
        // can try.
        if s.hasher.verify(Some(&hash), password).await? == PasswordCheck::Mismatch {
            return Err(Error::InvalidCredentials);
        }
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
        verify_with(link, password())
    }

    fn verify_with(link: u64, password: Password) -> UserAuthCommand {
        UserAuthCommand::VerifyEmail {
            link: reference(link),
            password,
        }
    }

    fn resend() -> UserAuthCommand {
        UserAuthCommand::ResendVerification {
            reason: AdminReason::parse("mail went to spam").unwrap(),
        }
    }

    #[test]
    fn an_administrator_resends_a_new_link_and_the_old_one_is_void() {
        let now = later(30);
        let events = events_of(at(now), unverified(), resend());
        let [E::EmailVerificationRequested {
            link,
            reason: Some(reason),
            ..
        }] = events.as_slice()
        else {
            panic!("one new link with the reason: {events:?}");
        };
        assert_ne!(*link, reference(50));
        assert_eq!(*reason, sealed_text("mail went to spam"));
        let mut after = unverified();
        after.extend(events.clone());
        at(now)
            .given(after)
            .when(verify(50))
            .then_expect_error(UserAuthError::EmailVerificationInvalid);
    }

    #[test]
    fn a_verified_address_gets_no_new_verification_link() {
        at(later(30))
            .given(signed_in(later(30)))
            .when(resend())
            .then_expect_error(UserAuthError::AlreadyVerified);
    }

    #[test]
    fn an_administrator_resending_is_held_to_the_limit_on_verification_mails() {
        let now = later(30);
        let mut given = unverified();
        given.extend([
            verification_requested(51, now),
            verification_requested(52, now),
        ]);
        at(now)
            .given(given)
            .when(resend())
            .then_expect_error(UserAuthError::VerificationMailsExhausted);
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
                user_id: user_id(),
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
            .when(verify_with(1, new_password().as_password().clone()))
            .then_expect_events(vec![E::EmailVerified { at: now }]);
    }

    #[test]
    fn the_link_confirms_the_address_only_with_the_password_chosen_at_registration() {
        let now = later(30);
        at(now)
            .given(unverified())
            .when(verify_with(50, wrong_password()))
            .then_expect_error(UserAuthError::InvalidCredentials);
    }

    #[test]
    fn the_owner_opening_the_link_does_not_confirm_a_squatters_registration() {
        // Someone registered the owner's address with a password of their
        // own; the owner opens the link mailed to them and gives theirs.
        let squatted = vec![
            E::UserRegistered {
                user_id: user_id(),
                email: sealed_email("alice@example.com"),
                password_hash: sealed_hash("the squatter's own passphrase"),
                at: t0(),
            },
            verification_requested(50, t0()),
        ];
        at(later(30))
            .given(squatted)
            .when(verify(50))
            .then_expect_error(UserAuthError::InvalidCredentials);
    }

    #[test]
    fn a_dead_link_is_refused_before_the_password_is_checked() {
        let (outcome, work) = with_hashing_work(later(30), unverified(), verify(51));
        assert_eq!(outcome, Err(UserAuthError::EmailVerificationInvalid));
        assert_eq!(work, 0);
        at(later(30))
            .given(unverified())
            .when(verify_with(51, wrong_password()))
            .then_expect_error(UserAuthError::EmailVerificationInvalid);
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
