//! What the aggregate needs from the world, as traits: the binary supplies
//! real implementations, the tests fixed ones.
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::password::Password;
use super::reference::Reference;

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub trait Randomness: Send + Sync {
    fn reference(&self) -> Reference;
}

/// A password hash as a PHC string. Only ever stored sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(pub String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Mismatch,
    /// `needs_rehash` when the hash was made with other parameters than the
    /// current ones.
    Match {
        needs_rehash: bool,
    },
}

#[async_trait::async_trait]
pub trait PasswordHasher: Send + Sync {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, ServiceError>;
    /// With `None`, verifies against a dummy hash so that an unknown account
    /// costs the same time as a known one, and answers `Mismatch`.
    async fn verify(
        &self,
        hash: Option<&PasswordHash>,
        password: &Password,
    ) -> Result<PasswordCheck, ServiceError>;
}

/// What a sealed value is for; part of the authenticated data, so a value
/// sealed for one purpose cannot be unsealed as another. The purpose also
/// decides the key: personal data is sealed with the user's own data key,
/// so that deleting that key erases it from every event at once; secrets
/// the server checks are sealed with a server key, which can be rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealPurpose {
    PasswordHash,
    TotpSecret,
    /// The SHA-256 of a recovery code.
    RecoveryCode,
    /// An account's address.
    Email,
    /// Words someone typed about the user, such as an administrator's reason.
    FreeText,
}

impl SealPurpose {
    pub fn label(self) -> &'static str {
        match self {
            Self::PasswordHash => "password-hash",
            Self::TotpSecret => "totp-secret",
            Self::RecoveryCode => "recovery-code",
            Self::Email => "email",
            Self::FreeText => "free-text",
        }
    }

    /// Whether values of this purpose are the user's personal data, sealed
    /// with their data key rather than a server key.
    pub fn is_personal(self) -> bool {
        matches!(self, Self::Email | Self::FreeText)
    }
}

/// A value encrypted with an AEAD under the key named by `key_id`: the
/// user's data key for a personal purpose, a server key otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: String,
    pub ciphertext: String,
}

pub trait SecretKeeper: Send + Sync {
    fn seal(&self, purpose: SealPurpose, plaintext: &[u8]) -> Result<Sealed, ServiceError>;
    fn unseal(&self, purpose: SealPurpose, sealed: &Sealed) -> Result<Vec<u8>, ServiceError>;
    /// Whether `sealed` was made with the key new seals of `purpose` use now.
    fn is_current(&self, purpose: SealPurpose, sealed: &Sealed) -> bool;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// At capacity: the work was refused before it began, so nothing was
    /// decided and the same call may succeed shortly.
    #[error("the service is at capacity")]
    Busy,
    #[error("{0}")]
    Failed(String),
}

/// The rules' numbers. Their defaults (NIST SP 800-63B, OWASP ASVS) live in
/// the binary's configuration, the one place an operator changes them.
#[derive(Debug, Clone)]
pub struct Policy {
    pub login_attempt_ttl: Duration,
    pub second_factor_tries: u32,
    pub totp_skew_steps: u64,
    pub throttle_after_failures: u32,
    pub throttle_base: Duration,
    pub throttle_max: Duration,
    pub lock_after_failures: u32,
    pub email_link_ttl: Duration,
    pub email_link_window: Duration,
    pub email_links_per_window: usize,
    pub session_absolute: Duration,
    pub session_idle: Duration,
    /// How stale a session's last recorded activity may get before a request
    /// records it again; bounds writes for the idle timeout.
    pub session_activity_granularity: Duration,
    pub reauthentication_window: Duration,
    pub email_verification_ttl: Duration,
    /// Verification links and registration notices per address per window.
    pub registration_mails_per_window: usize,
    pub registration_mail_window: Duration,
    pub password_reset_ttl: Duration,
    pub password_resets_per_window: usize,
    pub password_reset_window: Duration,
    /// How long an MFA reset asked from an `aal1` session waits; zero makes
    /// it immediate.
    pub aal1_mfa_reset_delay: Duration,
    /// How long the link mailed to a new address can confirm the change.
    pub email_change_ttl: Duration,
    /// How long the "this wasn't me" link mailed to the old address can
    /// undo a change.
    pub email_change_revert_window: Duration,
    /// Links to new addresses per account per window: each goes to an
    /// address of the requester's choosing.
    pub email_changes_per_window: usize,
    pub email_change_window: Duration,
    /// How long the "this wasn't me" link of a new-device notice can be
    /// used.
    pub report_link_ttl: Duration,
}

impl Policy {
    /// The wait after `failures` consecutive failures, if any: doubling from
    /// the base once the threshold is reached, capped at the maximum.
    pub fn throttle_delay(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.throttle_after_failures)?;
        let factor = 1_i32.checked_shl(over.min(30)).unwrap_or(i32::MAX);
        let delay = self
            .throttle_base
            .checked_mul(factor)
            .unwrap_or(self.throttle_max);
        Some(delay.min(self.throttle_max))
    }
}

/// Everything the aggregate uses from outside, in one place.
#[derive(Clone)]
pub struct UserAuthServices {
    pub clock: Arc<dyn Clock>,
    pub randomness: Arc<dyn Randomness>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub keeper: Arc<dyn SecretKeeper>,
    pub policy: Policy,
}

#[cfg(test)]
mod tests {
    use super::SealPurpose;

    #[test]
    fn only_the_address_and_free_text_are_personal() {
        use SealPurpose::*;
        for (purpose, label, personal) in [
            (PasswordHash, "password-hash", false),
            (TotpSecret, "totp-secret", false),
            (RecoveryCode, "recovery-code", false),
            (Email, "email", true),
            (FreeText, "free-text", true),
        ] {
            assert_eq!(purpose.label(), label);
            assert_eq!(purpose.is_personal(), personal, "{label}");
        }
    }
}
