//! The catch-up projector: reads events after its checkpoint in the global
//! order `(transaction_id, position)`, only below the snapshot's xmin so an
//! event committed late by a slow transaction is never skipped, applies a
//! batch and advances the checkpoint in one transaction.
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use authledger_aggregates::UserAuthEvent;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::locks::{advisory_key, LockPurpose};

/// The channel the events table notifies on insert.
pub const EVENTS_CHANNEL: &str = "authledger_events";

/// The metadata key of the client's IP and browser: the JSON of a
/// `Sealed` (`SealPurpose::FreeText`, the user's data key) of both, so that
/// erasing the account's key erases where its requests came from.
pub const PERSONAL_METADATA: &str = "personal";

/// An event as the log holds it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub transaction_id: i64,
    pub position: i64,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event: UserAuthEvent,
    pub metadata: HashMap<String, String>,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    pub fn meta(&self, key: &str) -> &str {
        self.metadata.get(key).map(String::as_str).unwrap_or("")
    }

    /// The user the event is about: every stream is one user's.
    pub fn user_id(&self) -> anyhow::Result<Uuid> {
        Uuid::parse_str(&self.aggregate_id)
            .with_context(|| format!("stream {:?} is not a user id", self.aggregate_id))
    }
}

#[async_trait::async_trait]
pub trait Projection: Send + Sync {
    fn name(&self) -> &'static str;

    /// Applies a batch, in order, inside the transaction that also moves
    /// the checkpoint.
    async fn apply(&self, tx: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()>;

    /// Empties the read model before a rebuild from the start of the log.
    /// Projections with effects outside the database cannot be rebuilt.
    async fn reset(&self, tx: &mut PgConnection) -> anyhow::Result<()> {
        let _ = tx;
        anyhow::bail!("projection {} cannot be rebuilt", self.name())
    }
}

/// What the projectors of one process did, for `/metrics`. Clones share
/// their counts.
#[derive(Debug, Clone, Default)]
pub struct ProjectionMetrics(Arc<Mutex<BTreeMap<&'static str, Arc<RunCounters>>>>);

#[derive(Debug, Default)]
struct RunCounters {
    applied: AtomicU64,
    failures: AtomicU64,
}

/// One projection's counts in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectionRuns {
    /// Events applied.
    pub applied: u64,
    /// Batches that failed (and were retried).
    pub failures: u64,
}

impl ProjectionMetrics {
    fn counters(&self, name: &'static str) -> Arc<RunCounters> {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.entry(name).or_default().clone()
    }

    /// Each projection's counts, by name.
    pub fn snapshot(&self) -> Vec<(&'static str, ProjectionRuns)> {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.iter()
            .map(|(name, c)| {
                (
                    *name,
                    ProjectionRuns {
                        applied: c.applied.load(Ordering::Relaxed),
                        failures: c.failures.load(Ordering::Relaxed),
                    },
                )
            })
            .collect()
    }
}

pub struct Projector<P> {
    pool: PgPool,
    projection: P,
    batch_size: i64,
    poll_interval: Duration,
    /// How long to let notifications gather before catching up: under
    /// load every commit notifies, and one batch per notification would
    /// cost a transaction per commit for each projection.
    gather: Duration,
    /// The wait after a failed batch: `first`, doubling per consecutive
    /// failure up to `max`.
    retry: Backoff,
    /// Whether this projection's checkpoint row is known to exist.
    checkpoint_exists: AtomicBool,
    /// Where `run` counts what it applied and what failed.
    runs: Arc<RunCounters>,
}

/// Waits between retries of a failing batch. It grows only with failed
/// attempts, never with time or notifications, and starts again after a
/// success, so that once the cause is gone the next attempt comes at most
/// `max` later.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after `failures` consecutive failed attempts (1 or more).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

impl<P: Projection> Projector<P> {
    pub fn new(pool: PgPool, projection: P) -> Self {
        Self {
            pool,
            projection,
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            gather: Duration::from_millis(20),
            retry: Backoff {
                first: Duration::from_millis(100),
                max: Duration::from_secs(30),
            },
            checkpoint_exists: AtomicBool::new(false),
            runs: Arc::default(),
        }
    }

    /// Counts what `run` applies and what fails in `metrics`.
    pub fn with_metrics(mut self, metrics: &ProjectionMetrics) -> Self {
        self.runs = metrics.counters(self.projection.name());
        self
    }

    /// The longest wait between a failed batch and its retry.
    pub fn with_retry_max(mut self, max: Duration) -> Self {
        self.retry.max = max.max(self.retry.first);
        self
    }

    pub fn with_batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Applies at most one batch. Returns how many events it applied: 0
    /// when caught up, or when another instance holds this projection.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let name = self.projection.name();
        // The checkpoint row, committed on its own before any batch (so a
        // projection that never applies one still shows its lag), once per
        // projector rather than before every batch: a round trip less each.
        if !self.checkpoint_exists.load(Ordering::Relaxed) {
            sqlx::query(
                "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .execute(&self.pool)
            .await?;
            self.checkpoint_exists.store(true, Ordering::Relaxed);
        }
        let mut tx = self.pool.begin().await?;
        // An advisory lock rather than a row lock: it assigns no transaction
        // id, so a batch that waits (the relay on RabbitMQ's confirms) does
        // not hold back the xmin horizon every projector reads below. The
        // id is taken only by the batch's writes, at its end.
        let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(advisory_key(LockPurpose::Projection, name))
            .fetch_one(&mut *tx)
            .await?;
        if !mine {
            return Ok(0);
        }
        let Some(checkpoint) = sqlx::query(
            "SELECT transaction_id::text::bigint AS transaction_id, position
               FROM projection_checkpoints WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        else {
            // Deleted since: made again by the next batch.
            self.checkpoint_exists.store(false, Ordering::Relaxed);
            anyhow::bail!("the checkpoint of projection {name} is gone");
        };
        let after: (i64, i64) = (
            checkpoint.try_get("transaction_id")?,
            checkpoint.try_get("position")?,
        );
        let events = read_after(&mut tx, after, self.batch_size).await?;
        let Some(last) = events.last() else {
            return Ok(0);
        };
        let last = (last.transaction_id, last.position);
        self.projection.apply(&mut tx, &events).await?;
        sqlx::query(
            "UPDATE projection_checkpoints
                SET transaction_id = $2::text::xid8, position = $3, updated_at = now()
              WHERE name = $1",
        )
        .bind(name)
        .bind(last.0.to_string())
        .bind(last.1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(events.len())
    }

    /// Applies batches until caught up; returns how many events it applied.
    /// A batch short of full read all there was to read: another read now
    /// would find nothing and cost a transaction of six round trips (under
    /// load, half of all the projectors' transactions). What commits later
    /// notifies, and the poll interval catches the rest.
    pub async fn catch_up(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let applied = self.run_once().await?;
            total += applied;
            if i64::try_from(applied).unwrap_or(i64::MAX) < self.batch_size {
                return Ok(total);
            }
        }
    }

    /// Empties the read model and replays the whole log into it.
    pub async fn rebuild(&self) -> anyhow::Result<usize> {
        let name = self.projection.name();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        // Waits for a running batch of another instance, then holds it off.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(advisory_key(LockPurpose::Projection, name))
            .execute(&mut *tx)
            .await?;
        self.projection.reset(&mut tx).await?;
        sqlx::query(
            "UPDATE projection_checkpoints SET transaction_id = '0', position = 0, updated_at = now() WHERE name = $1",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.catch_up().await
    }

    /// Runs until `shutdown` completes: catches up, then waits for a NOTIFY
    /// from the events table or the poll interval, whichever comes first.
    /// A failed batch is retried after a back-off that only failed attempts
    /// lengthen; the projection stays put until its batch commits.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let name = self.projection.name();
        let mut listener = None;
        let mut failures: u32 = 0;
        loop {
            if listener.is_none() {
                listener = match PgListener::connect_with(&self.pool).await {
                    Ok(mut l) => match l.listen(EVENTS_CHANNEL).await {
                        Ok(()) => Some(l),
                        Err(_) => None,
                    },
                    Err(_) => None,
                };
            }
            let caught_up = self.catch_up().await;
            if let Ok(applied) = &caught_up {
                let applied = u64::try_from(*applied).unwrap_or(u64::MAX);
                self.runs.applied.fetch_add(applied, Ordering::Relaxed);
            }
            match caught_up {
                Ok(_) if failures > 0 => {
                    tracing::info!(projection = name, failures, "projection recovered");
                    failures = 0;
                }
                Ok(_) => {}
                Err(error) => {
                    self.runs.failures.fetch_add(1, Ordering::Relaxed);
                    failures = failures.saturating_add(1);
                    let retry_in = self.retry.after(failures);
                    // The first failure, then every 60th: an outage is
                    // logged, not flooded.
                    if failures == 1 || failures.is_multiple_of(60) {
                        tracing::warn!(
                            projection = name,
                            failures,
                            ?retry_in,
                            error = format!("{error:#}"),
                            "projection failed; retrying"
                        );
                    } else {
                        tracing::debug!(
                            projection = name,
                            failures,
                            ?retry_in,
                            error = format!("{error:#}"),
                            "projection failed again"
                        );
                    }
                    // Commits notified meanwhile are what the failed batch
                    // is waiting to deliver anyway: they are taken and
                    // dropped, so neither a busy log retries sooner nor
                    // does the wait grow with each of them.
                    let deadline = tokio::time::Instant::now() + retry_in;
                    loop {
                        let notified = async {
                            match listener.as_mut() {
                                Some(l) => l.recv().await.map(|_| ()),
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            () = &mut shutdown => return,
                            () = tokio::time::sleep_until(deadline) => break,
                            result = notified => if result.is_err() {
                                listener = None;
                            },
                        }
                    }
                    continue;
                }
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.poll_interval) => {}
                result = notified => {
                    if result.is_err() {
                        listener = None;
                        continue;
                    }
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(self.gather) => {}
                    }
                    // One catch-up serves every commit notified so far:
                    // take each notification already waiting, without
                    // waiting for more (a zero timeout polls once).
                    if let Some(l) = listener.as_mut() {
                        while let Ok(Ok(_)) = tokio::time::timeout(Duration::ZERO, l.recv()).await {}
                    }
                }
            }
        }
    }
}

/// Events after `after`, in global order, from transactions that can no
/// longer commit anything older. The ORDER BY names the table's columns:
/// unqualified, it would sort by the `bigint` output column of the same
/// name, which no index serves, and sort every unread event per batch.
async fn read_after(
    conn: &mut PgConnection,
    after: (i64, i64),
    limit: i64,
) -> anyhow::Result<Vec<StoredEvent>> {
    let rows = sqlx::query(
        "SELECT transaction_id::text::bigint AS transaction_id, position, aggregate_id, sequence,
                event_type, payload, metadata, recorded_at
           FROM events
          WHERE (transaction_id, position) > ($1::text::xid8, $2)
            AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY events.transaction_id, events.position
          LIMIT $3",
    )
    .bind(after.0.to_string())
    .bind(after.1)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let payload: sqlx::types::Json<UserAuthEvent> = row.try_get("payload")?;
            let metadata: sqlx::types::Json<HashMap<String, String>> = row.try_get("metadata")?;
            Ok(StoredEvent {
                transaction_id: row.try_get("transaction_id")?,
                position: row.try_get("position")?,
                aggregate_id: row.try_get("aggregate_id")?,
                sequence: row.try_get("sequence")?,
                event_type: row.try_get("event_type")?,
                event: payload.0,
                metadata: metadata.0,
                recorded_at: row.try_get("recorded_at")?,
            })
        })
        .collect()
}

/// Where a projection stands.
#[derive(Debug, Clone)]
pub struct ProjectionStatus {
    pub name: String,
    pub position: i64,
    pub updated_at: DateTime<Utc>,
    /// Events committed after the checkpoint.
    pub lag_events: i64,
    /// Age of the oldest event not yet applied; 0 when caught up.
    pub lag_seconds: f64,
}

pub async fn status(pool: &PgPool) -> anyhow::Result<Vec<ProjectionStatus>> {
    let rows = sqlx::query(
        "SELECT c.name, c.position, c.updated_at,
                (SELECT count(*) FROM events e
                  WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position)) AS lag_events,
                COALESCE((SELECT extract(epoch FROM now() - min(e.recorded_at))::float8 FROM events e
                  WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position)), 0) AS lag_seconds
           FROM projection_checkpoints c ORDER BY c.name",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(ProjectionStatus {
                name: row.try_get("name")?,
                position: row.try_get("position")?,
                updated_at: row.try_get("updated_at")?,
                lag_events: row.try_get("lag_events")?,
                lag_seconds: row.try_get("lag_seconds")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_wait_doubles_per_failure_up_to_its_maximum() {
        let backoff = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let waits: Vec<u128> = (1..=7).map(|n| backoff.after(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(backoff.after(u32::MAX), Duration::from_secs(1));
        assert_eq!(backoff.after(0), Duration::from_millis(100));
    }
}
