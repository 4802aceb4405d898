//! "This wasn't me": the user says a sign-in or a change of credentials on
//! their account was someone else's. Whoever it was may hold a session, so
//! every session ends, the reporting one too, and an MFA reset waiting to
//! hand them the account is called off. The report itself is recorded for
//! operators to follow up.
//!
//! From a session won with a second factor any sign-in or change of the
//! account's own history may be reported; the link mailed with a new-device
//! notice reports that sign-in only, once, until it expires. Each event is
//! reported once. A report also voids whatever was on its way to a sign-in
//! or a new credential, turns sign-in by email link off until the next
//! sign-in with a second factor, and forgets every known browser.
use chrono::{DateTime, Utc};

use super::Decision;
use crate::user_auth::{
    Actor, Assurance, Decided, ReportedActivity, Reporter, ResetCancellation, SessionEndReason,
    UserAuth, UserAuthError as Error, UserAuthEvent as E, UserAuthEvent, UserAuthServices, Verdict,
};

impl UserAuthEvent {
    /// Whether the user may say this was not them: a sign-in, or a change
    /// of their credentials made from one of their sessions or links.
    pub fn reportable(&self) -> bool {
        match self {
            E::SessionStarted { .. }
            | E::PasswordChanged { .. }
            | E::PasswordReset { .. }
            | E::MfaEnrolled { .. }
            | E::MfaResetRequested { .. }
            | E::RecoveryCodeIssued { .. }
            | E::EmailChangeRequested { .. }
            | E::EmailChanged { .. }
            | E::TotpDeviceAdded { .. }
            | E::WebAuthnCredentialAdded { .. }
            | E::AuthenticatorRemoved { .. } => true,
            // An administrator's reset is theirs to answer for, not the
            // user's to disown.
            E::MfaReset { actor, .. } => *actor == Actor::User,
            _ => false,
        }
    }
}

impl UserAuth {
    pub(in crate::user_auth) fn report_activity(
        &self,
        reported: ReportedActivity,
        by: Reporter,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        let event = reported.event.as_ref();
        let link = match by {
            Reporter::Session(session) => {
                let session = self
                    .live_session(&session, now, &s.policy)
                    .ok_or(Error::SessionInvalid)?;
                // As for ending other sessions: a mailbox alone must not
                // sign the owner out of what their authenticator won. The
                // mailed link reports its own sign-in.
                if session.aal != Assurance::Aal2 {
                    return Err(Error::SecondFactorRequired);
                }
                None
            }
            Reporter::Link(reference) => {
                let held = self
                    .report_link(&reference)
                    .ok_or(Error::ReportLinkInvalid)?;
                if held.used {
                    return Err(Error::AlreadyReported);
                }
                let its_sign_in = matches!(
                    event,
                    E::SessionStarted { session, .. } if *session == held.session
                );
                if now >= held.until || !its_sign_in {
                    return Err(Error::ReportLinkInvalid);
                }
                Some(reference)
            }
        };
        if !event.reportable() {
            return Err(Error::NotReportable);
        }
        if self.was_reported(reported.sequence) {
            return Err(Error::AlreadyReported);
        }
        let mut events = vec![E::ReportedByUser {
            sequence: reported.sequence,
            link,
            at: now,
        }];
        // An authenticator someone else added must not outlive the report:
        // it would sign them in again.
        let added = match &*reported.event {
            E::TotpDeviceAdded { authenticator, .. }
            | E::WebAuthnCredentialAdded { authenticator, .. } => {
                self.authenticator(*authenticator).map(|a| a.id)
            }
            _ => None,
        };
        // Never the last: that would leave the account to whoever enrolls
        // next with the password. Every session ends below either way.
        if let Some(authenticator) = added.filter(|_| self.authenticators.len() > 1) {
            events.push(E::AuthenticatorRemoved {
                authenticator,
                last: false,
                at: now,
            });
        }
        let ended = self.end_sessions(SessionEndReason::ReportedByUser, None, s, now);
        let sessions_ended = ended.len();
        events.extend(ended);
        // Whoever it was may be the one who asked for the reset, to enroll
        // an authenticator of their own once it takes effect.
        let reset_cancelled = self.pending_mfa_reset.is_some();
        if reset_cancelled {
            events.push(E::MfaResetCancelled {
                reason: ResetCancellation::ReportedByUser,
                at: now,
            });
        }
        Ok(Decided {
            events,
            verdict: Verdict::Reported {
                sessions_ended,
                reset_cancelled,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;
    use crate::user_auth::DeviceDigest;

    /// The sign-in of session 8, at sequence 9 of the stream.
    fn sign_in_of_8(now: DateTime<Utc>) -> ReportedActivity {
        ReportedActivity {
            sequence: 9,
            event: Box::new(session_started(8, SignInMethod::Totp, now)),
        }
    }

    /// Signed in as session 8 at `now` from a new device, whose notice
    /// carries report link 40; then signed in again as session 9.
    fn signed_in_from_new_device(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = signed_in(now);
        events.extend([
            E::SignedInFromNewDevice {
                session: reference(8),
                report: reference(40),
                report_until: now + Duration::days(7),
                at: now,
            },
            session_started(9, SignInMethod::Totp, now),
        ]);
        events
    }

    fn ended(n: u64, at: DateTime<Utc>) -> UserAuthEvent {
        E::SessionEnded {
            session: reference(n),
            reason: SessionEndReason::ReportedByUser,
            at,
        }
    }

    #[test]
    fn a_report_from_a_session_ends_every_session_the_reporting_one_too() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(session_started(9, SignInMethod::EmailLink, now));
        let decided = decided(
            now,
            given,
            UserAuthCommand::ReportActivity {
                reported: sign_in_of_8(now),
                by: Reporter::Session(reference(8)),
            },
        );
        assert_eq!(
            decided.events,
            vec![
                E::ReportedByUser {
                    sequence: 9,
                    link: None,
                    at: now,
                },
                ended(8, now),
                ended(9, now),
            ]
        );
        assert_eq!(
            decided.verdict,
            Verdict::Reported {
                sessions_ended: 2,
                reset_cancelled: false
            }
        );
    }

    #[test]
    fn a_report_calls_off_a_waiting_mfa_reset_and_turns_email_sign_in_off() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(E::MfaResetRequested {
            effective_at: now + Duration::hours(24),
            denial: reference(30),
            at: now,
        });
        let events = events_of(
            at(now),
            given.clone(),
            UserAuthCommand::ReportActivity {
                reported: sign_in_of_8(now),
                by: Reporter::Session(reference(8)),
            },
        );
        assert_eq!(
            events,
            vec![
                E::ReportedByUser {
                    sequence: 9,
                    link: None,
                    at: now,
                },
                ended(8, now),
                E::MfaResetCancelled {
                    reason: ResetCancellation::ReportedByUser,
                    at: now,
                },
            ]
        );
        given.extend(events);
        let after = folded(given);
        assert_eq!(after.pending_mfa_reset(), None);
        assert!(!after.email_link_available());
    }

    #[test]
    fn a_session_won_by_email_link_cannot_report() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(session_started(9, SignInMethod::EmailLink, now));
        at(now)
            .given(given)
            .when(UserAuthCommand::ReportActivity {
                reported: sign_in_of_8(now),
                by: Reporter::Session(reference(9)),
            })
            .then_expect_error(UserAuthError::SecondFactorRequired);
    }

    #[test]
    fn a_report_voids_what_was_on_its_way_and_forgets_every_known_browser() {
        let now = later(10);
        let device = DeviceDigest("a browser that signed in".into());
        let mut state = folded(signed_in(now));
        state
            .known_devices
            .push(crate::user_auth::state::KnownDevice {
                digest: device.clone(),
                failures: 0,
                throttled_until: None,
            });
        assert!(state.email_link_available());
        for event in [
            E::PasswordResetRequested {
                link: reference(50),
                expires_at: now + Duration::minutes(30),
                at: now,
            },
            E::ReportedByUser {
                sequence: 9,
                link: None,
                at: now,
            },
        ] {
            state.apply_event(event);
        }
        assert!(!state.email_link_available());
        assert!(state.known_device(Some(&device)).is_none());
        assert!(state.password_reset_link.is_none());
        assert!(state.pending_email_change.is_none());
        assert!(state.attempt.is_none() && state.email_link.is_none());
    }

    #[test]
    fn the_same_activity_cannot_be_reported_twice() {
        let now = later(10);
        let mut given = signed_in(now);
        given.extend([
            E::ReportedByUser {
                sequence: 9,
                link: None,
                at: now,
            },
            session_started(10, SignInMethod::Totp, now),
        ]);
        at(now)
            .given(given)
            .when(UserAuthCommand::ReportActivity {
                reported: sign_in_of_8(now),
                by: Reporter::Session(reference(10)),
            })
            .then_expect_error(UserAuthError::AlreadyReported);
    }

    #[test]
    fn an_ended_session_cannot_report() {
        let now = later(10);
        at(now + Duration::hours(2))
            .given(signed_in(now))
            .when(UserAuthCommand::ReportActivity {
                reported: sign_in_of_8(now),
                by: Reporter::Session(reference(8)),
            })
            .then_expect_error(UserAuthError::SessionInvalid);
    }

    #[test]
    fn only_sign_ins_and_changes_of_credentials_can_be_reported() {
        let now = later(10);
        let not_reportable = [
            E::TotpRejected {
                attempt: reference(7),
                reason: TotpRejection::WrongCode,
                enrolling: false,
                at: now,
            },
            E::SessionActive {
                session: reference(8),
                at: now,
            },
            E::MfaReset {
                actor: Actor::Admin,
                reason: None,
                at: now,
            },
        ];
        for event in not_reportable {
            at(now)
                .given(signed_in(now))
                .when(UserAuthCommand::ReportActivity {
                    reported: ReportedActivity {
                        sequence: 3,
                        event: Box::new(event),
                    },
                    by: Reporter::Session(reference(8)),
                })
                .then_expect_error(UserAuthError::NotReportable);
        }
        let changed = E::PasswordChanged {
            password_hash: sealed_hash(NEW_PASSWORD),
            at: now,
        };
        assert!(changed.reportable());
    }

    #[test]
    fn reporting_an_authenticator_someone_else_added_removes_it() {
        let now = later(10);
        let added = E::WebAuthnCredentialAdded {
            authenticator: authenticator_id(3),
            name: sealed_text("Work key"),
            credential: credential(3, 0),
            at: now,
        };
        let events = events_of(
            at(now),
            with_key(now),
            UserAuthCommand::ReportActivity {
                reported: ReportedActivity {
                    sequence: 9,
                    event: Box::new(added),
                },
                by: Reporter::Session(reference(8)),
            },
        );
        assert_eq!(
            events[..2],
            [
                E::ReportedByUser {
                    sequence: 9,
                    link: None,
                    at: now,
                },
                E::AuthenticatorRemoved {
                    authenticator: authenticator_id(3),
                    last: false,
                    at: now,
                },
            ]
        );
        assert!(matches!(events[2], E::SessionEnded { .. }));
    }

    #[test]
    fn a_report_never_removes_the_last_authenticator() {
        let now = later(10);
        let mut given = with_key(now);
        given.push(E::AuthenticatorRemoved {
            authenticator: AuthenticatorId::FIRST,
            last: false,
            at: now,
        });
        let added = E::WebAuthnCredentialAdded {
            authenticator: authenticator_id(3),
            name: sealed_text("Work key"),
            credential: credential(3, 0),
            at: now,
        };
        let events = events_of(
            at(now),
            given,
            UserAuthCommand::ReportActivity {
                reported: ReportedActivity {
                    sequence: 9,
                    event: Box::new(added),
                },
                by: Reporter::Session(reference(8)),
            },
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, E::AuthenticatorRemoved { .. })),
            "{events:?}"
        );
        assert!(events.iter().any(|e| matches!(e, E::SessionEnded { .. })));
    }

    #[test]
    fn the_link_of_a_new_device_notice_reports_its_sign_in_without_a_session() {
        let now = later(10);
        let when = now + Duration::days(6);
        let given = signed_in_from_new_device(now);
        at(when)
            .given(given)
            .when(UserAuthCommand::ReportActivity {
                reported: sign_in_of_8(now),
                by: Reporter::Link(reference(40)),
            })
            .then_expect_events(vec![E::ReportedByUser {
                sequence: 9,
                link: Some(reference(40)),
                at: when,
            }]);
    }

    #[test]
    fn a_used_report_link_is_refused_as_already_reported() {
        let now = later(10);
        let mut given = signed_in_from_new_device(now);
        given.push(E::ReportedByUser {
            sequence: 9,
            link: Some(reference(40)),
            at: now,
        });
        assert!(!folded(given.clone()).mailed_link_live(
            crate::user_auth::MailedLink::Report,
            &reference(40),
            now,
            &policy()
        ));
        at(now)
            .given(given)
            .when(UserAuthCommand::ReportActivity {
                reported: sign_in_of_8(now),
                by: Reporter::Link(reference(40)),
            })
            .then_expect_error(UserAuthError::AlreadyReported);
    }

    #[test]
    fn a_report_link_past_its_time_is_refused() {
        let now = later(10);
        at(now + Duration::days(7))
            .given(signed_in_from_new_device(now))
            .when(UserAuthCommand::ReportActivity {
                reported: sign_in_of_8(now),
                by: Reporter::Link(reference(40)),
            })
            .then_expect_error(UserAuthError::ReportLinkInvalid);
    }

    #[test]
    fn a_report_link_reports_only_its_own_sign_in() {
        let now = later(10);
        let others = [
            ReportedActivity {
                sequence: 11,
                event: Box::new(session_started(9, SignInMethod::Totp, now)),
            },
            ReportedActivity {
                sequence: 5,
                event: Box::new(E::MfaEnrolled {
                    attempt: reference(90),
                    step: step_at(t0()),
                    authenticator: Some(authenticator_id(1)),
                    name: None,
                    credential: None,
                    at: t0(),
                }),
            },
        ];
        for reported in others {
            at(now)
                .given(signed_in_from_new_device(now))
                .when(UserAuthCommand::ReportActivity {
                    reported,
                    by: Reporter::Link(reference(40)),
                })
                .then_expect_error(UserAuthError::ReportLinkInvalid);
        }
    }

    #[test]
    fn a_link_the_account_never_mailed_is_refused() {
        let now = later(10);
        at(now)
            .given(signed_in_from_new_device(now))
            .when(UserAuthCommand::ReportActivity {
                reported: sign_in_of_8(now),
                by: Reporter::Link(reference(41)),
            })
            .then_expect_error(UserAuthError::ReportLinkInvalid);
    }

    // ---- the new device, decided at sign-in ----------------------------

    fn device(name: &str) -> DeviceDigest {
        DeviceDigest(name.into())
    }

    /// Enrolled; signed in from device "laptop" as session 60 (its
    /// sign-in made the device known); attempt 7 opened at `now` from
    /// `from`.
    fn attempt_from(from: Option<&str>, now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = enrolled();
        events.extend([
            attempt_opened(59, t0(), SecondFactor::Totp),
            E::AttemptFromDevice {
                attempt: reference(59),
                device: device("laptop"),
                at: t0(),
            },
            session_started(60, SignInMethod::Totp, t0()),
            attempt_opened(7, now, SecondFactor::Totp),
        ]);
        if let Some(from) = from {
            events.push(E::AttemptFromDevice {
                attempt: reference(7),
                device: device(from),
                at: now,
            });
        }
        events
    }

    fn totp_sign_in(now: DateTime<Utc>) -> UserAuthCommand {
        UserAuthCommand::SubmitTotp {
            attempt: reference(7),
            code: code_at(now),
        }
    }

    #[test]
    fn a_sign_in_from_a_known_device_is_not_new() {
        let now = later(10);
        at(now)
            .given(attempt_from(Some("laptop"), now))
            .when(totp_sign_in(now))
            .then_expect_events(vec![
                E::TotpVerified {
                    attempt: reference(7),
                    step: step_at(now),
                    authenticator: Some(AuthenticatorId::FIRST),
                    at: now,
                },
                session_started(1, SignInMethod::Totp, now),
            ]);
    }

    #[test]
    fn a_sign_in_from_an_unknown_device_or_none_is_new_and_mints_a_report_link() {
        let now = later(10);
        for from in [Some("phone"), None] {
            at(now)
                .given(attempt_from(from, now))
                .when(totp_sign_in(now))
                .then_expect_events(vec![
                    E::TotpVerified {
                        attempt: reference(7),
                        step: step_at(now),
                        authenticator: Some(AuthenticatorId::FIRST),
                        at: now,
                    },
                    session_started(1, SignInMethod::Totp, now),
                    E::SignedInFromNewDevice {
                        session: reference(1),
                        report: reference(2),
                        report_until: now + Duration::days(7),
                        at: now,
                    },
                ]);
        }
    }

    #[test]
    fn the_first_sign_in_of_an_account_has_no_device_to_compare_with() {
        let now = later(10);
        let mut given = registered_with_attempt(now);
        given.push(E::MfaEnrollmentStarted {
            attempt: reference(7),
            secret: sealed(SealPurpose::TotpSecret, secret().expose()),
            at: now,
        });
        let events = events_of(
            at(now),
            given,
            UserAuthCommand::EnrollMfa {
                attempt: reference(7),
                authenticator: authenticator_id(1),
                code: code_at(now),
                recovery_code: recovery(1),
            },
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, E::SignedInFromNewDevice { .. })),
            "{events:?}"
        );
    }

    #[test]
    fn a_snapshot_from_before_new_devices_were_told_counts_as_signed_in_before() {
        let mut snapshot = serde_json::to_value(folded(registered())).unwrap();
        let fields = snapshot.as_object_mut().unwrap();
        for added in ["signed_in_before", "report_links", "reported"] {
            fields.remove(added).unwrap();
        }
        let state: UserAuth = serde_json::from_value(snapshot).unwrap();
        assert!(state.signed_in_before);
        assert!(state.report_links.is_empty() && state.reported.is_empty());
        assert!(!folded(registered()).signed_in_before);
    }
}
