//! The log made verifiable from outside: signed tree heads over the Merkle
//! tree the `merkle_tree` projection keeps, proofs, signed bundles, and the
//! full check of the stored log (hash chains, MACs, snapshots, and the
//! tree recomputed from the events against every signed head given).
use std::collections::BTreeMap;

use authledger_projections::merkle::{self, CompactRange, Hash, LoggedEvent};
use authledger_projections::tree::{self, logged_event, LOGGED_COLUMNS};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use utoipa::ToSchema;

use crate::integrity::{self, SnapshotFields, Tag, GENESIS};
use crate::keys::Keyring;
use crate::store::{StoredRow, STORED_COLUMNS};

/// A signed tree head: the root of the tree of the first `tree_size`
/// events, signed with Ed25519 by the server key `key_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TreeHead {
    pub tree_size: u64,
    /// The Merkle root, lowercase hex.
    pub root_hash: String,
    /// When it was signed, to the millisecond.
    pub timestamp: DateTime<Utc>,
    pub key_id: String,
    /// The Ed25519 signature of [`TreeHead::signed_text`], base64.
    pub signature: String,
}

/// Why a head or bundle does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the public key is not 32 bytes of base64")]
    BadPublicKey,
    #[error("the tree head is malformed")]
    Malformed,
    #[error("the tree head's signature does not verify with this public key")]
    BadSignature,
}

impl TreeHead {
    /// The exact bytes signed: a label, the size, the root in hex and the
    /// time in milliseconds since the Unix epoch, one per line.
    pub fn signed_text(tree_size: u64, root: &Hash, timestamp: DateTime<Utc>) -> String {
        format!(
            "authledger-tree-head-v1\n{tree_size}\n{}\n{}\n",
            tree::hex(root),
            timestamp.timestamp_millis()
        )
    }

    fn sign(keyring: &Keyring, tree_size: u64, root: &Hash, at: DateTime<Utc>) -> Self {
        // Only milliseconds are signed; the stored time is what was signed.
        let at = Utc
            .timestamp_millis_opt(at.timestamp_millis())
            .single()
            .unwrap_or(at);
        let (key_id, signer) = keyring.tree_signer();
        let signature = signer.sign(Self::signed_text(tree_size, root, at).as_bytes());
        Self {
            tree_size,
            root_hash: tree::hex(root),
            timestamp: at,
            key_id: key_id.to_owned(),
            signature: STANDARD.encode(signature.to_bytes()),
        }
    }

    pub fn root(&self) -> Result<Hash, HeadError> {
        Self::parse_root(&self.root_hash)
    }

    fn parse_root(root_hash: &str) -> Result<Hash, HeadError> {
        let bytes = data_encoding::HEXLOWER
            .decode(root_hash.as_bytes())
            .map_err(|_| HeadError::Malformed)?;
        Hash::try_from(bytes.as_slice()).map_err(|_| HeadError::Malformed)
    }

    /// Checks the signature with `public_key`.
    pub fn verify(&self, public_key: &VerifyingKey) -> Result<Hash, HeadError> {
        let root = self.root()?;
        let signature = STANDARD
            .decode(&self.signature)
            .ok()
            .and_then(|bytes| <[u8; 64]>::try_from(bytes.as_slice()).ok())
            .map(|bytes| Signature::from_bytes(&bytes))
            .ok_or(HeadError::Malformed)?;
        public_key
            .verify(
                Self::signed_text(self.tree_size, &root, self.timestamp).as_bytes(),
                &signature,
            )
            .map_err(|_| HeadError::BadSignature)?;
        Ok(root)
    }
}

/// A public key as the API and the command line print it: base64 of its
/// 32 bytes.
pub fn encode_public_key(key: &VerifyingKey) -> String {
    STANDARD.encode(key.as_bytes())
}

pub fn decode_public_key(text: &str) -> Result<VerifyingKey, HeadError> {
    STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or(HeadError::BadPublicKey)
}

fn head_of(row: &sqlx::postgres::PgRow) -> Result<TreeHead, sqlx::Error> {
    let size: i64 = row.try_get("tree_size")?;
    let root: Vec<u8> = row.try_get("root_hash")?;
    let signature: Vec<u8> = row.try_get("signature")?;
    Ok(TreeHead {
        tree_size: u64::try_from(size).unwrap_or(0),
        root_hash: tree::hex(&root),
        timestamp: row.try_get("signed_at")?,
        key_id: row.try_get("key_id")?,
        signature: STANDARD.encode(signature),
    })
}

/// The newest signed head, if any.
pub async fn latest_head(pool: &PgPool) -> Result<Option<TreeHead>, sqlx::Error> {
    sqlx::query("SELECT * FROM tree_heads ORDER BY tree_size DESC LIMIT 1")
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(head_of)
        .transpose()
}

/// The head signed at exactly `size`, if any.
pub async fn head_at(pool: &PgPool, size: u64) -> Result<Option<TreeHead>, sqlx::Error> {
    sqlx::query("SELECT * FROM tree_heads WHERE tree_size = $1")
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(head_of)
        .transpose()
}

/// Signs the tree as it stands, unless the newest head has its size
/// already; answers the newest head (none while the log is empty). Refuses,
/// with the alarm, to sign a tree that does not extend the newest stored
/// head and each of `anchors` (heads kept outside the database), or when
/// one of them does not carry the server's signature: the new head would
/// vouch for a rewritten history.
pub async fn sign_head(
    pool: &PgPool,
    keyring: &Keyring,
    now: DateTime<Utc>,
    anchors: &[TreeHead],
) -> anyhow::Result<Option<TreeHead>> {
    let mut conn = pool.acquire().await?;
    let size = tree::size(&mut conn).await?;
    let latest = latest_head(pool).await?;
    let mut earlier: Vec<&TreeHead> = anchors.iter().collect();
    earlier.extend(latest.as_ref());
    for head in &earlier {
        if head.tree_size > size {
            // The tree is behind (being rebuilt, or catching up): not yet.
            return Ok(latest);
        }
        let signed = keyring
            .tree_public_key(&head.key_id)
            .is_some_and(|key| head.verify(&key).is_ok());
        let extended = tree::with_nodes(&mut conn, |nodes| merkle::root(nodes, head.tree_size))
            .await
            .ok()
            .zip(head.root().ok())
            .is_some_and(|(stored, signed)| stored == signed);
        if !signed || !extended {
            tracing::error!(
                tree_size = head.tree_size,
                signed,
                "INTEGRITY ALARM: the stored Merkle tree does not extend a signed tree head (or the head's signature does not verify); no new head is signed"
            );
            anyhow::bail!(
                "the stored tree does not extend the signed head at size {}",
                head.tree_size
            );
        }
    }
    if size == 0 || latest.as_ref().is_some_and(|h| h.tree_size >= size) {
        return Ok(latest);
    }
    let root = tree::with_nodes(&mut conn, |nodes| merkle::root(nodes, size)).await?;
    let head = TreeHead::sign(keyring, size, &root, now);
    let public = keyring.tree_signer().1.verifying_key();
    let signature = STANDARD.decode(&head.signature)?;
    sqlx::query(
        "INSERT INTO tree_heads (tree_size, root_hash, signed_at, key_id, public_key, signature)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(i64::try_from(size)?)
    .bind(root.as_slice())
    .bind(head.timestamp)
    .bind(&head.key_id)
    .bind(public.as_bytes().as_slice())
    .bind(signature)
    .execute(&mut *conn)
    .await?;
    // Another signer may have won the same size: theirs is the one kept.
    Ok(head_at(pool, size).await?.or(Some(head)))
}

/// Every signed head stored, smallest first.
pub async fn stored_heads(pool: &PgPool) -> Result<Vec<TreeHead>, sqlx::Error> {
    sqlx::query("SELECT * FROM tree_heads ORDER BY tree_size")
        .fetch_all(pool)
        .await?
        .iter()
        .map(head_of)
        .collect()
}

/// Every head in `dir` (`tree-head-<size>.json`), smallest first; a file
/// that is not a head is an error.
pub fn saved_heads(dir: &std::path::Path) -> anyhow::Result<Vec<TreeHead>> {
    let mut heads = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("tree-head-") && name.ends_with(".json") {
            let head: TreeHead = serde_json::from_slice(&std::fs::read(&path)?)
                .map_err(|e| anyhow::anyhow!("{} is not a tree head: {e}", path.display()))?;
            heads.push(head);
        }
    }
    heads.sort_by_key(|h| h.tree_size);
    Ok(heads)
}

/// An event with its inclusion proof under a head: a bundle's entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvenEvent {
    pub leaf_index: u64,
    pub event: LoggedEvent,
    /// Lowercase hex, nearest the leaf first.
    pub audit_path: Vec<String>,
}

/// What `audit export --signed` writes: events exactly as stored, each
/// with its proof under one signed head. Checking it needs the public key
/// only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    /// What was asked for: `"all"` promises every leaf of the head.
    pub scope: String,
    pub tree_head: TreeHead,
    pub events: Vec<ProvenEvent>,
}

pub const BUNDLE_FORMAT: &str = "authledger-audit-bundle-v1";

/// What verifying a bundle found.
#[derive(Debug, Clone, Default)]
pub struct BundleCheck {
    pub events: u64,
    pub problems: Vec<String>,
}

fn unhex(text: &str) -> Option<Hash> {
    TreeHead::parse_root(text).ok()
}

/// Checks a bundle with nothing but `public_key`: the head's signature,
/// each event's leaf against the signed root, each stream's sequence
/// without gaps, and, for a bundle of everything, every leaf present.
pub fn verify_bundle(bundle: &Bundle, public_key: &VerifyingKey) -> BundleCheck {
    let mut check = BundleCheck::default();
    if bundle.format != BUNDLE_FORMAT {
        check
            .problems
            .push(format!("unknown bundle format {:?}", bundle.format));
        return check;
    }
    let root = match bundle.tree_head.verify(public_key) {
        Ok(root) => root,
        Err(error) => {
            check.problems.push(error.to_string());
            return check;
        }
    };
    let size = bundle.tree_head.tree_size;
    if bundle.events.is_empty() {
        check.problems.push("the bundle holds no event".into());
    }
    let user = bundle.scope.strip_prefix("user:");
    let period = bundle.scope.strip_prefix("period:").map(|range| {
        let (since, until) = range.split_once("..").unwrap_or((range, ""));
        let micros = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|t| t.timestamp_micros())
        };
        (micros(since), micros(until))
    });
    let mut streams: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for proven in &bundle.events {
        check.events += 1;
        let path: Option<Vec<Hash>> = proven.audit_path.iter().map(|h| unhex(h)).collect();
        let proven_ok = path.is_some_and(|path| {
            merkle::verify_inclusion(
                proven.leaf_index,
                size,
                &proven.event.leaf_hash(),
                &path,
                &root,
            )
        });
        if !proven_ok {
            check.problems.push(format!(
                "leaf {} (user {} event {}): not in the signed tree as it reads",
                proven.leaf_index, proven.event.aggregate_id, proven.event.sequence
            ));
        }
        let event = &proven.event;
        if user.is_some_and(|user| event.aggregate_id != user) {
            check.problems.push(format!(
                "leaf {}: an event of user {}, in a bundle of {}",
                proven.leaf_index, event.aggregate_id, bundle.scope
            ));
        }
        if let Some((since, until)) = period {
            let at = event.recorded_at_micros;
            if since.is_some_and(|since| at < since) || until.is_some_and(|until| at >= until) {
                check.problems.push(format!(
                    "leaf {}: recorded outside the bundle's {}",
                    proven.leaf_index, bundle.scope
                ));
            }
        }
        if !seen.insert(proven.leaf_index) {
            check
                .problems
                .push(format!("leaf {} appears twice", proven.leaf_index));
        }
        streams
            .entry((&proven.event.aggregate_type, &proven.event.aggregate_id))
            .or_default()
            .push(proven.event.sequence);
    }
    for ((_, id), mut sequences) in streams {
        sequences.sort_unstable();
        let start = sequences.first().copied().unwrap_or(1);
        let from_start = bundle.scope == "all" || bundle.scope.starts_with("user");
        if from_start && start != 1 {
            check
                .problems
                .push(format!("user {id}: events before {start} are missing"));
        }
        for pair in sequences.windows(2) {
            if pair[1] != pair[0] + 1 {
                check.problems.push(format!(
                    "user {id}: events between {} and {} are missing",
                    pair[0], pair[1]
                ));
            }
        }
    }
    if bundle.scope == "all" && seen.len() as u64 != size {
        check.problems.push(format!(
            "the bundle promises every event of the head, but holds {} of {size}",
            seen.len()
        ));
    }
    check
}

/// What adopting the events written before MACs did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    pub events: u64,
    pub streams: u64,
    /// SHA-256 over every stream's id, last sequence and last chain hash,
    /// as the previous version's `audit verify` printed it: compare the two.
    pub heads_digest: String,
}

/// Why events are not adopted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptionRefused {
    #[error("the events written before MACs were adopted already")]
    Done,
    #[error("the adoption record was altered: events it covers carry MACs already, or its seal does not verify")]
    Altered,
    #[error("user {0} event {1}: {2}; nothing was adopted")]
    Broken(String, i64, &'static str),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

fn adoption_seal(keyring: &Keyring, key_id: &str, until: i64) -> Option<Vec<u8>> {
    let mut mac = keyring.event_mac_of(key_id)?;
    hmac::Mac::update(
        &mut mac,
        format!("authledger-adoption-v1\n{until}\n").as_bytes(),
    );
    Some(hmac::Mac::finalize(mac).into_bytes().to_vec())
}

/// Whether the log holds events written before MACs that were never given
/// theirs: a server refuses to start on it (`authledger audit adopt`).
pub async fn unadopted(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM event_mac_adoption a JOIN events e ON e.position <= a.until_position
                         WHERE a.mac IS NULL AND e.mac IS NULL)",
    )
    .fetch_one(pool)
    .await
}

/// Gives each event written before this version its MAC, once, in one
/// transaction: only events up to the position the migration recorded,
/// only while none of them has a MAC, and only if every stream's hash chain
/// holds (a forgery is never sealed). Then seals the adoption record.
pub async fn adopt_unsealed_events(
    pool: &PgPool,
    keyring: &Keyring,
) -> Result<Adoption, AdoptionRefused> {
    use sha2::{Digest, Sha256};
    let mut tx = pool.begin().await?;
    let row = sqlx::query("SELECT until_position, key_id, mac FROM event_mac_adoption FOR UPDATE")
        .fetch_one(&mut *tx)
        .await?;
    let until: i64 = row.try_get("until_position")?;
    let key_id: Option<String> = row.try_get("key_id")?;
    let sealed: Option<Vec<u8>> = row.try_get("mac")?;
    if let Some(sealed) = sealed {
        let valid = key_id
            .and_then(|id| adoption_seal(keyring, &id, until))
            .is_some_and(|expected| expected == sealed);
        return Err(if valid {
            AdoptionRefused::Done
        } else {
            AdoptionRefused::Altered
        });
    }
    let any_sealed: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE position <= $1 AND mac IS NOT NULL)",
    )
    .bind(until)
    .fetch_one(&mut *tx)
    .await?;
    if any_sealed {
        return Err(AdoptionRefused::Altered);
    }
    let mut heads = Sha256::new();
    let mut done = Adoption {
        events: 0,
        streams: 0,
        heads_digest: String::new(),
    };
    let mut after: (String, String, i64) = (String::new(), String::new(), 0);
    // The stream, and its last event's sequence, chain hash and new MAC.
    let mut last: Option<(String, String, i64, Vec<u8>, Tag)> = None;
    let current = keyring.event_mac().0.to_owned();
    loop {
        let rows = sqlx::query(&format!(
            "SELECT aggregate_type, aggregate_id, {STORED_COLUMNS},
                    chain_hash, event_chain_content(e) AS content
               FROM events e
              WHERE position <= $4 AND (aggregate_type, aggregate_id, sequence) > ($1, $2, $3)
              ORDER BY aggregate_type, aggregate_id, sequence
              LIMIT 5000"
        ))
        .bind(&after.0)
        .bind(&after.1)
        .bind(after.2)
        .bind(until)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            break;
        }
        let (mut types, mut ids, mut sequences, mut macs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let aggregate_type: String = row.try_get("aggregate_type")?;
            let aggregate_id: String = row.try_get("aggregate_id")?;
            let sequence: i64 = row.try_get("sequence")?;
            let chain_hash: Vec<u8> = row.try_get("chain_hash")?;
            let content: Vec<u8> = row.try_get("content")?;
            let same = last
                .as_ref()
                .is_some_and(|(t, i, ..)| *t == aggregate_type && *i == aggregate_id);
            if !same {
                if let Some((t, i, seq, hash, _)) = &last {
                    heads.update(format!("{t}/{i}/{seq}/"));
                    heads.update(hash);
                }
                last = Some((
                    aggregate_type.clone(),
                    aggregate_id.clone(),
                    0,
                    vec![0; 32],
                    GENESIS,
                ));
                done.streams += 1;
            }
            let Some((_, _, previous_sequence, previous_hash, previous_mac)) = last.as_mut() else {
                continue;
            };
            if sequence != *previous_sequence + 1 {
                return Err(AdoptionRefused::Broken(
                    aggregate_id,
                    sequence,
                    "an event before it is missing",
                ));
            }
            let expected = Sha256::new()
                .chain_update(&previous_hash)
                .chain_update(&content)
                .finalize();
            if expected.as_slice() != chain_hash.as_slice() {
                return Err(AdoptionRefused::Broken(
                    aggregate_id,
                    sequence,
                    "its hash does not match its content and its predecessor's hash",
                ));
            }
            let stored = StoredRow::from_row(row)?;
            let stamp = integrity::seal_event(
                keyring,
                &stored.fields(&aggregate_type, &aggregate_id),
                previous_mac,
            );
            *previous_sequence = sequence;
            *previous_hash = chain_hash;
            *previous_mac = stamp.tag;
            after = (aggregate_type.clone(), aggregate_id.clone(), sequence);
            types.push(aggregate_type);
            ids.push(aggregate_id);
            sequences.push(sequence);
            macs.push(stamp.tag.to_vec());
            done.events += 1;
        }
        sqlx::query(
            "UPDATE events e SET mac = a.mac, mac_key = $5
               FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[]) AS a(t, i, s, mac)
              WHERE e.aggregate_type = a.t AND e.aggregate_id = a.i AND e.sequence = a.s",
        )
        .bind(&types)
        .bind(&ids)
        .bind(&sequences)
        .bind(&macs)
        .bind(&current)
        .execute(&mut *tx)
        .await?;
    }
    if let Some((t, i, seq, hash, _)) = &last {
        heads.update(format!("{t}/{i}/{seq}/"));
        heads.update(hash);
    }
    done.heads_digest = tree::hex(heads.finalize().as_slice());
    sqlx::query("UPDATE event_mac_adoption SET key_id = $1, mac = $2")
        .bind(&current)
        .bind(adoption_seal(keyring, &current, until))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done)
}

/// One thing `verify_log` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub what: String,
    pub reason: String,
}

/// What `verify_log` found.
#[derive(Debug, Clone, Default)]
pub struct LogCheck {
    pub events: u64,
    pub streams: u64,
    pub snapshots: u64,
    /// Heads whose root the events recomputed match.
    pub heads_checked: Vec<u64>,
    pub findings: Vec<Finding>,
}

/// The most findings reported: past that, the log is plainly not intact.
const MAX_FINDINGS: usize = 1000;
const PAGE: i64 = 5000;

impl LogCheck {
    fn found(&mut self, what: String, reason: impl ToString) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(Finding {
                what,
                reason: reason.to_string(),
            });
        }
    }
}

/// The whole check of the stored log: every stream's hash chain and MAC
/// chain, every snapshot's MAC, and the Merkle tree recomputed from the
/// events in their global order against every signed head stored and each
/// of `saved` (heads kept outside the database, with the public key each is
/// checked with). Reports each problem it finds.
pub async fn verify_log(
    pool: &PgPool,
    keyring: &Keyring,
    saved: &[(TreeHead, VerifyingKey)],
    mut progress: impl FnMut(u64),
) -> anyhow::Result<LogCheck> {
    let mut check = LogCheck::default();
    verify_streams(pool, keyring, &mut check, &mut progress).await?;
    verify_snapshots(pool, keyring, &mut check).await?;
    let mut heads: Vec<(TreeHead, Option<VerifyingKey>)> = saved
        .iter()
        .map(|(head, key)| (head.clone(), Some(*key)))
        .collect();
    // A head signed with a key since removed from the ring is still held
    // against the log; its signature is the saved copy's to show.
    for stored in stored_heads(pool).await? {
        let key = keyring.tree_public_key(&stored.key_id);
        heads.push((stored, key));
    }
    verify_tree(pool, &heads, &mut check).await?;
    Ok(check)
}

async fn verify_streams(
    pool: &PgPool,
    keyring: &Keyring,
    check: &mut LogCheck,
    progress: &mut impl FnMut(u64),
) -> anyhow::Result<()> {
    use sha2::{Digest, Sha256};
    let mut after: (String, String, i64) = (String::new(), String::new(), 0);
    let mut stream: Option<(String, String)> = None;
    // The predecessor's sequence, chain hash and MAC.
    let mut previous: (i64, Vec<u8>, Tag) = (0, vec![0; 32], GENESIS);
    loop {
        let rows = sqlx::query(&format!(
            "SELECT aggregate_type, aggregate_id, {STORED_COLUMNS},
                    chain_hash, event_chain_content(e) AS content
               FROM events e
              WHERE (aggregate_type, aggregate_id, sequence) > ($1, $2, $3)
              ORDER BY aggregate_type, aggregate_id, sequence
              LIMIT $4"
        ))
        .bind(&after.0)
        .bind(&after.1)
        .bind(after.2)
        .bind(PAGE)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = (
            last.try_get("aggregate_type")?,
            last.try_get("aggregate_id")?,
            last.try_get("sequence")?,
        );
        for row in &rows {
            let key: (String, String) =
                (row.try_get("aggregate_type")?, row.try_get("aggregate_id")?);
            let sequence: i64 = row.try_get("sequence")?;
            let hash: Vec<u8> = row.try_get("chain_hash")?;
            let content: Vec<u8> = row.try_get("content")?;
            if stream.as_ref() != Some(&key) {
                stream = Some(key.clone());
                previous = (0, vec![0; 32], GENESIS);
                check.streams += 1;
            }
            let what = format!("user {} event {sequence}", key.1);
            if sequence != previous.0 + 1 {
                check.found(
                    what.clone(),
                    format!("events {} to {} are missing", previous.0 + 1, sequence - 1),
                );
            }
            let expected = Sha256::new()
                .chain_update(&previous.1)
                .chain_update(&content)
                .finalize();
            if expected.as_slice() != hash.as_slice() {
                check.found(
                    what.clone(),
                    "its hash does not match its content and its predecessor's hash",
                );
            }
            let stored = StoredRow::from_row(row)?;
            let next = match integrity::verify_event(
                keyring,
                &stored.fields(&key.0, &key.1),
                &previous.2,
                stored.mac_key.as_deref(),
                stored.mac.as_deref(),
            ) {
                Ok(tag) => tag,
                Err(broken) => {
                    check.found(what, broken);
                    // Go on from what is stored: one bad event is named once,
                    // not with every event after it.
                    stored
                        .mac
                        .as_deref()
                        .and_then(|m| Tag::try_from(m).ok())
                        .unwrap_or(GENESIS)
                }
            };
            previous = (sequence, hash, next);
            check.events += 1;
        }
        progress(check.events);
    }
    Ok(())
}

async fn verify_snapshots(
    pool: &PgPool,
    keyring: &Keyring,
    check: &mut LogCheck,
) -> anyhow::Result<()> {
    let rows = sqlx::query(
        "SELECT s.aggregate_type, s.aggregate_id, s.last_sequence, s.payload::text AS payload,
                s.head_mac, s.mac, s.mac_key, e.mac AS event_mac
           FROM snapshots s
           LEFT JOIN events e ON e.aggregate_type = s.aggregate_type
                             AND e.aggregate_id = s.aggregate_id AND e.sequence = s.last_sequence
          ORDER BY s.aggregate_type, s.aggregate_id, s.last_sequence",
    )
    .fetch_all(pool)
    .await?;
    for row in rows {
        check.snapshots += 1;
        let aggregate_type: String = row.try_get("aggregate_type")?;
        let aggregate_id: String = row.try_get("aggregate_id")?;
        let last_sequence: i64 = row.try_get("last_sequence")?;
        let payload: String = row.try_get("payload")?;
        let head: Vec<u8> = row.try_get("head_mac")?;
        let mac: Vec<u8> = row.try_get("mac")?;
        let mac_key: String = row.try_get("mac_key")?;
        let event_mac: Option<Vec<u8>> = row.try_get("event_mac")?;
        let what = format!("user {aggregate_id} snapshot at event {last_sequence}");
        let head_tag = Tag::try_from(head.as_slice()).unwrap_or_default();
        let fields = SnapshotFields {
            aggregate_type: &aggregate_type,
            aggregate_id: &aggregate_id,
            last_sequence,
            payload: &payload,
            head_mac: &head_tag,
        };
        if let Err(broken) = integrity::verify_snapshot(keyring, &fields, &mac_key, &mac) {
            check.found(what, broken);
        } else if event_mac.as_deref() != Some(head.as_slice()) {
            check.found(what, "it folds a history other than the stored events");
        }
    }
    Ok(())
}

/// Recomputes the tree from the events in their global order and compares
/// its root at each head's size with the head.
async fn verify_tree(
    pool: &PgPool,
    heads: &[(TreeHead, Option<VerifyingKey>)],
    check: &mut LogCheck,
) -> anyhow::Result<()> {
    let mut wanted: BTreeMap<u64, Vec<(&TreeHead, Option<Hash>)>> = BTreeMap::new();
    for (head, key) in heads {
        let what = format!("the signed head at size {}", head.tree_size);
        let root = match key.as_ref().map(|key| head.verify(key)) {
            Some(Ok(root)) => Some(root),
            Some(Err(error)) => {
                check.found(what, error);
                continue;
            }
            // Without its key the signature is not checked, but the root
            // still is.
            None => head.root().ok(),
        };
        wanted.entry(head.tree_size).or_default().push((head, root));
    }
    let Some(&largest) = wanted.keys().next_back() else {
        return Ok(());
    };
    let mut range = CompactRange::default();
    let mut after: (i64, i64) = (0, 0);
    let compare = |range: &CompactRange,
                   check: &mut LogCheck,
                   entries: &[(&TreeHead, Option<Hash>)]| {
        for (head, root) in entries {
            let what = format!("the signed head at size {}", head.tree_size);
            if root.is_some_and(|root| range.root() == root) {
                check.heads_checked.push(head.tree_size);
            } else {
                check.found(
                    what,
                    "the events in the log do not hash to its root: an event it covers was changed, removed, reordered or added",
                );
            }
        }
    };
    if let Some(entries) = wanted.get(&0) {
        compare(&range, check, entries);
    }
    'pages: while range.size() < largest {
        let rows = sqlx::query(&format!(
            "SELECT e.transaction_id::text::bigint AS transaction_id, e.position, {LOGGED_COLUMNS}
               FROM events e
              WHERE (e.transaction_id, e.position) > ($1::text::xid8, $2)
              ORDER BY e.transaction_id, e.position
              LIMIT $3"
        ))
        .bind(after.0.to_string())
        .bind(after.1)
        .bind(PAGE)
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            after = (row.try_get("transaction_id")?, row.try_get("position")?);
            range.append(logged_event(row)?.leaf_hash());
            if let Some(entries) = wanted.get(&range.size()) {
                compare(&range, check, entries);
            }
            if range.size() >= largest {
                break 'pages;
            }
        }
    }
    for (size, _) in wanted.range(range.size() + 1..) {
        check.found(
            format!("the signed head at size {size}"),
            format!(
                "the log holds only {} events: events it covers were removed",
                range.size()
            ),
        );
    }
    Ok(())
}

/// Signs a head every `every` while the tree grows, and writes each new
/// one to `dir` when configured, so that copies live outside the database.
pub struct HeadSigner {
    pool: PgPool,
    keyring: std::sync::Arc<Keyring>,
    clock: std::sync::Arc<dyn authledger_aggregates::Clock>,
    every: std::time::Duration,
    dir: Option<std::path::PathBuf>,
}

impl HeadSigner {
    pub fn new(
        pool: PgPool,
        keyring: std::sync::Arc<Keyring>,
        clock: std::sync::Arc<dyn authledger_aggregates::Clock>,
        every: std::time::Duration,
        dir: Option<std::path::PathBuf>,
    ) -> Self {
        Self {
            pool,
            keyring,
            clock,
            every,
            dir,
        }
    }

    /// Signs the tree if it grew since the newest head; answers the newest.
    /// The newest head in the directory is an anchor too: the database
    /// cannot take the signer back behind what was written outside it.
    pub async fn run_once(&self) -> anyhow::Result<Option<TreeHead>> {
        let before = latest_head(&self.pool).await?.map(|h| h.tree_size);
        let anchors = match &self.dir {
            Some(dir) => saved_heads(dir)?.pop().into_iter().collect(),
            None => Vec::new(),
        };
        let head = sign_head(&self.pool, &self.keyring, self.clock.now(), &anchors).await?;
        if let (Some(head), Some(dir)) = (&head, &self.dir) {
            if before != Some(head.tree_size) {
                write_head(dir, head)?;
            }
        }
        Ok(head)
    }

    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            if let Err(error) = self.run_once().await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "signing a tree head failed; it is tried again"
                );
            }
        }
    }
}

/// Writes `head` as `<dir>/tree-head-<size>.json`, never over an existing
/// file.
pub fn write_head(dir: &std::path::Path, head: &TreeHead) -> anyhow::Result<()> {
    use std::io::Write;
    let path = dir.join(format!("tree-head-{}.json", head.tree_size));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut file) => {
            serde_json::to_writer_pretty(&mut file, head)?;
            file.write_all(b"\n")?;
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let kept: Option<TreeHead> = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            if kept.is_some_and(|kept| kept.root_hash == head.root_hash) {
                return Ok(());
            }
            tracing::error!(
                tree_size = head.tree_size,
                path = %path.display(),
                "INTEGRITY ALARM: a head of this size with another root was written before"
            );
            anyhow::bail!(
                "{} holds another root for size {}",
                path.display(),
                head.tree_size
            )
        }
        Err(error) => Err(anyhow::anyhow!(
            "writing the tree head to {}: {error}",
            path.display()
        )),
    }
}

/// The advisory lock class of a stream's MACs: a commit holds its stream's
/// lock shared, a rotation exclusively (`authledger_commit` names it too).
const STREAM_MAC_LOCK: i32 = 1_919_905_121;

/// What sealing streams again under the newest key did.
#[derive(Debug, Default)]
pub struct Resealed {
    pub streams: usize,
    pub events: usize,
    /// Streams left as they were, and why: a MAC that does not verify is
    /// never sealed again, or the rotation would launder a forgery.
    pub failures: Vec<(String, String)>,
}

/// Seals every stream with an event MAC'd under an older key again, under
/// the newest, each in its own transaction; drops snapshots sealed under
/// an older key. Every existing MAC is checked first.
pub async fn reseal_event_macs(pool: &PgPool, keyring: &Keyring) -> anyhow::Result<Resealed> {
    let (current, _) = keyring.event_mac();
    let current = current.to_owned();
    let mut done = Resealed::default();
    let streams: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT aggregate_type, aggregate_id FROM events WHERE mac_key IS DISTINCT FROM $1",
    )
    .bind(&current)
    .fetch_all(pool)
    .await?;
    for (aggregate_type, aggregate_id) in streams {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(STREAM_MAC_LOCK)
            .bind(&aggregate_id)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {STORED_COLUMNS}
               FROM events e WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 ORDER BY e.sequence"
        ))
        .bind(&aggregate_type)
        .bind(&aggregate_id)
        .fetch_all(&mut *tx)
        .await?;
        let (mut old, mut new) = (GENESIS, GENESIS);
        let (mut sequences, mut macs) = (Vec::new(), Vec::new());
        let mut broken = None;
        for (expected, row) in (1..).zip(&rows) {
            let stored = StoredRow::from_row(row)?;
            let sequence = i64::try_from(stored.sequence)?;
            let fields = stored.fields(&aggregate_type, &aggregate_id);
            if sequence != expected {
                broken = Some(format!("event {expected} is missing"));
                break;
            }
            match integrity::verify_event(
                keyring,
                &fields,
                &old,
                stored.mac_key.as_deref(),
                stored.mac.as_deref(),
            ) {
                Ok(tag) => old = tag,
                Err(why) => {
                    broken = Some(format!("event {sequence}: {why}"));
                    break;
                }
            }
            new = integrity::seal_event(keyring, &fields, &new).tag;
            sequences.push(sequence);
            macs.push(new.to_vec());
        }
        if let Some(why) = broken {
            done.failures.push((aggregate_id, why));
            continue;
        }
        sqlx::query(
            "UPDATE events e SET mac = a.mac, mac_key = $3
               FROM unnest($4::bigint[], $5::bytea[]) AS a(sequence, mac)
              WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 AND e.sequence = a.sequence",
        )
        .bind(&aggregate_type)
        .bind(&aggregate_id)
        .bind(&current)
        .bind(&sequences)
        .bind(&macs)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2")
            .bind(&aggregate_type)
            .bind(&aggregate_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        done.streams += 1;
        done.events += sequences.len();
    }
    sqlx::query("DELETE FROM snapshots WHERE mac_key <> $1")
        .bind(&current)
        .execute(pool)
        .await?;
    Ok(done)
}
