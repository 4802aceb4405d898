/// Longest reason an administrator may give; it is recorded in an event and
/// shown to auditors, so it is a sentence, not a document.
const MAX_ADMIN_REASON_CHARS: usize = 500;

/// Why an administrator acted on an account, trimmed and never empty: an
/// admin action without a stated reason cannot be audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminReason(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAdminReason {
    #[error("a reason is required")]
    Empty,
    #[error("a reason has at most {MAX_ADMIN_REASON_CHARS} characters")]
    TooLong,
    /// Controls cannot be stored in the event log (NUL) and can rewrite
    /// what an auditor's terminal shows (escape sequences, carriage returns).
    #[error("a reason may not contain control characters")]
    ControlCharacter,
}

impl AdminReason {
    pub fn parse(raw: &str) -> Result<Self, InvalidAdminReason> {
        let reason = raw.trim();
        let chars = reason.chars().count();
        if chars == 0 {
            return Err(InvalidAdminReason::Empty);
        }
        if chars > MAX_ADMIN_REASON_CHARS {
            return Err(InvalidAdminReason::TooLong);
        }
        if reason.chars().any(char::is_control) {
            return Err(InvalidAdminReason::ControlCharacter);
        }
        Ok(Self(reason.to_owned()))
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
            assert_eq!(
                AdminReason::parse(raw),
                Err(InvalidAdminReason::Empty),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn a_reason_may_hold_five_hundred_characters_but_not_more() {
        assert!(AdminReason::parse(&"a".repeat(500)).is_ok());
        assert_eq!(
            AdminReason::parse(&"a".repeat(501)),
            Err(InvalidAdminReason::TooLong)
        );
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        // 500 two-byte characters: 1,000 bytes.
        assert!(AdminReason::parse(&"é".repeat(500)).is_ok());
        assert_eq!(
            AdminReason::parse(&"é".repeat(501)),
            Err(InvalidAdminReason::TooLong)
        );
    }

    #[test]
    fn a_reason_with_a_control_character_is_refused() {
        for raw in [
            "lost phone\u{0}",
            "lost\nphone",
            "lost\rphone",
            "lost\tphone",
            "\u{1b}[2Jlost phone",
            "lost\u{85}phone",
            "lost\u{7f}phone",
        ] {
            assert_eq!(
                AdminReason::parse(raw),
                Err(InvalidAdminReason::ControlCharacter),
                "{raw:?}"
            );
        }
    }
}
