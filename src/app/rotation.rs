//! Moving everything current onto the newest server key, so an older one
//! can be removed: users' data keys are wrapped again, current secrets are
//! sealed again by appending events, and address indexes are computed
//! again, and the events' MACs are made again. What still depends on an
//! older key is reported.
use authledger_aggregates::{Email, SealPurpose, UserAuthCommand, Verdict};
use sqlx::Row;
use uuid::Uuid;

use super::{App, AppError, AppResult, Caller};
use crate::keys::WrappedKey;

/// Accounts that hold, under some key, more live address indexes than
/// under the newest (`$1`), at `$2`: their addresses still need indexing.
const NOT_YET_INDEXED: &str = "SELECT user_id FROM (
        SELECT user_id, key_id, count(*) AS n FROM email_claims
         WHERE held_until IS NULL OR held_until >= $2
         GROUP BY user_id, key_id) per_key
     GROUP BY user_id
    HAVING coalesce(max(n) FILTER (WHERE key_id = $1), 0) < max(n)";

/// What `rotate_keys` did and what is left.
#[derive(Debug, Default)]
pub struct RotationReport {
    /// The key everything now uses.
    pub current_key: String,
    pub data_keys_rewrapped: usize,
    /// Accounts that had secrets sealed under an older key, and how many.
    pub accounts_resealed: usize,
    pub secrets_resealed: usize,
    pub addresses_reindexed: usize,
    /// Events whose MAC was made again under the newest key, and their
    /// streams.
    pub events_resealed: usize,
    pub streams_resealed: usize,
    /// What still needs an older key, by key id.
    pub remaining: Vec<KeyUse>,
    /// Accounts that could not be moved, with why (their ids only).
    pub failures: Vec<(Uuid, String)>,
}

/// Accounts whose data key this process can open, and those it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeysHeld {
    pub held: i64,
    pub unheld: i64,
    /// A key the unheld ones need.
    pub missing: Option<String>,
}

impl DataKeysHeld {
    /// Whether the process opens none of the stored accounts while some
    /// exist: the wrong key, not one removed too early. Such a server must
    /// not start: it would seal new secrets under a key nothing else holds.
    pub fn opens_none(&self) -> bool {
        self.held == 0 && self.unheld > 0
    }
}

/// What still depends on one older key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub key_id: String,
    pub data_keys: i64,
    /// Addresses held after a change, indexed under this key; they are
    /// released when their hold ends.
    pub held_addresses: i64,
    pub addresses: i64,
    /// Events whose MAC it made.
    pub event_macs: i64,
}

impl App {
    /// Moves every account onto the newest key. Safe to run again, and
    /// beside serving traffic: each step is one account's own commit.
    pub async fn rotate_keys(&self) -> AppResult<RotationReport> {
        let store = |cause: sqlx::Error| AppError::Unavailable {
            what: "the event store",
            cause: cause.into(),
        };
        let current = self.keyring.current_id().to_owned();
        let mut report = RotationReport {
            current_key: current.clone(),
            ..RotationReport::default()
        };

        let stale_keys =
            sqlx::query("SELECT user_id, key_id, nonce, wrapped FROM user_keys WHERE key_id <> $1")
                .bind(&current)
                .fetch_all(&self.pool)
                .await
                .map_err(store)?;
        for row in stale_keys {
            let user: Uuid = row.try_get("user_id").map_err(store)?;
            let old = WrappedKey {
                key_id: row.try_get("key_id").map_err(store)?,
                nonce: row.try_get("nonce").map_err(store)?,
                wrapped: row.try_get("wrapped").map_err(store)?,
            };
            let rewrapped = self
                .keyring
                .unwrap(user, &old)
                .and_then(|key| self.keyring.wrap(user, &key));
            match rewrapped {
                Ok(new) => {
                    // Only if nobody erased or re-wrapped it meanwhile.
                    sqlx::query(
                        "UPDATE user_keys SET key_id = $3, nonce = $4, wrapped = $5
                          WHERE user_id = $1 AND key_id = $2",
                    )
                    .bind(user)
                    .bind(&old.key_id)
                    .bind(&new.key_id)
                    .bind(&new.nonce)
                    .bind(&new.wrapped)
                    .execute(&self.pool)
                    .await
                    .map_err(store)?;
                    report.data_keys_rewrapped += 1;
                }
                Err(why) => report.failures.push((user, why.to_string())),
            }
        }

        let system = Caller {
            request_id: Uuid::new_v4().to_string(),
            client_request_id: None,
            client_ip: "local".into(),
            user_agent: "authledger keys rotate".into(),
        };
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'UserAuth'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store)?;
        for user in users.iter().filter_map(|id| Uuid::parse_str(id).ok()) {
            match self
                .bus
                .execute(user, UserAuthCommand::ResealSecrets, &system.as_system())
                .await
            {
                Ok(executed) => {
                    if let Verdict::SecretsResealed { resealed } = executed.verdict {
                        if resealed > 0 {
                            report.accounts_resealed += 1;
                            report.secrets_resealed += resealed;
                        }
                    }
                }
                // Erased accounts keep no secrets to move.
                Err(crate::command_bus::BusError::Refused(_)) => {}
                Err(other) => report.failures.push((user, other.to_string())),
            }
        }

        // Every address an account holds gets its index under every listed
        // key (the newest among them); indexes under keys no longer listed
        // are dropped, as no process computes them any more.
        let ring: Vec<String> = self
            .keyring
            .key_ids()
            .iter()
            .map(|id| (*id).to_owned())
            .collect();
        sqlx::query("DELETE FROM email_claims WHERE key_id <> ALL($1)")
            .bind(&ring)
            .execute(&self.pool)
            .await
            .map_err(store)?;
        let claimants: Vec<Uuid> =
            sqlx::query_scalar(&format!("SELECT user_id FROM ({NOT_YET_INDEXED}) behind"))
                .bind(&current)
                .bind(self.now())
                .fetch_all(&self.pool)
                .await
                .map_err(store)?;
        for user in claimants {
            let Ok((state, keeper)) = self.bus.load_with_keeper(user).await else {
                report
                    .failures
                    .push((user, "the account does not load".into()));
                continue;
            };
            let opened = |sealed| {
                keeper
                    .open_text(SealPurpose::Email, sealed)
                    .and_then(|text| Email::parse(&text).ok())
            };
            let mut held: Vec<(Option<Email>, Option<chrono::DateTime<chrono::Utc>>)> = vec![(
                super::identity::address_of(&state, &keeper)
                    .and_then(|text| Email::parse(&text).ok()),
                None,
            )];
            held.extend(
                state
                    .held_addresses()
                    .into_iter()
                    .filter(|(_, until)| *until > self.now())
                    .map(|(sealed, until)| (opened(sealed), Some(until))),
            );
            for (address, until) in held {
                let Some(address) = address else {
                    report
                        .failures
                        .push((user, "an address does not open".into()));
                    continue;
                };
                let index = self.keyring.blind_index(&address);
                // Only an index the account does not hold yet; one held by
                // another account is a conflict to report, never to take.
                let owner: Option<Uuid> = sqlx::query_scalar(
                    "WITH added AS (
                         INSERT INTO email_claims (blind_index, key_id, user_id, held_until)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (blind_index) DO NOTHING
                         RETURNING user_id)
                     SELECT user_id FROM added
                     UNION ALL
                     SELECT user_id FROM email_claims WHERE blind_index = $1
                     LIMIT 1",
                )
                .bind(&index.digest)
                .bind(&index.key_id)
                .bind(user)
                .bind(until)
                .fetch_optional(&self.pool)
                .await
                .map_err(store)?;
                match owner {
                    Some(owner) if owner == user => report.addresses_reindexed += 1,
                    _ => report
                        .failures
                        .push((user, "another account claims one of its addresses".into())),
                }
            }
        }

        // Last, so the events the steps above appended are sealed too.
        let resealed = crate::transparency::reseal_event_macs(&self.pool, &self.keyring)
            .await
            .map_err(AppError::Internal)?;
        report.events_resealed = resealed.events;
        report.streams_resealed = resealed.streams;
        report.failures.extend(
            resealed
                .failures
                .into_iter()
                .map(|(id, why)| (Uuid::parse_str(&id).unwrap_or_default(), why)),
        );

        report.remaining = self.key_uses().await?;
        Ok(report)
    }

    /// How the accounts' data keys stand against this process's server
    /// keys: how many it can open, and how many need a key it does not hold
    /// (with one such key's id).
    pub async fn data_keys_held(&self) -> AppResult<DataKeysHeld> {
        let row = sqlx::query(
            "SELECT count(*) FILTER (WHERE key_id = ANY($1)) AS held,
                    count(*) FILTER (WHERE key_id <> ALL($1)) AS unheld,
                    min(key_id) FILTER (WHERE key_id <> ALL($1)) AS missing
               FROM user_keys",
        )
        .bind(self.keyring.key_ids())
        .fetch_one(&self.pool)
        .await
        .map_err(|cause| AppError::Unavailable {
            what: "the event store",
            cause: cause.into(),
        })?;
        Ok(DataKeysHeld {
            held: row.try_get("held").map_err(AppError::internal)?,
            unheld: row.try_get("unheld").map_err(AppError::internal)?,
            missing: row.try_get("missing").map_err(AppError::internal)?,
        })
    }

    /// What depends on each key other than the newest: data keys it
    /// wraps, and accounts whose addresses it alone indexes.
    pub async fn key_uses(&self) -> AppResult<Vec<KeyUse>> {
        let rows = sqlx::query(&format!(
            "SELECT key_id, sum(data_keys)::bigint AS data_keys,
                    sum(addresses)::bigint AS addresses, sum(held)::bigint AS held,
                    sum(event_macs)::bigint AS event_macs
               FROM (SELECT key_id, 1 AS data_keys, 0 AS addresses, 0 AS held, 0 AS event_macs FROM user_keys
                     UNION ALL
                     SELECT c.key_id, 0, (c.held_until IS NULL)::int, (c.held_until IS NOT NULL)::int, 0
                       FROM email_claims c
                      WHERE (c.held_until IS NULL OR c.held_until >= $2)
                        AND c.user_id IN (SELECT user_id FROM ({NOT_YET_INDEXED}) behind)
                     UNION ALL
                     SELECT mac_key, 0, 0, 0, count(*) FROM events WHERE mac_key IS NOT NULL GROUP BY mac_key) uses
              WHERE key_id <> $1
              GROUP BY key_id ORDER BY key_id"
        ))
        .bind(self.keyring.current_id())
        .bind(self.now())
        .fetch_all(&self.pool)
        .await
        .map_err(|cause| AppError::Unavailable {
            what: "the event store",
            cause: cause.into(),
        })?;
        rows.iter()
            .map(|row| {
                Ok(KeyUse {
                    key_id: row.try_get("key_id")?,
                    data_keys: row.try_get("data_keys")?,
                    addresses: row.try_get("addresses")?,
                    held_addresses: row.try_get("held")?,
                    event_macs: row.try_get("event_macs")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AppError::internal)
    }
}
