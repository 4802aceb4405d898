//! Whether a mailed link can still be used. Pages name the account only for
//! such a link, so a dead or forged one tells nobody whose it was; the rule
//! that redeems a link asks the same question, so the two cannot disagree.
use chrono::{DateTime, Utc};

use super::reference::Reference;
use super::services::Policy;
use super::services::Sealed;
use super::state::UserAuth;

/// The kinds of link mailed to an account's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailedLink {
    /// Finishes the sign-in it was asked from (`UseEmailLink`).
    SignIn,
    /// Confirms the address after registration (`VerifyEmail`).
    Verification,
    /// Sets a forgotten password (`ResetPassword`).
    PasswordReset,
    /// "This wasn't me" for a pending MFA reset (`DenyMfaReset`).
    ResetDenial,
    /// Confirms a new address, mailed to it (`ConfirmEmailChange`).
    EmailChange,
    /// "This wasn't me" for a change of address, mailed to the old one
    /// (`RevertEmailChange`).
    EmailChangeRevert,
    /// "This wasn't me" for a sign-in from a new device (`ReportActivity`).
    Report,
}

impl UserAuth {
    /// Whether the link of `kind` named by `reference` can still be used at `now`.
    pub fn mailed_link_live(
        &self,
        kind: MailedLink,
        reference: &Reference,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> bool {
        match kind {
            // Only the newest link counts, once, and only while the attempt
            // it was asked from can still take a second factor; that
            // attempt's own few minutes do not apply, the link has its own.
            MailedLink::SignIn => self.email_link.as_ref().is_some_and(|link| {
                &link.reference == reference
                    && !link.used
                    && now < link.expires_at
                    && self.attempt.as_ref().is_some_and(|attempt| {
                        attempt.reference == link.attempt
                            && attempt.failures < policy.second_factor_tries
                    })
            }),
            MailedLink::Verification => self
                .verification_link
                .as_ref()
                .is_some_and(|link| &link.reference == reference && now < link.expires_at),
            // Without an authenticator the mailbox alone would own the
            // account after a reset.
            MailedLink::PasswordReset => {
                self.is_enrolled()
                    && self
                        .password_reset_link
                        .as_ref()
                        .is_some_and(|link| &link.reference == reference && now < link.expires_at)
            }
            MailedLink::ResetDenial => self
                .pending_mfa_reset
                .as_ref()
                .is_some_and(|pending| &pending.denial == reference),
            MailedLink::EmailChange => self
                .pending_email_change
                .as_ref()
                .is_some_and(|pending| &pending.link == reference && now < pending.expires_at),
            MailedLink::EmailChangeRevert => self
                .revertible_email_changes
                .iter()
                .any(|change| &change.revert == reference && now < change.until),
            MailedLink::Report => self
                .report_link(reference)
                .is_some_and(|link| !link.used && now < link.until),
        }
    }

    /// The address a live link is about, for its page: the one it would
    /// confirm or restore, else the account's own.
    pub fn mailed_link_address(
        &self,
        kind: MailedLink,
        reference: &Reference,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Option<&Sealed> {
        if self.erased || !self.mailed_link_live(kind, reference, now, policy) {
            return None;
        }
        match kind {
            MailedLink::EmailChange => self
                .pending_email_change
                .as_ref()
                .map(|pending| &pending.new_email),
            MailedLink::EmailChangeRevert => self
                .revertible_email_changes
                .iter()
                .find(|change| &change.revert == reference)
                .map(|change| &change.from),
            _ => self.account.as_ref().map(|account| &account.email),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MailedLink;
    use crate::user_auth::testing::*;

    fn live(given: Vec<UserAuthEvent>, kind: MailedLink, link: u64, now: DateTime<Utc>) -> bool {
        folded(given).mailed_link_live(kind, &reference(link), now, &policy())
    }

    /// Enrolled, with sign-in link 11 mailed at `now` for attempt 7.
    fn sign_in_link_mailed(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = enrolled_with_attempt(now);
        events.push(E::EmailLinkRequested {
            link: reference(11),
            attempt: reference(7),
            expires_at: now + Duration::minutes(15),
            at: now,
        });
        events
    }

    #[test]
    fn a_sign_in_link_is_live_until_used_or_expired_while_its_attempt_can_take_it() {
        use MailedLink::SignIn;
        let now = later(10);
        let mailed = sign_in_link_mailed(now);
        assert!(live(mailed.clone(), SignIn, 11, now));
        assert!(
            live(mailed.clone(), SignIn, 11, now + Duration::minutes(14)),
            "the attempt's five minutes do not bind the link"
        );
        assert!(!live(
            mailed.clone(),
            SignIn,
            11,
            now + Duration::minutes(15)
        ));
        assert!(!live(mailed.clone(), SignIn, 12, now));
        let mut used = mailed.clone();
        used.push(E::EmailLinkUsed {
            link: reference(11),
            at: now,
        });
        assert!(!live(used, SignIn, 11, now));
        let mut tried_out = mailed.clone();
        tried_out.extend((0..5).map(|_| E::TotpRejected {
            attempt: reference(7),
            reason: TotpRejection::WrongCode,
            enrolling: false,
            at: now,
        }));
        assert!(!live(tried_out, SignIn, 11, now));
        let mut newer_attempt = mailed;
        newer_attempt.push(attempt_opened(8, now, SecondFactor::Totp));
        assert!(!live(newer_attempt, SignIn, 11, now));
    }

    #[test]
    fn a_sign_in_link_dies_with_the_password_it_was_asked_with() {
        let now = later(10);
        let mut given = sign_in_link_mailed(now);
        given.extend([
            E::PasswordResetRequested {
                link: reference(12),
                expires_at: now + Duration::minutes(30),
                at: now,
            },
            E::PasswordReset {
                password_hash: sealed_hash(NEW_PASSWORD),
                at: now,
            },
        ]);
        assert!(!live(given, MailedLink::SignIn, 11, now));
    }

    #[test]
    fn a_verification_link_is_live_for_a_day_until_the_address_is_confirmed() {
        use MailedLink::Verification;
        assert!(live(unverified(), Verification, 50, later(30)));
        assert!(!live(unverified(), Verification, 51, later(30)));
        assert!(!live(
            unverified(),
            Verification,
            50,
            t0() + Duration::hours(24)
        ));
        let mut confirmed = unverified();
        confirmed.push(E::EmailVerified { at: later(1) });
        assert!(!live(confirmed, Verification, 50, later(30)));
        let mut replaced = unverified();
        replaced.extend(registered());
        replaced.push(verification_requested(52, later(1)));
        assert!(!live(replaced.clone(), Verification, 50, later(30)));
        assert!(live(replaced, Verification, 52, later(30)));
    }

    #[test]
    fn a_password_reset_link_is_live_for_half_an_hour_once_and_only_with_an_authenticator() {
        use MailedLink::PasswordReset;
        let now = later(10);
        let requested = |link| E::PasswordResetRequested {
            link: reference(link),
            expires_at: now + Duration::minutes(30),
            at: now,
        };
        let mut mailed = enrolled();
        mailed.push(requested(11));
        assert!(live(mailed.clone(), PasswordReset, 11, now));
        assert!(!live(mailed.clone(), PasswordReset, 12, now));
        assert!(!live(
            mailed.clone(),
            PasswordReset,
            11,
            now + Duration::minutes(30)
        ));
        let mut newer = mailed.clone();
        newer.push(requested(12));
        assert!(!live(newer, PasswordReset, 11, now));
        let mut used = mailed.clone();
        used.push(E::PasswordReset {
            password_hash: sealed_hash(NEW_PASSWORD),
            at: now,
        });
        assert!(!live(used, PasswordReset, 11, now));
        let mut without_authenticator = mailed;
        without_authenticator.push(E::MfaReset {
            actor: Actor::Admin,
            reason: Some(sealed_text("lost phone, identity checked")),
            at: now,
        });
        assert!(!live(without_authenticator, PasswordReset, 11, now));
        let mut never_enrolled = registered();
        never_enrolled.push(requested(11));
        assert!(!live(never_enrolled, PasswordReset, 11, now));
    }

    #[test]
    fn a_denial_link_is_live_while_its_reset_waits() {
        use MailedLink::ResetDenial;
        let now = later(10);
        let mut pending = enrolled();
        pending.extend([
            session_started(8, SignInMethod::EmailLink, now),
            E::MfaResetRequested {
                effective_at: now + Duration::hours(24),
                denial: reference(30),
                at: now,
            },
        ]);
        assert!(live(pending.clone(), ResetDenial, 30, now));
        assert!(live(
            pending.clone(),
            ResetDenial,
            30,
            now + Duration::hours(25)
        ));
        assert!(!live(pending.clone(), ResetDenial, 31, now));
        let mut cancelled = pending.clone();
        cancelled.push(E::MfaResetCancelled {
            reason: ResetCancellation::CancelledByUser,
            at: now,
        });
        assert!(!live(cancelled, ResetDenial, 30, now));
        let mut completed = pending;
        completed.push(E::MfaReset {
            actor: Actor::User,
            reason: None,
            at: now + Duration::hours(24),
        });
        assert!(!live(completed, ResetDenial, 30, now + Duration::hours(24)));
    }

    #[test]
    fn an_email_change_link_is_live_for_a_day_until_used_or_replaced() {
        use MailedLink::EmailChange;
        let now = later(10);
        let requested = |link, address: &str| E::EmailChangeRequested {
            link: reference(link),
            new_email: sealed_email(address),
            expires_at: now + Duration::hours(24),
            at: now,
        };
        let mut mailed = signed_in(now);
        mailed.push(requested(21, "bob@example.com"));
        assert!(live(mailed.clone(), EmailChange, 21, now));
        assert!(!live(mailed.clone(), EmailChange, 22, now));
        assert!(!live(
            mailed.clone(),
            EmailChange,
            21,
            now + Duration::hours(24)
        ));
        let mut replaced = mailed.clone();
        replaced.push(requested(22, "carol@example.com"));
        assert!(!live(replaced, EmailChange, 21, now));
        let mut used = mailed;
        used.push(E::EmailChanged {
            link: reference(21),
            from: sealed_email("alice@example.com"),
            to: sealed_email("bob@example.com"),
            revert: reference(31),
            revert_until: now + Duration::hours(72),
            at: now,
        });
        assert!(!live(used, EmailChange, 21, now));
    }

    #[test]
    fn a_revert_link_is_live_for_three_days_until_used() {
        use MailedLink::EmailChangeRevert;
        let now = later(10);
        let mut changed = signed_in(now);
        changed.push(E::EmailChanged {
            link: reference(21),
            from: sealed_email("alice@example.com"),
            to: sealed_email("bob@example.com"),
            revert: reference(31),
            revert_until: now + Duration::hours(72),
            at: now,
        });
        assert!(live(changed.clone(), EmailChangeRevert, 31, now));
        assert!(live(
            changed.clone(),
            EmailChangeRevert,
            31,
            now + Duration::hours(71)
        ));
        assert!(!live(
            changed.clone(),
            EmailChangeRevert,
            31,
            now + Duration::hours(72)
        ));
        assert!(!live(changed.clone(), EmailChangeRevert, 21, now));
        let mut used = changed;
        used.push(E::EmailChangeReverted {
            revert: reference(31),
            restored: sealed_email("alice@example.com"),
            at: now,
        });
        assert!(!live(used, EmailChangeRevert, 31, now));
    }
}
