//! The server keys and what is derived from each: the token MAC key, the
//! AEAD key that seals secrets into events, the blind-index key for
//! addresses and the key that wraps users' data keys; and the users' own
//! data keys, which seal their personal data.
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use std::sync::Arc;

use authledger_aggregates::{Email, SealPurpose, Sealed, SecretKeeper, ServiceError};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

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

    /// Reads the development key from `path`, or `None` when there is no
    /// file there.
    pub fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the key file {}", path.display()))?;
        text.parse()
            .map(Some)
            .with_context(|| format!("the key file {} holds no valid key", path.display()))
    }

    /// The development key at `path`, made there when there is none yet.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match Self::load(path)? {
            Some(key) => Ok(key),
            None => Self::create(path),
        }
    }

    /// Creates the development key at `path`, readable by the owner only;
    /// fails when a file is already there.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
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

/// What one server key gives, one derived key per use, so no two uses
/// share a key.
struct KeySet {
    id: String,
    token_key: [u8; KEY_BYTES],
    blind_key: [u8; KEY_BYTES],
    seal: XChaCha20Poly1305,
    wrap: XChaCha20Poly1305,
    event_mac_key: [u8; KEY_BYTES],
    tree_signing: ed25519_dalek::SigningKey,
}

impl KeySet {
    fn new(master: &MasterKey) -> Self {
        let key_id = master.derive(b"authledger/key-id/v1");
        Self {
            id: hex(&key_id[..4]),
            token_key: master.derive(b"authledger/token/v1"),
            blind_key: master.derive(b"authledger/email-index/v1"),
            seal: XChaCha20Poly1305::new(&master.derive(b"authledger/seal/v1").into()),
            wrap: XChaCha20Poly1305::new(&master.derive(b"authledger/wrap/v1").into()),
            event_mac_key: master.derive(b"authledger/event-mac/v1"),
            tree_signing: ed25519_dalek::SigningKey::from_bytes(
                &master.derive(b"authledger/tree-head-signing/v1"),
            ),
        }
    }
}

/// The server keys, newest first. New tokens, seals, blind indexes and
/// wrapped data keys use the newest; whatever an older listed key made
/// still opens and verifies, so keys can be rotated without a flag day.
pub struct Keyring {
    sets: Vec<KeySet>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("no server key is configured")]
    Empty,
    #[error("the server key {0} is listed twice")]
    Duplicate(String),
}

impl Keyring {
    /// `keys` newest first.
    pub fn new(keys: &[MasterKey]) -> Result<Self, KeyringError> {
        let sets: Vec<KeySet> = keys.iter().map(KeySet::new).collect();
        if sets.is_empty() {
            return Err(KeyringError::Empty);
        }
        for (i, set) in sets.iter().enumerate() {
            if sets[..i].iter().any(|earlier| earlier.id == set.id) {
                return Err(KeyringError::Duplicate(set.id.clone()));
            }
        }
        Ok(Self { sets })
    }

    pub fn single(key: &MasterKey) -> Self {
        Self {
            sets: vec![KeySet::new(key)],
        }
    }

    fn newest(&self) -> &KeySet {
        // `new` refuses an empty ring.
        &self.sets[0]
    }

    fn by_id(&self, id: &str) -> Option<&KeySet> {
        self.sets.iter().find(|set| set.id == id)
    }

    /// The id of the key new things are made with.
    pub fn current_id(&self) -> &str {
        &self.newest().id
    }

    /// Every key's id, newest first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.sets.iter().map(|set| set.id.as_str()).collect()
    }

    /// The MAC that new tokens are signed with.
    pub fn token_mac(&self) -> HmacSha256 {
        keyed(&self.newest().token_key)
    }

    /// The MACs a token may have been signed with, newest first.
    pub fn token_macs(&self) -> impl Iterator<Item = HmacSha256> + '_ {
        self.sets.iter().map(|set| keyed(&set.token_key))
    }

    /// The MAC new events and snapshots are sealed with, and its key's id.
    pub fn event_mac(&self) -> (&str, HmacSha256) {
        let set = self.newest();
        (&set.id, keyed(&set.event_mac_key))
    }

    /// The event MAC of key `id`, if this server holds it.
    pub fn event_mac_of(&self, id: &str) -> Option<HmacSha256> {
        self.by_id(id).map(|set| keyed(&set.event_mac_key))
    }

    /// The key tree heads are signed with, and its key's id.
    pub fn tree_signer(&self) -> (&str, &ed25519_dalek::SigningKey) {
        let set = self.newest();
        (&set.id, &set.tree_signing)
    }

    /// The public tree-head key of key `id`, if this server holds it.
    pub fn tree_public_key(&self, id: &str) -> Option<ed25519_dalek::VerifyingKey> {
        self.by_id(id).map(|set| set.tree_signing.verifying_key())
    }

    /// Every key's public tree-head key, newest first.
    pub fn tree_public_keys(&self) -> Vec<(&str, ed25519_dalek::VerifyingKey)> {
        self.sets
            .iter()
            .map(|set| (set.id.as_str(), set.tree_signing.verifying_key()))
            .collect()
    }

    /// The address's blind index under the newest key.
    pub fn blind_index(&self, email: &Email) -> BlindIndex {
        blind_index(self.newest(), email)
    }

    /// The address's blind index under every key, newest first: a claim
    /// made before a rotation is found by its old index.
    pub fn blind_indexes(&self, email: &Email) -> Vec<BlindIndex> {
        self.sets
            .iter()
            .map(|set| blind_index(set, email))
            .collect()
    }

    /// Wraps a user's data key under the newest key, bound to the user.
    pub fn wrap(&self, user: Uuid, key: &DataKey) -> Result<WrappedKey, ServiceError> {
        let set = self.newest();
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let aad = wrap_aad(&set.id, user);
        let wrapped = set
            .wrap
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &key.0,
                    aad: &aad,
                },
            )
            .map_err(|_| ServiceError::Failed("wrapping a data key failed".into()))?;
        Ok(WrappedKey {
            key_id: set.id.clone(),
            nonce: nonce.to_vec(),
            wrapped,
        })
    }

    pub fn unwrap(&self, user: Uuid, wrapped: &WrappedKey) -> Result<DataKey, ServiceError> {
        let set = self
            .by_id(&wrapped.key_id)
            .ok_or_else(|| missing_key(&wrapped.key_id))?;
        if wrapped.nonce.len() != 24 {
            return Err(ServiceError::Failed(
                "a wrapped data key is malformed".into(),
            ));
        }
        let aad = wrap_aad(&set.id, user);
        let bytes = set
            .wrap
            .decrypt(
                XNonce::from_slice(&wrapped.nonce),
                Payload {
                    msg: &wrapped.wrapped,
                    aad: &aad,
                },
            )
            .map_err(|_| ServiceError::Failed("a wrapped data key failed to open".into()))?;
        let bytes: [u8; KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| ServiceError::Failed("a wrapped data key is malformed".into()))?;
        Ok(DataKey(bytes))
    }

    fn aad(purpose: SealPurpose, key_id: &str) -> Vec<u8> {
        format!("authledger/{}/{}", purpose.label(), key_id).into_bytes()
    }

    /// A user's secret is bound to the user too: sealed for one account, it
    /// does not open as another's (a password hash copied between streams
    /// or snapshots is refused).
    fn bound_aad(purpose: SealPurpose, key_id: &str, user: Uuid) -> Vec<u8> {
        format!("authledger/{}/{}/{}", purpose.label(), key_id, user).into_bytes()
    }

    fn seal_bound(
        &self,
        user: Uuid,
        purpose: SealPurpose,
        plaintext: &[u8],
    ) -> Result<Sealed, ServiceError> {
        let set = self.newest();
        seal_with(
            &set.seal,
            set.id.clone(),
            &Self::bound_aad(purpose, &set.id, user),
            plaintext,
        )
    }

    fn unseal_bound(
        &self,
        user: Uuid,
        purpose: SealPurpose,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, ServiceError> {
        let set = self
            .by_id(&sealed.key_id)
            .ok_or_else(|| missing_key(&sealed.key_id))?;
        open_with(&set.seal, &Self::bound_aad(purpose, &set.id, user), sealed)
    }
}

fn missing_key(id: &str) -> ServiceError {
    ServiceError::Failed(format!(
        "something is sealed under server key {id}, which this server does not hold"
    ))
}

fn wrap_aad(key_id: &str, user: Uuid) -> Vec<u8> {
    format!("authledger/data-key/{key_id}/{user}").into_bytes()
}

fn blind_index(set: &KeySet, email: &Email) -> BlindIndex {
    let mut mac = keyed(&set.blind_key);
    mac.update(email.as_str().as_bytes());
    BlindIndex {
        key_id: set.id.clone(),
        digest: mac.finalize().into_bytes().to_vec(),
    }
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// An address's keyed digest: what `email_claims` holds instead of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlindIndex {
    pub key_id: String,
    pub digest: Vec<u8>,
}

impl BlindIndex {
    pub fn hex(&self) -> String {
        hex(&self.digest)
    }
}

/// A user's own key for their personal data. Deleting its wrapped form
/// erases every address, IP and browser sealed with it.
#[derive(Clone)]
pub struct DataKey([u8; KEY_BYTES]);

impl DataKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// A data key as `user_keys` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub wrapped: Vec<u8>,
}

/// Server secrets only: personal data needs the user's own key, which only
/// a [`UserKeeper`] holds.
impl SecretKeeper for Keyring {
    fn seal(&self, purpose: SealPurpose, plaintext: &[u8]) -> Result<Sealed, ServiceError> {
        if purpose.is_personal() {
            return Err(ServiceError::Failed(
                "personal data is sealed with the user's key only".into(),
            ));
        }
        let set = self.newest();
        seal_with(
            &set.seal,
            set.id.clone(),
            &Self::aad(purpose, &set.id),
            plaintext,
        )
    }

    fn unseal(&self, purpose: SealPurpose, sealed: &Sealed) -> Result<Vec<u8>, ServiceError> {
        let set = self
            .by_id(&sealed.key_id)
            .ok_or_else(|| missing_key(&sealed.key_id))?;
        open_with(&set.seal, &Self::aad(purpose, &set.id), sealed)
    }

    fn is_current(&self, purpose: SealPurpose, sealed: &Sealed) -> bool {
        purpose.is_personal() || sealed.key_id == self.newest().id
    }
}

/// The key id personal data is sealed under: the user's own data key.
pub const USER_KEY_ID: &str = "user";

/// Seals and opens one user's data: personal data with their data key,
/// everything else with the server keys. Without a data key (an erased
/// account) personal data neither seals nor opens.
#[derive(Clone)]
pub struct UserKeeper {
    ring: Arc<Keyring>,
    user: Uuid,
    personal: Option<XChaCha20Poly1305>,
}

impl UserKeeper {
    /// The keeper of `user`, whose data key is `wrapped` (none once the
    /// account is erased, or for an id nobody has).
    pub fn unwrapping(
        ring: &Arc<Keyring>,
        user: Uuid,
        wrapped: Option<&WrappedKey>,
    ) -> Result<Self, ServiceError> {
        let key = wrapped.map(|w| ring.unwrap(user, w)).transpose()?;
        Ok(Self::new(ring.clone(), user, key.as_ref()))
    }

    pub fn new(ring: Arc<Keyring>, user: Uuid, key: Option<&DataKey>) -> Self {
        Self {
            ring,
            user,
            personal: key.map(|key| XChaCha20Poly1305::new(&key.0.into())),
        }
    }

    /// Whether the user's personal data can still be opened.
    pub fn holds_personal_key(&self) -> bool {
        self.personal.is_some()
    }

    fn personal_aad(&self, purpose: SealPurpose) -> Vec<u8> {
        format!("authledger/{}/user/{}", purpose.label(), self.user).into_bytes()
    }

    fn personal(&self) -> Result<&XChaCha20Poly1305, ServiceError> {
        self.personal.as_ref().ok_or(ServiceError::Failed(
            "the account's personal data is erased".into(),
        ))
    }

    /// A personal value as text, or `None` when it cannot be opened (the
    /// account is erased).
    pub fn open_text(&self, purpose: SealPurpose, sealed: &Sealed) -> Option<String> {
        self.unseal(purpose, sealed)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
    }
}

impl fmt::Debug for UserKeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserKeeper")
            .field("user", &self.user)
            .field("personal", &self.personal.is_some())
            .finish_non_exhaustive()
    }
}

impl SecretKeeper for UserKeeper {
    fn seal(&self, purpose: SealPurpose, plaintext: &[u8]) -> Result<Sealed, ServiceError> {
        if !purpose.is_personal() {
            return self.ring.seal_bound(self.user, purpose, plaintext);
        }
        seal_with(
            self.personal()?,
            USER_KEY_ID.to_owned(),
            &self.personal_aad(purpose),
            plaintext,
        )
    }

    fn unseal(&self, purpose: SealPurpose, sealed: &Sealed) -> Result<Vec<u8>, ServiceError> {
        if !purpose.is_personal() {
            return self.ring.unseal_bound(self.user, purpose, sealed);
        }
        if sealed.key_id != USER_KEY_ID {
            return Err(ServiceError::Failed(
                "personal data sealed under an unknown key".into(),
            ));
        }
        open_with(self.personal()?, &self.personal_aad(purpose), sealed)
    }

    fn is_current(&self, purpose: SealPurpose, sealed: &Sealed) -> bool {
        self.ring.is_current(purpose, sealed)
    }
}

fn seal_with(
    cipher: &XChaCha20Poly1305,
    key_id: String,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, ServiceError> {
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| ServiceError::Failed("sealing failed".into()))?;
    Ok(Sealed {
        key_id,
        nonce: STANDARD_NO_PAD.encode(nonce),
        ciphertext: STANDARD_NO_PAD.encode(ciphertext),
    })
}

fn open_with(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    sealed: &Sealed,
) -> Result<Vec<u8>, ServiceError> {
    let broken = || ServiceError::Failed("a sealed value failed to open".into());
    let nonce = STANDARD_NO_PAD
        .decode(&sealed.nonce)
        .map_err(|_| broken())?;
    if nonce.len() != 24 {
        return Err(broken());
    }
    let ciphertext = STANDARD_NO_PAD
        .decode(&sealed.ciphertext)
        .map_err(|_| broken())?;
    cipher
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &ciphertext,
                aad,
            },
        )
        .map_err(|_| broken())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; KEY_BYTES])
    }

    fn keyring() -> Keyring {
        Keyring::single(&key(9))
    }

    fn email(raw: &str) -> Email {
        Email::parse(raw).unwrap()
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
        let other = Keyring::single(&key(8));
        assert!(other.unseal(SealPurpose::TotpSecret, &sealed).is_err());
    }

    #[test]
    fn after_a_rotation_old_seals_open_and_new_ones_use_the_newest_key() {
        let old = Keyring::single(&key(1));
        let sealed = old.seal(SealPurpose::TotpSecret, b"secret").unwrap();
        let rotated = Keyring::new(&[key(2), key(1)]).unwrap();
        assert_eq!(
            rotated.unseal(SealPurpose::TotpSecret, &sealed).unwrap(),
            b"secret"
        );
        assert!(!rotated.is_current(SealPurpose::TotpSecret, &sealed));
        let resealed = rotated.seal(SealPurpose::TotpSecret, b"secret").unwrap();
        assert!(rotated.is_current(SealPurpose::TotpSecret, &resealed));
        assert_ne!(resealed.key_id, sealed.key_id);
        // Once the old key is removed, only what was resealed opens.
        let without_old = Keyring::single(&key(2));
        assert!(without_old
            .unseal(SealPurpose::TotpSecret, &sealed)
            .is_err());
        assert!(without_old
            .unseal(SealPurpose::TotpSecret, &resealed)
            .is_ok());
    }

    #[test]
    fn a_key_listed_twice_or_no_key_at_all_is_refused() {
        assert!(matches!(Keyring::new(&[]), Err(KeyringError::Empty)));
        assert!(matches!(
            Keyring::new(&[key(1), key(2), key(1)]),
            Err(KeyringError::Duplicate(_))
        ));
    }

    #[test]
    fn a_blind_index_is_the_same_for_one_address_however_typed_and_differs_per_key() {
        let ring = Keyring::new(&[key(2), key(1)]).unwrap();
        let a = ring.blind_index(&email("Ada@Example.com"));
        assert_eq!(a, ring.blind_index(&email("ada@example.com")));
        assert_ne!(a, ring.blind_index(&email("bob@example.com")));
        let all = ring.blind_indexes(&email("ada@example.com"));
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], a);
        assert_eq!(
            all[1],
            Keyring::single(&key(1)).blind_index(&email("ada@example.com"))
        );
        assert!(!a.hex().contains("ada"));
    }

    #[test]
    fn a_wrapped_data_key_opens_only_for_its_user_and_under_a_listed_key() {
        let ring = Keyring::single(&key(1));
        let user = Uuid::now_v7();
        let data = DataKey::generate();
        let wrapped = ring.wrap(user, &data).unwrap();
        let opened = ring.unwrap(user, &wrapped).unwrap();
        assert_eq!(opened.0, data.0);
        assert!(ring.unwrap(Uuid::now_v7(), &wrapped).is_err());
        assert!(Keyring::single(&key(2)).unwrap(user, &wrapped).is_err());
        let rotated = Keyring::new(&[key(2), key(1)]).unwrap();
        assert_eq!(rotated.unwrap(user, &wrapped).unwrap().0, data.0);
        assert_eq!(
            rotated.wrap(user, &data).unwrap().key_id,
            rotated.current_id()
        );
    }

    #[test]
    fn personal_data_is_sealed_with_the_users_key_and_is_gone_with_it() {
        let ring = Arc::new(Keyring::single(&key(1)));
        let user = Uuid::now_v7();
        let data = DataKey::generate();
        let keeper = UserKeeper::new(ring.clone(), user, Some(&data));
        let sealed = keeper.seal(SealPurpose::Email, b"ada@example.com").unwrap();
        assert_eq!(sealed.key_id, USER_KEY_ID);
        assert_eq!(
            keeper.open_text(SealPurpose::Email, &sealed).as_deref(),
            Some("ada@example.com")
        );
        assert!(ring.seal(SealPurpose::Email, b"x").is_err());
        let other_user = UserKeeper::new(ring.clone(), Uuid::now_v7(), Some(&data));
        assert_eq!(other_user.open_text(SealPurpose::Email, &sealed), None);
        let erased = UserKeeper::new(ring.clone(), user, None);
        assert_eq!(erased.open_text(SealPurpose::Email, &sealed), None);
        assert!(erased.seal(SealPurpose::Email, b"x").is_err());
        // Secrets are under the server key, bound to their user.
        let secret = erased.seal(SealPurpose::TotpSecret, b"s").unwrap();
        assert_eq!(
            keeper.unseal(SealPurpose::TotpSecret, &secret).unwrap(),
            b"s"
        );
        assert!(other_user.unseal(SealPurpose::TotpSecret, &secret).is_err());
        assert!(ring.unseal(SealPurpose::TotpSecret, &secret).is_err());
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
        let data = DataKey([0xAB; KEY_BYTES]);
        assert!(!format!("{data:?}").to_lowercase().contains("ab"));
    }
}
