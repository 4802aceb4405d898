/// Longest reason an administrator may give; it is recorded in an event and
/// shown to auditors, so it is a sentence, not a document.
const MAX_ADMIN_REASON_CHARS: usize = 500;

/// Why an administrator acted on an account, trimmed and never empty: an
/// admin action without a stated reason cannot be audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminReason(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a reason of 1 to 500 characters is required")]
pub struct InvalidAdminReason;

impl AdminReason {
    pub fn parse(raw: &str) -> Result<Self, InvalidAdminReason> {
        let reason = raw.trim();
        let chars = reason.chars().count();
        if (1..=MAX_ADMIN_REASON_CHARS).contains(&chars) {
            Ok(Self(reason.to_owned()))
        } else {
            Err(InvalidAdminReason)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<AdminReason> for String {
    fn from(value: AdminReason) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_trimmed() {
        let reason = AdminReason::parse("  lost phone, identity checked \n").unwrap();
        assert_eq!(reason.as_str(), "lost phone, identity checked");
    }

    #[test]
    fn an_empty_or_blank_reason_is_refused() {
        for raw in ["", "   ", "\t\n"] {
            assert_eq!(AdminReason::parse(raw), Err(InvalidAdminReason), "{raw:?}");
        }
    }

    #[test]
    fn a_reason_may_hold_five_hundred_characters_but_not_more() {
        assert!(AdminReason::parse(&"a".repeat(500)).is_ok());
        assert_eq!(
            AdminReason::parse(&"a".repeat(501)),
            Err(InvalidAdminReason)
        );
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        // 500 two-byte characters: 1,000 bytes.
        assert!(AdminReason::parse(&"é".repeat(500)).is_ok());
        assert_eq!(
            AdminReason::parse(&"é".repeat(501)),
            Err(InvalidAdminReason)
        );
    }
}
