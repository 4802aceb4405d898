//! The server key and what is derived from it: the token MAC key, the AEAD
//! key that seals secrets into events, and the recovery-code hashing key.
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use authledger_aggregates::{
    CodeDigest, RecoveryCode, SealPurpose, Sealed, SecretKeeper, ServiceError,
};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const KEY_BYTES: usize = 32;

/// The 32-byte server key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_BYTES]);

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(bytes)
    }

    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Reads the development key from `path`, creating it (readable by the
    /// owner only) on first use.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the key file {}", path.display()))?;
            return text
                .parse()
                .with_context(|| format!("the key file {} holds no valid key", path.display()));
        }
        let key = Self::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .with_context(|| format!("creating the key file {}", path.display()))?;
        writeln!(file, "{}", key.to_base64())?;
        Ok(key)
    }

    fn derive(&self, label: &[u8]) -> [u8; KEY_BYTES] {
        let mut mac = keyed(&self.0);
        mac.update(label);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the server key must be base64 of exactly {KEY_BYTES} bytes")]
pub struct InvalidMasterKey;

impl FromStr for MasterKey {
    type Err = InvalidMasterKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(s).ok())
            .ok_or(InvalidMasterKey)?;
        bytes.try_into().map(Self).map_err(|_| InvalidMasterKey)
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// Keys derived from the server key, one per use, so no two uses share a key.
pub struct Keyring {
    token_key: [u8; KEY_BYTES],
    code_key: [u8; KEY_BYTES],
    seal: XChaCha20Poly1305,
    seal_key_id: String,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("seal_key_id", &self.seal_key_id)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    pub fn new(master: &MasterKey) -> Self {
        let seal_key = master.derive(b"authledger/seal/v1");
        let key_id = master.derive(b"authledger/key-id/v1");
        Self {
            token_key: master.derive(b"authledger/token/v1"),
            code_key: master.derive(b"authledger/recovery-code/v1"),
            seal: XChaCha20Poly1305::new(&seal_key.into()),
            seal_key_id: data_encoding_hex(&key_id[..4]),
        }
    }

    pub fn token_mac(&self) -> HmacSha256 {
        keyed(&self.token_key)
    }

    fn aad(&self, purpose: SealPurpose) -> Vec<u8> {
        format!("authledger/{}/{}", purpose.label(), self.seal_key_id).into_bytes()
    }
}

fn data_encoding_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SecretKeeper for Keyring {
    fn seal(&self, purpose: SealPurpose, plaintext: &[u8]) -> Result<Sealed, ServiceError> {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let aad = self.aad(purpose);
        let ciphertext = self
            .seal
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| ServiceError::Failed("sealing failed".into()))?;
        Ok(Sealed {
            key_id: self.seal_key_id.clone(),
            nonce: STANDARD_NO_PAD.encode(nonce),
            ciphertext: STANDARD_NO_PAD.encode(ciphertext),
        })
    }

    fn unseal(&self, purpose: SealPurpose, sealed: &Sealed) -> Result<Vec<u8>, ServiceError> {
        if sealed.key_id != self.seal_key_id {
            return Err(ServiceError::Failed(format!(
                "a secret is sealed under key {}, which this server does not hold",
                sealed.key_id
            )));
        }
        let broken = || ServiceError::Failed("a sealed secret failed to open".into());
        let nonce = STANDARD_NO_PAD
            .decode(&sealed.nonce)
            .map_err(|_| broken())?;
        if nonce.len() != 24 {
            return Err(broken());
        }
        let ciphertext = STANDARD_NO_PAD
            .decode(&sealed.ciphertext)
            .map_err(|_| broken())?;
        let aad = self.aad(purpose);
        self.seal
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| broken())
    }

    fn digest_recovery_code(&self, code: &RecoveryCode) -> CodeDigest {
        let mut mac = keyed(&self.code_key);
        mac.update(code.expose().as_bytes());
        CodeDigest(data_encoding_hex(&mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(&MasterKey::from_bytes([9; KEY_BYTES]))
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_purpose() {
        let keyring = keyring();
        let sealed = keyring.seal(SealPurpose::TotpSecret, b"secret").unwrap();
        assert_eq!(
            keyring.unseal(SealPurpose::TotpSecret, &sealed).unwrap(),
            b"secret"
        );
        assert!(keyring.unseal(SealPurpose::PasswordHash, &sealed).is_err());
    }

    #[test]
    fn a_secret_sealed_under_another_key_does_not_open() {
        let sealed = keyring().seal(SealPurpose::TotpSecret, b"secret").unwrap();
        let other = Keyring::new(&MasterKey::from_bytes([8; KEY_BYTES]));
        assert!(other.unseal(SealPurpose::TotpSecret, &sealed).is_err());
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let keyring = keyring();
        let a = keyring.seal(SealPurpose::TotpSecret, b"secret").unwrap();
        let b = keyring.seal(SealPurpose::TotpSecret, b"secret").unwrap();
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn keys_parse_from_any_base64_alphabet_but_only_at_32_bytes() {
        let key = MasterKey::generate();
        assert!(key.to_base64().parse::<MasterKey>().is_ok());
        assert!(URL_SAFE_NO_PAD
            .encode([1u8; 32])
            .parse::<MasterKey>()
            .is_ok());
        assert!(STANDARD.encode([1u8; 31]).parse::<MasterKey>().is_err());
        assert!("not base64!".parse::<MasterKey>().is_err());
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let key = MasterKey::from_bytes([0xAB; KEY_BYTES]);
        assert!(!format!("{key:?}").contains("171"));
        assert!(!format!("{key:?}").to_lowercase().contains("ab"));
    }
}
