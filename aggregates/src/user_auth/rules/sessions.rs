//! Sessions: a new one at every sign-in, recording how it was won and its
//! assurance; alive until its absolute expiry or an idle hour; ended by
//! logout, or all at once when a credential changes. A sign-in that proves
//! a device calls off an MFA reset waiting for it to be lost, and ends the
//! sessions won by email link.
use chrono::{DateTime, Utc};

use super::admin::seal_reason;
use super::Decision;
use crate::user_auth::{
    AdminReason, Assurance, Decided, Reference, ResetCancellation, Session, SessionEndReason,
    SignInMethod, StartedSession, UserAuth, UserAuthError as Error, UserAuthEvent as E,
    UserAuthEvent, UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) fn touch_session(
        &self,
        session: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        let live = self
            .live_session(&session, now, &s.policy)
            .ok_or(Error::SessionInvalid)?;
        // An event per request would grow the log with every call; the idle
        // rule needs activity only this fresh.
        let recorded = now - live.last_active_at >= s.policy.session_activity_granularity;
        Ok(Decided {
            events: if recorded {
                vec![E::SessionActive { session, at: now }]
            } else {
                vec![]
            },
            verdict: Verdict::SessionTouched { recorded },
        })
    }

    pub(in crate::user_auth) fn logout(
        &self,
        session: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.live_session(&session, now, &s.policy)
            .ok_or(Error::SessionInvalid)?;
        Ok(Decided {
            events: vec![E::SessionEnded {
                session,
                reason: SessionEndReason::Logout,
                at: now,
            }],
            verdict: Verdict::LoggedOut,
        })
    }

    /// The user ends `target`, another of their sessions. Only an `aal2`
    /// session may: the mailbox alone must not sign the owner out of the
    /// sessions their authenticator won.
    pub(in crate::user_auth) fn end_session(
        &self,
        session: Reference,
        target: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.second_factor_session(&session, s, now)?;
        self.live_session(&target, now, &s.policy)
            .ok_or(Error::UnknownSession)?;
        Ok(Decided {
            events: vec![E::SessionEnded {
                session: target,
                reason: if target == session {
                    SessionEndReason::Logout
                } else {
                    SessionEndReason::EndedByUser
                },
                at: now,
            }],
            verdict: Verdict::SessionEnded,
        })
    }

    /// "Sign out everywhere else", from an `aal2` session.
    pub(in crate::user_auth) fn end_other_sessions(
        &self,
        session: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.second_factor_session(&session, s, now)?;
        let events = self.end_sessions(SessionEndReason::EndedByUser, Some(&session), s, now);
        Ok(Decided {
            verdict: Verdict::SessionsEnded {
                sessions_ended: events.len(),
            },
            events,
        })
    }

    /// An administrator ends every session, with a reason recorded once
    /// after them; with none live, nothing is recorded.
    pub(in crate::user_auth) fn admin_end_sessions(
        &self,
        reason: AdminReason,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if !self.is_registered() {
            return Err(Error::UnknownUser);
        }
        let mut events = self.end_sessions(SessionEndReason::EndedByAdmin, None, s, now);
        let sessions_ended = events.len();
        if sessions_ended > 0 {
            events.push(E::SessionsEndedByAdmin {
                reason: seal_reason(&reason, s)?,
                at: now,
            });
        }
        Ok(Decided {
            events,
            verdict: Verdict::SessionsEnded { sessions_ended },
        })
    }

    /// That `session` is live and was won with a second factor.
    pub(super) fn second_factor_session(
        &self,
        session: &Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let live = self
            .live_session(session, now, &s.policy)
            .ok_or(Error::SessionInvalid)?;
        if live.aal != Assurance::Aal2 {
            return Err(Error::SecondFactorRequired);
        }
        Ok(())
    }

    /// Ends every live session but `keep`, for `reason`.
    pub(super) fn end_sessions(
        &self,
        reason: SessionEndReason,
        keep: Option<&Reference>,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Vec<UserAuthEvent> {
        self.end_sessions_where(|session| Some(&session.reference) != keep, reason, s, now)
    }

    /// Ends every live session won by email link, for `reason`.
    pub(super) fn end_aal1_sessions(
        &self,
        reason: SessionEndReason,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Vec<UserAuthEvent> {
        self.end_sessions_where(|session| session.aal == Assurance::Aal1, reason, s, now)
    }

    fn end_sessions_where(
        &self,
        ends: impl Fn(&Session) -> bool,
        reason: SessionEndReason,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Vec<UserAuthEvent> {
        self.live_sessions(now, &s.policy)
            .filter(|session| ends(session))
            .map(|session| E::SessionEnded {
                session: session.reference,
                reason,
                at: now,
            })
            .collect()
    }

    /// A second factor succeeded: `proof` and a new session, in that order,
    /// then whether it came from a new device, then, if the session proved
    /// a device, the end of a pending MFA reset and of the sessions won by
    /// email link.
    pub(super) fn sign_in(
        &self,
        mut proof: Vec<UserAuthEvent>,
        method: SignInMethod,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decided {
        let started = StartedSession {
            session: s.randomness.reference(),
            method,
            aal: method.assurance(),
            expires_at: now + s.policy.session_absolute,
        };
        proof.push(E::SessionStarted {
            session: started.session,
            method: started.method,
            aal: started.aal,
            expires_at: started.expires_at,
            at: now,
        });
        // A browser without the device cookie, or with one this account
        // does not know, is new to it; the owner hears of it with a link to
        // say it was not them. An account's first sign-in has nothing to
        // compare with.
        let device = self.attempt.as_ref().and_then(|a| a.device.as_ref());
        if self.signed_in_before && self.known_device(device).is_none() {
            proof.push(E::SignedInFromNewDevice {
                session: started.session,
                report: s.randomness.reference(),
                report_until: now + s.policy.report_link_ttl,
                at: now,
            });
        }
        // A reset waits because the device may be lost; a sign-in with it
        // (or with the recovery code) shows it is not.
        if started.aal == Assurance::Aal2 && self.pending_mfa_reset.is_some() {
            proof.push(E::MfaResetCancelled {
                reason: ResetCancellation::SignedInWithSecondFactor,
                at: now,
            });
            // Whoever asked from an email-link session must sign in again
            // to ask again, rather than at once from the session they hold.
            proof.extend(self.end_aal1_sessions(SessionEndReason::ResetCancelled, s, now));
        }
        Decided {
            events: proof,
            verdict: Verdict::SessionStarted(started),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    /// Signed in by TOTP as session 8, then by email link as session 9.
    fn two_sessions(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut given = signed_in(now);
        given.push(session_started(9, SignInMethod::EmailLink, now));
        given
    }

    fn ended(n: u64, reason: SessionEndReason, at: DateTime<Utc>) -> UserAuthEvent {
        E::SessionEnded {
            session: reference(n),
            reason,
            at,
        }
    }

    #[test]
    fn an_aal2_session_ends_another_session_of_its_user() {
        let now = later(10);
        at(now)
            .given(two_sessions(now))
            .when(UserAuthCommand::EndSession {
                session: reference(8),
                target: reference(9),
            })
            .then_expect_events(vec![ended(9, SessionEndReason::EndedByUser, now)]);
    }

    #[test]
    fn ending_its_own_session_from_the_list_is_a_logout() {
        let now = later(10);
        at(now)
            .given(two_sessions(now))
            .when(UserAuthCommand::EndSession {
                session: reference(8),
                target: reference(8),
            })
            .then_expect_events(vec![ended(8, SessionEndReason::Logout, now)]);
    }

    #[test]
    fn a_session_won_by_email_link_cannot_end_another() {
        let now = later(10);
        at(now)
            .given(two_sessions(now))
            .when(UserAuthCommand::EndSession {
                session: reference(9),
                target: reference(8),
            })
            .then_expect_error(UserAuthError::SecondFactorRequired);
    }

    #[test]
    fn an_ended_or_unknown_session_cannot_be_ended() {
        let now = later(10);
        let mut given = two_sessions(now);
        given.push(ended(9, SessionEndReason::Logout, now));
        for target in [9, 42] {
            at(now)
                .given(given.clone())
                .when(UserAuthCommand::EndSession {
                    session: reference(8),
                    target: reference(target),
                })
                .then_expect_error(UserAuthError::UnknownSession);
        }
    }

    #[test]
    fn signing_out_everywhere_else_keeps_the_asking_session() {
        let now = later(10);
        let mut given = two_sessions(now);
        given.push(session_started(10, SignInMethod::RecoveryCode, now));
        let decided = decided(
            now,
            given,
            UserAuthCommand::EndOtherSessions {
                session: reference(8),
            },
        );
        assert_eq!(
            decided.events,
            vec![
                ended(9, SessionEndReason::EndedByUser, now),
                ended(10, SessionEndReason::EndedByUser, now)
            ]
        );
        assert_eq!(
            decided.verdict,
            Verdict::SessionsEnded { sessions_ended: 2 }
        );
    }

    #[test]
    fn signing_out_everywhere_else_needs_a_second_factor_session() {
        let now = later(10);
        at(now)
            .given(two_sessions(now))
            .when(UserAuthCommand::EndOtherSessions {
                session: reference(9),
            })
            .then_expect_error(UserAuthError::SecondFactorRequired);
    }

    #[test]
    fn an_administrator_ends_every_session_and_the_reason_is_recorded_once() {
        let now = later(10);
        at(now)
            .given(two_sessions(now))
            .when(UserAuthCommand::AdminEndSessions {
                reason: AdminReason::parse("laptop stolen").unwrap(),
            })
            .then_expect_events(vec![
                ended(8, SessionEndReason::EndedByAdmin, now),
                ended(9, SessionEndReason::EndedByAdmin, now),
                E::SessionsEndedByAdmin {
                    reason: sealed_text("laptop stolen"),
                    at: now,
                },
            ]);
    }

    #[test]
    fn an_administrator_ending_no_live_session_records_nothing() {
        let now = later(10);
        let decided = decided(
            now,
            registered(),
            UserAuthCommand::AdminEndSessions {
                reason: AdminReason::parse("just in case").unwrap(),
            },
        );
        assert!(decided.events.is_empty());
        assert_eq!(
            decided.verdict,
            Verdict::SessionsEnded { sessions_ended: 0 }
        );
    }

    #[test]
    fn logout_ends_the_session() {
        let now = later(10);
        at(now)
            .given(signed_in(now))
            .when(UserAuthCommand::Logout {
                session: reference(8),
            })
            .then_expect_events(vec![E::SessionEnded {
                session: reference(8),
                reason: SessionEndReason::Logout,
                at: now,
            }]);
    }

    #[test]
    fn an_ended_session_cannot_log_out_again() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(E::SessionEnded {
            session: reference(8),
            reason: SessionEndReason::Logout,
            at: now,
        });
        at(now)
            .given(given)
            .when(UserAuthCommand::Logout {
                session: reference(8),
            })
            .then_expect_error(UserAuthError::SessionInvalid);
    }

    #[test]
    fn a_session_idle_for_an_hour_is_over() {
        at(later(10) + Duration::hours(1))
            .given(signed_in(later(10)))
            .when(UserAuthCommand::Logout {
                session: reference(8),
            })
            .then_expect_error(UserAuthError::SessionInvalid);
    }

    #[test]
    fn activity_keeps_a_session_alive_but_not_past_twelve_hours() {
        let start = later(10);
        let mut given = signed_in(start);
        given.extend((1..12).map(|h| E::SessionActive {
            session: reference(8),
            at: start + Duration::hours(h),
        }));
        let state = given.into_iter().fold(UserAuth::default(), |mut s, e| {
            s.apply_event(e);
            s
        });
        let policy = policy();
        assert!(state
            .live_session(
                &reference(8),
                start + Duration::minutes(11 * 60 + 30),
                &policy
            )
            .is_some());
        assert!(state
            .live_session(&reference(8), start + Duration::hours(12), &policy)
            .is_none());
    }

    #[test]
    fn a_session_idles_out_an_hour_after_its_last_activity_but_never_past_twelve_hours() {
        let start = later(10);
        let mut given = signed_in(start);
        given.push(E::SessionActive {
            session: reference(8),
            at: start + Duration::minutes(30),
        });
        let state = folded(given.clone());
        let session = state
            .live_session(&reference(8), start + Duration::minutes(31), &policy())
            .unwrap();
        assert_eq!(
            session.idle_expires_at(&policy()),
            start + Duration::minutes(90)
        );
        given.push(E::SessionActive {
            session: reference(8),
            at: start + Duration::minutes(11 * 60 + 30),
        });
        let state = folded(given);
        let session = state
            .live_session(
                &reference(8),
                start + Duration::minutes(11 * 60 + 31),
                &policy(),
            )
            .unwrap();
        assert_eq!(
            session.idle_expires_at(&policy()),
            start + Duration::hours(12)
        );
    }

    #[test]
    fn touching_a_session_records_activity_only_when_the_last_is_stale() {
        let start = later(10);
        at(start + Duration::minutes(4))
            .given(signed_in(start))
            .when(UserAuthCommand::TouchSession {
                session: reference(8),
            })
            .then_expect_events(vec![]);
        at(start + Duration::minutes(6))
            .given(signed_in(start))
            .when(UserAuthCommand::TouchSession {
                session: reference(8),
            })
            .then_expect_events(vec![E::SessionActive {
                session: reference(8),
                at: start + Duration::minutes(6),
            }]);
    }

    #[test]
    fn touching_a_session_says_whether_it_recorded_activity() {
        let start = later(10);
        let touch = || UserAuthCommand::TouchSession {
            session: reference(8),
        };
        assert_eq!(
            decided(start + Duration::minutes(4), signed_in(start), touch()).verdict,
            Verdict::SessionTouched { recorded: false }
        );
        assert_eq!(
            decided(start + Duration::minutes(6), signed_in(start), touch()).verdict,
            Verdict::SessionTouched { recorded: true }
        );
    }

    /// Enrolled, with an MFA reset asked at `now` from an email-link
    /// session, and login attempt 7 opened right after.
    fn reset_pending_with_attempt(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = enrolled();
        events.extend([
            session_started(8, SignInMethod::EmailLink, now),
            E::MfaResetRequested {
                effective_at: now + Duration::hours(24),
                denial: reference(30),
                at: now,
            },
            attempt_opened(7, now, SecondFactor::Totp),
        ]);
        events
    }

    #[test]
    fn a_totp_sign_in_cancels_a_pending_mfa_reset() {
        let now = later(10);
        let events = events_of(
            at(now),
            reset_pending_with_attempt(now),
            UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(now),
            },
        );
        assert_eq!(
            events,
            vec![
                E::TotpVerified {
                    attempt: reference(7),
                    step: step_at(now),
                    authenticator: Some(AuthenticatorId::FIRST),
                    at: now,
                },
                session_started(1, SignInMethod::Totp, now),
                new_device(1, 2, now),
                E::MfaResetCancelled {
                    reason: ResetCancellation::SignedInWithSecondFactor,
                    at: now,
                },
                E::SessionEnded {
                    session: reference(8),
                    reason: SessionEndReason::ResetCancelled,
                    at: now,
                },
            ]
        );
        let mut after = reset_pending_with_attempt(now);
        after.extend(events);
        at(now + Duration::hours(24))
            .given(after)
            .when(UserAuthCommand::CompletePendingMfaReset)
            .then_expect_error(UserAuthError::NoPendingMfaReset);
    }

    #[test]
    fn a_recovery_code_sign_in_cancels_a_pending_mfa_reset() {
        let now = later(10);
        at(now)
            .given(reset_pending_with_attempt(now))
            .when(UserAuthCommand::UseRecoveryCode {
                attempt: reference(7),
                code: recovery(1),
                replacement: recovery(2),
            })
            .then_expect_events(vec![
                E::RecoveryCodeUsed {
                    attempt: reference(7),
                    at: now,
                },
                E::RecoveryCodeIssued {
                    digest: digest(&recovery(2)),
                    at: now,
                },
                session_started(1, SignInMethod::RecoveryCode, now),
                new_device(1, 2, now),
                E::MfaResetCancelled {
                    reason: ResetCancellation::SignedInWithSecondFactor,
                    at: now,
                },
                E::SessionEnded {
                    session: reference(8),
                    reason: SessionEndReason::ResetCancelled,
                    at: now,
                },
            ]);
    }

    #[test]
    fn a_sign_in_that_calls_off_a_reset_ends_only_the_sessions_won_by_email_link() {
        let now = later(10);
        let mut given = reset_pending_with_attempt(now);
        given.extend([
            session_started(9, SignInMethod::Totp, now),
            session_started(10, SignInMethod::EmailLink, now),
            attempt_opened(7, now, SecondFactor::Totp),
        ]);
        at(now)
            .given(given)
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(now),
            })
            .then_expect_events(vec![
                E::TotpVerified {
                    attempt: reference(7),
                    step: step_at(now),
                    authenticator: Some(AuthenticatorId::FIRST),
                    at: now,
                },
                session_started(1, SignInMethod::Totp, now),
                new_device(1, 2, now),
                E::MfaResetCancelled {
                    reason: ResetCancellation::SignedInWithSecondFactor,
                    at: now,
                },
                E::SessionEnded {
                    session: reference(8),
                    reason: SessionEndReason::ResetCancelled,
                    at: now,
                },
                E::SessionEnded {
                    session: reference(10),
                    reason: SessionEndReason::ResetCancelled,
                    at: now,
                },
            ]);
    }

    #[test]
    fn without_a_waiting_reset_a_sign_in_leaves_the_email_link_sessions() {
        let now = later(10);
        let mut given = enrolled();
        given.extend([
            session_started(8, SignInMethod::EmailLink, now),
            attempt_opened(7, now, SecondFactor::Totp),
        ]);
        at(now)
            .given(given)
            .when(UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(now),
            })
            .then_expect_events(vec![
                E::TotpVerified {
                    attempt: reference(7),
                    step: step_at(now),
                    authenticator: Some(AuthenticatorId::FIRST),
                    at: now,
                },
                session_started(1, SignInMethod::Totp, now),
                new_device(1, 2, now),
            ]);
    }

    #[test]
    fn an_email_link_sign_in_leaves_a_pending_mfa_reset_waiting() {
        let now = later(10);
        let mut given = reset_pending_with_attempt(now);
        given.push(E::EmailLinkRequested {
            link: reference(11),
            attempt: reference(7),
            expires_at: now + Duration::minutes(15),
            at: now,
        });
        at(now)
            .given(given)
            .when(UserAuthCommand::UseEmailLink {
                link: reference(11),
            })
            .then_expect_events(vec![
                E::EmailLinkUsed {
                    link: reference(11),
                    at: now,
                },
                session_started(1, SignInMethod::EmailLink, now),
                new_device(1, 2, now),
            ]);
    }

    #[test]
    fn a_sign_in_that_cancels_a_pending_reset_still_reports_its_session() {
        let now = later(10);
        let verdict = decided(
            now,
            reset_pending_with_attempt(now),
            UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(now),
            },
        )
        .verdict;
        assert_eq!(
            verdict,
            Verdict::SessionStarted(StartedSession {
                session: reference(1),
                method: SignInMethod::Totp,
                aal: Assurance::Aal2,
                expires_at: now + Duration::hours(12),
            })
        );
    }

    #[test]
    fn logout_says_the_session_ended() {
        let now = later(10);
        let verdict = decided(
            now,
            signed_in(now),
            UserAuthCommand::Logout {
                session: reference(8),
            },
        )
        .verdict;
        assert_eq!(verdict, Verdict::LoggedOut);
    }
}
