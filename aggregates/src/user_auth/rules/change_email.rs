//! Changing the address, which is how the account is recovered, so it takes
//! what changing the password takes: an `aal2` session, and the password
//! again unless that session is recent. The new address proves itself by a
//! link mailed to it; only the newest request counts, once, for a day. The
//! old address is then mailed a "this wasn't me" link that for a few days
//! puts it back and ends every session: whoever changed it held a session,
//! and the owner may have only their mailbox left.
use chrono::{DateTime, Utc};

use super::reauthentication::Reauthentication;
use super::Decision;
use crate::user_auth::{
    Decided, Email, MailedLink, Password, Reference, SealPurpose, SessionEndReason, UserAuth,
    UserAuthError as Error, UserAuthEvent as E, UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) async fn request_email_change(
        &self,
        session: Reference,
        password: Option<Password>,
        new_email: &Email,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if let Reauthentication::Failed(rejected) = self
            .reauthenticate_aal2(&session, password.as_ref(), s, now)
            .await?
        {
            return Ok(rejected);
        }
        let account = self.account.as_ref().ok_or(Error::SessionInvalid)?;
        // The address is stored sealed, and a new seal of the same address
        // differs from the old one, so only its plaintext can tell.
        let current = s.keeper.unseal(SealPurpose::Email, &account.email)?;
        if current == new_email.as_str().as_bytes() {
            return Err(Error::SameEmail);
        }
        // Each link goes to an address the requester chose: a few an hour,
        // so no account can mail whoever it likes.
        let window_start = now - s.policy.email_change_window;
        let recent: Vec<_> = self
            .email_change_requests
            .iter()
            .filter(|at| **at > window_start)
            .collect();
        if recent.len() >= s.policy.email_changes_per_window {
            let oldest = recent.iter().min().map_or(now, |at| **at);
            return Err(Error::Throttled {
                retry_after: oldest + s.policy.email_change_window,
            });
        }
        let link = s.randomness.reference();
        let expires_at = now + s.policy.email_change_ttl;
        Ok(Decided {
            events: vec![E::EmailChangeRequested {
                link,
                new_email: s
                    .keeper
                    .seal(SealPurpose::Email, new_email.as_str().as_bytes())?,
                expires_at,
                at: now,
            }],
            verdict: Verdict::EmailChangeRequested { link, expires_at },
        })
    }

    pub(in crate::user_auth) fn confirm_email_change(
        &self,
        link: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        // Refused like an unusable password reset link: a dead link says
        // neither whose it was nor why it died.
        if !self.mailed_link_live(MailedLink::EmailChange, &link, now, &s.policy) {
            return Err(Error::PasswordResetInvalid);
        }
        let (Some(account), Some(pending)) = (&self.account, &self.pending_email_change) else {
            return Err(Error::PasswordResetInvalid);
        };
        let from = account.email.clone();
        let to = pending.new_email.clone();
        let revert = s.randomness.reference();
        let revert_until = now + s.policy.email_change_revert_window;
        Ok(Decided {
            events: vec![E::EmailChanged {
                link,
                from: from.clone(),
                to: to.clone(),
                revert,
                revert_until,
                at: now,
            }],
            verdict: Verdict::EmailChanged {
                from,
                to,
                revert,
                revert_until,
            },
        })
    }

    pub(in crate::user_auth) fn revert_email_change(
        &self,
        revert: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if !self.mailed_link_live(MailedLink::EmailChangeRevert, &revert, now, &s.policy) {
            return Err(Error::PasswordResetInvalid);
        }
        let change = self
            .revertible_email_changes
            .iter()
            .find(|change| change.revert == revert);
        let (Some(account), Some(change)) = (&self.account, change) else {
            return Err(Error::PasswordResetInvalid);
        };
        let restored = change.from.clone();
        let mut events = vec![E::EmailChangeReverted {
            revert,
            restored: restored.clone(),
            at: now,
        }];
        // Whoever changed the address did it from a session; any session
        // may be theirs.
        let ended = self.end_sessions(SessionEndReason::EmailChangeReverted, None, s, now);
        let sessions_ended = ended.len();
        events.extend(ended);
        Ok(Decided {
            events,
            verdict: Verdict::EmailChangeReverted {
                restored,
                replaced: account.email.clone(),
                sessions_ended,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    const ALICE: &str = "alice@example.com";
    const BOB: &str = "bob@example.com";
    const CAROL: &str = "carol@example.com";

    fn request(address: &str, password: Option<Password>) -> UserAuthCommand {
        UserAuthCommand::RequestEmailChange {
            session: reference(8),
            password,
            new_email: Email::parse(address).unwrap(),
        }
    }

    fn requested(link: u64, address: &str, at: DateTime<Utc>) -> UserAuthEvent {
        E::EmailChangeRequested {
            link: reference(link),
            new_email: sealed_email(address),
            expires_at: at + Duration::hours(24),
            at,
        }
    }

    fn changed(link: u64, from: &str, to: &str, revert: u64, at: DateTime<Utc>) -> UserAuthEvent {
        E::EmailChanged {
            link: reference(link),
            from: sealed_email(from),
            to: sealed_email(to),
            revert: reference(revert),
            revert_until: at + Duration::hours(72),
            at,
        }
    }

    fn confirm(link: u64) -> UserAuthCommand {
        UserAuthCommand::ConfirmEmailChange {
            link: reference(link),
        }
    }

    fn revert(link: u64) -> UserAuthCommand {
        UserAuthCommand::RevertEmailChange {
            revert: reference(link),
        }
    }

    /// Signed in with session 8 at `now`, still active at `when`.
    fn signed_in_until(now: DateTime<Utc>, when: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = signed_in(now);
        events.push(E::SessionActive {
            session: reference(8),
            at: when,
        });
        events
    }

    /// Signed in at `now`, the change to bob's address asked with link 21.
    fn change_pending(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = signed_in(now);
        events.push(requested(21, BOB, now));
        events
    }

    /// Signed in at `now` with sessions 8 and 9, the address changed to
    /// bob's with revert link 31.
    fn changed_to_bob(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = change_pending(now);
        events.extend([
            session_started(9, SignInMethod::Totp, now),
            changed(21, ALICE, BOB, 31, now),
        ]);
        events
    }

    fn address(given: Vec<UserAuthEvent>) -> Sealed {
        folded(given).profile().unwrap().email
    }

    #[test]
    fn a_fresh_aal2_session_asks_for_a_new_address_and_a_link_goes_to_it() {
        let now = later(10);
        let when = now + Duration::minutes(10);
        at(when)
            .given(signed_in(now))
            .when(request(BOB, None))
            .then_expect_events(vec![requested(1, BOB, when)]);
    }

    #[test]
    fn an_old_aal2_session_asks_for_a_new_address_only_with_the_password() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let given = signed_in_until(now, when);
        at(when)
            .given(given.clone())
            .when(request(BOB, None))
            .then_expect_error(UserAuthError::ReauthenticationRequired);
        at(when)
            .given(given.clone())
            .when(request(BOB, Some(wrong_password())))
            .then_expect_events(vec![E::PasswordRejected { at: when }]);
        at(when)
            .given(given)
            .when(request(BOB, Some(password())))
            .then_expect_events(vec![requested(1, BOB, when)]);
    }

    #[test]
    fn an_aal1_session_cannot_change_the_address_even_with_the_password() {
        let now = later(10);
        let mut given = enrolled();
        given.push(session_started(8, SignInMethod::EmailLink, now));
        at(now)
            .given(given)
            .when(request(BOB, Some(password())))
            .then_expect_error(UserAuthError::SecondFactorRequired);
    }

    #[test]
    fn an_ended_session_cannot_change_the_address() {
        let now = later(10);
        at(now + Duration::hours(1))
            .given(signed_in(now))
            .when(request(BOB, Some(password())))
            .then_expect_error(UserAuthError::SessionInvalid);
    }

    #[test]
    fn a_fourth_new_address_within_the_hour_waits_until_the_first_leaves_it() {
        let now = later(10);
        let mut given = signed_in_until(now, now + Duration::minutes(61));
        given.extend([
            requested(1, BOB, now),
            requested(2, BOB, now + Duration::minutes(1)),
            requested(3, BOB, now + Duration::minutes(2)),
        ]);
        let when = now + Duration::minutes(3);
        at(when)
            .given(given.clone())
            .when(request(BOB, None))
            .then_expect_error(UserAuthError::Throttled {
                retry_after: now + Duration::hours(1),
            });
        at(now + Duration::minutes(61))
            .given(given)
            .when(request(BOB, Some(password())))
            .then_expect_events(vec![requested(1, BOB, now + Duration::minutes(61))]);
    }

    #[test]
    fn the_current_address_however_written_is_refused_as_the_new_one() {
        let now = later(10);
        at(now)
            .given(signed_in(now))
            .when(request(" Alice@EXAMPLE.com", None))
            .then_expect_error(UserAuthError::SameEmail);
    }

    #[test]
    fn opening_the_link_changes_the_address_and_a_revert_link_goes_to_the_old_one() {
        let now = later(10);
        let when = now + Duration::hours(2);
        let events = events_of(at(when), change_pending(now), confirm(21));
        assert_eq!(events, vec![changed(21, ALICE, BOB, 1, when)]);
        let mut given = change_pending(now);
        given.extend(events);
        assert_eq!(address(given), sealed_email(BOB));
    }

    #[test]
    fn a_confirmation_link_works_once_for_a_day_and_only_the_newest() {
        let now = later(10);
        let mut confirmed = change_pending(now);
        confirmed.push(changed(21, ALICE, BOB, 31, now));
        let mut superseded = change_pending(now);
        superseded.push(requested(22, CAROL, now));
        for (given, link, when) in [
            (change_pending(now), 21, now + Duration::hours(24)),
            (change_pending(now), 99, now),
            (confirmed, 21, now),
            (superseded.clone(), 21, now),
            (signed_in(now), 21, now),
        ] {
            at(when)
                .given(given)
                .when(confirm(link))
                .then_expect_error(UserAuthError::PasswordResetInvalid);
        }
        let events = events_of(at(now), superseded, confirm(22));
        assert_eq!(events, vec![changed(22, ALICE, CAROL, 1, now)]);
    }

    #[test]
    fn a_new_password_voids_a_change_asked_for_before_it() {
        let now = later(10);
        let mut given = change_pending(now);
        given.push(E::PasswordChanged {
            password_hash: sealed_hash(NEW_PASSWORD),
            at: now,
        });
        at(now)
            .given(given)
            .when(confirm(21))
            .then_expect_error(UserAuthError::PasswordResetInvalid);
    }

    #[test]
    fn a_changed_address_voids_the_sign_in_and_reset_links_mailed_to_the_old_one() {
        let now = later(10);
        let mut given = change_pending(now);
        given.extend([
            attempt_opened(7, now, SecondFactor::Totp),
            E::EmailLinkRequested {
                link: reference(11),
                attempt: reference(7),
                expires_at: now + Duration::minutes(15),
                at: now,
            },
            E::PasswordResetRequested {
                link: reference(12),
                expires_at: now + Duration::minutes(30),
                at: now,
            },
            changed(21, ALICE, BOB, 31, now),
        ]);
        at(now)
            .given(given.clone())
            .when(UserAuthCommand::UseEmailLink {
                link: reference(11),
            })
            .then_expect_error(UserAuthError::EmailLinkInvalid);
        at(now)
            .given(given)
            .when(UserAuthCommand::ResetPassword {
                link: reference(12),
                password: new_password(),
            })
            .then_expect_error(UserAuthError::PasswordResetInvalid);
    }

    #[test]
    fn the_revert_link_restores_the_old_address_and_ends_every_session() {
        let now = later(10);
        let when = now + Duration::hours(1);
        let mut given = changed_to_bob(now);
        given.push(E::SessionActive {
            session: reference(8),
            at: when,
        });
        let ended = |session| E::SessionEnded {
            session: reference(session),
            reason: SessionEndReason::EmailChangeReverted,
            at: when,
        };
        let events = events_of(at(when), given.clone(), revert(31));
        assert_eq!(
            events,
            vec![
                E::EmailChangeReverted {
                    revert: reference(31),
                    restored: sealed_email(ALICE),
                    at: when,
                },
                ended(8),
            ],
            "session 9 idled out on its own"
        );
        given.extend(events);
        assert_eq!(address(given), sealed_email(ALICE));
    }

    #[test]
    fn a_revert_link_works_once_and_for_three_days() {
        let now = later(10);
        let mut reverted = changed_to_bob(now);
        reverted.push(E::EmailChangeReverted {
            revert: reference(31),
            restored: sealed_email(ALICE),
            at: now,
        });
        for (given, link, when) in [
            (changed_to_bob(now), 31, now + Duration::hours(72)),
            (changed_to_bob(now), 32, now),
            (reverted, 31, now),
            (signed_in(now), 31, now),
        ] {
            at(when)
                .given(given)
                .when(revert(link))
                .then_expect_error(UserAuthError::PasswordResetInvalid);
        }
        let events = events_of(
            at(now + Duration::hours(71)),
            changed_to_bob(now),
            revert(31),
        );
        assert!(matches!(events[0], E::EmailChangeReverted { .. }));
    }

    #[test]
    fn reverting_a_change_voids_the_revert_links_of_the_changes_after_it() {
        let now = later(10);
        let mut given = changed_to_bob(now);
        given.extend([requested(22, CAROL, now), changed(22, BOB, CAROL, 32, now)]);
        let mut first_reverted = given.clone();
        first_reverted.extend(events_of(at(now), given.clone(), revert(31)));
        assert_eq!(address(first_reverted.clone()), sealed_email(ALICE));
        at(now)
            .given(first_reverted)
            .when(revert(32))
            .then_expect_error(UserAuthError::PasswordResetInvalid);
        // Undone from the latest, each change gives back its own address.
        let mut last_reverted = given.clone();
        last_reverted.extend(events_of(at(now), given, revert(32)));
        assert_eq!(address(last_reverted.clone()), sealed_email(BOB));
        let events = events_of(at(now), last_reverted, revert(31));
        assert_eq!(
            events[0],
            E::EmailChangeReverted {
                revert: reference(31),
                restored: sealed_email(ALICE),
                at: now,
            }
        );
    }

    #[test]
    fn a_revert_voids_what_was_mailed_to_the_address_given_up() {
        let now = later(10);
        let mut given = changed_to_bob(now);
        given.push(requested(22, CAROL, now));
        given.push(E::EmailChangeReverted {
            revert: reference(31),
            restored: sealed_email(ALICE),
            at: now,
        });
        at(now)
            .given(given)
            .when(confirm(22))
            .then_expect_error(UserAuthError::PasswordResetInvalid);
    }

    #[test]
    fn asking_for_a_new_address_names_the_link_and_its_expiry() {
        let now = later(10);
        assert_eq!(
            decided(now, signed_in(now), request(BOB, None)).verdict,
            Verdict::EmailChangeRequested {
                link: reference(1),
                expires_at: now + Duration::hours(24),
            }
        );
    }

    #[test]
    fn a_confirmed_change_names_both_addresses_and_the_revert_link() {
        let now = later(10);
        assert_eq!(
            decided(now, change_pending(now), confirm(21)).verdict,
            Verdict::EmailChanged {
                from: sealed_email(ALICE),
                to: sealed_email(BOB),
                revert: reference(1),
                revert_until: now + Duration::hours(72),
            }
        );
    }

    #[test]
    fn a_revert_names_the_address_restored_the_one_given_up_and_the_sessions_ended() {
        let now = later(10);
        assert_eq!(
            decided(now, changed_to_bob(now), revert(31)).verdict,
            Verdict::EmailChangeReverted {
                restored: sealed_email(ALICE),
                replaced: sealed_email(BOB),
                sessions_ended: 2,
            }
        );
    }
}
