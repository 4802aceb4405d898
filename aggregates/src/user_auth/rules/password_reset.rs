//! The forgotten password: a link mailed to a verified address sets a new
//! one, for an account with an authenticator only: without one the mailbox
//! alone would set the password, sign in and enroll an authenticator of its
//! own. Like the email link it proves only the mailbox, so it is short-lived,
//! single use, the newest only, a few per window, and it signs nobody in:
//! it ends every session, and the next sign-in still needs the second
//! factor. It calls off a waiting MFA reset. Failures and locks stay as
//! they were; only a sign-in or an administrator clears them.
use chrono::{DateTime, Utc};

use super::Decision;
use crate::user_auth::{
    Decided, MailedLink, NewPassword, Reference, ResetCancellation, SealPurpose, SessionEndReason,
    UserAuth, UserAuthError as Error, UserAuthEvent as E, UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) fn request_password_reset(
        &self,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        let window_start = now - s.policy.password_reset_window;
        let recent = self
            .password_reset_requests
            .iter()
            .filter(|at| **at > window_start)
            .count();
        // One answer for every case, so the form tells nobody whether the
        // address has an account; the limit protects the owner's inbox.
        if !self.is_verified()
            || !self.is_enrolled()
            || self.suspended
            || recent >= s.policy.password_resets_per_window
        {
            return Ok(Decided {
                events: vec![],
                verdict: Verdict::PasswordResetRequested { mailed: false },
            });
        }
        Ok(Decided {
            events: vec![E::PasswordResetRequested {
                link: s.randomness.reference(),
                expires_at: now + s.policy.password_reset_ttl,
                at: now,
            }],
            verdict: Verdict::PasswordResetRequested { mailed: true },
        })
    }

    pub(in crate::user_auth) async fn reset_password(
        &self,
        link: Reference,
        password: &NewPassword,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if !self.mailed_link_live(MailedLink::PasswordReset, &link, now, &s.policy) {
            return Err(Error::PasswordResetInvalid);
        }
        let hash = s.hasher.hash(password.as_password()).await?;
        let mut events = vec![E::PasswordReset {
            password_hash: s
                .keeper
                .seal(SealPurpose::PasswordHash, hash.0.as_bytes())?,
            at: now,
        }];
        // Whoever knew the old password may hold a session; none survives.
        let ended = self.end_sessions(SessionEndReason::PasswordReset, None, s, now);
        let sessions_ended = ended.len();
        events.extend(ended);
        // Whoever asked for the MFA reset has the password and the mailbox:
        // letting them set the password too would keep the owner from
        // signing in to call it off until the wait ran out.
        if self.pending_mfa_reset.is_some() {
            events.push(E::MfaResetCancelled {
                reason: ResetCancellation::PasswordReset,
                at: now,
            });
        }
        Ok(Decided {
            events,
            verdict: Verdict::PasswordReset { sessions_ended },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    fn reset_requested(link: u64, now: DateTime<Utc>) -> UserAuthEvent {
        E::PasswordResetRequested {
            link: reference(link),
            expires_at: now + Duration::minutes(30),
            at: now,
        }
    }

    fn reset_with(link: u64) -> UserAuthCommand {
        UserAuthCommand::ResetPassword {
            link: reference(link),
            password: new_password(),
        }
    }

    fn password_reset(now: DateTime<Utc>) -> UserAuthEvent {
        E::PasswordReset {
            password_hash: sealed_hash(NEW_PASSWORD),
            at: now,
        }
    }

    #[test]
    fn a_verified_account_is_mailed_a_reset_link() {
        let now = later(10);
        at(now)
            .given(enrolled())
            .when(UserAuthCommand::RequestPasswordReset)
            .then_expect_events(vec![reset_requested(1, now)]);
    }

    #[test]
    fn unknown_unverified_and_unenrolled_accounts_are_mailed_nothing_and_answered_alike() {
        for given in [vec![], unverified(), registered()] {
            let outcome = decided(later(10), given, UserAuthCommand::RequestPasswordReset);
            assert_eq!(outcome.events, vec![]);
            assert_eq!(
                outcome.verdict,
                Verdict::PasswordResetRequested { mailed: false }
            );
        }
    }

    #[test]
    fn an_account_without_an_authenticator_is_mailed_no_reset_link() {
        at(later(10))
            .given(registered())
            .when(UserAuthCommand::RequestPasswordReset)
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_reset_link_sets_no_password_for_an_account_without_an_authenticator() {
        // Mailed while enrolled; the authenticator was reset since.
        let now = later(10);
        let mut reset_since = enrolled();
        reset_since.extend([
            reset_requested(11, now),
            E::MfaReset {
                actor: Actor::Admin,
                reason: Some(sealed_text("lost phone, identity checked")),
                at: now,
            },
        ]);
        // Mailed before links were kept from such accounts.
        let mut never_enrolled = registered();
        never_enrolled.push(reset_requested(11, now));
        for given in [reset_since, never_enrolled] {
            at(now)
                .given(given)
                .when(reset_with(11))
                .then_expect_error(UserAuthError::PasswordResetInvalid);
        }
    }

    #[test]
    fn a_fourth_reset_link_within_an_hour_is_silently_dropped() {
        let now = later(10);
        let mut given = enrolled();
        given.extend([
            reset_requested(11, now),
            reset_requested(12, now),
            reset_requested(13, now),
        ]);
        at(now + Duration::minutes(59))
            .given(given.clone())
            .when(UserAuthCommand::RequestPasswordReset)
            .then_expect_events(vec![]);
        // An hour after the first, a link can be sent again.
        at(now + Duration::hours(1))
            .given(given)
            .when(UserAuthCommand::RequestPasswordReset)
            .then_expect_events(vec![reset_requested(1, now + Duration::hours(1))]);
    }

    #[test]
    fn a_reset_sets_the_new_password_ends_every_session_and_starts_none() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut given = signed_in(now);
        given.extend([
            session_started(9, SignInMethod::EmailLink, now),
            reset_requested(11, now),
        ]);
        at(when)
            .given(given)
            .when(reset_with(11))
            .then_expect_events(vec![
                password_reset(when),
                E::SessionEnded {
                    session: reference(8),
                    reason: SessionEndReason::PasswordReset,
                    at: when,
                },
                E::SessionEnded {
                    session: reference(9),
                    reason: SessionEndReason::PasswordReset,
                    at: when,
                },
            ]);
    }

    #[test]
    fn a_reset_calls_off_a_waiting_mfa_reset() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut given = enrolled();
        given.extend([
            session_started(8, SignInMethod::EmailLink, now),
            E::MfaResetRequested {
                effective_at: now + Duration::hours(24),
                denial: reference(30),
                at: now,
            },
            reset_requested(11, now),
        ]);
        let events = events_of(at(when), given.clone(), reset_with(11));
        assert_eq!(
            events,
            vec![
                password_reset(when),
                E::SessionEnded {
                    session: reference(8),
                    reason: SessionEndReason::PasswordReset,
                    at: when,
                },
                E::MfaResetCancelled {
                    reason: ResetCancellation::PasswordReset,
                    at: when,
                },
            ]
        );
        given.extend(events);
        at(now + Duration::hours(24))
            .given(given)
            .when(UserAuthCommand::CompletePendingMfaReset)
            .then_expect_error(UserAuthError::NoPendingMfaReset);
    }

    #[test]
    fn after_a_reset_the_new_password_opens_an_attempt_and_the_old_one_fails() {
        let now = later(10);
        let mut given = enrolled();
        given.extend([reset_requested(11, now), password_reset(now)]);
        at(now)
            .given(given.clone())
            .when(UserAuthCommand::SubmitPassword {
                password: new_password().as_password().clone(),
                device: None,
            })
            .then_expect_events(vec![attempt_opened(1, now, SecondFactor::Totp)]);
        at(now)
            .given(given)
            .when(UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            })
            .then_expect_events(vec![E::PasswordRejected { at: now }]);
    }

    #[test]
    fn a_reset_voids_the_sign_in_attempt_and_the_link_mailed_for_it() {
        // Whoever holds the inbox must not finish a sign-in someone began
        // with the old password.
        let mut given = enrolled_with_attempt(t0());
        given.push(E::EmailLinkRequested {
            link: reference(8),
            attempt: reference(7),
            expires_at: t0() + Duration::minutes(15),
            at: t0(),
        });
        given.push(reset_requested(9, t0()));
        given.push(password_reset(t0()));
        at(later(1))
            .given(given.clone())
            .when(UserAuthCommand::UseEmailLink { link: reference(8) })
            .then_expect_error(UserAuthError::EmailLinkInvalid);
        at(later(1))
            .given(given)
            .when(UserAuthCommand::RequestEmailLink {
                attempt: reference(7),
            })
            .then_expect_error(UserAuthError::LoginAttemptInvalid);
    }

    #[test]
    fn a_reset_link_works_once() {
        let now = later(10);
        let mut given = enrolled();
        given.extend([reset_requested(11, now), password_reset(now)]);
        at(now)
            .given(given)
            .when(reset_with(11))
            .then_expect_error(UserAuthError::PasswordResetInvalid);
    }

    #[test]
    fn a_reset_link_expires_after_thirty_minutes() {
        let now = later(10);
        let mut given = enrolled();
        given.push(reset_requested(11, now));
        at(now + Duration::minutes(30))
            .given(given)
            .when(reset_with(11))
            .then_expect_error(UserAuthError::PasswordResetInvalid);
    }

    #[test]
    fn a_reset_link_dies_when_the_password_is_changed() {
        let now = later(10);
        let mut given = signed_in(now);
        given.extend([
            reset_requested(11, now),
            E::PasswordChanged {
                password_hash: sealed_hash("another quite long passphrase"),
                at: now,
            },
        ]);
        at(now)
            .given(given)
            .when(reset_with(11))
            .then_expect_error(UserAuthError::PasswordResetInvalid);
    }

    #[test]
    fn a_newer_reset_link_voids_older_ones() {
        let now = later(10);
        let mut given = enrolled();
        given.extend([reset_requested(11, now), reset_requested(12, now)]);
        at(now)
            .given(given.clone())
            .when(reset_with(11))
            .then_expect_error(UserAuthError::PasswordResetInvalid);
        at(now)
            .given(given)
            .when(reset_with(12))
            .then_expect_events(vec![password_reset(now)]);
    }

    #[test]
    fn a_reset_neither_unlocks_nor_lifts_a_throttle() {
        let now = later(10);
        let mut given = enrolled();
        given.extend([
            E::SignInThrottled {
                failures: 5,
                until: now + Duration::seconds(30),
                at: now,
            },
            E::AccountLocked {
                failures: 100,
                at: now,
            },
            reset_requested(11, now),
        ]);
        let events = events_of(at(now), given.clone(), reset_with(11));
        assert_eq!(events, vec![password_reset(now)]);
        given.extend(events);
        let state = folded(given.clone());
        assert!(state.locked);
        assert_eq!(state.throttled_at(now), Some(now + Duration::seconds(30)));
        at(now)
            .given(given)
            .when(UserAuthCommand::SubmitPassword {
                password: new_password().as_password().clone(),
                device: None,
            })
            .then_expect_error(UserAuthError::InvalidCredentials);
    }

    #[test]
    fn requesting_a_reset_says_whether_a_link_was_mailed() {
        let now = later(10);
        assert_eq!(
            decided(now, enrolled(), UserAuthCommand::RequestPasswordReset).verdict,
            Verdict::PasswordResetRequested { mailed: true }
        );
        let mut over_the_limit = enrolled();
        over_the_limit.extend((11..14).map(|link| reset_requested(link, now)));
        assert_eq!(
            decided(now, over_the_limit, UserAuthCommand::RequestPasswordReset).verdict,
            Verdict::PasswordResetRequested { mailed: false }
        );
    }

    #[test]
    fn a_reset_reports_how_many_sessions_ended() {
        let now = later(10);
        let mut given = signed_in(now);
        given.extend([
            session_started(9, SignInMethod::EmailLink, now),
            reset_requested(11, now),
        ]);
        assert_eq!(
            decided(now, given, reset_with(11)).verdict,
            Verdict::PasswordReset { sessions_ended: 2 }
        );
    }
}
