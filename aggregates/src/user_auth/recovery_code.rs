use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::services::{SealPurpose, Sealed, SecretKeeper, ServiceError};

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

/// What is stored of a recovery code: its SHA-256, sealed with the server
/// key. The code carries 120 random bits, so a fast hash is enough against
/// guessing; the seal means the event log alone cannot test a guess, and
/// lets the stored form move to a new key like any other secret.
pub fn seal_recovery_code(
    keeper: &dyn SecretKeeper,
    code: &RecoveryCode,
) -> Result<Sealed, ServiceError> {
    keeper.seal(SealPurpose::RecoveryCode, &code_digest(code))
}

/// Whether `code` is the one `sealed` was made from, compared in constant
/// time.
pub fn recovery_code_matches(
    keeper: &dyn SecretKeeper,
    code: &RecoveryCode,
    sealed: &Sealed,
) -> Result<bool, ServiceError> {
    let stored = keeper.unseal(SealPurpose::RecoveryCode, sealed)?;
    Ok(bool::from(stored.as_slice().ct_eq(&code_digest(code))))
}

fn code_digest(code: &RecoveryCode) -> [u8; 32] {
    Sha256::digest(code.expose().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user_auth::testing::keeper;

    #[test]
    fn a_sealed_code_matches_that_code_and_no_other() {
        let code = RecoveryCode::from_random([7; RECOVERY_CODE_BYTES]);
        let other = RecoveryCode::from_random([8; RECOVERY_CODE_BYTES]);
        let sealed = seal_recovery_code(&keeper(), &code).unwrap();
        assert_eq!(recovery_code_matches(&keeper(), &code, &sealed), Ok(true));
        assert_eq!(recovery_code_matches(&keeper(), &other, &sealed), Ok(false));
    }

    #[test]
    fn the_keeper_is_handed_the_digest_of_the_code_never_the_code() {
        let code = RecoveryCode::from_random([7; RECOVERY_CODE_BYTES]);
        let sealed = seal_recovery_code(&keeper(), &code).unwrap();
        let stored = keeper().unseal(SealPurpose::RecoveryCode, &sealed).unwrap();
        // The SHA-256 of "A4DQOBYHA4DQOBYHA4DQOBYH", computed apart from this code.
        assert_eq!(
            data_encoding::HEXLOWER.encode(&stored),
            "4499677b69439dc9f31a963781a17a0675b12c3011a07780b5167a15d599b5b3"
        );
    }

    #[test]
    fn a_code_sealed_for_another_purpose_is_not_a_recovery_code() {
        let code = RecoveryCode::from_random([7; RECOVERY_CODE_BYTES]);
        let digest = Sha256::digest(code.expose().as_bytes());
        let as_text = keeper().seal(SealPurpose::FreeText, &digest).unwrap();
        assert!(recovery_code_matches(&keeper(), &code, &as_text).is_err());
    }

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
