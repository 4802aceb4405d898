//! TOTP (RFC 6238) as every authenticator app speaks it: SHA-1, 6 digits,
//! 30-second steps.
use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder};

pub const TOTP_DIGITS: usize = 6;
pub const TOTP_PERIOD_SECS: u64 = 30;
pub const TOTP_SECRET_BYTES: usize = 20;

/// A 160-bit shared secret, as minted from the OS CSPRNG.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret([u8; TOTP_SECRET_BYTES]);

impl TotpSecret {
    pub fn from_bytes(bytes: [u8; TOTP_SECRET_BYTES]) -> Self {
        Self(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Unpadded base32, for manual entry into an authenticator app.
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// The Key URI an authenticator app scans: issuer both as label prefix
    /// and as `issuer=`, and the parameters spelled out rather than left to
    /// each app's defaults.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~')
            .remove(b'@');
        let issuer_enc = utf8_percent_encode(issuer, COMPONENT).to_string();
        let account_enc = utf8_percent_encode(account, COMPONENT).to_string();
        format!(
            "otpauth://totp/{issuer_enc}:{account_enc}?secret={}&issuer={issuer_enc}&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_PERIOD_SECS}",
            self.to_base32()
        )
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// Six decimal digits as typed by the user (spaces between groups allowed).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the code must be {TOTP_DIGITS} digits")]
pub struct InvalidTotpCode;

impl TotpCode {
    pub fn parse(raw: &str) -> Result<Self, InvalidTotpCode> {
        let digits: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        if digits.len() == TOTP_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(digits))
        } else {
            Err(InvalidTotpCode)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode(<redacted>)")
    }
}

/// What checking a code against a secret found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    /// The code belongs to this time step, newer than any accepted before.
    Accepted {
        step: u64,
    },
    /// The code is right but its step (or a newer one) was already used.
    Replayed,
    Wrong,
}

/// The time step a Unix time falls in.
pub fn time_step(unix_secs: u64) -> u64 {
    unix_secs / TOTP_PERIOD_SECS
}

/// Checks `code` against the steps within `skew` of `unix_secs`. A step at or
/// below `last_used_step` is never accepted again, so neither a replay nor an
/// older code inside the window passes once a newer one was used.
pub fn check_code(
    secret: &TotpSecret,
    code: &TotpCode,
    unix_secs: u64,
    skew: u64,
    last_used_step: Option<u64>,
) -> TotpCheck {
    let current = time_step(unix_secs);
    let mut matched: Option<u64> = None;
    // Every candidate is computed and compared, so timing does not tell which
    // step (if any) matched.
    for step in current.saturating_sub(skew)..=current.saturating_add(skew) {
        let expected = code_at_step(secret, step);
        if bool::from(expected.as_bytes().ct_eq(code.as_str().as_bytes())) {
            matched = Some(matched.map_or(step, |m| m.max(step)));
        }
    }
    match (matched, last_used_step) {
        (None, _) => TotpCheck::Wrong,
        (Some(step), Some(last)) if step <= last => TotpCheck::Replayed,
        (Some(step), _) => TotpCheck::Accepted { step },
    }
}

/// The code an authenticator app shows during `step`.
pub fn code_at_step(secret: &TotpSecret, step: u64) -> String {
    generate(
        Algorithm::SHA1,
        secret.expose(),
        TOTP_DIGITS,
        step * TOTP_PERIOD_SECS,
        TOTP_PERIOD_SECS,
    )
}

fn generate(algorithm: Algorithm, secret: &[u8], digits: usize, time: u64, period: u64) -> String {
    // The secret length and digit count are fixed by the callers, so the
    // builder's RFC checks cannot fail; the non-checking build keeps this
    // function total.
    Builder::new()
        .with_algorithm(algorithm)
        .with_digits(digits as u8)
        .with_step_duration(period)
        .with_secret(secret.to_vec())
        .build_noncompliant()
        .generate(time)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn rfc_6238_appendix_b_vectors_hold_for_every_algorithm() {
        let vectors: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, sha1, sha256, sha512) in vectors {
            assert_eq!(
                generate(Algorithm::SHA1, SEED_SHA1, 8, time, 30),
                sha1,
                "SHA1 at {time}"
            );
            assert_eq!(
                generate(Algorithm::SHA256, SEED_SHA256, 8, time, 30),
                sha256,
                "SHA256 at {time}"
            );
            assert_eq!(
                generate(Algorithm::SHA512, SEED_SHA512, 8, time, 30),
                sha512,
                "SHA512 at {time}"
            );
        }
    }

    #[test]
    fn rfc_4226_appendix_d_vectors_hold() {
        // HOTP(counter) is TOTP with a one-second period at time = counter.
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(
                generate(Algorithm::SHA1, SEED_SHA1, 6, counter as u64, 1),
                *code
            );
        }
    }

    fn secret() -> TotpSecret {
        TotpSecret::from_slice(SEED_SHA1).unwrap()
    }

    fn code(step: u64) -> TotpCode {
        TotpCode::parse(&code_at_step(&secret(), step)).unwrap()
    }

    const NOW: u64 = 1_700_000_015;

    #[test]
    fn the_current_step_is_accepted() {
        let step = time_step(NOW);
        assert_eq!(
            check_code(&secret(), &code(step), NOW, 1, None),
            TotpCheck::Accepted { step }
        );
    }

    #[test]
    fn one_step_of_skew_either_way_is_accepted() {
        let step = time_step(NOW);
        for s in [step - 1, step + 1] {
            assert_eq!(
                check_code(&secret(), &code(s), NOW, 1, None),
                TotpCheck::Accepted { step: s }
            );
        }
    }

    #[test]
    fn two_steps_of_skew_either_way_are_refused() {
        let step = time_step(NOW);
        for s in [step - 2, step + 2] {
            assert_eq!(
                check_code(&secret(), &code(s), NOW, 1, None),
                TotpCheck::Wrong
            );
        }
    }

    #[test]
    fn second_use_of_the_same_time_step_is_refused() {
        let step = time_step(NOW);
        assert_eq!(
            check_code(&secret(), &code(step), NOW, 1, Some(step)),
            TotpCheck::Replayed
        );
    }

    #[test]
    fn an_older_step_inside_the_window_is_refused_after_a_newer_one() {
        let step = time_step(NOW);
        assert_eq!(
            check_code(&secret(), &code(step - 1), NOW, 1, Some(step)),
            TotpCheck::Replayed
        );
    }

    #[test]
    fn codes_with_letters_or_the_wrong_length_do_not_parse() {
        for raw in ["12345", "1234567", "12a456", "", "１２３４５６"] {
            assert_eq!(TotpCode::parse(raw), Err(InvalidTotpCode), "{raw:?}");
        }
        assert_eq!(TotpCode::parse("123 456").unwrap().as_str(), "123456");
    }

    #[test]
    fn the_key_uri_names_issuer_twice_and_spells_out_its_parameters() {
        let uri = secret().otpauth_uri("Example Co", "alice@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Example%20Co:alice@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20Co&algorithm=SHA1&digits=6&period=30"
        );
    }
}
