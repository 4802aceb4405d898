//! Load → decide → commit, returning the aggregate's verdict. On an optimistic
//! concurrency conflict the command runs again on the reloaded aggregate, a
//! bounded number of times, so two racing requests each see a consistent
//! user and a one-time thing is used once.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authledger_aggregates::{
    Password, PasswordCheck, PasswordHash, PasswordHasher, ServiceError, UserAuth, UserAuthCommand,
    UserAuthError, UserAuthEvent, UserAuthServices, Verdict,
};
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventStore};
use postgres_es::PostgresEventRepository;
use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;

use crate::snapshots;

const MAX_ATTEMPTS: u32 = 10;

/// Who asked, recorded with every event.
#[derive(Debug, Clone)]
pub struct CommandMetadata {
    pub request_id: String,
    pub client_request_id: Option<String>,
    pub client_ip: String,
    pub user_agent: String,
    pub actor: String,
}

impl CommandMetadata {
    fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            ("request_id".to_owned(), self.request_id.clone()),
            ("client_ip".to_owned(), self.client_ip.clone()),
            ("user_agent".to_owned(), self.user_agent.clone()),
            ("actor".to_owned(), self.actor.clone()),
        ]);
        if let Some(id) = &self.client_request_id {
            map.insert("client_request_id".to_owned(), id.clone());
        }
        map
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Refused(#[from] UserAuthError),
    #[error("the user changed concurrently too often; try again")]
    Contended,
    #[error("the event store failed: {0}")]
    Store(String),
}

pub struct CommandBus {
    /// Appends events with optimistic concurrency. Snapshots are kept here
    /// rather than by cqrs-es: its snapshot store records a snapshot's
    /// sequence as the batch's last event while folding only up to the
    /// snapshot boundary, so events after the boundary in the same batch
    /// would be skipped on the next load.
    store: PersistedEventStore<PostgresEventRepository, UserAuth>,
    repo: PostgresEventRepository,
    pool: PgPool,
    services: UserAuthServices,
    snapshot_every: usize,
}

/// What a committed command did.
#[derive(Debug)]
pub struct Executed {
    pub verdict: Verdict,
    /// The user's state after the command.
    pub state: UserAuth,
}

/// A user's state as of `sequence`.
struct Loaded {
    state: UserAuth,
    sequence: usize,
}

impl CommandBus {
    pub fn new(pool: PgPool, services: UserAuthServices, snapshot_every: usize) -> Self {
        Self {
            store: PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone())),
            repo: PostgresEventRepository::new(pool.clone()),
            pool,
            services,
            snapshot_every: snapshot_every.max(1),
        }
    }

    pub fn services(&self) -> &UserAuthServices {
        &self.services
    }

    /// Runs `command` on `user` and commits what it recorded. The verdict
    /// is the rule's own word on what happened; the state is the user's
    /// after the commit, for a caller that needs both without a reload.
    pub async fn execute(
        &self,
        user: Uuid,
        command: UserAuthCommand,
        metadata: &CommandMetadata,
    ) -> Result<Executed, BusError> {
        let id = user.to_string();
        // A retry decides again on the new state, but the same password
        // needs hashing only once: argon2 is the expensive part, and a
        // retried wrong password must cost no more than a first one.
        let services = UserAuthServices {
            hasher: Arc::new(OncePerCommand::new(self.services.hasher.clone())),
            ..self.services.clone()
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let loaded = self.load_at(&id).await?;
            let decided = loaded.state.decide(command.clone(), &services).await?;
            // The state after the commit, for the snapshot and the caller.
            let mut after = loaded.state.clone();
            for event in &decided.events {
                after.apply(event.clone());
            }
            if decided.events.is_empty() {
                return Ok(Executed {
                    verdict: decided.verdict,
                    state: after,
                });
            }
            let context = EventStoreAggregateContext {
                aggregate_id: id.clone(),
                aggregate: loaded.state,
                current_sequence: loaded.sequence,
                current_snapshot: None,
            };
            match self
                .store
                .commit(decided.events, context, metadata.to_map())
                .await
            {
                Ok(committed) => {
                    let sequence = loaded.sequence + committed.len();
                    if sequence / self.snapshot_every > loaded.sequence / self.snapshot_every {
                        self.save_snapshot(&id, sequence, &after).await;
                    }
                    return Ok(Executed {
                        verdict: decided.verdict,
                        state: after,
                    });
                }
                Err(AggregateError::AggregateConflict) if attempt < MAX_ATTEMPTS => {
                    let pause = rand::thread_rng().gen_range(1..=5 * u64::from(attempt));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(AggregateError::AggregateConflict) => break,
                Err(other) => return Err(store_error(other)),
            }
        }
        Err(BusError::Contended)
    }

    /// The user's current state.
    pub async fn load(&self, user: Uuid) -> Result<UserAuth, BusError> {
        Ok(self.load_at(&user.to_string()).await?.state)
    }

    /// The newest snapshot, then the events after it.
    async fn load_at(&self, id: &str) -> Result<Loaded, BusError> {
        let snapshot = snapshots::latest(&self.pool, UserAuth::TYPE, id)
            .await
            .map_err(|e| BusError::Store(e.to_string()))?
            .and_then(|(sequence, payload)| {
                // A snapshot of an older state shape is skipped: the events
                // are the truth, the snapshot only a shortcut.
                serde_json::from_value::<UserAuth>(payload)
                    .ok()
                    .map(|state| Loaded { state, sequence })
            });
        let mut loaded = snapshot.unwrap_or(Loaded {
            state: UserAuth::default(),
            sequence: 0,
        });
        let events = self
            .repo
            .get_last_events::<UserAuth>(id, loaded.sequence)
            .await
            .map_err(|e| BusError::Store(e.to_string()))?;
        for event in events {
            let payload: UserAuthEvent = serde_json::from_value(event.payload).map_err(|e| {
                BusError::Store(format!(
                    "event {} of {id} does not deserialize: {e}",
                    event.sequence
                ))
            })?;
            loaded.state.apply(payload);
            loaded.sequence = event.sequence;
        }
        Ok(loaded)
    }

    async fn save_snapshot(&self, id: &str, sequence: usize, state: &UserAuth) {
        let saved = match serde_json::to_value(state) {
            Ok(payload) => snapshots::save(&self.pool, UserAuth::TYPE, id, sequence, &payload)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = saved {
            // The command is committed; only the shortcut is missing.
            tracing::warn!(%error, "could not store a snapshot");
        }
    }
}

fn store_error(err: AggregateError<UserAuthError>) -> BusError {
    match err {
        AggregateError::UserError(refusal) => BusError::Refused(refusal),
        AggregateError::AggregateConflict => BusError::Contended,
        other => BusError::Store(other.to_string()),
    }
}

/// Remembers, for the retries of one command, what hashing and verifying
/// its password gave.
struct OncePerCommand {
    inner: Arc<dyn PasswordHasher>,
    hashed: Mutex<Option<PasswordHash>>,
    verified: Mutex<Vec<(Option<PasswordHash>, PasswordCheck)>>,
}

impl OncePerCommand {
    fn new(inner: Arc<dyn PasswordHasher>) -> Self {
        Self {
            inner,
            hashed: Mutex::new(None),
            verified: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait::async_trait]
impl PasswordHasher for OncePerCommand {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, ServiceError> {
        if let Some(hash) = self.hashed.lock().ok().and_then(|h| h.clone()) {
            return Ok(hash);
        }
        let hash = self.inner.hash(password).await?;
        if let Ok(mut slot) = self.hashed.lock() {
            *slot = Some(hash.clone());
        }
        Ok(hash)
    }

    async fn verify(
        &self,
        hash: Option<&PasswordHash>,
        password: &Password,
    ) -> Result<PasswordCheck, ServiceError> {
        let known = self.verified.lock().ok().and_then(|v| {
            v.iter()
                .find(|(h, _)| h.as_ref() == hash)
                .map(|(_, check)| *check)
        });
        if let Some(check) = known {
            return Ok(check);
        }
        let check = self.inner.verify(hash, password).await?;
        if let Ok(mut verified) = self.verified.lock() {
            verified.push((hash.cloned(), check));
        }
        Ok(check)
    }
}
