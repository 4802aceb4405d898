//! The integration events: a public, versioned stream of what happens to
//! accounts, for other services. For each event with a public meaning it
//! publishes a message to the topic exchange `<prefix>.events` under the
//! routing key `user.<event>` (confirmed), then the runtime advances the
//! checkpoint. A crash between the two publishes again with the same
//! `id`: at-least-once, as the email relay.
//!
//! The stream is a contract with services this code does not know, so its
//! shapes are this module's own and never the domain's serialization: a
//! renamed domain field or variant must not change a message. It holds
//! nothing personal and no secret: no address (not even sealed: no
//! subscriber holds a key to open it), no IP or browser, no free text, no
//! link, attempt or device reference, no hash or authenticator data: ids
//! (the user's, a session's), times and enumerations are all it carries.
//! `docs/integration-events.md` documents it for subscribers.
use std::sync::Arc;

use authledger_aggregates::{
    Actor as DomainActor, Assurance, AuthenticatorId, AuthenticatorKind, Reference,
    ResetCancellation, SessionEndReason, SignInMethod, UserAuthEvent as E,
};
use chrono::{DateTime, Utc};
use lapin::types::ShortString;
use lapin::BasicProperties;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::mail::{PublishError, Publisher, RoutedMessage};
use crate::runtime::{Projection, StoredEvent};

pub const NAME: &str = "integration_events";

/// The envelope's own version: it changes only if the envelope's fields
/// change meaning or go away; fields may be added.
pub const SPEC_VERSION: &str = "1";

/// Every `type` the stream can carry, as `PublicEvent::kind` names them;
/// the docs hold a schema for each.
pub const TYPES: &[&str] = &[
    "user.registered",
    "user.verified",
    "user.signed_in",
    "user.sign_in_failed",
    "user.locked",
    "user.unlocked",
    "user.suspended",
    "user.reactivated",
    "user.mfa_enrolled",
    "user.authenticator_added",
    "user.authenticator_removed",
    "user.mfa_reset_requested",
    "user.mfa_reset",
    "user.mfa_reset_cancelled",
    "user.password_changed",
    "user.password_reset",
    "user.email_changed",
    "user.email_change_reverted",
    "user.session_ended",
    "user.erased",
    "user.activity_reported",
];

pub struct IntegrationEvents {
    publisher: Arc<Publisher>,
    exchange: String,
}

impl IntegrationEvents {
    /// Publishes to `exchange`, the topology's `events_exchange`.
    pub fn new(publisher: Arc<Publisher>, exchange: &str) -> Self {
        Self {
            publisher,
            exchange: exchange.to_owned(),
        }
    }
}

/// What a public event says, beyond its type: its `data`. Each variant is
/// a struct, empty ones too, so that `data` is always an object and a
/// field can be added to any of them later.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PublicEvent {
    Registered {},
    Verified {},
    SignedIn {
        session: Reference,
        method: Method,
        aal: Aal,
        expires_at: DateTime<Utc>,
    },
    SignInFailed {
        factor: Factor,
    },
    Locked {},
    Unlocked {},
    Suspended {},
    Reactivated {},
    /// The account's first authenticator: `authenticator` is its id, as a
    /// later `user.authenticator_removed` names it.
    MfaEnrolled {
        authenticator: Uuid,
    },
    /// Another authenticator was added from a session.
    AuthenticatorAdded {
        authenticator: Uuid,
        kind: AuthenticatorKind,
    },
    /// `last`: none is left, and the next sign-in enrolls again.
    AuthenticatorRemoved {
        authenticator: Uuid,
        last: bool,
    },
    /// A reset that waits: it happens at `effective_at` unless cancelled.
    MfaResetRequested {
        effective_at: DateTime<Utc>,
    },
    MfaReset {
        actor: Actor,
    },
    MfaResetCancelled {
        reason: CancelReason,
    },
    PasswordChanged {},
    PasswordReset {},
    EmailChanged {},
    EmailChangeReverted {},
    SessionEnded {
        session: Reference,
        reason: EndReason,
    },
    Erased {},
    /// The user said the event at `reported_sequence` of their history was
    /// not them; the sessions it ended follow as `user.session_ended`.
    ActivityReported {
        reported_sequence: u64,
        /// Through the link of a new-device notice rather than a session.
        by_link: bool,
    },
}

impl PublicEvent {
    /// The `type`, which is also the routing key.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Registered {} => "user.registered",
            Self::Verified {} => "user.verified",
            Self::SignedIn { .. } => "user.signed_in",
            Self::SignInFailed { .. } => "user.sign_in_failed",
            Self::Locked {} => "user.locked",
            Self::Unlocked {} => "user.unlocked",
            Self::Suspended {} => "user.suspended",
            Self::Reactivated {} => "user.reactivated",
            Self::MfaEnrolled { .. } => "user.mfa_enrolled",
            Self::AuthenticatorAdded { .. } => "user.authenticator_added",
            Self::AuthenticatorRemoved { .. } => "user.authenticator_removed",
            Self::MfaResetRequested { .. } => "user.mfa_reset_requested",
            Self::MfaReset { .. } => "user.mfa_reset",
            Self::MfaResetCancelled { .. } => "user.mfa_reset_cancelled",
            Self::PasswordChanged {} => "user.password_changed",
            Self::PasswordReset {} => "user.password_reset",
            Self::EmailChanged {} => "user.email_changed",
            Self::EmailChangeReverted {} => "user.email_change_reverted",
            Self::SessionEnded { .. } => "user.session_ended",
            Self::Erased {} => "user.erased",
            Self::ActivityReported { .. } => "user.activity_reported",
        }
    }

    /// The version of this type's `data`: a new one when a field changes
    /// meaning or goes away, never for an added field.
    pub fn version(&self) -> u32 {
        1
    }
}

/// How a session was won.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Totp,
    Enrollment,
    RecoveryCode,
    EmailLink,
    #[serde(rename = "webauthn")]
    WebAuthn,
}

/// NIST SP 800-63B assurance level of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aal {
    Aal1,
    Aal2,
}

/// The factor a failed sign-in step checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    Password,
    Totp,
    RecoveryCode,
    #[serde(rename = "webauthn")]
    WebAuthn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    User,
    Admin,
}

/// Why a pending MFA reset did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    SignedInWithSecondFactor,
    CancelledByUser,
    DeniedByLink,
    PasswordReset,
    SignInFailed,
    ReportedByUser,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Logout,
    MfaReset,
    PasswordReset,
    PasswordChanged,
    ResetDenied,
    ResetCancelled,
    EmailChangeReverted,
    AccountErased,
    EndedByUser,
    EndedByAdmin,
    AccountSuspended,
    ReportedByUser,
}

impl From<SignInMethod> for Method {
    fn from(method: SignInMethod) -> Self {
        match method {
            SignInMethod::Totp => Self::Totp,
            SignInMethod::Enrollment => Self::Enrollment,
            SignInMethod::RecoveryCode => Self::RecoveryCode,
            SignInMethod::EmailLink => Self::EmailLink,
            SignInMethod::WebAuthn => Self::WebAuthn,
        }
    }
}

impl From<Assurance> for Aal {
    fn from(aal: Assurance) -> Self {
        match aal {
            Assurance::Aal1 => Self::Aal1,
            Assurance::Aal2 => Self::Aal2,
        }
    }
}

impl From<DomainActor> for Actor {
    fn from(actor: DomainActor) -> Self {
        match actor {
            DomainActor::User => Self::User,
            DomainActor::Admin => Self::Admin,
        }
    }
}

impl From<ResetCancellation> for CancelReason {
    fn from(reason: ResetCancellation) -> Self {
        match reason {
            ResetCancellation::SignedInWithSecondFactor => Self::SignedInWithSecondFactor,
            ResetCancellation::CancelledByUser => Self::CancelledByUser,
            ResetCancellation::DeniedByLink => Self::DeniedByLink,
            ResetCancellation::PasswordReset => Self::PasswordReset,
            ResetCancellation::SignInFailed => Self::SignInFailed,
            ResetCancellation::ReportedByUser => Self::ReportedByUser,
        }
    }
}

impl From<SessionEndReason> for EndReason {
    fn from(reason: SessionEndReason) -> Self {
        match reason {
            SessionEndReason::Logout => Self::Logout,
            SessionEndReason::MfaReset => Self::MfaReset,
            SessionEndReason::PasswordReset => Self::PasswordReset,
            SessionEndReason::PasswordChanged => Self::PasswordChanged,
            SessionEndReason::ResetDenied => Self::ResetDenied,
            SessionEndReason::ResetCancelled => Self::ResetCancelled,
            SessionEndReason::EmailChangeReverted => Self::EmailChangeReverted,
            SessionEndReason::AccountErased => Self::AccountErased,
            SessionEndReason::EndedByUser => Self::EndedByUser,
            SessionEndReason::EndedByAdmin => Self::EndedByAdmin,
            SessionEndReason::AccountSuspended => Self::AccountSuspended,
            SessionEndReason::ReportedByUser => Self::ReportedByUser,
        }
    }
}

/// The public event a stored event is, if any.
pub fn public_event(event: &E) -> Option<PublicEvent> {
    use PublicEvent as P;
    let public = match event {
        E::UserRegistered { .. } => P::Registered {},
        E::EmailVerified { .. } => P::Verified {},
        E::SessionStarted {
            session,
            method,
            aal,
            expires_at,
            ..
        } => P::SignedIn {
            session: *session,
            method: (*method).into(),
            aal: (*aal).into(),
            expires_at: *expires_at,
        },
        E::PasswordRejected { .. } | E::DevicePasswordRejected { .. } => P::SignInFailed {
            factor: Factor::Password,
        },
        E::TotpRejected { .. } => P::SignInFailed {
            factor: Factor::Totp,
        },
        E::RecoveryCodeRejected { .. } => P::SignInFailed {
            factor: Factor::RecoveryCode,
        },
        E::WebAuthnRejected { .. } => P::SignInFailed {
            factor: Factor::WebAuthn,
        },
        E::TotpDeviceAdded { authenticator, .. } => P::AuthenticatorAdded {
            authenticator: authenticator.0,
            kind: AuthenticatorKind::Totp,
        },
        E::WebAuthnCredentialAdded { authenticator, .. } => P::AuthenticatorAdded {
            authenticator: authenticator.0,
            kind: AuthenticatorKind::WebAuthn,
        },
        E::AuthenticatorRemoved {
            authenticator,
            last,
            ..
        } => P::AuthenticatorRemoved {
            authenticator: authenticator.0,
            last: *last,
        },
        E::AccountLocked { .. } => P::Locked {},
        E::AccountUnlocked { .. } => P::Unlocked {},
        E::AccountSuspended { .. } => P::Suspended {},
        E::AccountReactivated { .. } => P::Reactivated {},
        E::MfaEnrolled { authenticator, .. } => P::MfaEnrolled {
            authenticator: authenticator.unwrap_or(AuthenticatorId::FIRST).0,
        },
        E::MfaResetRequested { effective_at, .. } => P::MfaResetRequested {
            effective_at: *effective_at,
        },
        E::MfaReset { actor, .. } => P::MfaReset {
            actor: (*actor).into(),
        },
        E::MfaResetCancelled { reason, .. } => P::MfaResetCancelled {
            reason: (*reason).into(),
        },
        E::PasswordChanged { .. } => P::PasswordChanged {},
        E::PasswordReset { .. } => P::PasswordReset {},
        E::EmailChanged { .. } => P::EmailChanged {},
        E::EmailChangeReverted { .. } => P::EmailChangeReverted {},
        E::SessionEnded {
            session, reason, ..
        } => P::SessionEnded {
            session: *session,
            reason: (*reason).into(),
        },
        E::AccountErased { .. } => P::Erased {},
        E::ReportedByUser { sequence, link, .. } => P::ActivityReported {
            reported_sequence: *sequence,
            by_link: link.is_some(),
        },
        // Listed rather than matched by `_`, so that a new event cannot
        // stay out of the stream unnoticed. These are steps inside a
        // sign-in or a recovery whose outcome is published (a session, a
        // failure, a change), requests that change nothing until a link is
        // used, housekeeping, throttles whose lasting effect is `locked`,
        // and an administrator's ending of every session, published as
        // each session's end; the docs say why for each.
        E::PasswordVerified { .. }
        | E::PasswordRehashed { .. }
        | E::TotpVerified { .. }
        | E::EmailLinkRequested { .. }
        | E::EmailLinkUsed { .. }
        | E::RecoveryCodeUsed { .. }
        | E::RecoveryCodeIssued { .. }
        | E::MfaEnrollmentStarted { .. }
        | E::SessionActive { .. }
        | E::SignInThrottled { .. }
        | E::DeviceThrottled { .. }
        | E::AttemptFromDevice { .. }
        | E::EmailVerificationRequested { .. }
        | E::RegistrationAttempted { .. }
        | E::PasswordResetRequested { .. }
        | E::EmailChangeRequested { .. }
        | E::SecretsResealed { .. }
        | E::SignedInFromNewDevice { .. }
        | E::SessionsEndedByAdmin { .. }
        | E::TotpDeviceSetupStarted { .. }
        | E::WebAuthnVerified { .. } => return None,
    };
    Some(public)
}

/// A message of the stream, as subscribers read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope {
    pub specversion: &'static str,
    /// `<user id>:<sequence>`: the same event always has the same id, so a
    /// subscriber drops what it has seen.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub version: u32,
    pub user: Uuid,
    /// The event's number in the user's history, from 1, without gaps.
    pub sequence: i64,
    /// The event's number in the whole log: unique, increasing within one
    /// user's history.
    pub position: i64,
    pub occurred_at: DateTime<Utc>,
    pub data: PublicEvent,
}

impl Envelope {
    /// The message for `stored`, or `None` when it has no public meaning.
    pub fn of(stored: &StoredEvent) -> anyhow::Result<Option<Self>> {
        let Some(data) = public_event(&stored.event) else {
            return Ok(None);
        };
        Ok(Some(Self {
            specversion: SPEC_VERSION,
            id: format!("{}:{}", stored.aggregate_id, stored.sequence),
            kind: data.kind(),
            version: data.version(),
            user: stored.user_id()?,
            sequence: stored.sequence,
            position: stored.position,
            occurred_at: stored.event.at(),
            data,
        }))
    }

    fn message(&self) -> Result<RoutedMessage, PublishError> {
        Ok(RoutedMessage {
            routing_key: self.kind.to_owned(),
            payload: serde_json::to_vec(self).map_err(PublishError::Encode)?,
            properties: BasicProperties::default()
                .with_message_id(ShortString::from(self.id.as_str()))
                .with_type(ShortString::from(self.kind))
                .with_content_type("application/json".into()),
        })
    }
}

#[async_trait::async_trait]
impl Projection for IntegrationEvents {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, _tx: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        let mut messages = Vec::new();
        for stored in events {
            if let Some(envelope) = Envelope::of(stored)? {
                messages.push(envelope.message()?);
            }
        }
        self.publisher
            .publish_routed(&self.exchange, &messages)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use authledger_aggregates::{
        DeviceDigest, Sealed, TotpRejection, WebAuthnCredential, WebAuthnRejection,
    };
    use chrono::TimeZone;
    use serde_json::{json, Value};

    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_772_366_400, 0).unwrap() + chrono::Duration::minutes(minutes)
    }

    fn user() -> Uuid {
        Uuid::from_u128(0x6f1c_0f5e_1b57_4e35_9d39_3b2f_0a0e_6a11)
    }

    fn sealed(name: &str) -> Sealed {
        Sealed {
            key_id: "user".into(),
            nonce: format!("nonce-{name}"),
            ciphertext: format!("ciphertext-{name}"),
        }
    }

    fn stored(sequence: i64, event: E) -> StoredEvent {
        StoredEvent {
            transaction_id: 1,
            position: 100 + sequence,
            aggregate_id: user().to_string(),
            sequence,
            event_type: event.name().into(),
            event,
            metadata: HashMap::from([
                ("actor".to_owned(), "admin".to_owned()),
                ("client_ip".to_owned(), "203.0.113.7".to_owned()),
                ("personal".to_owned(), "sealed-origin".to_owned()),
            ]),
            recorded_at: at(0),
        }
    }

    fn body(sequence: i64, event: E) -> Value {
        serde_json::to_value(Envelope::of(&stored(sequence, event)).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn a_session_start_is_published_with_its_id_method_and_assurance() {
        let event = E::SessionStarted {
            session: Reference::from_bytes([7; 16]),
            method: SignInMethod::EmailLink,
            aal: Assurance::Aal1,
            expires_at: at(12 * 60),
            at: at(0),
        };
        assert_eq!(
            body(4, event),
            json!({
                "specversion": "1",
                "id": "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11:4",
                "type": "user.signed_in",
                "version": 1,
                "user": "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11",
                "sequence": 4,
                "position": 104,
                "occurred_at": "2026-03-01T12:00:00Z",
                "data": {
                    "session": "07".repeat(16),
                    "method": "email_link",
                    "aal": "aal1",
                    "expires_at": "2026-03-02T00:00:00Z",
                },
            })
        );
    }

    #[test]
    fn an_erasure_carries_nothing_but_ids_and_its_time() {
        let event = E::AccountErased {
            actor: DomainActor::Admin,
            reason: Some(sealed("reason")),
            at: at(3),
        };
        assert_eq!(
            body(9, event),
            json!({
                "specversion": "1",
                "id": "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11:9",
                "type": "user.erased",
                "version": 1,
                "user": "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11",
                "sequence": 9,
                "position": 109,
                "occurred_at": "2026-03-01T12:03:00Z",
                "data": {},
            })
        );
    }

    #[test]
    fn every_failed_factor_is_one_type_told_apart_by_its_factor() {
        let attempt = Reference::from_bytes([1; 16]);
        let cases = [
            (E::PasswordRejected { at: at(0) }, Factor::Password),
            (
                E::DevicePasswordRejected {
                    device: DeviceDigest("digest".into()),
                    at: at(0),
                },
                Factor::Password,
            ),
            (
                E::TotpRejected {
                    attempt,
                    reason: TotpRejection::Replayed,
                    enrolling: false,
                    at: at(0),
                },
                Factor::Totp,
            ),
            (
                E::RecoveryCodeRejected { attempt, at: at(0) },
                Factor::RecoveryCode,
            ),
        ];
        for (event, factor) in cases {
            assert_eq!(
                public_event(&event),
                Some(PublicEvent::SignInFailed { factor }),
                "{event:?}"
            );
        }
    }

    #[test]
    fn reasons_and_actors_are_published_as_enumerations_and_sealed_text_never() {
        let cases = [
            (
                E::MfaReset {
                    actor: DomainActor::Admin,
                    reason: Some(sealed("why")),
                    at: at(0),
                },
                json!({"actor": "admin"}),
            ),
            (
                E::MfaResetCancelled {
                    reason: ResetCancellation::DeniedByLink,
                    at: at(0),
                },
                json!({"reason": "denied_by_link"}),
            ),
            (
                E::SessionEnded {
                    session: Reference::from_bytes([2; 16]),
                    reason: SessionEndReason::PasswordChanged,
                    at: at(0),
                },
                json!({"session": "02".repeat(16), "reason": "password_changed"}),
            ),
            (
                E::AccountUnlocked {
                    reason: sealed("why"),
                    at: at(0),
                },
                json!({}),
            ),
            (
                E::AccountSuspended {
                    reason: sealed("why"),
                    at: at(0),
                },
                json!({}),
            ),
            (
                E::SessionEnded {
                    session: Reference::from_bytes([2; 16]),
                    reason: SessionEndReason::AccountSuspended,
                    at: at(0),
                },
                json!({"session": "02".repeat(16), "reason": "account_suspended"}),
            ),
            (
                E::MfaResetRequested {
                    effective_at: at(72 * 60),
                    denial: Reference::from_bytes([3; 16]),
                    at: at(0),
                },
                json!({"effective_at": "2026-03-04T12:00:00Z"}),
            ),
        ];
        for (event, data) in cases {
            assert_eq!(body(1, event.clone())["data"], data, "{event:?}");
        }
    }

    #[test]
    fn a_change_of_address_is_published_without_either_address() {
        let event = E::EmailChanged {
            link: Reference::from_bytes([4; 16]),
            from: sealed("old"),
            to: sealed("new"),
            revert: Reference::from_bytes([5; 16]),
            revert_until: at(72 * 60),
            at: at(0),
        };
        let text = body(2, event).to_string();
        assert!(text.contains("\"type\":\"user.email_changed\""), "{text}");
        for never in ["ciphertext", "nonce", &"04".repeat(16), &"05".repeat(16)] {
            assert!(!text.contains(never), "{never} in {text}");
        }
    }

    #[test]
    fn steps_requests_and_housekeeping_are_not_published() {
        let reference = Reference::from_bytes([6; 16]);
        let quiet = [
            E::SessionActive {
                session: reference,
                at: at(0),
            },
            E::PasswordRehashed {
                password_hash: sealed("hash"),
                at: at(0),
            },
            E::EmailLinkRequested {
                link: reference,
                attempt: reference,
                expires_at: at(15),
                at: at(0),
            },
            E::SignInThrottled {
                failures: 5,
                until: at(1),
                at: at(0),
            },
            E::RegistrationAttempted { at: at(0) },
            E::SessionsEndedByAdmin {
                reason: sealed("why"),
                at: at(0),
            },
        ];
        for event in quiet {
            assert_eq!(public_event(&event), None, "{event:?}");
        }
    }

    /// One domain event behind each public type.
    fn one_of_each() -> Vec<E> {
        let reference = Reference::from_bytes([8; 16]);
        vec![
            E::UserRegistered {
                user_id: user(),
                email: sealed("ada"),
                password_hash: sealed("hash"),
                at: at(0),
            },
            E::EmailVerified { at: at(0) },
            E::SessionStarted {
                session: reference,
                method: SignInMethod::Totp,
                aal: Assurance::Aal2,
                expires_at: at(60),
                at: at(0),
            },
            E::PasswordRejected { at: at(0) },
            E::AccountLocked {
                failures: 100,
                at: at(0),
            },
            E::AccountUnlocked {
                reason: sealed("why"),
                at: at(0),
            },
            E::AccountSuspended {
                reason: sealed("why"),
                at: at(0),
            },
            E::AccountReactivated {
                reason: sealed("why"),
                at: at(0),
            },
            E::MfaEnrolled {
                attempt: reference,
                step: 1,
                authenticator: None,
                name: None,
                credential: None,
                at: at(0),
            },
            E::MfaResetRequested {
                effective_at: at(60),
                denial: reference,
                at: at(0),
            },
            E::MfaReset {
                actor: DomainActor::User,
                reason: None,
                at: at(0),
            },
            E::MfaResetCancelled {
                reason: ResetCancellation::SignInFailed,
                at: at(0),
            },
            E::PasswordChanged {
                password_hash: sealed("hash"),
                at: at(0),
            },
            E::PasswordReset {
                password_hash: sealed("hash"),
                at: at(0),
            },
            E::EmailChanged {
                link: reference,
                from: sealed("old"),
                to: sealed("new"),
                revert: reference,
                revert_until: at(60),
                at: at(0),
            },
            E::EmailChangeReverted {
                revert: reference,
                restored: sealed("old"),
                at: at(0),
            },
            E::SessionEnded {
                session: reference,
                reason: SessionEndReason::Logout,
                at: at(0),
            },
            E::AccountErased {
                actor: DomainActor::User,
                reason: None,
                at: at(0),
            },
            E::TotpDeviceAdded {
                authenticator: AuthenticatorId(Uuid::from_u128(2)),
                name: sealed("spare"),
                secret: sealed("secret"),
                step: 1,
                at: at(0),
            },
            E::AuthenticatorRemoved {
                authenticator: AuthenticatorId(Uuid::from_u128(2)),
                last: false,
                at: at(0),
            },
            E::ReportedByUser {
                sequence: 12,
                link: Some(reference),
                at: at(0),
            },
        ]
    }

    fn schema(kind: &str) -> Value {
        let path = format!(
            "{}/../docs/integration-events/{kind}.schema.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The keys `schema` requires are in `value`, and every key of `value`
    /// is one the schema describes, recursively through objects; strings
    /// whose schema lists values are among them.
    fn conforms(schema: &Value, value: &Value, at: &str) {
        if let Some(allowed) = schema["enum"].as_array() {
            assert!(allowed.contains(value), "{at}: {value} not in {allowed:?}");
        }
        if let Some(constant) = schema.get("const") {
            assert_eq!(constant, value, "{at}");
        }
        let Some(object) = value.as_object() else {
            return;
        };
        assert_eq!(schema["type"], "object", "{at}");
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap();
            assert!(object.contains_key(key), "{at}: no {key}");
        }
        for (key, inner) in object {
            let described = &schema["properties"][key];
            assert!(described.is_object(), "{at}: {key} is not in the schema");
            conforms(described, inner, &format!("{at}.{key}"));
        }
    }

    /// Beside one of each type, each value of each enumeration, so that
    /// the schemas' lists are checked against the code's.
    fn every_value() -> Vec<E> {
        let session = Reference::from_bytes([9; 16]);
        let mut events = one_of_each();
        for (method, aal) in [
            (SignInMethod::Totp, Assurance::Aal2),
            (SignInMethod::Enrollment, Assurance::Aal2),
            (SignInMethod::RecoveryCode, Assurance::Aal2),
            (SignInMethod::EmailLink, Assurance::Aal1),
            (SignInMethod::WebAuthn, Assurance::Aal2),
        ] {
            events.push(E::SessionStarted {
                session,
                method,
                aal,
                expires_at: at(60),
                at: at(0),
            });
        }
        events.extend([
            E::TotpRejected {
                attempt: session,
                reason: TotpRejection::WrongCode,
                enrolling: false,
                at: at(0),
            },
            E::RecoveryCodeRejected {
                attempt: session,
                at: at(0),
            },
            E::WebAuthnRejected {
                attempt: session,
                reason: WebAuthnRejection::InvalidAssertion,
                at: at(0),
            },
            E::WebAuthnCredentialAdded {
                authenticator: AuthenticatorId(Uuid::from_u128(3)),
                name: sealed("key"),
                credential: WebAuthnCredential {
                    credential_id: "AQID".into(),
                    public_key: serde_json::json!({}),
                    sign_count: 0,
                    transports: vec!["usb".into()],
                    user_verified: true,
                },
                at: at(0),
            },
            E::MfaReset {
                actor: DomainActor::Admin,
                reason: Some(sealed("why")),
                at: at(0),
            },
        ]);
        for reason in [
            ResetCancellation::SignedInWithSecondFactor,
            ResetCancellation::CancelledByUser,
            ResetCancellation::DeniedByLink,
            ResetCancellation::PasswordReset,
            ResetCancellation::SignInFailed,
            ResetCancellation::ReportedByUser,
        ] {
            events.push(E::MfaResetCancelled { reason, at: at(0) });
        }
        for reason in [
            SessionEndReason::Logout,
            SessionEndReason::MfaReset,
            SessionEndReason::PasswordReset,
            SessionEndReason::PasswordChanged,
            SessionEndReason::ResetDenied,
            SessionEndReason::ResetCancelled,
            SessionEndReason::EmailChangeReverted,
            SessionEndReason::AccountErased,
            SessionEndReason::EndedByUser,
            SessionEndReason::EndedByAdmin,
            SessionEndReason::AccountSuspended,
            SessionEndReason::ReportedByUser,
        ] {
            events.push(E::SessionEnded {
                session,
                reason,
                at: at(0),
            });
        }
        events
    }

    #[test]
    fn every_type_has_a_schema_that_a_sample_of_it_conforms_to() {
        let samples: Vec<Value> = every_value()
            .into_iter()
            .enumerate()
            .map(|(n, event)| body(i64::try_from(n).unwrap() + 1, event))
            .collect();
        let kinds: HashSet<&str> = samples
            .iter()
            .map(|s| s["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            TYPES.iter().copied().collect(),
            "one sample per type"
        );
        for sample in &samples {
            let kind = sample["type"].as_str().unwrap();
            let schema = schema(kind);
            assert_eq!(
                schema["$schema"],
                "https://json-schema.org/draft/2020-12/schema"
            );
            conforms(&schema, sample, kind);
        }
        let dir = format!("{}/../docs/integration-events", env!("CARGO_MANIFEST_DIR"));
        let files: HashSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        let expected: HashSet<String> = TYPES.iter().map(|t| format!("{t}.schema.json")).collect();
        assert_eq!(files, expected, "a schema for each type and no other");
    }

    #[test]
    fn the_message_is_routed_by_its_type_and_identified_by_its_id() {
        let envelope = Envelope::of(&stored(3, E::EmailVerified { at: at(0) }))
            .unwrap()
            .unwrap();
        let message = envelope.message().unwrap();
        assert_eq!(message.routing_key, "user.verified");
        assert_eq!(
            message
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str()),
            Some("6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11:3")
        );
        assert_eq!(
            message
                .properties
                .content_type()
                .as_ref()
                .map(|t| t.as_str()),
            Some("application/json")
        );
    }
}
