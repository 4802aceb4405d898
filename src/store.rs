//! The writes of one command in one statement (`authledger_commit`): its
//! events, the address claims it makes or gives up, and the user's data
//! key. And the reads that go with them: a user's data key, who claims an
//! address.
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use std::collections::HashMap;
use std::sync::Arc;

use crate::integrity::{self, EventFields, Tag};
use crate::keys::{BlindIndex, Keyring, UserKeeper, WrappedKey};

/// What happens to the addresses an account claims, with its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOp {
    /// The account's new address, by its index under every key. Fails the
    /// commit if anyone holds it under any of them.
    Claim(Vec<BlindIndex>),
    /// Its current address, given up, stays held for it until then.
    HoldCurrent { until: DateTime<Utc> },
    /// An address it holds becomes its address again.
    Restore(Vec<BlindIndex>),
    /// Addresses it no longer holds.
    Release(Vec<BlindIndex>),
    /// Every address it holds.
    ReleaseAll,
}

impl ClaimOp {
    fn to_json(&self) -> Value {
        let hexes =
            |indexes: &[BlindIndex]| indexes.iter().map(BlindIndex::hex).collect::<Vec<_>>();
        match self {
            Self::Claim(indexes) => {
                let indexes: Vec<Value> = indexes
                    .iter()
                    .map(|index| json!({"index": index.hex(), "key_id": index.key_id}))
                    .collect();
                json!({"op": "claim", "indexes": indexes})
            }
            Self::HoldCurrent { until } => json!({"op": "hold_current", "until": until}),
            Self::Restore(indexes) => json!({"op": "restore", "indexes": hexes(indexes)}),
            Self::Release(indexes) => json!({"op": "release", "indexes": hexes(indexes)}),
            Self::ReleaseAll => json!({"op": "release_all"}),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataKeyOp {
    Create(WrappedKey),
    /// Erasure: the key goes, and with it the user's personal data; the
    /// snapshots go too, as a precaution.
    Delete,
}

/// What a command writes beside its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    pub claims: Vec<ClaimOp>,
    pub data_key: Option<DataKeyOp>,
}

/// An event as stored.
pub struct NewEvent {
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Someone committed to the stream first.
    #[error("the stream changed concurrently")]
    Conflict,
    /// Another account holds an address this commit claims.
    #[error("the address is held by another account")]
    AddressTaken,
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// Appends `events` after `after_sequence` with `effects`, all or nothing.
/// Each event is sealed with a MAC chained from `previous` (the MAC of the
/// event at `after_sequence`); answers the last event's MAC.
#[allow(clippy::too_many_arguments)]
pub async fn commit(
    pool: &PgPool,
    keyring: &Keyring,
    aggregate_type: &str,
    user: Uuid,
    after_sequence: usize,
    previous: &Tag,
    events: Vec<NewEvent>,
    effects: &Effects,
    now: DateTime<Utc>,
) -> Result<Tag, CommitError> {
    let first = i64::try_from(after_sequence).unwrap_or(i64::MAX);
    let sequences: Vec<i64> = (1..).map(|n| first + n).take(events.len()).collect();
    let mut types = Vec::with_capacity(events.len());
    let mut versions = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    let mut metadata = Vec::with_capacity(events.len());
    let mut macs = Vec::with_capacity(events.len());
    let aggregate_id = user.to_string();
    let mut chained = *previous;
    let mut mac_key = String::new();
    for (event, sequence) in events.into_iter().zip(&sequences) {
        // As text, so the log keeps the JSON exactly as serialized, and
        // the MAC covers exactly what is kept.
        let payload = event.payload.to_string();
        let meta = event.metadata.to_string();
        let stamp = integrity::seal_event(
            keyring,
            &EventFields {
                aggregate_type,
                aggregate_id: &aggregate_id,
                sequence: *sequence,
                event_type: &event.event_type,
                event_version: &event.event_version,
                payload: &payload,
                metadata: &meta,
            },
            &chained,
        );
        chained = stamp.tag;
        mac_key = stamp.key_id;
        macs.push(stamp.tag.to_vec());
        types.push(event.event_type);
        versions.push(event.event_version);
        payloads.push(payload);
        metadata.push(meta);
    }
    let claims: Value = effects.claims.iter().map(ClaimOp::to_json).collect();
    let data_key = effects.data_key.as_ref().map(|op| match op {
        DataKeyOp::Create(key) => json!({
            "op": "create",
            "key_id": key.key_id,
            "nonce": data_encoding::HEXLOWER.encode(&key.nonce),
            "wrapped": data_encoding::HEXLOWER.encode(&key.wrapped),
        }),
        DataKeyOp::Delete => json!({"op": "delete"}),
    });
    let result = sqlx::query(
        "SELECT authledger_commit($1, $2, $3, $4, $5, $6::text[]::json[], $7::text[]::json[], $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(aggregate_type)
    .bind(&aggregate_id)
    .bind(&sequences)
    .bind(&types)
    .bind(&versions)
    .bind(&payloads)
    .bind(&metadata)
    .bind(&macs)
    .bind(&mac_key)
    .bind(previous.as_slice())
    .bind(user)
    .bind(sqlx::types::Json(claims))
    .bind(data_key.map(sqlx::types::Json))
    .bind(now)
    .execute(pool)
    .await;
    match result {
        Ok(_) => Ok(chained),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => match db.constraint() {
            Some("events_pkey") => Err(CommitError::Conflict),
            Some("email_claims_pkey") => Err(CommitError::AddressTaken),
            _ => Err(CommitError::Store(sqlx::Error::Database(db))),
        },
        Err(other) => Err(CommitError::Store(other)),
    }
}

/// A snapshot as stored, with its MAC.
pub struct StoredSnapshot {
    pub last_sequence: usize,
    /// The state's JSON text.
    pub payload: String,
    /// The MAC of the event at `last_sequence`.
    pub head_mac: Vec<u8>,
    pub mac_key: String,
    pub mac: Vec<u8>,
    /// The MAC the event at `last_sequence` carries now: another than
    /// `head_mac` once a key rotation sealed the stream again.
    pub event_mac: Option<Vec<u8>>,
}

/// An event as stored, with the fields its MAC covers.
pub struct StoredRow {
    pub sequence: usize,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
    pub mac_key: Option<String>,
    pub mac: Option<Vec<u8>>,
}

/// The columns [`StoredRow::from_row`] reads, from `events e`.
pub const STORED_COLUMNS: &str =
    "e.sequence, e.event_type, e.event_version, e.payload::text AS payload,
     e.metadata::text AS metadata, e.mac_key, e.mac";

impl StoredRow {
    /// A row selected with [`STORED_COLUMNS`] (or the same names).
    pub fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        let sequence: Option<i64> = row.try_get("sequence")?;
        Ok(Self {
            sequence: sequence.and_then(|s| usize::try_from(s).ok()).unwrap_or(0),
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            mac_key: row.try_get("mac_key")?,
            mac: row.try_get("mac")?,
        })
    }

    pub fn fields<'a>(&'a self, aggregate_type: &'a str, aggregate_id: &'a str) -> EventFields<'a> {
        EventFields {
            aggregate_type,
            aggregate_id,
            sequence: i64::try_from(self.sequence).unwrap_or(i64::MAX),
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }
}

/// What loading a user reads, in one round trip: their data key, the newest
/// snapshot, and the events after it.
pub struct Stream {
    pub data_key: Option<WrappedKey>,
    pub snapshot: Option<StoredSnapshot>,
    /// Each event after the snapshot, in order.
    pub events: Vec<StoredRow>,
}

/// Reads a user's stream after their newest snapshot, or `whole`, with
/// their data key, in one statement.
pub async fn load(
    pool: &PgPool,
    aggregate_type: &str,
    user: Uuid,
    whole: bool,
) -> Result<Stream, sqlx::Error> {
    let rows = sqlx::query(
        "WITH snap AS (
             SELECT last_sequence, payload, head_mac, mac, mac_key FROM snapshots
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND NOT $4
              ORDER BY last_sequence DESC LIMIT 1)
         SELECT 0 AS part, k.key_id, k.nonce, k.wrapped, NULL::bigint AS sequence, NULL::text AS payload,
                NULL::text AS event_type, NULL::text AS event_version, NULL::text AS metadata,
                NULL::bytea AS head_mac, NULL::bytea AS mac, NULL::text AS mac_key,
                NULL::bytea AS event_mac
           FROM user_keys k WHERE k.user_id = $3
         UNION ALL
         SELECT 1, NULL, NULL, NULL, s.last_sequence, s.payload::text, NULL, NULL, NULL,
                s.head_mac, s.mac, s.mac_key,
                (SELECT h.mac FROM events h
                  WHERE h.aggregate_type = $1 AND h.aggregate_id = $2 AND h.sequence = s.last_sequence)
           FROM snap s
         UNION ALL
         SELECT 2, NULL, NULL, NULL, e.sequence, e.payload::text, e.event_type, e.event_version,
                e.metadata::text, NULL, e.mac, e.mac_key, NULL
           FROM events e
          WHERE e.aggregate_type = $1 AND e.aggregate_id = $2
            AND e.sequence > coalesce((SELECT last_sequence FROM snap), 0)
         ORDER BY 1, 5",
    )
    .bind(aggregate_type)
    .bind(user.to_string())
    .bind(user)
    .bind(whole)
    .fetch_all(pool)
    .await?;
    let mut stream = Stream {
        data_key: None,
        snapshot: None,
        events: Vec::new(),
    };
    let sequence = |s: Option<i64>| s.and_then(|s| usize::try_from(s).ok()).unwrap_or(0);
    for row in rows {
        let part: i32 = row.try_get("part")?;
        match part {
            0 => {
                stream.data_key = Some(WrappedKey {
                    key_id: row.try_get("key_id")?,
                    nonce: row.try_get("nonce")?,
                    wrapped: row.try_get("wrapped")?,
                })
            }
            1 => {
                stream.snapshot = Some(StoredSnapshot {
                    last_sequence: sequence(row.try_get("sequence")?),
                    payload: row.try_get("payload")?,
                    head_mac: row.try_get("head_mac")?,
                    mac_key: row.try_get("mac_key")?,
                    mac: row.try_get("mac")?,
                    event_mac: row.try_get("event_mac")?,
                })
            }
            _ => stream.events.push(StoredRow::from_row(&row)?),
        }
    }
    Ok(stream)
}

/// The user's wrapped data key; `None` for an erased account or none.
pub async fn data_key(pool: &PgPool, user: Uuid) -> Result<Option<WrappedKey>, sqlx::Error> {
    let row: Option<(String, Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT key_id, nonce, wrapped FROM user_keys WHERE user_id = $1")
            .bind(user)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(key_id, nonce, wrapped)| WrappedKey {
        key_id,
        nonce,
        wrapped,
    }))
}

/// What opens `user`'s sealed data: without personal data once the
/// account is erased (or for an id nobody has).
pub async fn user_keeper(
    pool: &PgPool,
    keyring: &Arc<Keyring>,
    user: Uuid,
) -> anyhow::Result<UserKeeper> {
    let wrapped = data_key(pool, user).await?;
    Ok(UserKeeper::unwrapping(keyring, user, wrapped.as_ref())?)
}

/// What opens each of `users`' sealed data, in one query; erased accounts
/// are missing.
pub async fn user_keepers(
    pool: &PgPool,
    keyring: &Arc<Keyring>,
    users: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, UserKeeper>> {
    let rows: Vec<(Uuid, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT user_id, key_id, nonce, wrapped FROM user_keys WHERE user_id = ANY($1)",
    )
    .bind(users)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(user, key_id, nonce, wrapped)| {
            let wrapped = WrappedKey {
                key_id,
                nonce,
                wrapped,
            };
            Ok((user, UserKeeper::unwrapping(keyring, user, Some(&wrapped))?))
        })
        .collect()
}

/// Who holds an address, by its indexes under every key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimant {
    /// It is this account's address.
    Account(Uuid),
    /// An account gave it up and may take it back until then.
    Held { user: Uuid, until: DateTime<Utc> },
}

pub async fn claimant(
    pool: &PgPool,
    indexes: &[BlindIndex],
    now: DateTime<Utc>,
) -> Result<Option<Claimant>, sqlx::Error> {
    let digests: Vec<Vec<u8>> = indexes.iter().map(|i| i.digest.clone()).collect();
    let row: Option<(Uuid, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT user_id, held_until FROM email_claims
          WHERE blind_index = ANY($1) AND (held_until IS NULL OR held_until >= $2)
          ORDER BY held_until NULLS FIRST LIMIT 1",
    )
    .bind(&digests)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(user, held_until)| match held_until {
        None => Claimant::Account(user),
        Some(until) => Claimant::Held { user, until },
    }))
}

/// The metadata of the events that started `sessions` of `user`, by
/// session reference: where the IP and browser of each sign-in are kept,
/// sealed.
pub async fn session_metadata(
    pool: &PgPool,
    user: Uuid,
    sessions: &[String],
) -> Result<HashMap<String, HashMap<String, String>>, sqlx::Error> {
    let rows: Vec<(String, sqlx::types::Json<HashMap<String, String>>)> = sqlx::query_as(
        "SELECT payload -> 'SessionStarted' ->> 'session', metadata FROM events
          WHERE aggregate_type = 'UserAuth' AND aggregate_id = $1
            AND event_type = 'SessionStarted'
            AND payload -> 'SessionStarted' ->> 'session' = ANY($2)",
    )
    .bind(user.to_string())
    .bind(sessions)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(session, metadata)| (session, metadata.0))
        .collect())
}

/// An account as the `users` read model lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ListedUser {
    pub user_id: Uuid,
    pub email_sealed: Option<sqlx::types::Json<authledger_aggregates::Sealed>>,
    pub registered_at: DateTime<Utc>,
    pub email_verified: bool,
    pub mfa_enrolled_at: Option<DateTime<Utc>>,
    pub locked_at: Option<DateTime<Utc>>,
    pub throttled_until: Option<DateTime<Utc>>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub mfa_reset_due_at: Option<DateTime<Utc>>,
    /// When the user last reported activity as not theirs.
    pub reported_at: Option<DateTime<Utc>>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    pub last_sign_in_method: Option<String>,
    pub key_id: Option<String>,
    pub nonce: Option<Vec<u8>>,
    pub wrapped: Option<Vec<u8>>,
}

impl ListedUser {
    pub fn data_key(&self) -> Option<WrappedKey> {
        Some(WrappedKey {
            key_id: self.key_id.clone()?,
            nonce: self.nonce.clone()?,
            wrapped: self.wrapped.clone()?,
        })
    }
}

/// Which accounts a list keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserFilter {
    All,
    Locked,
    Suspended,
    PendingMfaReset,
    NoAuthenticator,
    Unverified,
    /// The user reported activity as not theirs.
    Reported,
}

/// Up to `limit` accounts of the `users` read model that pass `filter`,
/// newest registration first, after the keyset cursor `after`
/// (registration time and id of the last one shown); `only` narrows to
/// those ids.
pub async fn list_users(
    pool: &PgPool,
    filter: UserFilter,
    only: Option<&[Uuid]>,
    after: Option<(DateTime<Utc>, Uuid)>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ListedUser>, sqlx::Error> {
    let filter = match filter {
        UserFilter::All => "all",
        UserFilter::Locked => "locked",
        UserFilter::Suspended => "suspended",
        UserFilter::PendingMfaReset => "pending-mfa-reset",
        UserFilter::NoAuthenticator => "no-authenticator",
        UserFilter::Unverified => "unverified",
        UserFilter::Reported => "reported",
    };
    sqlx::query_as(
        "SELECT u.user_id, u.email_sealed, u.registered_at, u.email_verified, u.mfa_enrolled_at,
                u.locked_at, u.throttled_until, u.suspended_at, u.mfa_reset_due_at,
                u.reported_at, u.last_sign_in_at, u.last_sign_in_method, k.key_id, k.nonce, k.wrapped
           FROM users u LEFT JOIN user_keys k ON k.user_id = u.user_id
          WHERE ($1::uuid[] IS NULL OR u.user_id = ANY($1))
            AND ($2::timestamptz IS NULL OR (u.registered_at, u.user_id) < ($2, $3))
            AND CASE $4
                  WHEN 'locked' THEN u.locked_at IS NOT NULL OR u.throttled_until > $5
                  WHEN 'suspended' THEN u.suspended_at IS NOT NULL
                  WHEN 'pending-mfa-reset' THEN u.mfa_reset_due_at IS NOT NULL
                  WHEN 'no-authenticator' THEN u.mfa_enrolled_at IS NULL
                  WHEN 'unverified' THEN NOT u.email_verified
                  WHEN 'reported' THEN u.reported_at IS NOT NULL
                  ELSE true
                END
          ORDER BY u.registered_at DESC, u.user_id DESC
          LIMIT $6",
    )
    .bind(only)
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(filter)
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A session as `live_sessions` holds it: kept in the statement that
/// records its events (migration 0008), so it never lags the log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub method: String,
    pub aal: String,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_active_at: DateTime<Utc>,
}

/// `user`'s session `session`, unless it ended; whether it is still live
/// at an instant is the caller's to judge, by the aggregate's rule.
pub async fn session_row(
    pool: &PgPool,
    user: Uuid,
    session: &str,
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT method, aal, started_at, expires_at, last_active_at FROM live_sessions
          WHERE user_id = $1 AND session = $2",
    )
    .bind(user)
    .bind(session)
    .fetch_optional(pool)
    .await
}
