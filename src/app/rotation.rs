//! Moving everything current onto the newest server key, so an older one
//! can be removed: users' data keys are wrapped again, current secrets are
//! sealed again by appending events, and address indexes are computed
//! again. What still depends on an older key is reported.
use authledger_aggregates::{Email, SealPurpose, UserAuthCommand, Verdict};
use sqlx::Row;
use uuid::Uuid;

use super::{App, AppError, AppResult, Caller};
use crate::keys::WrappedKey;

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
    /// What still needs an older key, by key id.
    pub remaining: Vec<KeyUse>,
    /// Accounts that could not be moved, with why (their ids only).
    pub failures: Vec<(Uuid, String)>,
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

        let stale_claims = sqlx::query(
            "SELECT blind_index, key_id, user_id FROM email_claims
              WHERE key_id <> $1 AND held_until IS NULL",
        )
        .bind(&current)
        .fetch_all(&self.pool)
        .await
        .map_err(store)?;
        for row in stale_claims {
            let index: Vec<u8> = row.try_get("blind_index").map_err(store)?;
            let key_id: String = row.try_get("key_id").map_err(store)?;
            let user: Uuid = row.try_get("user_id").map_err(store)?;
            let address = match self.bus.load_with_keeper(user).await {
                Ok((state, keeper)) => state
                    .profile()
                    .and_then(|profile| keeper.open_text(SealPurpose::Email, &profile.email))
                    .and_then(|text| Email::parse(&text).ok()),
                Err(_) => None,
            };
            let Some(address) = address else {
                report
                    .failures
                    .push((user, "its address does not open".into()));
                continue;
            };
            // The row must be this address's index under its key: a claim
            // is moved only to the index of what it was the index of.
            let matches = self
                .keyring
                .blind_indexes(&address)
                .iter()
                .any(|old| old.key_id == key_id && old.digest == index);
            if !matches {
                report
                    .failures
                    .push((user, "its claim is not its current address".into()));
                continue;
            }
            let new = self.keyring.blind_index(&address);
            sqlx::query(
                "UPDATE email_claims SET blind_index = $2, key_id = $3
                  WHERE blind_index = $1 AND held_until IS NULL",
            )
            .bind(&index)
            .bind(&new.digest)
            .bind(&new.key_id)
            .execute(&self.pool)
            .await
            .map_err(store)?;
            report.addresses_reindexed += 1;
        }

        report.remaining = self.key_uses().await?;
        Ok(report)
    }

    /// What depends on each key other than the newest.
    pub async fn key_uses(&self) -> AppResult<Vec<KeyUse>> {
        let rows = sqlx::query(
            "SELECT key_id,
                    sum(data_keys)::bigint AS data_keys,
                    sum(addresses)::bigint AS addresses,
                    sum(held)::bigint AS held
               FROM (SELECT key_id, 1 AS data_keys, 0 AS addresses, 0 AS held FROM user_keys
                     UNION ALL
                     SELECT key_id, 0, (held_until IS NULL)::int, (held_until IS NOT NULL)::int
                       FROM email_claims) uses
              WHERE key_id <> $1
              GROUP BY key_id ORDER BY key_id",
        )
        .bind(self.keyring.current_id())
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
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AppError::internal)
    }
}
