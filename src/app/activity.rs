//! The signed-in user's security timeline: their account's own events in
//! plain words, newest first, with where each request came from, and never
//! a secret. And "this wasn't me", from a session or the link of a
//! new-device notice: the domain decides what may be reported and what a
//! report ends.
use authledger_aggregates::{
    Actor, ReportedActivity, Reporter, ResetCancellation, SignInMethod, TotpRejection, UserAuth,
    UserAuthCommand, UserAuthEvent as E, Verdict, WebAuthnRejection,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{App, AppError, AppResult, Caller};
use crate::command_bus::client_origin;
use crate::timeline;
use crate::tokens::TokenKind;
use crate::user_agent::UserAgent;

/// How many entries a page holds: 1 to 100, 20 unless asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityPageSize(i64);

impl ActivityPageSize {
    pub const DEFAULT: Self = Self(20);
    pub const MAX: i64 = 100;

    pub fn parse(requested: Option<i64>) -> AppResult<Self> {
        match requested {
            None => Ok(Self::DEFAULT),
            Some(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            Some(_) => Err(AppError::InvalidQuery("limit is 1 to 100")),
        }
    }
}

/// One thing that happened to the account, as its user reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEntry {
    /// The event's number in the account's history: what a report names.
    pub sequence: i64,
    pub at: DateTime<Utc>,
    /// A stable name for what happened (`signed_in`, `password_changed`).
    pub kind: &'static str,
    /// What happened, in words.
    pub summary: String,
    /// The IP address of the request, while the account's personal data
    /// can be opened; none for what an administrator or the service did.
    pub ip: Option<String>,
    /// The browser and system of the request, in words.
    pub browser: Option<String>,
    /// A sign-in from a browser new to the account.
    pub new_device: bool,
    /// "This wasn't me" may be said of it.
    pub reportable: bool,
    /// It was said already.
    pub reported: bool,
}

#[derive(Debug)]
pub struct ActivityPage {
    pub entries: Vec<ActivityEntry>,
    /// The `before` of the next, older page; `None` on the last.
    pub next_before: Option<i64>,
}

/// What "this wasn't me" did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    pub sessions_ended: usize,
    pub reset_cancelled: bool,
}

/// The event types the timeline shows; the others are steps inside what
/// it shows (a correct password, a verified code, a used link), upkeep, or
/// folded into a sign-in (`SignedInFromNewDevice`).
const SHOWN: &[&str] = &[
    "UserRegistered",
    "EmailVerificationRequested",
    "EmailVerified",
    "RegistrationAttempted",
    "PasswordRejected",
    "DevicePasswordRejected",
    "TotpRejected",
    "RecoveryCodeRejected",
    "EmailLinkRequested",
    "RecoveryCodeUsed",
    "RecoveryCodeIssued",
    "MfaEnrolled",
    "TotpDeviceAdded",
    "WebAuthnCredentialAdded",
    "AuthenticatorRemoved",
    "WebAuthnRejected",
    "MfaReset",
    "MfaResetRequested",
    "MfaResetCancelled",
    "SessionStarted",
    "SessionEnded",
    "SessionsEndedByAdmin",
    "SignInThrottled",
    "AccountLocked",
    "AccountUnlocked",
    "PasswordResetRequested",
    "PasswordReset",
    "PasswordChanged",
    "EmailChangeRequested",
    "EmailChanged",
    "EmailChangeReverted",
    "AccountSuspended",
    "AccountReactivated",
    "ReportedByUser",
];

impl App {
    /// A page of the signed-in user's timeline, newest first, before
    /// `before` (a sequence) when given. Asking counts as using the
    /// session.
    pub async fn my_activity(
        &self,
        caller: &Caller,
        session_token: &str,
        before: Option<i64>,
        size: ActivityPageSize,
    ) -> AppResult<ActivityPage> {
        let (user, session) = self.session_token(session_token)?;
        if before.is_some_and(|b| b < 1) {
            return Err(AppError::InvalidQuery("before is a sequence, from 1"));
        }
        let executed = self
            .bus
            .execute(
                user,
                UserAuthCommand::TouchSession { session },
                &caller.as_user(),
            )
            .await
            .map_err(|err| self.refused(err))?;
        let rows = timeline::user_activity(&self.pool, user, SHOWN, before, size.0 + 1)
            .await
            .map_err(|cause| AppError::Unavailable {
                what: "the event store",
                cause: cause.into(),
            })?;
        let page = usize::try_from(size.0).unwrap_or(usize::MAX);
        let more = rows.len() > page;
        // The cursor follows the rows read, not the entries shown: a page
        // of events the timeline leaves out must not end the timeline.
        let next_before = rows
            .get(..page)
            .and_then(|read| read.last())
            .map(|row| row.sequence);
        let next_before = next_before.filter(|_| more);
        let entries = rows
            .into_iter()
            .take(page)
            .filter_map(|row| entry(row, &executed.state, &executed.keeper))
            .collect();
        Ok(ActivityPage {
            entries,
            next_before,
        })
    }

    /// "This wasn't me" about the event at `sequence`, from a session of
    /// the account: every session ends, this one too.
    pub async fn report_activity(
        &self,
        caller: &Caller,
        session_token: &str,
        sequence: i64,
    ) -> AppResult<Reported> {
        let (user, session) = self.session_token(session_token)?;
        let reported = self.activity_at(user, sequence).await?;
        self.report(user, caller, reported, Reporter::Session(session))
            .await
    }

    /// "This wasn't me" through the link of a new-device notice: reports
    /// that sign-in, once.
    pub async fn report_by_link(&self, caller: &Caller, token: &str) -> AppResult<Reported> {
        let (user, link) = self
            .tokens
            .decode(TokenKind::Report, token)
            .map_err(|_| AppError::InvalidLinkToken)?;
        let (sequence, event) = timeline::reported_sign_in(&self.pool, user, &link.to_string())
            .await
            .map_err(|cause| AppError::Unavailable {
                what: "the event store",
                cause: cause.into(),
            })?
            .ok_or(AppError::ReportLinkInvalid)?;
        let reported = ReportedActivity {
            sequence: u64::try_from(sequence).map_err(AppError::internal)?,
            event: Box::new(event),
        };
        self.report(user, caller, reported, Reporter::Link(link))
            .await
    }

    async fn activity_at(&self, user: Uuid, sequence: i64) -> AppResult<ReportedActivity> {
        let unknown = || AppError::UnknownActivity;
        let position = u64::try_from(sequence).map_err(|_| unknown())?;
        let event = timeline::user_event(&self.pool, user, sequence)
            .await
            .map_err(|cause| AppError::Unavailable {
                what: "the event store",
                cause: cause.into(),
            })?
            .ok_or_else(unknown)?;
        Ok(ReportedActivity {
            sequence: position,
            event: Box::new(event),
        })
    }

    async fn report(
        &self,
        user: Uuid,
        caller: &Caller,
        reported: ReportedActivity,
        by: Reporter,
    ) -> AppResult<Reported> {
        match self
            .run(
                user,
                caller,
                UserAuthCommand::ReportActivity { reported, by },
            )
            .await?
        {
            Verdict::Reported {
                sessions_ended,
                reset_cancelled,
            } => Ok(Reported {
                sessions_ended,
                reset_cancelled,
            }),
            other => Err(AppError::internal(anyhow::anyhow!(
                "a report answered {other:?}"
            ))),
        }
    }
}

/// The entry for `row`, if the timeline shows its event.
fn entry(
    row: timeline::ActivityRow,
    state: &UserAuth,
    keeper: &crate::keys::UserKeeper,
) -> Option<ActivityEntry> {
    let (kind, summary) = describe(&row.event)?;
    let origin = client_origin(&row.metadata, keeper);
    let reported = u64::try_from(row.sequence).is_ok_and(|s| state.was_reported(s));
    Some(ActivityEntry {
        sequence: row.sequence,
        at: row.event.at(),
        kind,
        summary,
        ip: origin.as_ref().map(|o| o.client_ip.clone()),
        browser: origin
            .as_ref()
            .map(|o| UserAgent::parse(&o.user_agent).label()),
        new_device: row.new_device,
        reportable: row.event.reportable() && !reported,
        reported,
    })
}

/// A moment as the timeline's words show it.
fn moment(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// What an event is called and says; `None` for what the timeline leaves
/// out. Nothing here reads a secret: the words come from the event's kind
/// and its plain fields, never from a sealed one.
fn describe(event: &E) -> Option<(&'static str, String)> {
    let said = |kind: &'static str, words: &str| Some((kind, words.to_owned()));
    match event {
        E::UserRegistered { .. } => said("registered", "Account created"),
        E::EmailVerificationRequested { reason: None, .. } => said(
            "verification_requested",
            "A link to confirm the address was mailed",
        ),
        E::EmailVerificationRequested {
            reason: Some(_), ..
        } => said(
            "verification_requested",
            "An administrator had a link to confirm the address mailed",
        ),
        E::EmailVerified { .. } => said("email_verified", "Email address confirmed"),
        E::RegistrationAttempted { .. } => said(
            "registration_attempted",
            "Someone tried to create an account with this address",
        ),
        E::PasswordRejected { .. } | E::DevicePasswordRejected { .. } => {
            said("password_rejected", "A wrong password was entered")
        }
        E::TotpRejected {
            enrolling: true, ..
        } => said(
            "code_rejected",
            "A wrong code was entered while setting up an authenticator app",
        ),
        E::TotpRejected {
            reason: TotpRejection::WrongCode,
            ..
        } => said("code_rejected", "A wrong code was entered"),
        E::TotpRejected {
            reason: TotpRejection::Replayed,
            ..
        } => said("code_rejected", "A code that was already used was entered"),
        E::RecoveryCodeRejected { .. } => said(
            "recovery_code_rejected",
            "A wrong recovery code was entered",
        ),
        E::EmailLinkRequested { .. } => said(
            "email_link_requested",
            "A sign-in link was requested by email",
        ),
        E::RecoveryCodeUsed { .. } => said("recovery_code_used", "The recovery code was used"),
        E::RecoveryCodeIssued { .. } => {
            said("recovery_code_issued", "A new recovery code was made")
        }
        E::MfaEnrolled {
            credential: None, ..
        } => said("authenticator_enrolled", "An authenticator app was set up"),
        E::MfaEnrolled { .. } => said(
            "authenticator_enrolled",
            "A security key or passkey was set up",
        ),
        E::TotpDeviceAdded { .. } => said("authenticator_added", "Another authenticator app was added"),
        E::WebAuthnCredentialAdded { .. } => {
            said("authenticator_added", "A security key or passkey was added")
        }
        E::AuthenticatorRemoved { last: false, .. } => {
            said("authenticator_removed", "An authenticator was removed")
        }
        E::AuthenticatorRemoved { last: true, .. } => said(
            "authenticator_removed",
            "The last authenticator was removed: the next sign-in sets up a new one",
        ),
        E::WebAuthnRejected {
            reason: WebAuthnRejection::SignCountRegressed { .. },
            ..
        } => said(
            "security_key_clone_suspected",
            "A security key answered with a signature count that went back: it may have been copied, and is refused until removed",
        ),
        E::WebAuthnRejected {
            reason: WebAuthnRejection::SuspectedCopy { .. },
            ..
        } => said(
            "security_key_rejected",
            "A security key suspected of having been copied was refused",
        ),
        E::WebAuthnRejected { .. } => said(
            "security_key_rejected",
            "A security key or passkey's answer was refused",
        ),
        E::MfaReset {
            actor: Actor::User, ..
        } => said("mfa_reset", "Multi-factor authentication was reset"),
        E::MfaReset {
            actor: Actor::Admin,
            ..
        } => said(
            "mfa_reset",
            "Multi-factor authentication was reset by an administrator",
        ),
        E::MfaResetRequested { effective_at, .. } => Some((
            "mfa_reset_requested",
            format!(
                "A reset of multi-factor authentication was requested, to take effect at {}",
                moment(effective_at)
            ),
        )),
        E::MfaResetCancelled { reason, .. } => Some((
            "mfa_reset_cancelled",
            format!(
                "The pending reset of multi-factor authentication was cancelled: {}",
                match reason {
                    ResetCancellation::SignedInWithSecondFactor =>
                        "a sign-in with the authenticator app or recovery code",
                    ResetCancellation::CancelledByUser => "cancelled from the profile",
                    ResetCancellation::DeniedByLink => "the link in its mail was opened",
                    ResetCancellation::PasswordReset => "the password was reset",
                    ResetCancellation::SignInFailed => "a sign-in failed while it waited",
                    ResetCancellation::ReportedByUser => "activity was reported as not yours",
                }
            ),
        )),
        E::SessionStarted { method, .. } => said(
            "signed_in",
            match method {
                SignInMethod::Totp => "Signed in with a code from the authenticator app",
                SignInMethod::Enrollment => "Signed in and set up an authenticator app",
                SignInMethod::RecoveryCode => "Signed in with the recovery code",
                SignInMethod::EmailLink => "Signed in with an email link",
                SignInMethod::WebAuthn => "Signed in with a security key or passkey",
            },
        ),
        // The other ends are told by what caused them (a reset, a change
        // of password, a report): one entry each, not one per session.
        E::SessionEnded {
            reason: authledger_aggregates::SessionEndReason::Logout,
            ..
        } => said("signed_out", "Signed out"),
        E::SessionEnded {
            reason: authledger_aggregates::SessionEndReason::EndedByUser,
            ..
        } => said("session_ended", "A session was signed out from another one"),
        E::SessionsEndedByAdmin { .. } => said(
            "sessions_ended_by_admin",
            "An administrator signed out every session",
        ),
        E::SignInThrottled { until, .. } => Some((
            "sign_in_throttled",
            format!(
                "Too many failed sign-ins: sign-in waits until {}",
                moment(until)
            ),
        )),
        E::AccountLocked { .. } => said(
            "account_locked",
            "The account was locked after too many failed sign-ins",
        ),
        E::AccountUnlocked { .. } => {
            said("account_unlocked", "An administrator unlocked the account")
        }
        E::PasswordResetRequested { .. } => said(
            "password_reset_requested",
            "A link to reset the password was requested",
        ),
        E::PasswordReset { .. } => said(
            "password_reset",
            "The password was reset with a mailed link",
        ),
        E::PasswordChanged { .. } => said("password_changed", "The password was changed"),
        E::EmailChangeRequested { .. } => said(
            "email_change_requested",
            "A change of email address was requested",
        ),
        E::EmailChanged { .. } => said("email_changed", "The email address was changed"),
        E::EmailChangeReverted { .. } => said(
            "email_change_reverted",
            "A change of email address was undone",
        ),
        E::AccountSuspended { .. } => said("suspended", "An administrator suspended the account"),
        E::AccountReactivated { .. } => {
            said("reactivated", "An administrator reactivated the account")
        }
        E::ReportedByUser { link: None, .. } => {
            said("reported", "Activity was reported as not yours")
        }
        E::ReportedByUser { link: Some(_), .. } => said(
            "reported",
            "A sign-in was reported as not yours, with the link in its mail",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use authledger_aggregates::{Reference, Sealed, UserAuthEvent as E};
    use chrono::TimeZone;

    use super::{describe, SHOWN};

    fn sealed() -> Sealed {
        Sealed {
            key_id: "k".into(),
            nonce: "n".into(),
            ciphertext: "SEALED-CIPHERTEXT".into(),
        }
    }

    #[test]
    fn every_event_described_is_among_the_types_read_and_no_other() {
        let at = chrono::Utc.timestamp_opt(1_772_366_400, 0).unwrap();
        let reference = Reference::from_bytes([1; 16]);
        let hidden = [
            E::PasswordVerified {
                attempt: reference,
                expires_at: at,
                next: authledger_aggregates::SecondFactor::Totp,
                at,
            },
            E::TotpVerified {
                attempt: reference,
                step: 1,
                authenticator: None,
                at,
            },
            E::SessionActive {
                session: reference,
                at,
            },
            E::PasswordRehashed {
                password_hash: sealed(),
                at,
            },
            E::SignedInFromNewDevice {
                session: reference,
                report: reference,
                report_until: at,
                at,
            },
        ];
        for event in hidden {
            assert_eq!(describe(&event), None, "{}", event.name());
            assert!(!SHOWN.contains(&event.name()));
        }
        let shown = [
            E::PasswordChanged {
                password_hash: sealed(),
                at,
            },
            E::ReportedByUser {
                sequence: 3,
                link: None,
                at,
            },
            E::AccountLocked { failures: 100, at },
        ];
        for event in shown {
            assert!(describe(&event).is_some(), "{}", event.name());
            assert!(SHOWN.contains(&event.name()), "{}", event.name());
        }
    }

    #[test]
    fn a_wrong_code_while_enrolling_says_so_and_one_at_sign_in_does_not() {
        let at = chrono::Utc.timestamp_opt(1_772_366_400, 0).unwrap();
        let rejected = |enrolling| E::TotpRejected {
            attempt: Reference::from_bytes([1; 16]),
            reason: authledger_aggregates::TotpRejection::WrongCode,
            enrolling,
            at,
        };
        assert_eq!(
            describe(&rejected(true)),
            Some((
                "code_rejected",
                "A wrong code was entered while setting up an authenticator app".to_owned()
            ))
        );
        assert_eq!(
            describe(&rejected(false)),
            Some(("code_rejected", "A wrong code was entered".to_owned()))
        );
    }

    #[test]
    fn no_words_hold_a_sealed_value() {
        let at = chrono::Utc.timestamp_opt(1_772_366_400, 0).unwrap();
        let event = E::EmailChanged {
            link: Reference::from_bytes([1; 16]),
            from: sealed(),
            to: sealed(),
            revert: Reference::from_bytes([2; 16]),
            revert_until: at,
            at,
        };
        let (_, words) = describe(&event).unwrap();
        assert!(!words.contains("SEALED") && !words.contains("0101"));
    }
}
