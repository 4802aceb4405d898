//! The user's MFA reset: from a session started in the last few minutes, or
//! with the password again. It forgets the authenticator and recovery code
//! and ends every session at once; the next sign-in enrolls anew.
//!
//! Asked from an `aal1` session, which proved only the password and the
//! mailbox, it waits a while instead: the owner is mailed a "this wasn't me"
//! link, and a sign-in with the authenticator or recovery code, the user
//! or that link can call it off, as do a password reset by email and any
//! recorded failure. Called off by the user or a sign-in with a device, it
//! ends the sessions won by email link, from which it may have been asked.
//! A background sweeper completes it when due.
use chrono::{DateTime, Duration, Utc};

use super::reauthentication::Reauthentication;
use super::Decision;
use crate::user_auth::{
    Actor, Assurance, Decided, MailedLink, Password, Reference, ResetCancellation, Sealed,
    SessionEndReason, UserAuth, UserAuthError as Error, UserAuthEvent as E, UserAuthServices,
    Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) async fn reset_mfa(
        &self,
        session: Reference,
        password: Option<Password>,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        let aal = self
            .live_session(&session, now, &s.policy)
            .ok_or(Error::SessionInvalid)?
            .aal;
        let fresh = !self.reauthentication_required(&session, now, &s.policy);
        if let Reauthentication::Failed(rejected) = self
            .reauthenticate(fresh, password.as_ref(), s, now)
            .await?
        {
            return Ok(rejected);
        }
        let delay = s.policy.aal1_mfa_reset_delay;
        if aal == Assurance::Aal1 && delay > Duration::zero() {
            return Ok(self.request_mfa_reset(delay, s, now));
        }
        Ok(self.mfa_reset(Actor::User, None, s, now))
    }

    fn request_mfa_reset(
        &self,
        delay: Duration,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decided {
        // Asking again neither restarts the wait nor mails another notice.
        if let Some(effective_at) = self.pending_mfa_reset() {
            return Decided {
                events: vec![],
                verdict: Verdict::MfaResetPending { effective_at },
            };
        }
        let effective_at = now + delay;
        Decided {
            events: vec![E::MfaResetRequested {
                effective_at,
                denial: s.randomness.reference(),
                at: now,
            }],
            verdict: Verdict::MfaResetPending { effective_at },
        }
    }

    pub(in crate::user_auth) fn cancel_mfa_reset(
        &self,
        session: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.live_session(&session, now, &s.policy)
            .ok_or(Error::SessionInvalid)?;
        self.pending_mfa_reset
            .as_ref()
            .ok_or(Error::NoPendingMfaReset)?;
        let mut events = vec![E::MfaResetCancelled {
            reason: ResetCancellation::CancelledByUser,
            at: now,
        }];
        // Whoever asked from an email-link session must sign in again to
        // ask again; if that is the one cancelling, it is signed out too.
        let ended = self.end_aal1_sessions(SessionEndReason::ResetCancelled, s, now);
        let sessions_ended = ended.len();
        events.extend(ended);
        Ok(Decided {
            events,
            verdict: Verdict::MfaResetCancelled { sessions_ended },
        })
    }

    pub(in crate::user_auth) fn deny_mfa_reset(
        &self,
        link: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if !self.mailed_link_live(MailedLink::ResetDenial, &link, now, &s.policy) {
            return Err(Error::MfaResetDenialInvalid);
        }
        let mut events = vec![E::MfaResetCancelled {
            reason: ResetCancellation::DeniedByLink,
            at: now,
        }];
        // Someone else asked from a session with the owner's password and
        // mailbox: every session may be theirs.
        let ended = self.end_sessions(SessionEndReason::ResetDenied, None, s, now);
        let sessions_ended = ended.len();
        events.extend(ended);
        Ok(Decided {
            events,
            verdict: Verdict::MfaResetCancelled { sessions_ended },
        })
    }

    pub(in crate::user_auth) fn complete_pending_mfa_reset(
        &self,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        let effective_at = self.pending_mfa_reset().ok_or(Error::NoPendingMfaReset)?;
        if now < effective_at {
            return Err(Error::MfaResetNotDue);
        }
        Ok(self.mfa_reset(Actor::User, None, s, now))
    }

    /// The reset itself, by whoever asked: the authenticator is forgotten
    /// and every live session ends with it.
    pub(super) fn mfa_reset(
        &self,
        actor: Actor,
        reason: Option<Sealed>,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decided {
        let ended = self.end_sessions(SessionEndReason::MfaReset, None, s, now);
        let sessions_ended = ended.len();
        let mut events = vec![E::MfaReset {
            actor,
            reason,
            at: now,
        }];
        events.extend(ended);
        Decided {
            events,
            verdict: Verdict::MfaReset { sessions_ended },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    #[test]
    fn a_session_needs_the_password_again_once_fifteen_minutes_have_passed_since_it_started() {
        let start = later(10);
        let state = folded(signed_in(start));
        let policy = policy();
        let fresh = start + Duration::minutes(15);
        let stale = start + Duration::minutes(16);
        assert!(!state.reauthentication_required(&reference(8), fresh, &policy));
        assert!(state.reauthentication_required(&reference(8), stale, &policy));
        assert!(
            state.reauthentication_required(&reference(99), fresh, &policy),
            "an unknown session proves nothing"
        );
    }

    #[test]
    fn resetting_mfa_in_a_fresh_session_forgets_the_authenticator_and_ends_every_session() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(session_started(9, SignInMethod::Totp, now));
        at(now + Duration::minutes(14))
            .given(given)
            .when(UserAuthCommand::ResetMfa {
                session: reference(8),
                password: None,
            })
            .then_expect_events(vec![
                E::MfaReset {
                    actor: Actor::User,
                    reason: None,
                    at: now + Duration::minutes(14),
                },
                E::SessionEnded {
                    session: reference(8),
                    reason: SessionEndReason::MfaReset,
                    at: now + Duration::minutes(14),
                },
                E::SessionEnded {
                    session: reference(9),
                    reason: SessionEndReason::MfaReset,
                    at: now + Duration::minutes(14),
                },
            ]);
    }

    #[test]
    fn resetting_mfa_without_a_fresh_session_or_the_password_is_refused() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(E::SessionActive {
            session: reference(8),
            at: now + Duration::minutes(20),
        });
        at(now + Duration::minutes(20))
            .given(given)
            .when(UserAuthCommand::ResetMfa {
                session: reference(8),
                password: None,
            })
            .then_expect_error(UserAuthError::ReauthenticationRequired);
    }

    #[test]
    fn resetting_mfa_in_an_old_session_works_with_the_password() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut given = signed_in(now);
        given.push(E::SessionActive {
            session: reference(8),
            at: when,
        });
        let events = events_of(
            at(when),
            given,
            UserAuthCommand::ResetMfa {
                session: reference(8),
                password: Some(password()),
            },
        );
        assert!(matches!(
            events.as_slice(),
            [E::MfaReset { .. }, E::SessionEnded { .. }]
        ));
    }

    #[test]
    fn a_wrong_password_at_reset_is_a_failure_and_resets_nothing() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut given = signed_in(now);
        given.push(E::SessionActive {
            session: reference(8),
            at: when,
        });
        at(when)
            .given(given)
            .when(UserAuthCommand::ResetMfa {
                session: reference(8),
                password: Some(wrong_password()),
            })
            .then_expect_events(vec![E::PasswordRejected { at: when }]);
    }

    #[test]
    fn after_a_reset_the_next_sign_in_must_enroll() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(E::MfaReset {
            actor: Actor::User,
            reason: None,
            at: now,
        });
        at(now)
            .given(given)
            .when(UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            })
            .then_expect_events(vec![attempt_opened(1, now, SecondFactor::Enroll)]);
    }

    #[test]
    fn after_a_reset_the_old_recovery_code_is_gone() {
        let now = later(10);
        let mut given = signed_in(now);
        given.extend([
            E::MfaReset {
                actor: Actor::User,
                reason: None,
                at: now,
            },
            attempt_opened(9, now, SecondFactor::Enroll),
        ]);
        at(now)
            .given(given)
            .when(UserAuthCommand::UseRecoveryCode {
                attempt: reference(9),
                code: recovery(1),
                replacement: recovery(2),
            })
            .then_expect_error(UserAuthError::EnrollmentRequired);
    }

    const DAY: Duration = Duration::hours(24);

    fn reset(session: u64, password: Option<Password>) -> UserAuthCommand {
        UserAuthCommand::ResetMfa {
            session: reference(session),
            password,
        }
    }

    /// Enrolled, signed in with an email link as session 8 at `now`.
    fn signed_in_by_email(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = enrolled();
        events.push(session_started(8, SignInMethod::EmailLink, now));
        events
    }

    fn reset_requested(now: DateTime<Utc>) -> UserAuthEvent {
        E::MfaResetRequested {
            effective_at: now + DAY,
            denial: reference(30),
            at: now,
        }
    }

    /// Signed in by email at `now`, which asked for a reset at once.
    fn reset_pending(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = signed_in_by_email(now);
        events.push(reset_requested(now));
        events
    }

    fn cancelled(reason: ResetCancellation, at: DateTime<Utc>) -> UserAuthEvent {
        E::MfaResetCancelled { reason, at }
    }

    #[test]
    fn a_reset_from_an_aal1_session_waits_a_day() {
        let now = later(10);
        let when = now + Duration::minutes(5);
        at(when)
            .given(signed_in_by_email(now))
            .when(reset(8, None))
            .then_expect_events(vec![E::MfaResetRequested {
                effective_at: when + DAY,
                denial: reference(1),
                at: when,
            }]);
    }

    #[test]
    fn an_old_aal1_session_needs_the_password_before_a_reset_waits() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut given = signed_in_by_email(now);
        given.push(E::SessionActive {
            session: reference(8),
            at: when,
        });
        at(when)
            .given(given.clone())
            .when(reset(8, None))
            .then_expect_error(UserAuthError::ReauthenticationRequired);
        at(when)
            .given(given)
            .when(reset(8, Some(password())))
            .then_expect_events(vec![E::MfaResetRequested {
                effective_at: when + DAY,
                denial: reference(1),
                at: when,
            }]);
    }

    #[test]
    fn a_second_request_while_a_reset_waits_records_nothing() {
        let now = later(10);
        let given = reset_pending(now);
        at(now + Duration::minutes(5))
            .given(given.clone())
            .when(reset(8, None))
            .then_expect_events(vec![]);
        assert_eq!(
            decided(now + Duration::minutes(5), given, reset(8, None)).verdict,
            Verdict::MfaResetPending {
                effective_at: now + DAY
            }
        );
    }

    #[test]
    fn with_no_delay_configured_a_reset_from_an_aal1_session_is_immediate() {
        let now = later(10);
        let services = UserAuthServices {
            policy: Policy {
                aal1_mfa_reset_delay: Duration::zero(),
                ..policy()
            },
            ..services_at(now)
        };
        Framework::with(services)
            .given(signed_in_by_email(now))
            .when(reset(8, None))
            .then_expect_events(vec![
                E::MfaReset {
                    actor: Actor::User,
                    reason: None,
                    at: now,
                },
                E::SessionEnded {
                    session: reference(8),
                    reason: SessionEndReason::MfaReset,
                    at: now,
                },
            ]);
    }

    #[test]
    fn a_due_reset_is_completed_and_ends_every_session() {
        let now = later(10);
        let due = now + DAY;
        let mut given = reset_pending(now);
        given.push(session_started(9, SignInMethod::EmailLink, due));
        at(due)
            .given(given)
            .when(UserAuthCommand::CompletePendingMfaReset)
            .then_expect_events(vec![
                E::MfaReset {
                    actor: Actor::User,
                    reason: None,
                    at: due,
                },
                E::SessionEnded {
                    session: reference(9),
                    reason: SessionEndReason::MfaReset,
                    at: due,
                },
            ]);
    }

    #[test]
    fn a_reset_is_not_completed_before_it_is_due() {
        let now = later(10);
        at(now + DAY - Duration::seconds(1))
            .given(reset_pending(now))
            .when(UserAuthCommand::CompletePendingMfaReset)
            .then_expect_error(UserAuthError::MfaResetNotDue);
    }

    #[test]
    fn there_is_nothing_to_complete_without_a_pending_reset() {
        at(later(10) + DAY)
            .given(signed_in_by_email(later(10)))
            .when(UserAuthCommand::CompletePendingMfaReset)
            .then_expect_error(UserAuthError::NoPendingMfaReset);
    }

    fn cancel_from(session: u64) -> UserAuthCommand {
        UserAuthCommand::CancelMfaReset {
            session: reference(session),
        }
    }

    fn ended_by_cancellation(session: u64, at: DateTime<Utc>) -> UserAuthEvent {
        E::SessionEnded {
            session: reference(session),
            reason: SessionEndReason::ResetCancelled,
            at,
        }
    }

    #[test]
    fn the_user_cancels_a_pending_reset_and_the_email_link_sessions_end() {
        let now = later(10);
        let mut given = reset_pending(now);
        given.push(session_started(9, SignInMethod::Totp, now));
        let events = events_of(at(now), given.clone(), cancel_from(9));
        assert_eq!(
            events,
            vec![
                cancelled(ResetCancellation::CancelledByUser, now),
                ended_by_cancellation(8, now),
            ]
        );
        given.extend(events);
        at(now + DAY)
            .given(given.clone())
            .when(UserAuthCommand::CompletePendingMfaReset)
            .then_expect_error(UserAuthError::NoPendingMfaReset);
        at(now)
            .given(given.clone())
            .when(cancel_from(9))
            .then_expect_error(UserAuthError::NoPendingMfaReset);
        at(now)
            .given(given)
            .when(reset(8, None))
            .then_expect_error(UserAuthError::SessionInvalid);
    }

    #[test]
    fn cancelling_from_an_email_link_session_signs_it_out() {
        let now = later(10);
        at(now)
            .given(reset_pending(now))
            .when(cancel_from(8))
            .then_expect_events(vec![
                cancelled(ResetCancellation::CancelledByUser, now),
                ended_by_cancellation(8, now),
            ]);
    }

    #[test]
    fn only_a_live_session_cancels_a_pending_reset() {
        let now = later(10);
        at(now + Duration::hours(1))
            .given(reset_pending(now))
            .when(UserAuthCommand::CancelMfaReset {
                session: reference(8),
            })
            .then_expect_error(UserAuthError::SessionInvalid);
    }

    #[test]
    fn the_denial_link_cancels_a_pending_reset_and_ends_every_session() {
        let now = later(10);
        let when = now + Duration::minutes(30);
        let mut given = reset_pending(now);
        given.push(session_started(9, SignInMethod::EmailLink, when));
        at(when)
            .given(given)
            .when(UserAuthCommand::DenyMfaReset {
                link: reference(30),
            })
            .then_expect_events(vec![
                cancelled(ResetCancellation::DeniedByLink, when),
                E::SessionEnded {
                    session: reference(8),
                    reason: SessionEndReason::ResetDenied,
                    at: when,
                },
                E::SessionEnded {
                    session: reference(9),
                    reason: SessionEndReason::ResetDenied,
                    at: when,
                },
            ]);
    }

    /// A reset waiting since `now`, denied by its link at `when`, with
    /// login attempt 7 opened after.
    fn denied(now: DateTime<Utc>, when: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut given = reset_pending(now);
        let deny = UserAuthCommand::DenyMfaReset {
            link: reference(30),
        };
        given.extend(events_of(at(when), given.clone(), deny));
        given.push(attempt_opened(7, when, SecondFactor::Totp));
        given
    }

    #[test]
    fn the_denial_link_turns_sign_in_by_email_link_off() {
        let now = later(10);
        let when = now + Duration::minutes(30);
        at(when)
            .given(denied(now, when))
            .when(UserAuthCommand::RequestEmailLink {
                attempt: reference(7),
            })
            .then_expect_error(UserAuthError::EmailLinkUnavailable);
        assert!(!folded(denied(now, when)).email_link_available());
    }

    #[test]
    fn a_sign_in_link_mailed_before_the_denial_signs_nobody_in() {
        let now = later(10);
        let when = now + Duration::minutes(5);
        let mut given = reset_pending(now);
        given.extend([
            attempt_opened(7, when, SecondFactor::Totp),
            E::EmailLinkRequested {
                link: reference(11),
                attempt: reference(7),
                expires_at: when + Duration::minutes(15),
                at: when,
            },
            cancelled(ResetCancellation::DeniedByLink, when),
        ]);
        at(when)
            .given(given)
            .when(UserAuthCommand::UseEmailLink {
                link: reference(11),
            })
            .then_expect_error(UserAuthError::EmailLinkInvalid);
    }

    #[test]
    fn after_the_denial_a_sign_in_with_a_second_factor_turns_email_links_back_on() {
        let now = later(10);
        let when = now + Duration::minutes(30);
        let mut given = denied(now, when);
        given.extend([
            session_started(9, SignInMethod::Totp, when),
            attempt_opened(7, when, SecondFactor::Totp),
        ]);
        at(when)
            .given(given)
            .when(UserAuthCommand::RequestEmailLink {
                attempt: reference(7),
            })
            .then_expect_events(vec![E::EmailLinkRequested {
                link: reference(1),
                attempt: reference(7),
                expires_at: when + Duration::minutes(15),
                at: when,
            }]);
    }

    #[test]
    fn the_denial_link_works_only_for_the_reset_still_waiting() {
        let now = later(10);
        at(now)
            .given(reset_pending(now))
            .when(UserAuthCommand::DenyMfaReset {
                link: reference(31),
            })
            .then_expect_error(UserAuthError::MfaResetDenialInvalid);
        let mut given = reset_pending(now);
        given.push(cancelled(ResetCancellation::DeniedByLink, now));
        at(now)
            .given(given)
            .when(UserAuthCommand::DenyMfaReset {
                link: reference(30),
            })
            .then_expect_error(UserAuthError::MfaResetDenialInvalid);
    }

    #[test]
    fn an_admin_reset_is_immediate_and_clears_a_pending_one() {
        let now = later(10);
        let mut given = reset_pending(now);
        let events = events_of(
            at(now),
            given.clone(),
            UserAuthCommand::AdminResetMfa {
                reason: AdminReason::parse("lost phone, identity checked").unwrap(),
            },
        );
        assert!(matches!(
            events.as_slice(),
            [
                E::MfaReset {
                    actor: Actor::Admin,
                    ..
                },
                E::SessionEnded { .. }
            ]
        ));
        given.extend(events);
        assert_eq!(folded(given.clone()).pending_mfa_reset(), None);
        at(now + DAY)
            .given(given)
            .when(UserAuthCommand::CompletePendingMfaReset)
            .then_expect_error(UserAuthError::NoPendingMfaReset);
    }

    #[test]
    fn a_reset_from_an_aal1_session_says_when_it_takes_effect() {
        let now = later(10);
        let outcome = decided(now, signed_in_by_email(now), reset(8, None));
        assert_eq!(
            outcome.verdict,
            Verdict::MfaResetPending {
                effective_at: now + DAY
            }
        );
        let mut given = signed_in_by_email(now);
        given.extend(outcome.events);
        assert_eq!(folded(given).pending_mfa_reset(), Some(now + DAY));
    }

    #[test]
    fn cancelling_reports_how_many_sessions_ended() {
        let now = later(10);
        let mut given = reset_pending(now);
        given.extend([
            session_started(9, SignInMethod::Totp, now),
            session_started(10, SignInMethod::EmailLink, now),
        ]);
        assert_eq!(
            decided(now, given, cancel_from(9)).verdict,
            Verdict::MfaResetCancelled { sessions_ended: 2 }
        );
        assert_eq!(
            decided(now, reset_pending(now), cancel_from(8)).verdict,
            Verdict::MfaResetCancelled { sessions_ended: 1 }
        );
        let deny = UserAuthCommand::DenyMfaReset {
            link: reference(30),
        };
        assert_eq!(
            decided(now, reset_pending(now), deny).verdict,
            Verdict::MfaResetCancelled { sessions_ended: 1 }
        );
    }

    #[test]
    fn completing_a_due_reset_reports_how_many_sessions_ended() {
        let now = later(10);
        let due = now + DAY;
        let mut given = reset_pending(now);
        given.push(session_started(9, SignInMethod::EmailLink, due));
        assert_eq!(
            decided(due, given, UserAuthCommand::CompletePendingMfaReset).verdict,
            Verdict::MfaReset { sessions_ended: 1 }
        );
    }

    #[test]
    fn resetting_mfa_in_a_fresh_session_reports_how_many_sessions_ended() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(session_started(9, SignInMethod::Totp, now));
        let verdict = decided(
            now + Duration::minutes(14),
            given,
            UserAuthCommand::ResetMfa {
                session: reference(8),
                password: None,
            },
        )
        .verdict;
        assert_eq!(verdict, Verdict::MfaReset { sessions_ended: 2 });
    }

    #[test]
    fn a_wrong_password_at_reset_is_rejected_as_a_password_failure() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut given = signed_in(now);
        given.push(E::SessionActive {
            session: reference(8),
            at: when,
        });
        let verdict = decided(
            when,
            given,
            UserAuthCommand::ResetMfa {
                session: reference(8),
                password: Some(wrong_password()),
            },
        )
        .verdict;
        assert_eq!(
            verdict,
            Verdict::Rejected(Rejection {
                factor: FailedFactor::Password,
                consequence: Consequence::None,
                attempt_over: false,
            })
        );
    }
}
