use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Bytes of randomness in a recovery code: 120 bits, above the 112 that
/// NIST SP 800-63B asks of a look-up secret.
pub const RECOVERY_CODE_BYTES: usize = 15;
const RECOVERY_CODE_CHARS: usize = RECOVERY_CODE_BYTES * 8 / 5;
const GROUP: usize = 4;

/// A recovery code: 24 base32 characters, shown in groups of four.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a recovery code is {RECOVERY_CODE_CHARS} letters and digits (2-7), optionally grouped with dashes")]
pub struct InvalidRecoveryCode;

impl RecoveryCode {
    pub fn from_random(bytes: [u8; RECOVERY_CODE_BYTES]) -> Self {
        Self(data_encoding::BASE32_NOPAD.encode(&bytes))
    }

    /// Accepts any case, with dashes or spaces between groups.
    pub fn parse(raw: &str) -> Result<Self, InvalidRecoveryCode> {
        let normalized: String = raw
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let valid = normalized.len() == RECOVERY_CODE_CHARS
            && normalized
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
        if valid {
            Ok(Self(normalized))
        } else {
            Err(InvalidRecoveryCode)
        }
    }

    /// The normalized form, which is what gets hashed.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The form shown to the user: `ABCD-EFGH-...`.
    pub fn display(&self) -> String {
        self.0
            .as_bytes()
            .chunks(GROUP)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

/// A keyed hash of a recovery code (HMAC-SHA256 under the server key), hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CodeDigest(pub String);

impl CodeDigest {
    pub fn matches(&self, other: &CodeDigest) -> bool {
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_round_trips_through_its_display_form() {
        let code = RecoveryCode::from_random([7; RECOVERY_CODE_BYTES]);
        let shown = code.display();
        assert_eq!(shown.len(), 24 + 5);
        assert_eq!(RecoveryCode::parse(&shown.to_lowercase()).unwrap(), code);
    }

    #[test]
    fn codes_of_the_wrong_length_or_alphabet_are_refused() {
        for raw in [
            "",
            "ABCD",
            "ABCD-EFGH-IJKL-MNOP-QRST-UVW1",
            "ABCD-EFGH-IJKL-MNOP-QRST-UVWXY",
        ] {
            assert_eq!(
                RecoveryCode::parse(raw),
                Err(InvalidRecoveryCode),
                "{raw:?}"
            );
        }
    }
}
