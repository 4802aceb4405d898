//! An account's authenticators: any number of TOTP devices and WebAuthn
//! credentials (security keys and passkeys), each with a name its owner
//! chose.
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::services::Sealed;

/// Names one of an account's authenticators, in the profile, the API and
/// the audit. Minted by the caller, like a user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuthenticatorId(pub Uuid);

impl AuthenticatorId {
    /// The authenticator app enrolled before accounts could hold more than
    /// one: its `MfaEnrolled` named none.
    pub const FIRST: Self = Self(Uuid::nil());
}

impl fmt::Display for AuthenticatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Longest name a user may give an authenticator: a label in a list.
const MAX_NAME_CHARS: usize = 64;

/// What the user calls an authenticator ("Work YubiKey"), trimmed, never
/// empty. Recorded sealed with the user's data key, like any words they
/// typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatorName(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAuthenticatorName {
    #[error("a name is required")]
    Empty,
    #[error("a name has at most {MAX_NAME_CHARS} characters")]
    TooLong,
    /// Controls, reordering marks and zero-width spaces could rewrite or
    /// hide what an auditor's terminal and the profile show.
    #[error("a name may not contain control or invisible characters")]
    ControlCharacter,
}

impl AuthenticatorName {
    pub fn parse(raw: &str) -> Result<Self, InvalidAuthenticatorName> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 {
            return Err(InvalidAuthenticatorName::Empty);
        }
        if chars > MAX_NAME_CHARS {
            return Err(InvalidAuthenticatorName::TooLong);
        }
        let hidden = |c: char| {
            c.is_control()
                || super::email::is_bidi_control(c)
                || matches!(c, '\u{200B}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
        };
        if name.chars().any(hidden) {
            return Err(InvalidAuthenticatorName::ControlCharacter);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A WebAuthn credential as registered: its id as the browser names it
/// (base64url), the library's stored form (the public key, its algorithm
/// and flags; no secret), the signature count, and the transports the
/// browser reported. The aggregate reads only the id and the count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebAuthnCredential {
    pub credential_id: String,
    pub public_key: serde_json::Value,
    pub sign_count: u32,
    #[serde(default)]
    pub transports: Vec<String>,
    /// Whether the authenticator verified its user (a PIN or biometric)
    /// when it was registered.
    pub user_verified: bool,
}

/// A security key or passkey just registered, with the id the caller
/// minted for it and the name its owner gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebAuthnCredential {
    pub authenticator: AuthenticatorId,
    pub name: AuthenticatorName,
    pub credential: WebAuthnCredential,
}

/// What checking a WebAuthn assertion's signature against the ceremony's
/// challenge found. The signature is the library's to check; the count and
/// whether the credential is still the account's are the aggregate's, on
/// its current state rather than on the copy the challenge was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebAuthnAssertion {
    Valid {
        credential_id: String,
        sign_count: u32,
        user_verified: bool,
    },
    /// Not signed by a credential the challenge allowed, or not over the
    /// challenge and this origin.
    Invalid,
}

/// Which kind an authenticator is, as profiles and auditors see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticatorKind {
    Totp,
    #[serde(rename = "webauthn")]
    WebAuthn,
}

/// One authenticator, read-only, for profiles and the audit.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticatorView {
    pub id: AuthenticatorId,
    pub kind: AuthenticatorKind,
    /// Sealed with the user's data key (`SealPurpose::FreeText`); `None`
    /// for the authenticator app enrolled before authenticators had names.
    pub name: Option<Sealed>,
    pub added_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// For a WebAuthn credential: its id and transports.
    pub credential_id: Option<String>,
    pub transports: Vec<String>,
    /// When a security key answered with a signature count that went back:
    /// refused since, until removed.
    pub suspected_copy_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_trimmed_and_must_say_something_short() {
        assert_eq!(
            AuthenticatorName::parse("  Work key \n").unwrap().as_str(),
            "Work key"
        );
        assert_eq!(
            AuthenticatorName::parse(" \t"),
            Err(InvalidAuthenticatorName::Empty)
        );
        assert_eq!(
            AuthenticatorName::parse(&"k".repeat(65)),
            Err(InvalidAuthenticatorName::TooLong)
        );
        assert!(AuthenticatorName::parse(&"é".repeat(64)).is_ok());
        for hidden in ["key\u{1b}[2J", "key\u{202E}yek", "ke\u{200B}y"] {
            assert_eq!(
                AuthenticatorName::parse(hidden),
                Err(InvalidAuthenticatorName::ControlCharacter),
                "{hidden:?}"
            );
        }
        assert!(AuthenticatorName::parse("Laptop 👩\u{200D}💻").is_ok());
    }

    #[test]
    fn the_first_authenticator_of_old_events_has_the_nil_id() {
        assert_eq!(
            AuthenticatorId::FIRST.to_string(),
            "00000000-0000-0000-0000-000000000000"
        );
    }
}
