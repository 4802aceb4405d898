//! The email link, an account-recovery path rather than a factor: bound to
//! its login attempt, short-lived, single use, a newer link voids older
//! ones, and a few per window per account. It signs in at aal1. After a
//! password reset by email it is off until a sign-in with a second factor:
//! otherwise the mailbox alone would both set the password and sign in. So
//! it is after the "this wasn't me" link of a pending MFA reset, since
//! someone else then holds the password and the mailbox.
use chrono::{DateTime, Utc};

use super::Decision;
use crate::user_auth::{
    Decided, MailedLink, Reference, SignInMethod, UserAuth, UserAuthError as Error,
    UserAuthEvent as E, UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) fn request_email_link(
        &self,
        attempt: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.live_attempt(&attempt, now, &s.policy)
            .ok_or(Error::LoginAttemptInvalid)?;
        if !self.is_enrolled() {
            return Err(Error::EnrollmentRequired);
        }
        if self.email_link_disabled {
            return Err(Error::EmailLinkUnavailable);
        }
        let window_start = now - s.policy.email_link_window;
        let recent = self
            .link_requests
            .iter()
            .filter(|at| **at > window_start)
            .count();
        if recent >= s.policy.email_links_per_window {
            // Same answer as a sent link, and no mail: the limit protects
            // the inbox, and says nothing to whoever is asking.
            return Ok(Decided {
                events: vec![],
                verdict: Verdict::EmailLinkRequested { mailed: false },
            });
        }
        Ok(Decided {
            events: vec![E::EmailLinkRequested {
                link: s.randomness.reference(),
                attempt,
                expires_at: now + s.policy.email_link_ttl,
                at: now,
            }],
            verdict: Verdict::EmailLinkRequested { mailed: true },
        })
    }

    pub(in crate::user_auth) fn use_email_link(
        &self,
        link: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        // The link completes the attempt it was asked from; a newer password
        // sign-in, a finished sign-in or an exhausted attempt voids it.
        if !self.mailed_link_live(MailedLink::SignIn, &link, now, &s.policy) {
            return Err(Error::EmailLinkInvalid);
        }
        if self.locked {
            return Err(Error::AccountLocked);
        }
        // A link asked from a known device waits only for that device's
        // own failures, as its password and codes do.
        let device = self.attempt.as_ref().and_then(|a| a.device.as_ref());
        if let Some(until) = self.source_throttled_at(device, now) {
            return Err(Error::Throttled { retry_after: until });
        }
        Ok(self.sign_in(
            vec![E::EmailLinkUsed { link, at: now }],
            SignInMethod::EmailLink,
            s,
            now,
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    fn link_requested(link: u64, attempt: u64, now: DateTime<Utc>) -> UserAuthEvent {
        E::EmailLinkRequested {
            link: reference(link),
            attempt: reference(attempt),
            expires_at: now + Duration::minutes(15),
            at: now,
        }
    }

    #[test]
    fn requesting_an_email_link_records_it_bound_to_the_attempt() {
        let now = later(10);
        at(now)
            .given(enrolled_with_attempt(now))
            .when(UserAuthCommand::RequestEmailLink {
                attempt: reference(7),
            })
            .then_expect_events(vec![link_requested(1, 7, now)]);
    }

    #[test]
    fn a_fourth_link_within_fifteen_minutes_is_silently_not_sent() {
        let now = later(10);
        let mut given = enrolled_with_attempt(now);
        given.extend([
            link_requested(11, 7, now),
            link_requested(12, 7, now),
            link_requested(13, 7, now),
        ]);
        let when = now + Duration::minutes(14);
        given.push(attempt_opened(8, when, SecondFactor::Totp));
        at(when)
            .given(given.clone())
            .when(UserAuthCommand::RequestEmailLink {
                attempt: reference(8),
            })
            .then_expect_events(vec![]);
        // Fifteen minutes after the first, a link can be sent again.
        let events = events_of(
            at(now + Duration::minutes(15)),
            given,
            UserAuthCommand::RequestEmailLink {
                attempt: reference(8),
            },
        );
        assert!(matches!(events.as_slice(), [E::EmailLinkRequested { .. }]));
    }

    #[test]
    fn an_email_link_cannot_stand_in_for_enrollment() {
        let now = later(1);
        at(now)
            .given(registered_with_attempt(now))
            .when(UserAuthCommand::RequestEmailLink {
                attempt: reference(7),
            })
            .then_expect_error(UserAuthError::EnrollmentRequired);
    }

    fn reset_by_email(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        vec![
            E::PasswordResetRequested {
                link: reference(20),
                expires_at: now + Duration::minutes(30),
                at: now,
            },
            E::PasswordReset {
                password_hash: sealed_hash(NEW_PASSWORD),
                at: now,
            },
        ]
    }

    #[test]
    fn the_email_method_is_unavailable_after_a_password_reset_by_email() {
        let now = later(10);
        let mut given = enrolled();
        given.extend(reset_by_email(now));
        given.push(attempt_opened(7, now, SecondFactor::Totp));
        at(now)
            .given(given)
            .when(UserAuthCommand::RequestEmailLink {
                attempt: reference(7),
            })
            .then_expect_error(UserAuthError::EmailLinkUnavailable);
    }

    #[test]
    fn the_email_method_is_available_again_after_a_totp_sign_in() {
        let now = later(10);
        let mut given = enrolled();
        given.extend(reset_by_email(now));
        given.extend([
            session_started(8, SignInMethod::Totp, now),
            attempt_opened(7, now, SecondFactor::Totp),
        ]);
        at(now)
            .given(given)
            .when(UserAuthCommand::RequestEmailLink {
                attempt: reference(7),
            })
            .then_expect_events(vec![link_requested(1, 7, now)]);
    }

    #[test]
    fn opening_the_link_signs_in_with_assurance_level_one() {
        let now = later(10);
        let mut given = enrolled_with_attempt(now);
        given.push(link_requested(11, 7, now));
        at(now + Duration::minutes(10))
            .given(given)
            .when(UserAuthCommand::UseEmailLink {
                link: reference(11),
            })
            .then_expect_events(vec![
                E::EmailLinkUsed {
                    link: reference(11),
                    at: now + Duration::minutes(10),
                },
                session_started(1, SignInMethod::EmailLink, now + Duration::minutes(10)),
                new_device(1, 2, now + Duration::minutes(10)),
            ]);
    }

    #[test]
    fn an_expired_link_is_refused() {
        let now = later(10);
        let mut given = enrolled_with_attempt(now);
        given.push(link_requested(11, 7, now));
        at(now + Duration::minutes(15))
            .given(given)
            .when(UserAuthCommand::UseEmailLink {
                link: reference(11),
            })
            .then_expect_error(UserAuthError::EmailLinkInvalid);
    }

    #[test]
    fn a_spent_link_is_refused() {
        let now = later(10);
        let mut given = enrolled_with_attempt(now);
        given.extend([
            link_requested(11, 7, now),
            E::EmailLinkUsed {
                link: reference(11),
                at: now,
            },
            session_started(8, SignInMethod::EmailLink, now),
        ]);
        at(now)
            .given(given)
            .when(UserAuthCommand::UseEmailLink {
                link: reference(11),
            })
            .then_expect_error(UserAuthError::EmailLinkInvalid);
    }

    #[test]
    fn a_newer_link_voids_older_ones() {
        let now = later(10);
        let mut given = enrolled_with_attempt(now);
        given.extend([link_requested(11, 7, now), link_requested(12, 7, now)]);
        at(now)
            .given(given)
            .when(UserAuthCommand::UseEmailLink {
                link: reference(11),
            })
            .then_expect_error(UserAuthError::EmailLinkInvalid);
    }

    #[test]
    fn a_link_from_an_earlier_attempt_is_refused() {
        let now = later(10);
        let mut given = enrolled_with_attempt(now);
        given.extend([
            link_requested(11, 7, now),
            attempt_opened(8, now, SecondFactor::Totp),
        ]);
        at(now)
            .given(given)
            .when(UserAuthCommand::UseEmailLink {
                link: reference(11),
            })
            .then_expect_error(UserAuthError::EmailLinkInvalid);
    }

    #[test]
    fn a_link_over_the_limit_is_reported_as_not_mailed() {
        let now = later(10);
        let request = || UserAuthCommand::RequestEmailLink {
            attempt: reference(7),
        };
        let mut given = enrolled_with_attempt(now);
        assert_eq!(
            decided(now, given.clone(), request()).verdict,
            Verdict::EmailLinkRequested { mailed: true }
        );
        given.extend([
            link_requested(11, 7, now),
            link_requested(12, 7, now),
            link_requested(13, 7, now),
        ]);
        assert_eq!(
            decided(now, given, request()).verdict,
            Verdict::EmailLinkRequested { mailed: false }
        );
    }

    #[test]
    fn opening_the_link_reports_a_session_at_assurance_level_one() {
        let now = later(10);
        let when = now + Duration::minutes(10);
        let mut given = enrolled_with_attempt(now);
        given.push(link_requested(11, 7, now));
        let verdict = decided(
            when,
            given,
            UserAuthCommand::UseEmailLink {
                link: reference(11),
            },
        )
        .verdict;
        assert_eq!(
            verdict,
            Verdict::SessionStarted(StartedSession {
                session: reference(1),
                method: SignInMethod::EmailLink,
                aal: Assurance::Aal1,
                expires_at: when + Duration::hours(12),
            })
        );
    }
}
