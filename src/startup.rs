//! Builds the application from settings and runs it until stopped.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use authledger_aggregates::{Clock, Policy, UserAuthServices};
use authledger_projections::audit_index::AuditIndex;
use authledger_projections::email_relay::EmailRelay;
use authledger_projections::mail::{Publisher, Topology};
use authledger_projections::users::UsersProjection;
use authledger_projections::Projector;
use axum::Extension;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::command_bus::CommandBus;
use crate::http::{router, ApiContext, ContextInner, Credentials};
use crate::keys::{Keyring, MasterKey};
use crate::metrics::MailMetrics;
use crate::services::{Argon2Hasher, OsRandomness, SystemClock};
use crate::tokens::TokenCodec;
use crate::worker::{Worker, WorkerSettings};

/// Everything the server needs besides its database pool.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub public_url: String,
    pub registration_open: bool,
    pub master_key: MasterKey,
    pub issuer: String,
    pub snapshot_every: usize,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub hashing_threads: usize,
    pub sign_in_failure_floor: Duration,
    pub policy: Policy,
    pub amqp_url: String,
    pub amqp_prefix: String,
    pub smtp_url: String,
    pub mail_from: String,
    pub mail_attempts: u32,
    pub mail_retry_base: Duration,
    /// Mails a worker sends at once.
    pub mail_concurrency: u16,
    /// Queues unused this long are deleted by RabbitMQ (tests only).
    pub amqp_queue_expiry: Option<Duration>,
    pub auditor_tokens: Vec<String>,
    pub admin_tokens: Vec<String>,
}

impl Settings {
    /// The documented defaults, with the given key.
    pub fn with_key(master_key: MasterKey) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            registration_open: true,
            master_key,
            issuer: "authledger".into(),
            snapshot_every: 50,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hashing_threads: default_hashing_threads(),
            sign_in_failure_floor: Duration::from_millis(200),
            policy: Policy::default(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            amqp_prefix: "authledger".into(),
            smtp_url: "smtp://127.0.0.1:1025".into(),
            mail_from: "authledger <no-reply@authledger.localhost>".into(),
            mail_attempts: 10,
            mail_retry_base: Duration::from_secs(5),
            mail_concurrency: 16,
            amqp_queue_expiry: None,
            auditor_tokens: Vec::new(),
            admin_tokens: Vec::new(),
        }
    }
}

pub fn default_hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether the console's cookies must be `Secure` (and so may carry the
/// `__Host-` prefix): always, unless users reach the service over plain
/// HTTP on their own machine. Plain HTTP anywhere else would send session
/// cookies in the clear, so it is refused.
fn cookies_need_secure(public_url: &str) -> anyhow::Result<bool> {
    let (scheme, rest) = public_url.split_once("://").unwrap_or_default();
    if scheme.eq_ignore_ascii_case("https") {
        return Ok(true);
    }
    if !scheme.eq_ignore_ascii_case("http") {
        anyhow::bail!(
            "AUTHLEDGER_PUBLIC_URL must start with https:// (or http:// on a loopback address)"
        );
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(
        loopback,
        "AUTHLEDGER_PUBLIC_URL is plain http:// on {host:?}: browsers would send session cookies unencrypted; use https:// (plain http:// is for loopback addresses only)"
    );
    Ok(false)
}

pub struct Application {
    listener: TcpListener,
    context: ApiContext,
    mail_metrics: MailMetrics,
}

impl Application {
    /// Binds the listener (port 0 picks a free port) and wires the services.
    pub async fn build(settings: Settings, pool: PgPool) -> anyhow::Result<Self> {
        let keyring = Arc::new(Keyring::new(&settings.master_key));
        let services = services(&settings, keyring.clone())?;
        let secure_cookies = cookies_need_secure(&settings.public_url)?;
        let context = ApiContext::new(ContextInner {
            bus: CommandBus::new(pool.clone(), services, settings.snapshot_every),
            tokens: TokenCodec::new(keyring),
            pool,
            issuer: settings.issuer,
            public_url: settings.public_url,
            registration_open: settings.registration_open,
            secure_cookies,
            sign_in_failure_floor: settings.sign_in_failure_floor,
            amqp_url: Some(settings.amqp_url),
            credentials: Credentials::new(&settings.auditor_tokens, &settings.admin_tokens)?,
        });
        let listener = TcpListener::bind(settings.addr).await?;
        Ok(Self {
            listener,
            context,
            mail_metrics: MailMetrics::default(),
        })
    }

    /// `/metrics` reports these mail counters: the pipeline's, when this
    /// process runs its worker.
    pub fn with_mail_metrics(mut self, mail_metrics: MailMetrics) -> Self {
        self.mail_metrics = mail_metrics;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // An extension rather than a field of the context, which the
        // HTTP layer owns; `/metrics` reads it.
        let app = router(self.context)
            .layer(Extension(self.mail_metrics))
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// The domain's services, real ones.
pub fn services(settings: &Settings, keyring: Arc<Keyring>) -> anyhow::Result<UserAuthServices> {
    let hasher = Argon2Hasher::new(
        settings.argon2_memory_kib,
        settings.argon2_iterations,
        settings.argon2_parallelism,
        settings.hashing_threads,
    )?;
    Ok(UserAuthServices {
        clock: Arc::new(SystemClock),
        randomness: Arc::new(OsRandomness),
        hasher: Arc::new(hasher),
        keeper: keyring,
        policy: settings.policy.clone(),
    })
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}

/// The event log's consumers: the `users` read model, the email relay and
/// the email worker. Each runs as its own task; tests drive them with
/// their `run_once`.
pub struct Pipeline {
    pub users: Projector<UsersProjection>,
    pub audit_index: Projector<AuditIndex>,
    pub relay: Projector<EmailRelay>,
    pub worker: Worker,
    mail_metrics: MailMetrics,
}

impl Pipeline {
    /// `clock` is the time the worker judges links' expiry by: the one
    /// the rest of the application reads.
    pub fn new(settings: &Settings, pool: PgPool, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let mut topology = Topology::new(&settings.amqp_prefix);
        topology.expires = settings.amqp_queue_expiry;
        let publisher = Arc::new(Publisher::new(&settings.amqp_url, topology.clone()));
        let keyring = Arc::new(Keyring::new(&settings.master_key));
        // The worker holds a connection per mail in flight, across the SMTP
        // exchange (the advisory lock on its message id): on a pool of its
        // own, a slow SMTP server cannot take the API's connections.
        let worker_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(u32::from(settings.mail_concurrency.max(1)) + 1)
            .connect_lazy_with((*pool.connect_options()).clone());
        let mail_metrics = MailMetrics::default();
        let worker = Worker::new(
            worker_pool,
            TokenCodec::new(keyring),
            WorkerSettings {
                amqp_url: settings.amqp_url.clone(),
                topology,
                smtp_url: settings.smtp_url.clone(),
                from: settings
                    .mail_from
                    .parse()
                    .map_err(|e| anyhow::anyhow!("AUTHLEDGER_MAIL_FROM is not a mailbox: {e}"))?,
                public_url: settings.public_url.clone(),
                prefetch: settings.mail_concurrency.max(1),
                max_attempts: settings.mail_attempts.max(1),
                retry_base: settings.mail_retry_base,
            },
            clock,
            mail_metrics.clone(),
        )?;
        Ok(Self {
            users: Projector::new(pool.clone(), UsersProjection),
            audit_index: Projector::new(pool.clone(), AuditIndex),
            // Small batches: the relay holds its checkpoint row while it
            // waits for RabbitMQ's confirms.
            relay: Projector::new(pool, EmailRelay::new(publisher)).with_batch_size(50),
            worker,
            mail_metrics,
        })
    }

    /// What the worker counted, for `/metrics`.
    pub fn mail_metrics(&self) -> &MailMetrics {
        &self.mail_metrics
    }

    /// Runs the projectors (read models and relay) until `shutdown` flips.
    pub fn spawn_projections(
        self: &Arc<Self>,
        shutdown: &watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let users = {
            let this = self.clone();
            let stop = stopped(shutdown.clone());
            tokio::spawn(async move { this.users.run(stop).await })
        };
        let relay = {
            let this = self.clone();
            let stop = stopped(shutdown.clone());
            tokio::spawn(async move { this.relay.run(stop).await })
        };
        let audit_index = {
            let this = self.clone();
            let stop = stopped(shutdown.clone());
            tokio::spawn(async move { this.audit_index.run(stop).await })
        };
        vec![users, audit_index, relay]
    }

    /// Runs the email worker until `shutdown` flips.
    pub fn spawn_worker(self: &Arc<Self>, shutdown: &watch::Receiver<bool>) -> JoinHandle<()> {
        let this = self.clone();
        let stop = stopped(shutdown.clone());
        tokio::spawn(async move { this.worker.run(stop).await })
    }
}

/// Completes once the value in `shutdown` is true.
pub async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::cookies_need_secure;

    #[test]
    fn cookies_are_secure_except_on_plain_http_loopback() {
        assert!(cookies_need_secure("https://auth.example.com").unwrap());
        assert!(cookies_need_secure("HTTPS://auth.example.com").unwrap());
        assert!(!cookies_need_secure("http://127.0.0.1:8080").unwrap());
        assert!(!cookies_need_secure("http://localhost:8080/").unwrap());
        assert!(!cookies_need_secure("http://[::1]:8080").unwrap());
        assert!(cookies_need_secure("http://auth.example.com").is_err());
        assert!(cookies_need_secure("http://127.0.0.1.example.com").is_err());
        assert!(cookies_need_secure("ftp://127.0.0.1").is_err());
    }
}
