use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::authenticator::{AuthenticatorId, WebAuthnCredential};
use super::device::DeviceDigest;
use super::reference::Reference;
use super::services::Sealed;

/// Facts about a user's credentials. Each carries its domain time `at`.
/// Secrets appear only sealed (AEAD) with a server key; personal data (the
/// address, free text) only sealed with the user's own data key, so that
/// deleting that key erases it from every event; tokens never appear, only
/// the references they are derived from. Stored type names never change; a
/// new shape gets a new version and an upcaster. Version 2 made ids random
/// and sealed personal data; no upcaster reads version 1, whose stores the
/// application refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserAuthEvent {
    /// `email` is sealed (`SealPurpose::Email`).
    UserRegistered {
        user_id: Uuid,
        email: Sealed,
        password_hash: Sealed,
        at: DateTime<Utc>,
    },
    /// A correct password opened a login attempt.
    PasswordVerified {
        attempt: Reference,
        expires_at: DateTime<Utc>,
        next: SecondFactor,
        at: DateTime<Utc>,
    },
    PasswordRejected {
        at: DateTime<Utc>,
    },
    /// The password was hashed again with the current parameters.
    PasswordRehashed {
        password_hash: Sealed,
        at: DateTime<Utc>,
    },
    /// `authenticator`: the TOTP device whose code it was; events stored
    /// before accounts held several name none, meaning the one enrolled.
    TotpVerified {
        attempt: Reference,
        step: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authenticator: Option<AuthenticatorId>,
        at: DateTime<Utc>,
    },
    /// `enrolling`: the code was typed from an authenticator being set up,
    /// which has no second step to fail yet: a mistyped first code, not a
    /// sign-in that got past the password and no further. Events stored
    /// before the field existed read as `false`.
    TotpRejected {
        attempt: Reference,
        reason: TotpRejection,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        enrolling: bool,
        at: DateTime<Utc>,
    },
    EmailLinkRequested {
        link: Reference,
        attempt: Reference,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    EmailLinkUsed {
        link: Reference,
        at: DateTime<Utc>,
    },
    RecoveryCodeUsed {
        attempt: Reference,
        at: DateTime<Utc>,
    },
    RecoveryCodeRejected {
        attempt: Reference,
        at: DateTime<Utc>,
    },
    /// `digest` is the code's SHA-256, sealed (`SealPurpose::RecoveryCode`).
    RecoveryCodeIssued {
        digest: Sealed,
        at: DateTime<Utc>,
    },
    MfaEnrollmentStarted {
        attempt: Reference,
        secret: Sealed,
        at: DateTime<Utc>,
    },
    /// The first authenticator of the account, set up in login attempt
    /// `attempt`: the authenticator app begun there, confirmed with a code
    /// of `step`, or, with `credential`, a security key or passkey
    /// registered there instead (`step` 0). `name` is sealed
    /// (`SealPurpose::FreeText`). Events stored before accounts held
    /// several authenticators name none: `AuthenticatorId::FIRST`.
    MfaEnrolled {
        attempt: Reference,
        step: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authenticator: Option<AuthenticatorId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<Sealed>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<WebAuthnCredential>,
        at: DateTime<Utc>,
    },
    /// The authenticator and recovery code are forgotten; the next sign-in
    /// enrolls a new authenticator. An administrator's `reason` is sealed
    /// (`SealPurpose::FreeText`).
    MfaReset {
        actor: Actor,
        reason: Option<Sealed>,
        at: DateTime<Utc>,
    },
    SessionStarted {
        session: Reference,
        method: SignInMethod,
        aal: Assurance,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    SessionActive {
        session: Reference,
        at: DateTime<Utc>,
    },
    SessionEnded {
        session: Reference,
        reason: SessionEndReason,
        at: DateTime<Utc>,
    },
    SignInThrottled {
        failures: u32,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    AccountLocked {
        failures: u32,
        at: DateTime<Utc>,
    },
    /// `reason` is sealed (`SealPurpose::FreeText`).
    AccountUnlocked {
        reason: Sealed,
        at: DateTime<Utc>,
    },
    /// A verification link was mailed to the account's address. Recorded
    /// with a registration, it leaves the account unverified until
    /// `EmailVerified`; accounts registered before verification existed
    /// never had one and count as verified.
    /// An administrator's resend carries their `reason`, sealed
    /// (`SealPurpose::FreeText`).
    EmailVerificationRequested {
        link: Reference,
        expires_at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Sealed>,
        at: DateTime<Utc>,
    },
    EmailVerified {
        at: DateTime<Utc>,
    },
    /// Someone tried to register an address that already has a verified
    /// account; its owner is told, nothing changes.
    RegistrationAttempted {
        at: DateTime<Utc>,
    },
    /// A forgotten-password link was mailed.
    PasswordResetRequested {
        link: Reference,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The password was set through a mailed reset link.
    PasswordReset {
        password_hash: Sealed,
        at: DateTime<Utc>,
    },
    /// The signed-in user changed their password.
    PasswordChanged {
        password_hash: Sealed,
        at: DateTime<Utc>,
    },
    /// An MFA reset asked from a session that proved no device: it takes
    /// effect at `effective_at` unless cancelled. `denial` is the reference
    /// of the "this wasn't me" link mailed with the notice.
    MfaResetRequested {
        effective_at: DateTime<Utc>,
        denial: Reference,
        at: DateTime<Utc>,
    },
    MfaResetCancelled {
        reason: ResetCancellation,
        at: DateTime<Utc>,
    },
    /// The login attempt was opened from a browser with a device cookie;
    /// a session it starts makes the device known.
    AttemptFromDevice {
        attempt: Reference,
        device: DeviceDigest,
        at: DateTime<Utc>,
    },
    /// A wrong password from a known device: it counts against that device
    /// only.
    DevicePasswordRejected {
        device: DeviceDigest,
        at: DateTime<Utc>,
    },
    /// A known device's own failures made it wait; other sources are not
    /// affected.
    DeviceThrottled {
        device: DeviceDigest,
        failures: u32,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The signed-in user asked to change the address to `new_email`
    /// (sealed, `SealPurpose::Email`); link `link` was mailed to it. It
    /// replaces a change asked before and not yet confirmed.
    EmailChangeRequested {
        link: Reference,
        new_email: Sealed,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The pending change's link was opened: the address is `to` instead of
    /// `from` (both sealed, `SealPurpose::Email`). The "this wasn't me" link
    /// `revert` was mailed to `from`, and undoes the change until
    /// `revert_until`. Links mailed to `from` to sign in or set a password
    /// are void.
    EmailChanged {
        link: Reference,
        from: Sealed,
        to: Sealed,
        revert: Reference,
        revert_until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The revert link of a change was opened: the address is `restored`
    /// (sealed, `SealPurpose::Email`), the `from` of that change, and that
    /// change's and every later change's revert links are void. Followed by
    /// the end of every session.
    EmailChangeReverted {
        revert: Reference,
        restored: Sealed,
        at: DateTime<Utc>,
    },
    /// The account is gone: every later command is answered as for a user
    /// never registered. An administrator's `reason` is sealed
    /// (`SealPurpose::FreeText`). Preceded by the end of every session.
    AccountErased {
        actor: Actor,
        reason: Option<Sealed>,
        at: DateTime<Utc>,
    },
    /// Each present secret was sealed again, unchanged, with the key its
    /// purpose uses now, and replaces the one held: the password hash, the
    /// authenticator's secret, a pending enrollment's secret, the recovery
    /// code's digest.
    /// `totp_secret` is the one authenticator app's, in events stored
    /// before accounts held several; since, each app's secret is in
    /// `totp_devices`.
    SecretsResealed {
        password_hash: Option<Sealed>,
        totp_secret: Option<Sealed>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        totp_devices: Vec<ResealedSecret>,
        /// The secret of another app being set up from a session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        totp_device_setup: Option<Sealed>,
        enrollment_secret: Option<Sealed>,
        recovery_code: Option<Sealed>,
        at: DateTime<Utc>,
    },
    /// An administrator suspended the account: no route signs it in until
    /// it is reactivated. Preceded by the end of every session. `reason` is
    /// sealed (`SealPurpose::FreeText`).
    AccountSuspended {
        reason: Sealed,
        at: DateTime<Utc>,
    },
    /// `reason` is sealed (`SealPurpose::FreeText`).
    AccountReactivated {
        reason: Sealed,
        at: DateTime<Utc>,
    },
    /// An administrator ended every session; the `SessionEnded` events
    /// before it say which. `reason` is sealed (`SealPurpose::FreeText`).
    SessionsEndedByAdmin {
        reason: Sealed,
        at: DateTime<Utc>,
    },
    /// Session `session` (its `SessionStarted` just before) was won from a
    /// browser this account had not signed in from, on an account that had
    /// signed in before. `report` is the reference of the "this wasn't me"
    /// link mailed with the notice, usable until `report_until`.
    SignedInFromNewDevice {
        session: Reference,
        report: Reference,
        report_until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The user said that the event at `sequence` of their stream (a
    /// sign-in or a change of credentials) was not them, from one of their
    /// sessions or through the mailed link `link`. Followed by the end of
    /// every session and of a waiting MFA reset.
    ReportedByUser {
        sequence: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<Reference>,
        at: DateTime<Utc>,
    },
    /// Another authenticator app is being set up from session `session`:
    /// its `secret` (sealed, `SealPurpose::TotpSecret`) waits for a code.
    /// It replaces one begun before and not confirmed.
    TotpDeviceSetupStarted {
        session: Reference,
        secret: Sealed,
        at: DateTime<Utc>,
    },
    /// The authenticator app begun from a session was confirmed with a
    /// code of `step`. `name` is sealed (`SealPurpose::FreeText`), `secret`
    /// (`SealPurpose::TotpSecret`).
    TotpDeviceAdded {
        authenticator: AuthenticatorId,
        name: Sealed,
        secret: Sealed,
        step: u64,
        at: DateTime<Utc>,
    },
    /// A security key or passkey was registered from a session. `name` is
    /// sealed (`SealPurpose::FreeText`); the credential holds no secret.
    WebAuthnCredentialAdded {
        authenticator: AuthenticatorId,
        name: Sealed,
        credential: WebAuthnCredential,
        at: DateTime<Utc>,
    },
    /// A security key or passkey signed the attempt's challenge, counting
    /// `sign_count`.
    WebAuthnVerified {
        attempt: Reference,
        authenticator: AuthenticatorId,
        sign_count: u32,
        user_verified: bool,
        at: DateTime<Utc>,
    },
    /// An assertion that did not finish the sign-in; counts as a failed
    /// second factor.
    WebAuthnRejected {
        attempt: Reference,
        reason: WebAuthnRejection,
        at: DateTime<Utc>,
    },
    /// The user removed one authenticator; `last` when it was the only one,
    /// which leaves the account to enroll again at its next sign-in and
    /// forgets its recovery code.
    AuthenticatorRemoved {
        authenticator: AuthenticatorId,
        last: bool,
        at: DateTime<Utc>,
    },
}

/// Why a WebAuthn assertion was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebAuthnRejection {
    /// The signature did not check out against the challenge.
    InvalidAssertion,
    /// Signed by a credential the account no longer holds.
    UnknownCredential,
    /// The credential's signature count did not go up: two copies of its
    /// key may be in use (a cloned key). Neither count changes.
    SignCountRegressed {
        authenticator: AuthenticatorId,
        stored: u32,
        presented: u32,
    },
    /// Signed by a key refused since its count went back: whichever copy
    /// it is, it no longer signs in until its owner removes it.
    SuspectedCopy { authenticator: AuthenticatorId },
}

/// An authenticator app's secret sealed again (`SealPurpose::TotpSecret`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResealedSecret {
    pub authenticator: AuthenticatorId,
    pub secret: Sealed,
}

/// Why a pending MFA reset did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetCancellation {
    /// A sign-in with the authenticator or the recovery code: the device is
    /// not lost after all.
    SignedInWithSecondFactor,
    /// The user cancelled it from their profile.
    CancelledByUser,
    /// The "this wasn't me" link in the notice.
    DeniedByLink,
    /// The password was set through a mailed reset link.
    PasswordReset,
    /// A factor failed while the reset waited.
    SignInFailed,
    /// The user reported activity of theirs that was not them.
    ReportedByUser,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondFactor {
    Totp,
    Enroll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TotpRejection {
    WrongCode,
    Replayed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInMethod {
    Totp,
    Enrollment,
    RecoveryCode,
    EmailLink,
    /// A security key or passkey.
    #[serde(rename = "webauthn")]
    WebAuthn,
}

impl SignInMethod {
    /// NIST assurance level: an email link proves no device, so it is aal1.
    pub fn assurance(self) -> Assurance {
        match self {
            Self::Totp | Self::Enrollment | Self::RecoveryCode | Self::WebAuthn => Assurance::Aal2,
            Self::EmailLink => Assurance::Aal1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assurance {
    Aal1,
    Aal2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    Logout,
    MfaReset,
    PasswordReset,
    PasswordChanged,
    /// The "this wasn't me" link of a pending MFA reset.
    ResetDenied,
    /// A pending MFA reset was called off by a sign-in with a second factor
    /// or by the user; this session was won by email link.
    ResetCancelled,
    /// The old address's "this wasn't me" link undid a change of address.
    EmailChangeReverted,
    AccountErased,
    /// The user ended it from another of their sessions.
    EndedByUser,
    /// An administrator ended every session of the account.
    EndedByAdmin,
    /// An administrator suspended the account.
    AccountSuspended,
    /// The user reported activity of theirs that was not them.
    ReportedByUser,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    User,
    Admin,
}

impl UserAuthEvent {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::UserRegistered { at, .. }
            | Self::PasswordVerified { at, .. }
            | Self::PasswordRejected { at }
            | Self::PasswordRehashed { at, .. }
            | Self::TotpVerified { at, .. }
            | Self::TotpRejected { at, .. }
            | Self::EmailLinkRequested { at, .. }
            | Self::EmailLinkUsed { at, .. }
            | Self::RecoveryCodeUsed { at, .. }
            | Self::RecoveryCodeRejected { at, .. }
            | Self::RecoveryCodeIssued { at, .. }
            | Self::MfaEnrollmentStarted { at, .. }
            | Self::MfaEnrolled { at, .. }
            | Self::MfaReset { at, .. }
            | Self::SessionStarted { at, .. }
            | Self::SessionActive { at, .. }
            | Self::SessionEnded { at, .. }
            | Self::SignInThrottled { at, .. }
            | Self::AccountLocked { at, .. }
            | Self::AccountUnlocked { at, .. }
            | Self::EmailVerificationRequested { at, .. }
            | Self::EmailVerified { at }
            | Self::RegistrationAttempted { at }
            | Self::PasswordResetRequested { at, .. }
            | Self::PasswordReset { at, .. }
            | Self::PasswordChanged { at, .. }
            | Self::MfaResetRequested { at, .. }
            | Self::MfaResetCancelled { at, .. }
            | Self::AttemptFromDevice { at, .. }
            | Self::DevicePasswordRejected { at, .. }
            | Self::DeviceThrottled { at, .. }
            | Self::EmailChangeRequested { at, .. }
            | Self::EmailChanged { at, .. }
            | Self::EmailChangeReverted { at, .. }
            | Self::AccountErased { at, .. }
            | Self::SecretsResealed { at, .. }
            | Self::AccountSuspended { at, .. }
            | Self::AccountReactivated { at, .. }
            | Self::SessionsEndedByAdmin { at, .. }
            | Self::SignedInFromNewDevice { at, .. }
            | Self::ReportedByUser { at, .. }
            | Self::TotpDeviceSetupStarted { at, .. }
            | Self::TotpDeviceAdded { at, .. }
            | Self::WebAuthnCredentialAdded { at, .. }
            | Self::WebAuthnVerified { at, .. }
            | Self::WebAuthnRejected { at, .. }
            | Self::AuthenticatorRemoved { at, .. } => *at,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::UserRegistered { .. } => "UserRegistered",
            Self::PasswordVerified { .. } => "PasswordVerified",
            Self::PasswordRejected { .. } => "PasswordRejected",
            Self::PasswordRehashed { .. } => "PasswordRehashed",
            Self::TotpVerified { .. } => "TotpVerified",
            Self::TotpRejected { .. } => "TotpRejected",
            Self::EmailLinkRequested { .. } => "EmailLinkRequested",
            Self::EmailLinkUsed { .. } => "EmailLinkUsed",
            Self::RecoveryCodeUsed { .. } => "RecoveryCodeUsed",
            Self::RecoveryCodeRejected { .. } => "RecoveryCodeRejected",
            Self::RecoveryCodeIssued { .. } => "RecoveryCodeIssued",
            Self::MfaEnrollmentStarted { .. } => "MfaEnrollmentStarted",
            Self::MfaEnrolled { .. } => "MfaEnrolled",
            Self::MfaReset { .. } => "MfaReset",
            Self::SessionStarted { .. } => "SessionStarted",
            Self::SessionActive { .. } => "SessionActive",
            Self::SessionEnded { .. } => "SessionEnded",
            Self::SignInThrottled { .. } => "SignInThrottled",
            Self::AccountLocked { .. } => "AccountLocked",
            Self::AccountUnlocked { .. } => "AccountUnlocked",
            Self::EmailVerificationRequested { .. } => "EmailVerificationRequested",
            Self::EmailVerified { .. } => "EmailVerified",
            Self::RegistrationAttempted { .. } => "RegistrationAttempted",
            Self::PasswordResetRequested { .. } => "PasswordResetRequested",
            Self::PasswordReset { .. } => "PasswordReset",
            Self::PasswordChanged { .. } => "PasswordChanged",
            Self::MfaResetRequested { .. } => "MfaResetRequested",
            Self::MfaResetCancelled { .. } => "MfaResetCancelled",
            Self::AttemptFromDevice { .. } => "AttemptFromDevice",
            Self::DevicePasswordRejected { .. } => "DevicePasswordRejected",
            Self::DeviceThrottled { .. } => "DeviceThrottled",
            Self::EmailChangeRequested { .. } => "EmailChangeRequested",
            Self::EmailChanged { .. } => "EmailChanged",
            Self::EmailChangeReverted { .. } => "EmailChangeReverted",
            Self::AccountErased { .. } => "AccountErased",
            Self::SecretsResealed { .. } => "SecretsResealed",
            Self::AccountSuspended { .. } => "AccountSuspended",
            Self::AccountReactivated { .. } => "AccountReactivated",
            Self::SessionsEndedByAdmin { .. } => "SessionsEndedByAdmin",
            Self::SignedInFromNewDevice { .. } => "SignedInFromNewDevice",
            Self::ReportedByUser { .. } => "ReportedByUser",
            Self::TotpDeviceSetupStarted { .. } => "TotpDeviceSetupStarted",
            Self::TotpDeviceAdded { .. } => "TotpDeviceAdded",
            Self::WebAuthnCredentialAdded { .. } => "WebAuthnCredentialAdded",
            Self::WebAuthnVerified { .. } => "WebAuthnVerified",
            Self::WebAuthnRejected { .. } => "WebAuthnRejected",
            Self::AuthenticatorRemoved { .. } => "AuthenticatorRemoved",
        }
    }
}

impl DomainEvent for UserAuthEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        "2".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::DomainEvent;
    use serde_json::{json, to_value};

    use super::{ResetCancellation, SessionEndReason};
    use crate::user_auth::testing::{registered, signed_in, t0};

    #[test]
    fn every_event_is_stored_as_version_two() {
        for event in registered().into_iter().chain(signed_in(t0())) {
            assert_eq!(event.event_version(), "2", "{}", event.name());
        }
    }

    #[test]
    fn the_reasons_added_since_the_first_are_stored_under_their_snake_case_names() {
        let cases = [
            (to_value(ResetCancellation::PasswordReset), "password_reset"),
            (to_value(ResetCancellation::SignInFailed), "sign_in_failed"),
            (
                to_value(SessionEndReason::ResetCancelled),
                "reset_cancelled",
            ),
            (
                to_value(SessionEndReason::EmailChangeReverted),
                "email_change_reverted",
            ),
            (to_value(SessionEndReason::AccountErased), "account_erased"),
            (
                to_value(SessionEndReason::ReportedByUser),
                "reported_by_user",
            ),
            (
                to_value(ResetCancellation::ReportedByUser),
                "reported_by_user",
            ),
        ];
        for (stored, name) in cases {
            assert_eq!(stored.unwrap(), json!(name));
        }
    }
}
