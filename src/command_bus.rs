//! Load → decide → commit, returning the aggregate's verdict. On an optimistic
//! concurrency conflict the command runs again on the reloaded aggregate, a
//! bounded number of times, so two racing requests each see a consistent
//! user and a one-time thing is used once.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authledger_aggregates::{
    Password, PasswordCheck, PasswordHash, PasswordHasher, SealPurpose, SecretKeeper, ServiceError,
    UserAuth, UserAuthCommand, UserAuthError, UserAuthEvent, UserAuthServices, Verdict,
};
use cqrs_es::{Aggregate, DomainEvent};
use rand::Rng;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::integrity::{self, SnapshotFields, Tag, GENESIS};
use crate::keys::{DataKey, Keyring, UserKeeper};
use crate::metrics::{IntegrityAlarms, ServiceMetrics};
use crate::snapshots;
use crate::store::{self, CommitError, DataKeyOp, Effects, NewEvent};

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

/// The metadata key under which a client's IP and browser are kept,
/// sealed with the user's data key; the mail relay copies it from there.
pub use authledger_projections::PERSONAL_METADATA;

/// A client's IP and browser as sealed into an event's metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientOrigin {
    pub client_ip: String,
    pub user_agent: String,
}

impl CommandMetadata {
    /// The metadata stored with each event. The IP and browser are personal
    /// data: sealed with the user's key, or left out when it is gone.
    fn to_json(&self, keeper: &UserKeeper) -> Result<Value, BusError> {
        let mut map = HashMap::from([
            ("request_id".to_owned(), self.request_id.clone()),
            ("actor".to_owned(), self.actor.clone()),
        ]);
        if let Some(id) = &self.client_request_id {
            map.insert("client_request_id".to_owned(), id.clone());
        }
        if self.actor != "user" {
            // Staff and the server itself: their origin is theirs, not the
            // account's, and must outlive the account's erasure.
            map.insert("client_ip".to_owned(), self.client_ip.clone());
            map.insert("user_agent".to_owned(), self.user_agent.clone());
        } else if keeper.holds_personal_key() {
            let origin = ClientOrigin {
                client_ip: self.client_ip.clone(),
                user_agent: self.user_agent.clone(),
            };
            let sealed = serde_json::to_vec(&origin)
                .map_err(|e| BusError::Store(e.to_string()))
                .and_then(|bytes| {
                    keeper
                        .seal(SealPurpose::FreeText, &bytes)
                        .map_err(|e| BusError::Store(e.to_string()))
                })?;
            let sealed =
                serde_json::to_string(&sealed).map_err(|e| BusError::Store(e.to_string()))?;
            map.insert(PERSONAL_METADATA.to_owned(), sealed);
        }
        serde_json::to_value(map).map_err(|e| BusError::Store(e.to_string()))
    }
}

/// The IP and browser an event's metadata holds, if they can be opened.
pub fn client_origin(
    metadata: &HashMap<String, String>,
    keeper: &UserKeeper,
) -> Option<ClientOrigin> {
    let sealed = serde_json::from_str(metadata.get(PERSONAL_METADATA)?).ok()?;
    let bytes = keeper.unseal(SealPurpose::FreeText, &sealed).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What a command writes beside its events, decided once its verdict is
/// known: the address claims of a registration or a change of address.
pub type EffectsOf<'a> =
    dyn Fn(&Verdict, &UserKeeper) -> Result<Effects, BusError> + Send + Sync + 'a;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Refused(#[from] UserAuthError),
    #[error("the user changed concurrently too often; try again")]
    Contended,
    /// Another account holds the address the command claims.
    #[error("the address is held by another account")]
    AddressTaken,
    #[error("the event store failed: {0}")]
    Store(String),
    /// A stored event or snapshot of the user does not carry the MAC only
    /// the application can make: nothing is decided on it.
    #[error("the log of user {user} fails its integrity check at {at}: {broken}")]
    Tampered {
        user: Uuid,
        at: String,
        broken: integrity::Broken,
    },
}

/// Loads and commits through `store` (one statement each way). Snapshots
/// are kept here rather than by cqrs-es: its snapshot store records a
/// snapshot's sequence as the batch's last event while folding only up to
/// the snapshot boundary, so events after the boundary in the same batch
/// would be skipped on the next load.
pub struct CommandBus {
    pool: PgPool,
    services: UserAuthServices,
    keyring: Arc<Keyring>,
    snapshot_every: usize,
    alarms: IntegrityAlarms,
    /// Where conflicts and give-ups are counted.
    metrics: ServiceMetrics,
}

/// What a committed command did.
#[derive(Debug)]
pub struct Executed {
    pub verdict: Verdict,
    /// The user's state after the command.
    pub state: UserAuth,
    /// Opens the user's sealed data.
    pub keeper: UserKeeper,
}

/// A user's state as of `sequence`.
struct Loaded {
    state: UserAuth,
    sequence: usize,
    /// The MAC of the event at `sequence`, which the next one chains from.
    head: Tag,
    keeper: UserKeeper,
}

impl CommandBus {
    pub fn new(
        pool: PgPool,
        services: UserAuthServices,
        keyring: Arc<Keyring>,
        snapshot_every: usize,
        alarms: IntegrityAlarms,
        metrics: ServiceMetrics,
    ) -> Self {
        Self {
            pool,
            services,
            keyring,
            snapshot_every: snapshot_every.max(1),
            alarms,
            metrics,
        }
    }

    pub fn services(&self) -> &UserAuthServices {
        &self.services
    }

    /// How many times a stored history failed its integrity check.
    pub fn alarms(&self) -> &IntegrityAlarms {
        &self.alarms
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
        self.execute_with(
            user,
            None,
            command,
            metadata,
            &|_, _| Ok(Effects::default()),
        )
        .await
    }

    /// As `execute`, committing `effects` of the verdict with the events.
    /// `new_key` is the data key of an account this command creates.
    pub async fn execute_with(
        &self,
        user: Uuid,
        new_key: Option<&DataKey>,
        command: UserAuthCommand,
        metadata: &CommandMetadata,
        effects: &EffectsOf<'_>,
    ) -> Result<Executed, BusError> {
        // A retry decides again on the new state, but the same password
        // needs hashing only once: argon2 is the expensive part, and a
        // retried wrong password must cost no more than a first one.
        let hasher: Arc<dyn PasswordHasher> =
            Arc::new(OncePerCommand::new(self.services.hasher.clone()));
        for attempt in 1..=MAX_ATTEMPTS {
            let mut loaded = self.load_at(user).await?;
            let creating = loaded.sequence == 0 && !loaded.keeper.holds_personal_key();
            if let (true, Some(key)) = (creating, new_key) {
                loaded.keeper = UserKeeper::new(self.keyring.clone(), user, Some(key));
            }
            let services = UserAuthServices {
                hasher: hasher.clone(),
                keeper: Arc::new(loaded.keeper.clone()),
                ..self.services.clone()
            };
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
                    keeper: loaded.keeper,
                });
            }
            let mut writes = effects(&decided.verdict, &loaded.keeper)?;
            if let (true, Some(key)) = (creating, new_key) {
                let wrapped = self
                    .keyring
                    .wrap(user, key)
                    .map_err(|e| BusError::Store(e.to_string()))?;
                writes.data_key = Some(DataKeyOp::Create(wrapped));
            }
            let stored_metadata = metadata.to_json(&loaded.keeper)?;
            let events = decided
                .events
                .iter()
                .map(|event| {
                    Ok(NewEvent {
                        event_type: event.event_type(),
                        event_version: event.event_version(),
                        payload: serde_json::to_value(event)
                            .map_err(|e| BusError::Store(e.to_string()))?,
                        metadata: stored_metadata.clone(),
                    })
                })
                .collect::<Result<Vec<_>, BusError>>()?;
            let committed = events.len();
            let now = self.services.clock.now();
            match store::commit(
                &self.pool,
                &self.keyring,
                UserAuth::TYPE,
                user,
                loaded.sequence,
                &loaded.head,
                events,
                &writes,
                now,
            )
            .await
            {
                Ok(head) => {
                    let sequence = loaded.sequence + committed;
                    let erased = matches!(writes.data_key, Some(DataKeyOp::Delete));
                    if !erased
                        && sequence / self.snapshot_every > loaded.sequence / self.snapshot_every
                    {
                        self.save_snapshot(user, sequence, &head, &after).await;
                    }
                    let keeper = if erased {
                        UserKeeper::new(self.keyring.clone(), user, None)
                    } else {
                        loaded.keeper
                    };
                    return Ok(Executed {
                        verdict: decided.verdict,
                        state: after,
                        keeper,
                    });
                }
                Err(CommitError::Conflict) if attempt < MAX_ATTEMPTS => {
                    self.metrics.count_conflict();
                    let pause = rand::thread_rng().gen_range(1..=5 * u64::from(attempt));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(CommitError::Conflict) => {
                    self.metrics.count_conflict();
                    break;
                }
                Err(CommitError::AddressTaken) => return Err(BusError::AddressTaken),
                Err(CommitError::Store(e)) => return Err(BusError::Store(e.to_string())),
            }
        }
        self.metrics.count_contended();
        Err(BusError::Contended)
    }

    /// The user's current state.
    pub async fn load(&self, user: Uuid) -> Result<UserAuth, BusError> {
        Ok(self.load_at(user).await?.state)
    }

    /// The user's current state and what opens their sealed data.
    pub async fn load_with_keeper(&self, user: Uuid) -> Result<(UserAuth, UserKeeper), BusError> {
        let loaded = self.load_at(user).await?;
        Ok((loaded.state, loaded.keeper))
    }

    /// The data key, the newest snapshot and the events after it, in one
    /// round trip. Each MAC is checked before anything is folded: a user
    /// whose stored history fails the check is not loaded at all.
    async fn load_at(&self, user: Uuid) -> Result<Loaded, BusError> {
        let store_error = |e: sqlx::Error| BusError::Store(e.to_string());
        let mut stream = store::load(&self.pool, UserAuth::TYPE, user, false)
            .await
            .map_err(store_error)?;
        let keeper = UserKeeper::unwrapping(&self.keyring, user, stream.data_key.as_ref())
            .map_err(|e| BusError::Store(e.to_string()))?;
        let id = user.to_string();
        let (mut state, mut sequence, mut head) = match stream.snapshot.take() {
            Some(snapshot) => {
                let head = Tag::try_from(snapshot.head_mac.as_slice()).unwrap_or_default();
                let fields = SnapshotFields {
                    aggregate_type: UserAuth::TYPE,
                    aggregate_id: &id,
                    last_sequence: i64::try_from(snapshot.last_sequence).unwrap_or(i64::MAX),
                    payload: &snapshot.payload,
                    head_mac: &head,
                };
                let sealed = integrity::verify_snapshot(
                    &self.keyring,
                    &fields,
                    &snapshot.mac_key,
                    &snapshot.mac,
                );
                match sealed {
                    // Sealed under a key since removed: a shortcut no longer
                    // checkable, so not taken; the events decide.
                    Ok(()) | Err(integrity::Broken::UnknownKey) => {}
                    Err(broken) => {
                        return Err(self.tampered(
                            user,
                            format!("its snapshot at event {}", snapshot.last_sequence),
                            broken,
                        ))
                    }
                }
                // The application folded an event it no longer finds: the
                // newest events were cut off the stream.
                if sealed.is_ok() && snapshot.event_mac.is_none() {
                    return Err(self.tampered(
                        user,
                        format!("event {}", snapshot.last_sequence),
                        integrity::Broken::Missing,
                    ));
                }
                // A snapshot of an older state shape is skipped too, and one
                // folded before a key rotation sealed the stream again: the
                // events are the truth, the snapshot only a shortcut.
                let current = snapshot.event_mac.as_deref() == Some(head.as_slice());
                let state = sealed
                    .ok()
                    .filter(|()| current)
                    .and_then(|()| serde_json::from_str::<UserAuth>(&snapshot.payload).ok());
                match state {
                    Some(state) => (state, snapshot.last_sequence, head),
                    None => {
                        stream = store::load(&self.pool, UserAuth::TYPE, user, true)
                            .await
                            .map_err(store_error)?;
                        (UserAuth::default(), 0, GENESIS)
                    }
                }
            }
            None => (UserAuth::default(), 0, GENESIS),
        };
        for row in stream.events {
            if row.sequence != sequence + 1 {
                return Err(self.tampered(
                    user,
                    format!("event {}", sequence + 1),
                    integrity::Broken::Missing,
                ));
            }
            head = integrity::verify_event(
                &self.keyring,
                &row.fields(UserAuth::TYPE, &id),
                &head,
                row.mac_key.as_deref(),
                row.mac.as_deref(),
            )
            .map_err(|broken| self.tampered(user, format!("event {}", row.sequence), broken))?;
            // serde's message can quote the payload, and a payload can hold
            // personal data: only where it broke is said.
            let event: UserAuthEvent = serde_json::from_str(&row.payload).map_err(|e| {
                BusError::Store(format!(
                    "event {} of {user} does not deserialize (line {}, column {})",
                    row.sequence,
                    e.line(),
                    e.column()
                ))
            })?;
            state.apply(event);
            sequence = row.sequence;
        }
        Ok(Loaded {
            state,
            sequence,
            head,
            keeper,
        })
    }

    /// Raises the alarm (a log line at error level and the metric) and
    /// answers the refusal.
    fn tampered(&self, user: Uuid, at: String, broken: integrity::Broken) -> BusError {
        self.alarms.raise();
        tracing::error!(
            %user,
            at = %at,
            %broken,
            "INTEGRITY ALARM: a stored event or snapshot fails its MAC; the user is not loaded"
        );
        BusError::Tampered { user, at, broken }
    }

    async fn save_snapshot(&self, user: Uuid, sequence: usize, head: &Tag, state: &UserAuth) {
        let id = user.to_string();
        let saved = match serde_json::to_string(state) {
            Ok(payload) => {
                let stamp = integrity::seal_snapshot(
                    &self.keyring,
                    &SnapshotFields {
                        aggregate_type: UserAuth::TYPE,
                        aggregate_id: &id,
                        last_sequence: i64::try_from(sequence).unwrap_or(i64::MAX),
                        payload: &payload,
                        head_mac: head,
                    },
                );
                snapshots::save(
                    &self.pool,
                    UserAuth::TYPE,
                    &id,
                    sequence,
                    &payload,
                    head,
                    &stamp,
                )
                .await
                .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = saved {
            // The command is committed; only the shortcut is missing.
            tracing::warn!(%error, "could not store a snapshot");
        }
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
