use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for user ids: the id of a user is the UUIDv5 of their normalized
/// email in this namespace, so the event store's primary key makes emails unique.
const USER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_2c5e_8a4b_4f0e_9c3d_7b21_a5e4_d093);

/// An email address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid email address")]
pub struct InvalidEmail;

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.split_once('@').ok_or(InvalidEmail)?;
        let well_formed = email.len() <= 254
            && !local.is_empty()
            && local.len() <= 64
            && !domain.contains('@')
            && domain.contains('.')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && label.len() <= 63)
            && email
                .chars()
                .all(|c| c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control()));
        if well_formed {
            Ok(Self(email))
        } else {
            Err(InvalidEmail)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the user who registers (or registered) with this email.
    pub fn user_id(&self) -> Uuid {
        Uuid::new_v5(&USER_ID_NAMESPACE, self.0.as_bytes())
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidEmail;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_lower_cased() {
        let email = Email::parse("  Alice@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "alice@example.com");
    }

    #[test]
    fn the_same_address_in_any_case_is_the_same_user() {
        let a = Email::parse("Alice@Example.com").unwrap();
        let b = Email::parse("alice@example.com").unwrap();
        assert_eq!(a.user_id(), b.user_id());
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for raw in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "alice@@example.com",
            "al ice@example.com",
            "alice@example..com",
        ] {
            assert_eq!(Email::parse(raw), Err(InvalidEmail), "{raw:?}");
        }
    }
}
