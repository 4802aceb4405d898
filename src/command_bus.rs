//! Load → handle → commit, returning the committed events. On an optimistic
//! concurrency conflict the command runs again on the reloaded aggregate, a
//! bounded number of times, so two racing requests each see a consistent
//! user and a one-time thing is used once.
use std::collections::HashMap;
use std::time::Duration;

use authledger_aggregates::{
    UserAuth, UserAuthCommand, UserAuthError, UserAuthEvent, UserAuthServices,
};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, EventStore};
use postgres_es::PostgresEventRepository;
use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;

type Store = PersistedEventStore<PostgresEventRepository, UserAuth>;

const MAX_ATTEMPTS: u32 = 10;

/// Who asked, recorded with every event.
#[derive(Debug, Clone)]
pub struct CommandMetadata {
    pub request_id: String,
    pub client_ip: String,
    pub user_agent: String,
    pub actor: &'static str,
}

impl CommandMetadata {
    fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            ("request_id".to_owned(), self.request_id.clone()),
            ("client_ip".to_owned(), self.client_ip.clone()),
            ("user_agent".to_owned(), self.user_agent.clone()),
            ("actor".to_owned(), self.actor.to_owned()),
        ])
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
    store: Store,
    services: UserAuthServices,
}

impl CommandBus {
    pub fn new(pool: PgPool, services: UserAuthServices, snapshot_every: usize) -> Self {
        let repo = PostgresEventRepository::new(pool);
        Self {
            store: PersistedEventStore::new_snapshot_store(repo, snapshot_every.max(1)),
            services,
        }
    }

    pub fn services(&self) -> &UserAuthServices {
        &self.services
    }

    pub async fn execute(
        &self,
        user: Uuid,
        command: UserAuthCommand,
        metadata: &CommandMetadata,
    ) -> Result<Vec<UserAuthEvent>, BusError> {
        let id = user.to_string();
        for attempt in 1..=MAX_ATTEMPTS {
            let context = self.store.load_aggregate(&id).await.map_err(store_error)?;
            // Handle on a copy: the sink applies events to the aggregate it
            // is given, and the snapshot store applies them to the context's
            // aggregate again when it writes a snapshot.
            let mut working = context.aggregate.clone();
            let sink = EventSink::default();
            working
                .handle(command.clone(), &self.services, &sink)
                .await?;
            let events = sink.collect().await;
            if events.is_empty() {
                return Ok(events);
            }
            match self.store.commit(events, context, metadata.to_map()).await {
                Ok(committed) => return Ok(committed.into_iter().map(|e| e.payload).collect()),
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

    pub async fn load(&self, user: Uuid) -> Result<UserAuth, BusError> {
        let context = self
            .store
            .load_aggregate(&user.to_string())
            .await
            .map_err(store_error)?;
        Ok(context.aggregate)
    }
}

fn store_error(err: AggregateError<UserAuthError>) -> BusError {
    match err {
        AggregateError::UserError(refusal) => BusError::Refused(refusal),
        AggregateError::AggregateConflict => BusError::Contended,
        other => BusError::Store(other.to_string()),
    }
}
