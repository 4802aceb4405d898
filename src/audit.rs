//! What auditors read: a user's history, their MFA state at an instant, the
//! global history. (Verifying the log is `crate::transparency`'s.) Read from the event
//! log and the audit index only; secrets appear as "sealed" or "hashed".
use std::collections::HashMap;

use std::sync::Arc;

use authledger_aggregates::{AuditState, Policy, SealPurpose, Sealed, UserAuth, UserAuthEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Row};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::command_bus::{client_origin, PERSONAL_METADATA};
use crate::keys::{Keyring, UserKeeper};
use crate::store;

/// An event as an auditor sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEvent {
    pub user_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: String,
    pub sequence: i64,
    /// Global position; with the transaction id it gives the log's order.
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    /// The domain time the event states.
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub request_id: String,
    /// The `X-Request-Id` the client sent, when it sent a well-formed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    /// `"erased"` once the account's personal data is erased; empty for
    /// what the server did by itself.
    pub client_ip: String,
    pub user_agent: String,
    /// The event's fields; secrets only as `"sealed"`, personal data
    /// (addresses, free text) opened, or `"erased"`.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// The sealed IP and browser, until opened.
    #[serde(skip)]
    sealed_origin: Option<String>,
}

/// What personal data reads as once its account is erased.
pub const ERASED: &str = "erased";

/// Payload fields that hold personal data, sealed with the user's key.
const PERSONAL_FIELDS: [(&str, SealPurpose); 7] = [
    ("email", SealPurpose::Email),
    ("new_email", SealPurpose::Email),
    ("from", SealPurpose::Email),
    ("to", SealPurpose::Email),
    ("restored", SealPurpose::Email),
    ("reason", SealPurpose::FreeText),
    // An authenticator's name, as its owner typed it.
    ("name", SealPurpose::FreeText),
];

/// Opens the personal data of a page of events, one query for the page.
#[derive(Clone)]
pub struct Opener {
    pool: PgPool,
    keyring: Arc<Keyring>,
}

impl Opener {
    pub fn new(pool: PgPool, keyring: Arc<Keyring>) -> Self {
        Self { pool, keyring }
    }

    pub async fn open(&self, events: &mut [AuditEvent]) -> anyhow::Result<()> {
        let mut users: Vec<Uuid> = events.iter().map(|e| e.user_id).collect();
        users.sort_unstable();
        users.dedup();
        let keepers = store::user_keepers(&self.pool, &self.keyring, &users).await?;
        for event in events {
            let erased;
            let keeper = match keepers.get(&event.user_id) {
                Some(keeper) => keeper,
                None => {
                    erased = UserKeeper::new(self.keyring.clone(), event.user_id, None);
                    &erased
                }
            };
            open_event(event, keeper);
        }
        Ok(())
    }
}

fn open_event(event: &mut AuditEvent, keeper: &UserKeeper) {
    if let Some(sealed) = event.sealed_origin.take() {
        let metadata = std::collections::HashMap::from([(PERSONAL_METADATA.to_owned(), sealed)]);
        match client_origin(&metadata, keeper) {
            Some(origin) => {
                event.client_ip = origin.client_ip;
                event.user_agent = origin.user_agent;
            }
            None => {
                event.client_ip = ERASED.into();
                event.user_agent = ERASED.into();
            }
        }
    }
    let Value::Object(fields) = &mut event.payload else {
        return;
    };
    for (name, purpose) in PERSONAL_FIELDS {
        let Some(value) = fields.get_mut(name) else {
            continue;
        };
        // Only a sealed value is personal data: `reason` also names why a
        // session ended.
        let Ok(sealed) = serde_json::from_value::<Sealed>(value.clone()) else {
            continue;
        };
        *value = Value::String(
            keeper
                .open_text(purpose, &sealed)
                .unwrap_or_else(|| ERASED.into()),
        );
    }
}

/// The payload without its enum wrapper, secrets replaced by what they are.
fn redact(payload: &Value) -> Value {
    let inner = payload
        .as_object()
        .and_then(|o| o.values().next())
        .cloned()
        .unwrap_or(Value::Null);
    match inner {
        Value::Object(mut fields) => {
            for key in [
                "password_hash",
                "secret",
                "digest",
                "totp_secret",
                "totp_device_setup",
                "enrollment_secret",
                "recovery_code",
            ] {
                if fields.get(key).is_some_and(|v| !v.is_null()) {
                    fields.insert(key.to_owned(), Value::String("sealed".into()));
                }
            }
            // Each authenticator app's secret sealed again by a rotation.
            if let Some(Value::Array(devices)) = fields.get_mut("totp_devices") {
                for device in devices.iter_mut().filter_map(Value::as_object_mut) {
                    device.insert("secret".into(), Value::String("sealed".into()));
                }
            }
            Value::Object(fields)
        }
        other => other,
    }
}

fn to_audit_event(row: &sqlx::postgres::PgRow) -> anyhow::Result<AuditEvent> {
    let payload: sqlx::types::Json<Value> = row.try_get("payload")?;
    let metadata: sqlx::types::Json<HashMap<String, String>> = row.try_get("metadata")?;
    let event: UserAuthEvent = serde_json::from_value(payload.0.clone())?;
    let meta = |key: &str| metadata.0.get(key).cloned().unwrap_or_default();
    Ok(AuditEvent {
        user_id: row.try_get::<String, _>("aggregate_id")?.parse()?,
        event_type: row.try_get("event_type")?,
        version: row.try_get("event_version")?,
        sequence: row.try_get("sequence")?,
        position: row.try_get("position")?,
        recorded_at: row.try_get("recorded_at")?,
        occurred_at: event.at(),
        actor: meta("actor"),
        request_id: meta("request_id"),
        client_request_id: metadata.0.get("client_request_id").cloned(),
        // What staff and the server did carries their own origin, in the
        // clear; a user's is sealed and opened below.
        client_ip: meta("client_ip"),
        user_agent: meta("user_agent"),
        payload: redact(&payload.0),
        sealed_origin: metadata.0.get(PERSONAL_METADATA).cloned(),
    })
}

const EVENT_COLUMNS: &str = "e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.metadata, e.position, e.recorded_at";

/// A user's events after `after_sequence`, oldest first.
pub async fn user_history(
    pool: &PgPool,
    opener: &Opener,
    user: Uuid,
    after_sequence: i64,
    limit: i64,
) -> anyhow::Result<Vec<AuditEvent>> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e
          WHERE e.aggregate_type = 'UserAuth' AND e.aggregate_id = $1 AND e.sequence > $2
          ORDER BY e.sequence LIMIT $3"
    ))
    .bind(user.to_string())
    .bind(after_sequence)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut events = rows
        .iter()
        .map(to_audit_event)
        .collect::<anyhow::Result<Vec<_>>>()?;
    opener.open(&mut events).await?;
    Ok(events)
}

/// A user's newest `limit` events, newest first.
pub async fn recent_history(
    pool: &PgPool,
    opener: &Opener,
    user: Uuid,
    limit: i64,
) -> anyhow::Result<Vec<AuditEvent>> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e
          WHERE e.aggregate_type = 'UserAuth' AND e.aggregate_id = $1
          ORDER BY e.sequence DESC LIMIT $2"
    ))
    .bind(user.to_string())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut events = rows
        .iter()
        .map(to_audit_event)
        .collect::<anyhow::Result<Vec<_>>>()?;
    opener.open(&mut events).await?;
    Ok(events)
}

/// A user's MFA state as of an instant, as the log holds it.
#[derive(Debug)]
pub enum StateAt {
    /// No events at all.
    Unknown,
    /// The event at this sequence fails its MAC: nothing is folded.
    Broken(i64),
    State(Box<AuditState>),
}

/// The user's MFA state as of `at`: their events up to `at`, folded, each
/// after its MAC is checked.
pub async fn user_state(
    pool: &PgPool,
    keyring: &Keyring,
    user: Uuid,
    at: DateTime<Utc>,
    policy: &Policy,
) -> anyhow::Result<StateAt> {
    let rows = sqlx::query(&format!(
        "SELECT {} FROM events e
          WHERE e.aggregate_type = 'UserAuth' AND e.aggregate_id = $1 ORDER BY e.sequence",
        store::STORED_COLUMNS
    ))
    .bind(user.to_string())
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(StateAt::Unknown);
    }
    let id = user.to_string();
    let mut previous = crate::integrity::GENESIS;
    let mut state = UserAuth::default();
    // Folded up to the first event after `at`; every event is checked.
    let mut folding = true;
    for (expected, row) in (1..).zip(&rows) {
        let stored = store::StoredRow::from_row(row)?;
        let sequence = i64::try_from(stored.sequence)?;
        match crate::integrity::verify_event(
            keyring,
            &stored.fields(UserAuth::TYPE, &id),
            &previous,
            stored.mac_key.as_deref(),
            stored.mac.as_deref(),
        ) {
            Ok(tag) if sequence == expected => previous = tag,
            _ => return Ok(StateAt::Broken(sequence)),
        }
        if folding {
            let event: UserAuthEvent = serde_json::from_str(&stored.payload)?;
            folding = event.at() <= at;
            if folding {
                state.apply(event);
            }
        }
    }
    Ok(StateAt::State(Box::new(state.audit_state(at, policy))))
}

/// A filter on the global history.
#[derive(Debug, Clone, Default)]
pub struct GlobalQuery {
    /// Cursor: the last event seen, as `transaction_id:position`.
    pub after: Option<(i64, i64)>,
    pub event_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A cursor as `global_page` writes it: two numbers, neither negative
/// (a transaction id is unsigned to Postgres).
pub fn parse_cursor(cursor: &str) -> Option<(i64, i64)> {
    let (transaction, position) = cursor.split_once(':')?;
    let number = |part: &str| {
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse::<i64>().ok())
            .flatten()
    };
    Some((number(transaction)?, number(position)?))
}

fn global_sql(limit: i64) -> String {
    // The page is taken from the index first, in order; each event is then
    // fetched by its key (LIMIT 1 keeps the planner from turning the lookup
    // into a join over the whole table).
    format!(
        "WITH page AS (
             SELECT a.transaction_id, a.position, a.user_id, a.sequence
               FROM audit_index a
              WHERE (a.transaction_id, a.position) > ($1::text::xid8, $2)
                AND ($3::text IS NULL OR a.event_type = $3)
                AND ($4::timestamptz IS NULL OR a.occurred_at >= $4)
                AND ($5::timestamptz IS NULL OR a.occurred_at < $5)
              ORDER BY a.transaction_id, a.position
              LIMIT {limit})
         SELECT {EVENT_COLUMNS}, a.transaction_id::text::bigint AS transaction_id
           FROM page a
          CROSS JOIN LATERAL (
                SELECT * FROM events e
                 WHERE e.aggregate_type = 'UserAuth' AND e.aggregate_id = a.user_id::text AND e.sequence = a.sequence
                 LIMIT 1) e
          ORDER BY a.transaction_id, a.position"
    )
}

/// One page of the global history and the cursor after it.
pub async fn global_page(
    pool: &PgPool,
    opener: &Opener,
    query: &GlobalQuery,
    limit: i64,
) -> anyhow::Result<(Vec<AuditEvent>, Option<String>)> {
    let (transaction, position) = query.after.unwrap_or((0, 0));
    let rows = sqlx::query(&global_sql(limit))
        .bind(transaction.to_string())
        .bind(position)
        .bind(&query.event_type)
        .bind(query.since)
        .bind(query.until)
        .fetch_all(pool)
        .await?;
    let next = match rows.last() {
        Some(last) if rows.len() as i64 == limit => Some(format!(
            "{}:{}",
            last.try_get::<i64, _>("transaction_id")?,
            last.try_get::<i64, _>("position")?
        )),
        _ => None,
    };
    let mut events = rows
        .iter()
        .map(to_audit_event)
        .collect::<anyhow::Result<Vec<_>>>()?;
    opener.open(&mut events).await?;
    Ok((events, next))
}

/// The whole matching history as a stream, row by row: memory stays flat
/// however many events there are.
pub fn global_stream(
    pool: PgPool,
    opener: Opener,
    query: GlobalQuery,
) -> impl Stream<Item = anyhow::Result<AuditEvent>> + Send + 'static {
    async_stream_rows(pool, opener, query).flat_map(futures_util::stream::iter)
}

fn async_stream_rows(
    pool: PgPool,
    opener: Opener,
    query: GlobalQuery,
) -> impl Stream<Item = Vec<anyhow::Result<AuditEvent>>> + Send + 'static {
    // Keyset pages of 1,000: each page is its own short query, so an export
    // of any size holds no transaction (and no xmin) open while it streams.
    futures_util::stream::unfold(Some(query), move |state| {
        let pool = pool.clone();
        let opener = opener.clone();
        async move {
            let query = state?;
            match global_page(&pool, &opener, &query, 1000).await {
                Ok((events, next)) => {
                    let next_query =
                        next.and_then(|cursor| parse_cursor(&cursor))
                            .map(|after| GlobalQuery {
                                after: Some(after),
                                ..query.clone()
                            });
                    if events.is_empty() {
                        return None;
                    }
                    Some((events.into_iter().map(Ok).collect(), next_query))
                }
                Err(error) => Some((vec![Err(error)], None)),
            }
        }
    })
}

/// Users whose newest `MfaResetRequested` has not yet been followed by a
/// cancel or a reset, by the audit index: candidates only, since the index
/// may lag; each user's own events say whether a reset is really due.
pub async fn pending_mfa_reset_candidates(pool: &PgPool) -> anyhow::Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT r.user_id FROM audit_index r
          WHERE r.event_type = 'MfaResetRequested'
            AND NOT EXISTS (
                SELECT 1 FROM audit_index l
                 WHERE l.user_id = r.user_id AND l.sequence > r.sequence
                   AND l.event_type IN ('MfaResetCancelled', 'MfaReset', 'AccountErased'))",
    )
    .fetch_all(pool)
    .await?)
}
