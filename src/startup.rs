//! Builds the application from its configuration and runs it until stopped.
use std::net::SocketAddr;
use std::sync::Arc;

use authledger_aggregates::{Clock, UserAuthServices};
use authledger_projections::audit_index::AuditIndex;
use authledger_projections::email_relay::EmailRelay;
use authledger_projections::mail::Publisher;
use authledger_projections::users::UsersProjection;
use authledger_projections::Projector;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::config::Config;
use crate::http::{router, serve, ApiContext, ConnectionLimits, RateLimits};
use crate::keys::Keyring;
use crate::metrics::MailMetrics;
use crate::services::{Argon2Hasher, HashingQueue, OsRandomness};
use crate::tokens::TokenCodec;
use crate::worker::{Worker, WorkerSettings};

/// The process's parts, wired once from the configuration: the use cases,
/// and the log's consumers. Both read time from `clock`.
pub fn wire(
    config: &Config,
    pool: PgPool,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(App, Pipeline)> {
    let keyring = Arc::new(Keyring::new(&config.master_key()?));
    let hashing = hashing_queue(config);
    let services = services(config, keyring.clone(), clock.clone(), hashing.clone())?;
    let mail_metrics = MailMetrics::default();
    let pipeline = Pipeline::new(
        config,
        pool.clone(),
        keyring.clone(),
        clock,
        mail_metrics.clone(),
    )?;
    let app = App::new(config, pool, keyring, services, mail_metrics, hashing)?;
    Ok((app, pipeline))
}

/// The use cases alone, for a command line that runs one of them and sends
/// no mail.
pub fn app(config: &Config, pool: PgPool, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
    let keyring = Arc::new(Keyring::new(&config.master_key()?));
    let hashing = hashing_queue(config);
    let services = services(config, keyring.clone(), clock, hashing.clone())?;
    App::new(
        config,
        pool,
        keyring,
        services,
        MailMetrics::default(),
        hashing,
    )
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
    connections: ConnectionLimits,
}

impl Application {
    /// Binds the configured address (port 0 picks a free port).
    pub async fn build(config: &Config, app: App) -> anyhow::Result<Self> {
        let secure_cookies = cookies_need_secure(&config.public_url)?;
        let listener = TcpListener::bind(config.addr).await?;
        let limits = Arc::new(RateLimits::new(&config.limits, app.clock().clone()));
        Ok(Self {
            listener,
            context: ApiContext {
                app,
                secure_cookies,
                limits,
                body_read_timeout: config.connections.body_read_timeout(),
            },
            connections: ConnectionLimits::from(&config.connections),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = self.context.limits.clone();
        let forgetting = tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every.tick().await;
                limits.forget_idle_clients();
            }
        });
        let served = serve(
            self.listener,
            router(self.context),
            self.connections,
            shutdown,
        )
        .await;
        forgetting.abort();
        served
    }
}

fn hashing_queue(config: &Config) -> HashingQueue {
    HashingQueue::new(config.hashing.threads(), config.hashing.hashing_queue_max)
}

/// The domain's services, real ones, on `clock`.
fn services(
    config: &Config,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    queue: HashingQueue,
) -> anyhow::Result<UserAuthServices> {
    let hashing = &config.hashing;
    let hasher = Argon2Hasher::new(
        hashing.argon2_memory_kib,
        hashing.argon2_iterations,
        hashing.argon2_parallelism,
        queue,
    )?;
    Ok(UserAuthServices {
        clock,
        randomness: Arc::new(OsRandomness),
        hasher: Arc::new(hasher),
        keeper: keyring,
        policy: config.policy(),
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
    fn new(
        config: &Config,
        pool: PgPool,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        metrics: MailMetrics,
    ) -> anyhow::Result<Self> {
        let mail = &config.mail;
        let topology = mail.topology();
        let publisher = Arc::new(Publisher::new(mail.amqp_url.expose(), topology.clone()));
        // The worker holds a connection per mail in flight, across the SMTP
        // exchange (the advisory lock on its message id): on a pool of its
        // own, a slow SMTP server cannot take the API's connections.
        let worker_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(u32::from(mail.mail_concurrency.max(1)) + 1)
            .connect_lazy_with((*pool.connect_options()).clone());
        let worker = Worker::new(
            worker_pool,
            TokenCodec::new(keyring),
            WorkerSettings {
                amqp_url: mail.amqp_url.clone(),
                topology,
                smtp_url: mail.smtp_url.clone(),
                from: mail
                    .mail_from
                    .parse()
                    .map_err(|e| anyhow::anyhow!("AUTHLEDGER_MAIL_FROM is not a mailbox: {e}"))?,
                public_url: config.public_url.clone(),
                prefetch: mail.mail_concurrency.max(1),
                max_attempts: mail.mail_attempts.max(1),
                retry_base: mail.retry_base(),
            },
            clock,
            metrics.clone(),
        )?;
        Ok(Self {
            users: Projector::new(pool.clone(), UsersProjection),
            audit_index: Projector::new(pool.clone(), AuditIndex),
            // Small batches: the relay holds its checkpoint row while it
            // waits for RabbitMQ's confirms.
            relay: Projector::new(pool, EmailRelay::new(publisher)).with_batch_size(50),
            worker,
            mail_metrics: metrics,
        })
    }

    /// What this process's worker counted.
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
