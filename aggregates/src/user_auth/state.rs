//! The aggregate's state: a pure fold over its events.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::authenticator::{
    AuthenticatorId, AuthenticatorKind, AuthenticatorView, WebAuthnCredential,
};
use super::device::DeviceDigest;
use super::events::{Assurance, ResetCancellation, SignInMethod, UserAuthEvent, WebAuthnRejection};
use super::reference::Reference;
use super::services::{Policy, Sealed};

/// How many recent times of each kind of mail are kept for the rate limits.
const MAIL_HISTORY: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserAuth {
    pub(super) account: Option<Account>,
    /// Every authenticator app, security key and passkey, oldest first.
    /// Deliberately without a default: a snapshot from before accounts
    /// held several has none, fails to read, and is folded again from the
    /// events instead.
    pub(super) authenticators: Vec<Authenticator>,
    /// Written where earlier versions kept their one authenticator, as a
    /// value they cannot read: a process of such a version (in a rolling
    /// deploy, or after a rollback) skips this snapshot and folds the
    /// events, rather than read an enrolled account as one without.
    #[serde(rename = "authenticator", skip_deserializing)]
    pub(super) shape: SnapshotShape,
    /// Another authenticator app begun from a session, waiting for a code.
    #[serde(default)]
    pub(super) pending_totp_device: Option<PendingTotpDevice>,
    pub(super) pending_enrollment: Option<PendingEnrollment>,
    pub(super) recovery_code: Option<Sealed>,
    pub(super) attempt: Option<LoginAttempt>,
    pub(super) email_link: Option<EmailLink>,
    pub(super) link_requests: Vec<DateTime<Utc>>,
    pub(super) sessions: Vec<Session>,
    pub(super) consecutive_failures: u32,
    pub(super) throttled_until: Option<DateTime<Utc>>,
    pub(super) locked: bool,
    pub(super) verification_link: Option<UnboundLink>,
    /// Verification links and registration notices, for their limit.
    pub(super) registration_mails: Vec<DateTime<Utc>>,
    pub(super) password_reset_link: Option<UnboundLink>,
    pub(super) password_reset_requests: Vec<DateTime<Utc>>,
    /// Links mailed to new addresses, for their limit.
    #[serde(default)]
    pub(super) email_change_requests: Vec<DateTime<Utc>>,
    /// Set by a password reset by email: the mailbox alone just changed the
    /// password, so it may not also stand in for the second factor. Set too
    /// by the "this wasn't me" link: someone else has the password and the
    /// mailbox.
    pub(super) email_link_disabled: bool,
    pub(super) pending_mfa_reset: Option<PendingMfaReset>,
    /// Devices that completed a sign-in, newest last, with their own
    /// failure count and wait.
    #[serde(default)]
    pub(super) known_devices: Vec<KnownDevice>,
    /// The newest change of address asked for and not yet confirmed.
    pub(super) pending_email_change: Option<PendingEmailChange>,
    /// Changes of address whose "this wasn't me" link may still be used,
    /// oldest first.
    pub(super) revertible_email_changes: Vec<RevertibleEmailChange>,
    /// Set for good by `AccountErased`.
    pub(super) erased: bool,
    /// Set by an administrator's suspension, until a reactivation.
    #[serde(default)]
    pub(super) suspended: bool,
    /// Whether a session was ever started: the first sign-in of an account
    /// has no device to compare with. A snapshot from before this was kept
    /// reads as signed in before, so that no new device goes unmailed.
    #[serde(default = "signed_in_before_unknown")]
    pub(super) signed_in_before: bool,
    /// The "this wasn't me" links of new-device notices, oldest first.
    #[serde(default)]
    pub(super) report_links: Vec<ReportLink>,
    /// The sequences of the events reported, newest last.
    #[serde(default)]
    pub(super) reported: Vec<u64>,
}

/// See `UserAuth::shape`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct SnapshotShape;

impl Serialize for SnapshotShape {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("several authenticators")
    }
}

fn signed_in_before_unknown() -> bool {
    true
}

/// How many report links and reported sequences are kept.
const REPORT_HISTORY: usize = 32;

/// The "this wasn't me" link of a sign-in from a new device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ReportLink {
    pub reference: Reference,
    /// The session whose sign-in it reports.
    pub session: Reference,
    pub until: DateTime<Utc>,
    pub used: bool,
}

/// How many known devices are kept; an older one falls out and counts as
/// unknown again.
const KNOWN_DEVICES: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct KnownDevice {
    pub digest: DeviceDigest,
    pub failures: u32,
    pub throttled_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Account {
    pub user_id: Uuid,
    /// Sealed with the user's data key (`SealPurpose::Email`).
    pub email: Sealed,
    pub password_hash: Sealed,
    pub verified: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Authenticator {
    pub id: AuthenticatorId,
    /// Sealed (`SealPurpose::FreeText`); `None` for the authenticator app
    /// enrolled before authenticators had names.
    pub name: Option<Sealed>,
    pub added_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub factor: Factor,
    /// When a security key answered with a count that went back: it is
    /// refused from then on, both copies, until its owner removes it.
    #[serde(default)]
    pub suspected_copy_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum Factor {
    Totp { secret: Sealed, last_used_step: u64 },
    WebAuthn(WebAuthnCredential),
}

impl Authenticator {
    fn view(&self) -> AuthenticatorView {
        let (kind, credential_id, transports) = match &self.factor {
            Factor::Totp { .. } => (AuthenticatorKind::Totp, None, Vec::new()),
            Factor::WebAuthn(credential) => (
                AuthenticatorKind::WebAuthn,
                Some(credential.credential_id.clone()),
                credential.transports.clone(),
            ),
        };
        AuthenticatorView {
            id: self.id,
            kind,
            name: self.name.clone(),
            added_at: self.added_at,
            last_used_at: self.last_used_at,
            credential_id,
            transports,
            suspected_copy_at: self.suspected_copy_at,
        }
    }
}

/// Another authenticator app begun from a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct PendingTotpDevice {
    pub session: Reference,
    pub secret: Sealed,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct PendingEnrollment {
    pub attempt: Reference,
    pub secret: Sealed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct LoginAttempt {
    pub reference: Reference,
    pub expires_at: DateTime<Utc>,
    pub failures: u32,
    /// The device cookie's digest the attempt was opened with.
    #[serde(default)]
    pub device: Option<DeviceDigest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct EmailLink {
    pub reference: Reference,
    pub attempt: Reference,
    pub expires_at: DateTime<Utc>,
    pub used: bool,
}

/// A link mailed to the account's address that is not bound to a login
/// attempt; only the newest one counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct UnboundLink {
    pub reference: Reference,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct PendingMfaReset {
    pub effective_at: DateTime<Utc>,
    pub denial: Reference,
}

/// A new address waiting for its link to be opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct PendingEmailChange {
    pub link: Reference,
    pub new_email: Sealed,
    pub expires_at: DateTime<Utc>,
}

/// A confirmed change of address that the old address can still undo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct RevertibleEmailChange {
    pub revert: Reference,
    /// The address given up, which the revert restores.
    pub from: Sealed,
    pub until: DateTime<Utc>,
}

/// A signed-in session, as the aggregate knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub reference: Reference,
    pub method: SignInMethod,
    pub aal: Assurance,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_active_at: DateTime<Utc>,
}

impl Session {
    pub fn is_live(&self, now: DateTime<Utc>, policy: &Policy) -> bool {
        now < self.idle_expires_at(policy)
    }

    /// When the session ends unless it is used again: an idle period after
    /// its last recorded activity, and never past its absolute expiry.
    pub fn idle_expires_at(&self, policy: &Policy) -> DateTime<Utc> {
        (self.last_active_at + policy.session_idle).min(self.expires_at)
    }
}

/// A read-only view of a user's MFA state, for profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub user_id: Uuid,
    /// Sealed with the user's data key (`SealPurpose::Email`); once the
    /// account is erased that key is gone and this cannot be unsealed.
    pub email: Sealed,
    pub enrolled_at: Option<DateTime<Utc>>,
    /// Erased: nothing here but the id and the sealed address is kept.
    pub erased: bool,
}

impl UserAuth {
    pub fn is_registered(&self) -> bool {
        self.account.is_some()
    }

    pub fn is_enrolled(&self) -> bool {
        !self.authenticators.is_empty()
    }

    /// Every authenticator of the account, oldest first.
    pub fn authenticators(&self) -> Vec<AuthenticatorView> {
        self.authenticators
            .iter()
            .map(Authenticator::view)
            .collect()
    }

    /// Every security key and passkey of the account, refused ones too:
    /// none of them may be registered again while it is held.
    pub fn webauthn_credentials(&self) -> impl Iterator<Item = &WebAuthnCredential> {
        self.authenticators.iter().filter_map(|a| match &a.factor {
            Factor::WebAuthn(credential) => Some(credential),
            Factor::Totp { .. } => None,
        })
    }

    /// The security keys and passkeys that may sign in: not one suspected
    /// of having been copied.
    pub fn usable_webauthn_credentials(&self) -> impl Iterator<Item = &WebAuthnCredential> {
        self.authenticators
            .iter()
            .filter(|a| a.suspected_copy_at.is_none())
            .filter_map(|a| match &a.factor {
                Factor::WebAuthn(credential) => Some(credential),
                Factor::Totp { .. } => None,
            })
    }

    /// Whether the account holds an authenticator app.
    pub fn totp_available(&self) -> bool {
        self.authenticators
            .iter()
            .any(|a| matches!(a.factor, Factor::Totp { .. }))
    }

    /// When the account got its first authenticator of those it holds.
    fn enrolled_at(&self) -> Option<DateTime<Utc>> {
        self.authenticators.first().map(|a| a.added_at)
    }

    /// The sealed secret of the authenticator app begun from `session` and
    /// not yet confirmed, while it can still be, so a page can show the
    /// same QR code again.
    pub fn pending_totp_device_secret(
        &self,
        session: &Reference,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Option<&Sealed> {
        self.pending_totp_device(session, now, policy)
            .map(|pending| &pending.secret)
    }

    pub(super) fn pending_totp_device(
        &self,
        session: &Reference,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Option<&PendingTotpDevice> {
        self.live_session(session, now, policy)?;
        self.pending_totp_device.as_ref().filter(|pending| {
            &pending.session == session && now < pending.started_at + policy.login_attempt_ttl
        })
    }

    pub(super) fn authenticator(&self, id: AuthenticatorId) -> Option<&Authenticator> {
        self.authenticators.iter().find(|a| a.id == id)
    }

    fn authenticator_mut(&mut self, id: Option<AuthenticatorId>) -> Option<&mut Authenticator> {
        match id {
            Some(id) => self.authenticators.iter_mut().find(|a| a.id == id),
            // Events from before accounts held several: the one app.
            None => self
                .authenticators
                .iter_mut()
                .find(|a| matches!(a.factor, Factor::Totp { .. })),
        }
    }

    /// Whether the account's owner has shown they receive its mail.
    pub fn is_verified(&self) -> bool {
        !self.erased
            && self
                .account
                .as_ref()
                .is_some_and(|account| account.verified)
    }

    /// Whether the account was erased: it answers every command as one
    /// never registered.
    pub fn is_erased(&self) -> bool {
        self.erased
    }

    /// Suspended by an administrator: no route signs it in.
    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// Whether "Email" may finish a sign-in: an authenticator is enrolled,
    /// and neither a password reset by email nor the "this wasn't me" link
    /// of a pending MFA reset happened since the last sign-in with a second
    /// factor.
    pub fn email_link_available(&self) -> bool {
        self.is_enrolled() && !self.email_link_disabled
    }

    /// When the MFA reset asked from an `aal1` session takes effect, if one
    /// is waiting.
    pub fn pending_mfa_reset(&self) -> Option<DateTime<Utc>> {
        self.pending_mfa_reset
            .as_ref()
            .map(|pending| pending.effective_at)
    }

    /// The addresses this account gave up and may still take back, with
    /// until when: they stay held for it.
    pub fn held_addresses(&self) -> Vec<(&Sealed, DateTime<Utc>)> {
        if self.erased {
            return Vec::new();
        }
        self.revertible_email_changes
            .iter()
            .map(|change| (&change.from, change.until))
            .collect()
    }

    pub fn profile(&self) -> Option<Profile> {
        self.account.as_ref().map(|account| Profile {
            user_id: account.user_id,
            email: account.email.clone(),
            enrolled_at: self.enrolled_at(),
            erased: self.erased,
        })
    }

    /// The sealed secret of the enrollment begun in login attempt `attempt`
    /// and not yet confirmed, while that attempt can still take a code, so
    /// a page can show the same QR code again.
    pub fn pending_enrollment_secret(
        &self,
        attempt: &Reference,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Option<&Sealed> {
        self.live_attempt(attempt, now, policy)?;
        self.pending_enrollment
            .as_ref()
            .filter(|pending| &pending.attempt == attempt)
            .map(|pending| &pending.secret)
    }

    /// Until when login attempt `attempt` can take a second factor, if it
    /// still can at `now`.
    pub fn attempt_open_until(
        &self,
        attempt: &Reference,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Option<DateTime<Utc>> {
        self.live_attempt(attempt, now, policy)
            .map(|open| open.expires_at)
    }

    /// The session named by `reference` if it is still live at `now`.
    pub fn live_session(
        &self,
        reference: &Reference,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Option<&Session> {
        self.sessions
            .iter()
            .find(|s| &s.reference == reference)
            .filter(|s| s.is_live(now, policy))
    }

    /// Whether session `session` must prove its owner again (the password)
    /// before a sensitive change: it was not started recently enough, or it
    /// is not live at all.
    pub fn reauthentication_required(
        &self,
        session: &Reference,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> bool {
        self.live_session(session, now, policy)
            .is_none_or(|live| now - live.started_at > policy.reauthentication_window)
    }

    /// The sessions live at `now`, oldest first.
    pub fn live_sessions<'a>(
        &'a self,
        now: DateTime<Utc>,
        policy: &'a Policy,
    ) -> impl Iterator<Item = &'a Session> + 'a {
        self.sessions.iter().filter(move |s| s.is_live(now, policy))
    }

    /// The open login attempt named by `reference`, if it can still take a
    /// second factor at `now`.
    pub(super) fn live_attempt(
        &self,
        reference: &Reference,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Option<&LoginAttempt> {
        self.attempt.as_ref().filter(|a| {
            &a.reference == reference
                && now < a.expires_at
                && a.failures < policy.second_factor_tries
        })
    }

    pub(super) fn throttled_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.throttled_until.filter(|until| now < *until)
    }

    /// Whether the event at `sequence` of this account's stream was
    /// reported as not its user's (among the newest reports).
    pub fn was_reported(&self, sequence: u64) -> bool {
        self.reported.contains(&sequence)
    }

    /// The report link named by `reference`, used or not.
    pub(super) fn report_link(&self, reference: &Reference) -> Option<&ReportLink> {
        self.report_links
            .iter()
            .find(|link| &link.reference == reference)
    }

    /// The known device `device` names, if it completed a sign-in here.
    pub(super) fn known_device(&self, device: Option<&DeviceDigest>) -> Option<&KnownDevice> {
        let device = device?;
        self.known_devices
            .iter()
            .find(|known| known.digest.matches(device))
    }

    /// When the source of a sign-in may try again: a known device waits
    /// only for its own failures, anyone else for the account's.
    pub(super) fn source_throttled_at(
        &self,
        device: Option<&DeviceDigest>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self.known_device(device) {
            Some(known) => known.throttled_until.filter(|until| now < *until),
            None => self.throttled_at(now),
        }
    }

    /// The known device the open attempt `attempt` came from.
    pub(super) fn attempt_device(&self, attempt: &Reference) -> Option<&KnownDevice> {
        let open = self.attempt.as_ref().filter(|a| &a.reference == attempt)?;
        self.known_device(open.device.as_ref())
    }

    fn known_device_mut(&mut self, device: &DeviceDigest) -> Option<&mut KnownDevice> {
        self.known_devices
            .iter_mut()
            .find(|known| known.digest.matches(device))
    }

    /// A second factor failed in login attempt `attempt`.
    fn factor_failed(&mut self, attempt: &Reference) {
        // A known device's failures count against it alone.
        let device = self
            .attempt_device(attempt)
            .map(|known| known.digest.clone());
        match device.and_then(|d| self.known_device_mut(&d)) {
            Some(known) => known.failures += 1,
            None => self.consecutive_failures += 1,
        }
        if let Some(open) = self.attempt.as_mut().filter(|a| &a.reference == attempt) {
            open.failures += 1;
        }
    }

    pub(super) fn apply_event(&mut self, event: UserAuthEvent) {
        use UserAuthEvent as E;
        match event {
            E::UserRegistered {
                user_id,
                email,
                password_hash,
                ..
            } => {
                // Accounts registered before verification existed never had
                // a verification request; a new registration records one
                // right after this event.
                self.account = Some(Account {
                    user_id,
                    email,
                    password_hash,
                    verified: true,
                });
                // A replaced registration's links die with its password.
                self.verification_link = None;
                self.password_reset_link = None;
                self.pending_email_change = None;
            }
            E::PasswordVerified {
                attempt,
                expires_at,
                ..
            } => {
                self.attempt = Some(LoginAttempt {
                    reference: attempt,
                    expires_at,
                    failures: 0,
                    device: None,
                });
                self.pending_enrollment = None;
            }
            E::PasswordRejected { .. } => self.consecutive_failures += 1,
            E::PasswordRehashed { password_hash, .. } => {
                if let Some(account) = &mut self.account {
                    account.password_hash = password_hash;
                }
            }
            E::TotpVerified {
                step,
                authenticator,
                at,
                ..
            } => {
                if let Some(used) = self.authenticator_mut(authenticator) {
                    used.last_used_at = Some(at);
                    if let Factor::Totp { last_used_step, .. } = &mut used.factor {
                        *last_used_step = step;
                    }
                }
            }
            E::WebAuthnVerified {
                authenticator,
                sign_count,
                at,
                ..
            } => {
                if let Some(used) = self.authenticator_mut(Some(authenticator)) {
                    used.last_used_at = Some(at);
                    if let Factor::WebAuthn(credential) = &mut used.factor {
                        credential.sign_count = sign_count;
                    }
                }
            }
            E::WebAuthnRejected {
                attempt,
                reason: WebAuthnRejection::SignCountRegressed { authenticator, .. },
                at,
            } => {
                if let Some(copied) = self.authenticator_mut(Some(authenticator)) {
                    copied.suspected_copy_at.get_or_insert(at);
                }
                self.factor_failed(&attempt);
            }
            E::TotpRejected { attempt, .. }
            | E::RecoveryCodeRejected { attempt, .. }
            | E::WebAuthnRejected { attempt, .. } => self.factor_failed(&attempt),
            E::EmailLinkRequested {
                link,
                attempt,
                expires_at,
                at,
            } => {
                self.email_link = Some(EmailLink {
                    reference: link,
                    attempt,
                    expires_at,
                    used: false,
                });
                remember(&mut self.link_requests, at);
            }
            E::EmailLinkUsed { .. } => {
                if let Some(link) = &mut self.email_link {
                    link.used = true;
                }
            }
            E::RecoveryCodeUsed { .. } => self.recovery_code = None,
            E::RecoveryCodeIssued { digest, .. } => self.recovery_code = Some(digest),
            E::MfaEnrollmentStarted {
                attempt, secret, ..
            } => {
                self.pending_enrollment = Some(PendingEnrollment { attempt, secret });
            }
            E::MfaEnrolled {
                step,
                authenticator,
                name,
                credential,
                at,
                ..
            } => {
                let pending = self.pending_enrollment.take();
                let factor = match (credential, pending) {
                    (Some(credential), _) => Some(Factor::WebAuthn(credential)),
                    (None, Some(pending)) => Some(Factor::Totp {
                        secret: pending.secret,
                        last_used_step: step,
                    }),
                    (None, None) => None,
                };
                if let Some(factor) = factor {
                    self.authenticators.push(Authenticator {
                        id: authenticator.unwrap_or(AuthenticatorId::FIRST),
                        name,
                        added_at: at,
                        last_used_at: Some(at),
                        factor,
                        suspected_copy_at: None,
                    });
                }
            }
            E::TotpDeviceSetupStarted {
                session,
                secret,
                at,
            } => {
                self.pending_totp_device = Some(PendingTotpDevice {
                    session,
                    secret,
                    started_at: at,
                });
            }
            E::TotpDeviceAdded {
                authenticator,
                name,
                secret,
                step,
                at,
            } => {
                self.pending_totp_device = None;
                self.authenticators.push(Authenticator {
                    id: authenticator,
                    name: Some(name),
                    added_at: at,
                    last_used_at: Some(at),
                    factor: Factor::Totp {
                        secret,
                        last_used_step: step,
                    },
                    suspected_copy_at: None,
                });
            }
            E::WebAuthnCredentialAdded {
                authenticator,
                name,
                credential,
                at,
            } => {
                self.authenticators.push(Authenticator {
                    id: authenticator,
                    name: Some(name),
                    added_at: at,
                    last_used_at: None,
                    factor: Factor::WebAuthn(credential),
                    suspected_copy_at: None,
                });
            }
            E::AuthenticatorRemoved {
                authenticator,
                last,
                ..
            } => {
                self.authenticators.retain(|a| a.id != authenticator);
                if last {
                    // The next sign-in enrolls again and issues a new code;
                    // nothing begun before may finish without it.
                    self.recovery_code = None;
                    self.email_link = None;
                    self.attempt = None;
                    self.pending_totp_device = None;
                }
            }
            E::MfaReset { .. } => {
                self.authenticators.clear();
                self.pending_totp_device = None;
                self.pending_enrollment = None;
                self.recovery_code = None;
                self.attempt = None;
                self.email_link = None;
                self.pending_mfa_reset = None;
            }
            E::SessionStarted {
                session,
                method,
                aal,
                expires_at,
                at,
            } => {
                // Sessions past their absolute expiry can never come back;
                // dropping them keeps the state (and snapshots) small.
                self.sessions.retain(|s| s.expires_at > at);
                self.sessions.push(Session {
                    reference: session,
                    method,
                    aal,
                    started_at: at,
                    expires_at,
                    last_active_at: at,
                });
                // The device the sign-in came from is known from now on,
                // and its own count starts again.
                if let Some(device) = self.attempt.as_ref().and_then(|a| a.device.clone()) {
                    self.known_devices
                        .retain(|known| !known.digest.matches(&device));
                    self.known_devices.push(KnownDevice {
                        digest: device,
                        failures: 0,
                        throttled_until: None,
                    });
                    let excess = self.known_devices.len().saturating_sub(KNOWN_DEVICES);
                    self.known_devices.drain(..excess);
                }
                self.attempt = None;
                self.pending_enrollment = None;
                self.consecutive_failures = 0;
                self.throttled_until = None;
                self.signed_in_before = true;
                if aal == Assurance::Aal2 {
                    self.email_link_disabled = false;
                }
            }
            E::SessionActive { session, at } => {
                if let Some(s) = self.sessions.iter_mut().find(|s| s.reference == session) {
                    s.last_active_at = at;
                }
            }
            E::SessionEnded { session, .. } => {
                self.sessions.retain(|s| s.reference != session);
            }
            E::SignInThrottled { until, .. } => self.throttled_until = Some(until),
            E::AccountLocked { .. } => self.locked = true,
            E::AccountUnlocked { .. } => {
                self.locked = false;
                self.throttled_until = None;
                self.consecutive_failures = 0;
            }
            E::EmailVerificationRequested {
                link,
                expires_at,
                at,
                ..
            } => {
                if let Some(account) = &mut self.account {
                    account.verified = false;
                }
                self.verification_link = Some(UnboundLink {
                    reference: link,
                    expires_at,
                });
                remember(&mut self.registration_mails, at);
            }
            E::EmailVerified { .. } => {
                if let Some(account) = &mut self.account {
                    account.verified = true;
                }
                self.verification_link = None;
            }
            E::RegistrationAttempted { at } => remember(&mut self.registration_mails, at),
            E::PasswordResetRequested {
                link,
                expires_at,
                at,
            } => {
                self.password_reset_link = Some(UnboundLink {
                    reference: link,
                    expires_at,
                });
                remember(&mut self.password_reset_requests, at);
            }
            E::PasswordReset { password_hash, .. } => {
                self.replace_password(password_hash);
                self.email_link_disabled = true;
            }
            E::PasswordChanged { password_hash, .. } => self.replace_password(password_hash),
            E::MfaResetRequested {
                effective_at,
                denial,
                ..
            } => {
                self.pending_mfa_reset = Some(PendingMfaReset {
                    effective_at,
                    denial,
                });
            }
            E::AttemptFromDevice {
                attempt, device, ..
            } => {
                if let Some(open) = self.attempt.as_mut().filter(|a| a.reference == attempt) {
                    open.device = Some(device);
                }
            }
            E::DevicePasswordRejected { device, .. } => {
                if let Some(known) = self.known_device_mut(&device) {
                    known.failures += 1;
                }
            }
            E::DeviceThrottled { device, until, .. } => {
                if let Some(known) = self.known_device_mut(&device) {
                    known.throttled_until = Some(until);
                }
            }
            E::MfaResetCancelled { reason, .. } => {
                self.pending_mfa_reset = None;
                if matches!(
                    reason,
                    ResetCancellation::DeniedByLink | ResetCancellation::ReportedByUser
                ) {
                    // Whoever asked still has the password and the mailbox.
                    // A link already mailed would sign them in all the same.
                    self.email_link_disabled = true;
                    self.email_link = None;
                }
            }
            E::EmailChangeRequested {
                link,
                new_email,
                expires_at,
                at,
            } => {
                remember(&mut self.email_change_requests, at);
                self.pending_email_change = Some(PendingEmailChange {
                    link,
                    new_email,
                    expires_at,
                });
            }
            E::EmailChanged {
                to,
                from,
                revert,
                revert_until,
                at,
                ..
            } => {
                self.replace_email(to);
                // Revert links past their window can never be used again;
                // dropping them keeps the state (and snapshots) small.
                self.revertible_email_changes.retain(|c| c.until > at);
                self.revertible_email_changes.push(RevertibleEmailChange {
                    revert,
                    from,
                    until: revert_until,
                });
            }
            E::EmailChangeReverted {
                revert, restored, ..
            } => {
                self.replace_email(restored);
                // Every later change started from an address the owner
                // has just disowned; none of them may come back.
                if let Some(index) = self
                    .revertible_email_changes
                    .iter()
                    .position(|c| c.revert == revert)
                {
                    self.revertible_email_changes.truncate(index);
                }
            }
            E::SecretsResealed {
                password_hash,
                totp_secret,
                totp_devices,
                totp_device_setup,
                enrollment_secret,
                recovery_code,
                ..
            } => {
                if let (Some(pending), Some(sealed)) =
                    (&mut self.pending_totp_device, totp_device_setup)
                {
                    pending.secret = sealed;
                }
                if let (Some(account), Some(sealed)) = (&mut self.account, password_hash) {
                    account.password_hash = sealed;
                }
                let resealed = totp_secret.map(|sealed| (None, sealed)).into_iter().chain(
                    totp_devices
                        .into_iter()
                        .map(|d| (Some(d.authenticator), d.secret)),
                );
                for (id, sealed) in resealed {
                    if let Some(Authenticator {
                        factor: Factor::Totp { secret, .. },
                        ..
                    }) = self.authenticator_mut(id)
                    {
                        *secret = sealed;
                    }
                }
                if let (Some(pending), Some(sealed)) =
                    (&mut self.pending_enrollment, enrollment_secret)
                {
                    pending.secret = sealed;
                }
                if let (Some(held), Some(sealed)) = (&mut self.recovery_code, recovery_code) {
                    *held = sealed;
                }
            }
            E::AccountSuspended { .. } => {
                self.suspended = true;
                // Whatever was on its way to a sign-in or a new credential
                // stops here, not at the reactivation.
                self.attempt = None;
                self.pending_enrollment = None;
                self.email_link = None;
                self.password_reset_link = None;
                self.pending_email_change = None;
            }
            E::AccountReactivated { .. } => self.suspended = false,
            E::SessionsEndedByAdmin { .. } => {}
            E::SignedInFromNewDevice {
                session,
                report,
                report_until,
                at,
            } => {
                // Links past their time can never be used again; dropping
                // them keeps the state (and snapshots) small.
                self.report_links.retain(|link| link.until > at);
                self.report_links.push(ReportLink {
                    reference: report,
                    session,
                    until: report_until,
                    used: false,
                });
                let excess = self.report_links.len().saturating_sub(REPORT_HISTORY);
                self.report_links.drain(..excess);
            }
            E::ReportedByUser { sequence, link, .. } => {
                if let Some(held) = self
                    .report_links
                    .iter_mut()
                    .find(|held| Some(held.reference) == link)
                {
                    held.used = true;
                }
                self.reported.push(sequence);
                let excess = self.reported.len().saturating_sub(REPORT_HISTORY);
                self.reported.drain(..excess);
                // Whoever it was may hold the password and the mailbox: what
                // was on its way to them stops (as at a suspension), the
                // mailbox alone no longer signs in, and no browser is
                // trusted until it completes a sign-in again.
                self.attempt = None;
                self.pending_enrollment = None;
                self.email_link = None;
                self.password_reset_link = None;
                self.pending_email_change = None;
                self.email_link_disabled = true;
                self.known_devices.clear();
            }
            E::AccountErased { .. } => {
                // Only the account record stays, to say whose stream this
                // is; its address is sealed with the key erasure deletes.
                *self = Self {
                    account: self.account.take(),
                    erased: true,
                    ..Self::default()
                };
            }
        }
    }

    /// The address is `email` from now on. Links to sign in or to set a
    /// password went to the address given up, and a change asked for
    /// before is void: whoever holds that address must not act for the
    /// account any more.
    fn replace_email(&mut self, email: Sealed) {
        if let Some(account) = &mut self.account {
            account.email = email;
        }
        self.pending_email_change = None;
        self.email_link = None;
        self.password_reset_link = None;
    }

    /// A reset link mailed before the password changed, by whatever route,
    /// must not set another one over the owner's choice.
    /// A new password voids everything the old one opened: the reset link,
    /// the login attempt and the sign-in link mailed for it, and a change
    /// of address asked from a session it started.
    fn replace_password(&mut self, password_hash: Sealed) {
        if let Some(account) = &mut self.account {
            account.password_hash = password_hash;
        }
        self.password_reset_link = None;
        self.attempt = None;
        self.pending_enrollment = None;
        self.email_link = None;
        self.pending_email_change = None;
    }
}

/// Records a mail's time for a rate limit, keeping only the newest few.
fn remember(times: &mut Vec<DateTime<Utc>>, at: DateTime<Utc>) {
    times.push(at);
    let excess = times.len().saturating_sub(MAIL_HISTORY);
    times.drain(..excess);
}

/// What an auditor asks of a user's state at an instant: folded from the
/// events up to that instant, with time-dependent facts judged at it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditState {
    pub registered: bool,
    pub enrolled_at: Option<DateTime<Utc>>,
    /// Every authenticator held at the instant, oldest first.
    pub authenticators: Vec<AuthenticatorView>,
    pub recovery_code_present: bool,
    pub locked: bool,
    pub throttled_until: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub live_sessions: Vec<Session>,
    pub email_verified: bool,
    /// When a waiting MFA reset takes effect.
    pub pending_mfa_reset: Option<DateTime<Utc>>,
    /// Erased: registered once, answered since as never registered.
    pub erased: bool,
    pub suspended: bool,
}

impl UserAuth {
    /// The state as an auditor reads it at `at` (the events folded must be
    /// those recorded up to `at`).
    pub fn audit_state(&self, at: DateTime<Utc>, policy: &Policy) -> AuditState {
        AuditState {
            registered: self.is_registered(),
            enrolled_at: self.enrolled_at(),
            authenticators: self.authenticators(),
            recovery_code_present: self.recovery_code.is_some(),
            locked: self.locked,
            throttled_until: self.throttled_at(at),
            consecutive_failures: self.consecutive_failures,
            live_sessions: self.live_sessions(at, policy).cloned().collect(),
            email_verified: self.is_verified(),
            pending_mfa_reset: self.pending_mfa_reset(),
            erased: self.erased,
            suspended: self.suspended,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    #[test]
    fn the_audit_state_judges_throttles_and_sessions_at_the_instant_asked() {
        let now = later(10);
        let mut events = signed_in(now);
        events.push(E::SignInThrottled {
            failures: 5,
            until: now + Duration::seconds(30),
            at: now,
        });
        let state = events.into_iter().fold(UserAuth::default(), |mut s, e| {
            s.apply_event(e);
            s
        });
        let policy = policy();
        let inside = state.audit_state(now + Duration::seconds(10), &policy);
        assert_eq!(inside.throttled_until, Some(now + Duration::seconds(30)));
        assert_eq!(inside.live_sessions.len(), 1);
        assert!(inside.enrolled_at.is_some() && inside.recovery_code_present);
        let later_on = state.audit_state(now + Duration::hours(2), &policy);
        assert_eq!(later_on.throttled_until, None);
        assert!(later_on.live_sessions.is_empty(), "idle for an hour");
    }

    #[test]
    fn an_account_registered_before_verification_existed_counts_as_verified() {
        assert!(folded(registered()).is_verified());
        assert!(!folded(unverified()).is_verified());
        assert!(!UserAuth::default().is_verified());
    }

    #[test]
    fn the_audit_state_shows_verification_and_a_waiting_mfa_reset() {
        let now = later(10);
        let mut events = unverified();
        let before = folded(events.clone()).audit_state(now, &policy());
        assert!(before.registered && !before.email_verified);
        assert_eq!(before.pending_mfa_reset, None);
        events.extend([
            E::EmailVerified { at: now },
            E::MfaResetRequested {
                effective_at: now + Duration::hours(24),
                denial: reference(30),
                at: now,
            },
        ]);
        let after = folded(events).audit_state(now, &policy());
        assert!(after.email_verified);
        assert_eq!(after.pending_mfa_reset, Some(now + Duration::hours(24)));
    }

    #[test]
    fn a_snapshot_reads_back_as_the_state_it_was_taken_of() {
        let now = later(10);
        let mut changing = signed_in(now);
        changing.extend([
            E::EmailChanged {
                link: reference(21),
                from: sealed_email("alice@example.com"),
                to: sealed_email("bob@example.com"),
                revert: reference(31),
                revert_until: now + Duration::hours(72),
                at: now,
            },
            E::EmailChangeRequested {
                link: reference(22),
                new_email: sealed_email("carol@example.com"),
                expires_at: now + Duration::hours(24),
                at: now,
            },
        ]);
        let mut erased = signed_in(now);
        erased.push(E::AccountErased {
            actor: Actor::Admin,
            reason: Some(sealed_text("asked by letter")),
            at: now,
        });
        for given in [changing, erased] {
            let state = folded(given);
            let snapshot = serde_json::to_value(&state).unwrap();
            assert_eq!(serde_json::from_value::<UserAuth>(snapshot).unwrap(), state);
        }
    }

    #[test]
    fn a_snapshot_from_before_several_authenticators_is_not_read() {
        // It held one `authenticator`: read with a default list, the
        // account would look unenrolled; refused, it is folded again.
        let mut snapshot = serde_json::to_value(folded(signed_in(later(10)))).unwrap();
        let fields = snapshot.as_object_mut().unwrap();
        fields.remove("authenticators");
        fields.remove("pending_totp_device");
        fields.insert(
            "authenticator".into(),
            serde_json::json!({"secret": sealed(SealPurpose::TotpSecret, secret().expose()),
                               "enrolled_at": t0(), "last_used_step": 1}),
        );
        assert!(serde_json::from_value::<UserAuth>(snapshot).is_err());
    }

    #[test]
    fn an_earlier_version_cannot_read_a_snapshot_of_this_one() {
        /// What versions before several authenticators read a snapshot as.
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Earlier {
            authenticator: Option<EarlierAuthenticator>,
        }
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct EarlierAuthenticator {
            secret: Sealed,
            enrolled_at: DateTime<Utc>,
            last_used_step: u64,
        }
        let snapshot = serde_json::to_value(folded(signed_in(later(10)))).unwrap();
        assert!(serde_json::from_value::<Earlier>(snapshot).is_err());
    }

    #[test]
    fn only_the_newest_mail_times_are_kept() {
        let mut events = registered();
        events.extend((0..40).map(|n| E::RegistrationAttempted { at: later(n) }));
        let state = folded(events);
        assert_eq!(state.registration_mails.len(), 32);
        assert_eq!(state.registration_mails.first(), Some(&later(8)));
        assert_eq!(state.registration_mails.last(), Some(&later(39)));
    }
}
