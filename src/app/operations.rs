//! What operators and orchestrators ask: is the process ready, and the
//! numbers behind `/metrics`.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{App, AppError, AppResult};
use crate::config::Secret;

/// How long one broker check answers every readiness call: `/readyz` takes
/// no credential, so without this each call would open a connection to
/// RabbitMQ.
const BROKER_CHECK_FRESH: Duration = Duration::from_secs(5);

/// lapin has no connect timeout of its own, and a probe must answer before
/// the orchestrator gives up on it.
const BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Why RabbitMQ did not pass the readiness check. Cloned to every caller
/// the cached answer serves, cause included.
#[derive(Debug, Clone, thiserror::Error)]
enum BrokerDown {
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    #[error("the connection failed")]
    Connect(#[source] Arc<lapin::Error>),
}

/// The last broker check and when it was made. Callers take turns, so a
/// burst of probes after it goes stale makes one connection, not one each.
#[derive(Default)]
pub(super) struct BrokerCheck {
    last: Mutex<Option<(Instant, Result<(), BrokerDown>)>>,
}

impl BrokerCheck {
    /// The answer of a check made less than [`BROKER_CHECK_FRESH`] before
    /// `now`, or of `probe`, run now.
    async fn answer<P, F>(&self, now: Instant, probe: P) -> Result<(), BrokerDown>
    where
        P: FnOnce() -> F,
        F: Future<Output = Result<(), BrokerDown>>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref() {
            if now.saturating_duration_since(*at) < BROKER_CHECK_FRESH {
                return answer.clone();
            }
        }
        let answer = probe().await;
        *last = Some((now, answer.clone()));
        answer
    }
}

async fn connect_and_close(url: &Secret) -> Result<(), BrokerDown> {
    let connecting = Connection::connect(url.expose(), ConnectionProperties::default());
    let connection = tokio::time::timeout(BROKER_CHECK_TIMEOUT, connecting)
        .await
        .map_err(|_| BrokerDown::Timeout(BROKER_CHECK_TIMEOUT))?
        .map_err(|e| BrokerDown::Connect(Arc::new(e)))?;
    let _ = connection.close(200, "readiness checked".into()).await;
    Ok(())
}

/// Who may read `/metrics`: anyone, or the holders of one bearer token,
/// kept as its SHA-256 digest and compared in constant time.
#[derive(Default)]
pub(super) struct MetricsAccess {
    token: Option<[u8; 32]>,
}

impl MetricsAccess {
    pub(super) fn new(token: Option<&Secret>) -> Self {
        let token = token
            .map(|t| t.expose().trim())
            .filter(|t| !t.is_empty())
            .map(|t| Sha256::digest(t.as_bytes()).into());
        Self { token }
    }

    fn allows(&self, presented: Option<&str>) -> bool {
        match (&self.token, presented) {
            (None, _) => true,
            (Some(expected), Some(presented)) => {
                let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
                bool::from(expected.ct_eq(&presented))
            }
            (Some(_), None) => false,
        }
    }
}

impl App {
    /// Postgres answers, and RabbitMQ too when the pipeline is in use (as
    /// checked in the last few seconds).
    pub async fn readiness(&self) -> AppResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| AppError::Unavailable {
                what: "Postgres",
                cause: e.into(),
            })?;
        if let Some(url) = &self.amqp_url {
            self.broker_check
                .answer(Instant::now(), || connect_and_close(url))
                .await
                .map_err(|e| AppError::Unavailable {
                    what: "RabbitMQ",
                    cause: e.into(),
                })?;
        }
        Ok(())
    }

    /// The Prometheus text: each projection's lag, the mail this process
    /// sent, retried and dead-lettered, the requests it refused to protect
    /// itself, and the password hashes waiting now. With a metrics token
    /// configured, only for a caller presenting it.
    pub async fn metrics(&self, bearer: Option<&str>) -> AppResult<String> {
        if !self.metrics_access.allows(bearer) {
            return Err(AppError::Unauthenticated);
        }
        let projections = authledger_projections::status(&self.pool)
            .await
            .map_err(|e| AppError::Unavailable {
                what: "Postgres",
                cause: e,
            })?;
        Ok(crate::metrics::render(&crate::metrics::Report {
            projections: &projections,
            projection_runs: &self.metrics.projections,
            service: &self.metrics.service,
            mail: &self.metrics.mail,
            load: &self.load_metrics,
            hashes_waiting: self.hashing.waiting(),
            hashing_wait: self.hashing.wait(),
            integrity: self.bus.alarms(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn counted(
        check: &BrokerCheck,
        now: Instant,
        probes: &AtomicUsize,
        answer: Result<(), BrokerDown>,
    ) -> Result<(), BrokerDown> {
        check
            .answer(now, || async {
                probes.fetch_add(1, Ordering::SeqCst);
                answer
            })
            .await
    }

    #[tokio::test]
    async fn one_broker_check_answers_every_probe_for_a_few_seconds() {
        let check = BrokerCheck::default();
        let probes = AtomicUsize::new(0);
        let start = Instant::now();
        for after in [0, 1, 4] {
            let now = start + Duration::from_secs(after);
            assert!(counted(&check, now, &probes, Ok(())).await.is_ok());
        }
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        let stale = start + BROKER_CHECK_FRESH;
        assert!(counted(&check, stale, &probes, Ok(())).await.is_ok());
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_broker_check_is_kept_as_long_with_its_cause() {
        let check = BrokerCheck::default();
        let probes = AtomicUsize::new(0);
        let start = Instant::now();
        let down = Err(BrokerDown::Timeout(BROKER_CHECK_TIMEOUT));
        assert!(counted(&check, start, &probes, down.clone()).await.is_err());
        let later = start + Duration::from_secs(2);
        let cached = counted(&check, later, &probes, Ok(())).await;
        assert!(matches!(cached, Err(BrokerDown::Timeout(_))));
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        let stale = start + BROKER_CHECK_FRESH + Duration::from_secs(1);
        assert!(counted(&check, stale, &probes, Ok(())).await.is_ok());
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn metrics_need_the_configured_token_and_only_it() {
        let open = MetricsAccess::new(None);
        assert!(open.allows(None));
        assert!(open.allows(Some("anything")));
        let blank = MetricsAccess::new(Some(&Secret::from("  ")));
        assert!(blank.allows(None), "an empty token protects nothing");
        let guarded = MetricsAccess::new(Some(&Secret::from("scrape-7f3a")));
        assert!(guarded.allows(Some("scrape-7f3a")));
        assert!(!guarded.allows(Some("scrape-7f3b")));
        assert!(!guarded.allows(Some("")));
        assert!(!guarded.allows(None));
    }
}
