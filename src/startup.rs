//! Builds the application from its configuration and runs it until stopped.
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use authledger_aggregates::{Clock, UserAuthServices};
use authledger_projections::audit_index::AuditIndex;
use authledger_projections::email_relay::EmailRelay;
use authledger_projections::integration::IntegrationEvents;
use authledger_projections::mail::Publisher;
use authledger_projections::tree::MerkleTree;
use authledger_projections::users::UsersProjection;
use authledger_projections::Projector;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::config::{Config, DevKey};
use crate::http::{router, serve, ApiContext, ConnectionLimits, RateLimits};
use crate::keys::Keyring;
use crate::metrics::{MailMetrics, ProcessMetrics};
use crate::services::{Argon2Hasher, HashingQueue, OsRandomness};
use crate::transparency::HeadSigner;
use crate::worker::{Worker, WorkerSettings};

/// The process's parts, wired once from the configuration: the use cases,
/// and the log's consumers. Both read time from `clock`.
pub fn wire(
    config: &Config,
    pool: PgPool,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(App, Pipeline)> {
    let keyring = Arc::new(config.keyring(DevKey::MayCreate)?);
    let hashing = hashing_queue(config);
    let services = services(config, keyring.clone(), clock.clone(), hashing.clone())?;
    let metrics = ProcessMetrics::default();
    let pipeline = Pipeline::new(
        config,
        pool.clone(),
        keyring.clone(),
        clock,
        metrics.clone(),
    )?;
    let app = App::new(config, pool, keyring, services, metrics, hashing)?;
    Ok((app, pipeline))
}

/// The use cases alone, for a command line that runs one of them and sends
/// no mail.
pub fn app(config: &Config, pool: PgPool, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
    let keyring = Arc::new(config.keyring(DevKey::MustExist)?);
    let hashing = hashing_queue(config);
    let services = services(config, keyring.clone(), clock, hashing.clone())?;
    App::new(
        config,
        pool,
        keyring,
        services,
        ProcessMetrics::default(),
        hashing,
    )
}

/// Whether the console's cookies must be `Secure` (and so may carry the
/// `__Host-` prefix): always, unless users reach the service over plain
/// HTTP on their own machine. Plain HTTP anywhere else would send session
/// cookies in the clear, so it is refused.
fn cookies_need_secure(public_url: &str) -> anyhow::Result<bool> {
    let (scheme, _) = public_url.split_once("://").unwrap_or_default();
    if scheme.eq_ignore_ascii_case("https") {
        return Ok(true);
    }
    if !scheme.eq_ignore_ascii_case("http") {
        anyhow::bail!(
            "AUTHLEDGER_PUBLIC_URL must start with https:// (or http:// on a loopback address)"
        );
    }
    let loopback = crate::config::is_loopback_url(public_url);
    anyhow::ensure!(
        loopback,
        "AUTHLEDGER_PUBLIC_URL is plain http:// on {public_url:?}: browsers would send session cookies unencrypted; use https:// (plain http:// is for loopback addresses only)"
    );
    Ok(false)
}

/// The origin of the public URL as a browser writes it in `Origin`: the
/// scheme and host in lower case, the port only when it is not the scheme's
/// default.
fn origin_of(public_url: &str) -> anyhow::Result<String> {
    let uri: axum::http::Uri = public_url
        .parse()
        .with_context(|| format!("AUTHLEDGER_PUBLIC_URL {public_url:?} is not a URL"))?;
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        anyhow::bail!("AUTHLEDGER_PUBLIC_URL {public_url:?} needs a scheme and a host");
    };
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        _ => 80,
    };
    Ok(match uri.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

pub struct Application {
    listener: TcpListener,
    /// `/metrics` on an address of its own, when configured.
    metrics_listener: Option<TcpListener>,
    /// Whether `/metrics` is served with the API.
    metrics_on_api: bool,
    context: ApiContext,
    connections: ConnectionLimits,
}

impl Application {
    /// Binds the configured address (port 0 picks a free port).
    pub async fn build(config: &Config, app: App) -> anyhow::Result<Self> {
        // The public URL is judged before anything is bound.
        let context = api_context(config, app)?;
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding AUTHLEDGER_ADDR {}", config.addr))?;
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(bind_metrics(addr).await?),
            None => None,
        };
        // The counters answer whoever reads them: on a service users reach,
        // only behind the token or on an address of its own.
        let metrics_on_api = metrics_listener.is_none()
            && (config.metrics_token.is_some()
                || crate::config::is_loopback_url(&config.public_url));
        if metrics_listener.is_none() && !metrics_on_api {
            tracing::warn!(
                "/metrics is not served: set AUTHLEDGER_METRICS_TOKEN, or AUTHLEDGER_METRICS_ADDR to an address only monitoring reaches"
            );
        }
        Ok(Self {
            listener,
            metrics_listener,
            metrics_on_api,
            context,
            connections: ConnectionLimits::from(&config.connections),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served when it has an address of its own.
    pub fn metrics_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.metrics_listener.as_ref().map(TcpListener::local_addr)
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopping) = watch::channel(false);
        let metrics = self.metrics_listener.map(|listener| {
            let app = crate::http::metrics_router(self.context.clone());
            let serving = axum::serve(listener, app).with_graceful_shutdown(stopped(stopping));
            tokio::spawn(async move { serving.await })
        });
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
            router(self.context, self.metrics_on_api),
            self.connections,
            async move {
                shutdown.await;
                let _ = stop.send(true);
            },
        )
        .await;
        forgetting.abort();
        if let Some(metrics) = metrics {
            match metrics.await {
                Ok(result) => result?,
                Err(error) => tracing::warn!(%error, "the metrics listener stopped"),
            }
        }
        served
    }
}

/// What every handler is given, from the configuration.
fn api_context(config: &Config, app: App) -> anyhow::Result<ApiContext> {
    Ok(ApiContext {
        secure_cookies: cookies_need_secure(&config.public_url)?,
        public_origin: origin_of(&config.public_url)?,
        limits: Arc::new(RateLimits::new(&config.limits, app.clock().clone())),
        body_read_timeout: config.connections.body_read_timeout(),
        app,
    })
}

async fn bind_metrics(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding AUTHLEDGER_METRICS_ADDR {addr}"))
}

/// `/metrics` alone on AUTHLEDGER_METRICS_ADDR until `shutdown` completes:
/// what a worker, which serves no API, offers Prometheus.
pub async fn serve_metrics(
    config: &Config,
    app: App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Some(addr) = config.metrics_addr else {
        shutdown.await;
        return Ok(());
    };
    let listener = bind_metrics(addr).await?;
    let context = api_context(config, app)?;
    tracing::info!(%addr, "serving /metrics");
    axum::serve(listener, crate::http::metrics_router(context))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
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

/// The projectors a server runs: `users`, `audit_index`, the email relay,
/// the integration events and the Merkle tree.
const PROJECTORS: u32 = 5;

/// The most Postgres connections each part of a process opens, with this
/// configuration. Each pool opens connections only as it needs them and
/// closes them after `AUTHLEDGER_DB_IDLE_SECS` unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresBudget {
    /// Requests, the MFA reset sweep, `/readyz`, `/metrics`, migrations.
    pub api: u32,
    /// Each projector's NOTIFY listener, held for good, and its batch; and
    /// the tree head signer's one.
    pub projectors: u32,
    /// One per mail in flight, held across the SMTP exchange (the lock on
    /// its message id), and one for the rest.
    pub worker: u32,
}

impl PostgresBudget {
    pub fn of(config: &Config) -> Self {
        Self {
            api: config.database.db_max_connections.max(1),
            projectors: 2 * PROJECTORS + 1,
            worker: u32::from(config.mail.mail_concurrency.max(1)) + 1,
        }
    }
}

/// The event log's consumers: the read models, the email relay, the
/// integration events and the email worker. Each runs as its own task;
/// tests drive them with their `run_once`.
pub struct Pipeline {
    pub users: Projector<UsersProjection>,
    pub audit_index: Projector<AuditIndex>,
    pub relay: Projector<EmailRelay>,
    pub integration: Projector<IntegrationEvents>,
    pub tree: Projector<MerkleTree>,
    pub signer: HeadSigner,
    pub worker: Worker,
    mail_metrics: MailMetrics,
}

impl Pipeline {
    fn new(
        config: &Config,
        pool: PgPool,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        metrics: ProcessMetrics,
    ) -> anyhow::Result<Self> {
        let mail = &config.mail;
        let topology = mail.topology()?;
        let publisher = Arc::new(Publisher::new(mail.amqp_url.expose(), topology.clone()));
        // A connection of its own: a batch of mail waiting for its confirms
        // does not hold up the public stream, nor the other way round.
        let events_publisher = Arc::new(Publisher::new(mail.amqp_url.expose(), topology.clone()));
        let events = IntegrationEvents::new(events_publisher, &topology.events_exchange);
        let budget = PostgresBudget::of(config);
        let idle = config.database.idle_timeout();
        let options = (*pool.connect_options()).clone();
        // The worker holds a connection per mail in flight, across the SMTP
        // exchange (the advisory lock on its message id): on a pool of its
        // own, a slow SMTP server cannot take the API's connections.
        let worker_pool =
            crate::db::pool_options(budget.worker, idle).connect_lazy_with(options.clone());
        // Likewise the relay holds its batch's connection while RabbitMQ
        // confirms, and each projector holds one for its listener: sized
        // for exactly that, they neither starve the API nor are starved.
        let projections_pool =
            crate::db::pool_options(budget.projectors, idle).connect_lazy_with(options);
        let (tree_keyring, tree_clock) = (keyring.clone(), clock.clone());
        let worker = Worker::new(
            worker_pool,
            keyring,
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
                send_timeout: std::time::Duration::from_secs(mail.mail_send_timeout_secs),
            },
            clock,
            metrics.mail.clone(),
        )?;
        let runs = &metrics.projections;
        let retry_max = config.projection_retry_max();
        Ok(Self {
            users: Projector::new(projections_pool.clone(), UsersProjection)
                .with_retry_max(retry_max)
                .with_metrics(runs),
            audit_index: Projector::new(projections_pool.clone(), AuditIndex)
                .with_retry_max(retry_max)
                .with_metrics(runs),
            // Small batches: the relay holds its checkpoint row while it
            // waits for RabbitMQ's confirms.
            relay: Projector::new(projections_pool.clone(), EmailRelay::new(publisher))
                .with_batch_size(50)
                .with_retry_max(retry_max)
                .with_metrics(runs),
            // Likewise waits for RabbitMQ with its batch open.
            integration: Projector::new(projections_pool.clone(), events)
                .with_batch_size(50)
                .with_retry_max(retry_max)
                .with_metrics(runs),
            // Large batches: a batch costs a few statements whatever its size.
            tree: Projector::new(
                projections_pool.clone(),
                crate::integrity::merkle_tree(tree_keyring.clone()),
            )
            .with_batch_size(2000)
            .with_retry_max(retry_max)
            .with_metrics(runs),
            signer: HeadSigner::new(
                projections_pool,
                tree_keyring,
                tree_clock,
                std::time::Duration::from_secs(config.tree_head_secs.max(1)),
                config.tree_heads_dir.clone(),
            ),
            worker,
            mail_metrics: metrics.mail.clone(),
        })
    }

    /// What this process's worker counted.
    pub fn mail_metrics(&self) -> &MailMetrics {
        &self.mail_metrics
    }

    /// Runs the projectors (read models, relay, integration events) until
    /// `shutdown` flips.
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
        let integration = {
            let this = self.clone();
            let stop = stopped(shutdown.clone());
            tokio::spawn(async move { this.integration.run(stop).await })
        };
        let tree = {
            let this = self.clone();
            let stop = stopped(shutdown.clone());
            tokio::spawn(async move { this.tree.run(stop).await })
        };
        let signer = {
            let this = self.clone();
            let stop = stopped(shutdown.clone());
            tokio::spawn(async move { this.signer.run(stop).await })
        };
        vec![users, audit_index, relay, integration, tree, signer]
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
    use super::{cookies_need_secure, origin_of, PostgresBudget};

    #[test]
    fn a_process_of_each_role_fits_a_default_postgres_three_times_over() {
        let config = crate::config::Config::defaults().unwrap();
        let budget = PostgresBudget::of(&config);
        assert_eq!(
            budget,
            PostgresBudget {
                api: 10,
                projectors: 11,
                worker: 9,
            },
            "the figures in docs/operations.md"
        );
        let all = budget.api + budget.projectors + budget.worker;
        assert_eq!(all, 30);
        // Postgres keeps 3 of its default 100 for superusers.
        assert!(3 * all <= 97);
    }

    #[test]
    fn the_public_origin_is_written_as_browsers_send_it() {
        assert_eq!(
            origin_of("https://Auth.Example.com/").unwrap(),
            "https://auth.example.com"
        );
        assert_eq!(
            origin_of("https://auth.example.com:443/console").unwrap(),
            "https://auth.example.com"
        );
        assert_eq!(
            origin_of("https://auth.example.com:8443").unwrap(),
            "https://auth.example.com:8443"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin_of("http://[::1]:8080").unwrap(), "http://[::1]:8080");
        assert!(origin_of("/relative").is_err());
    }

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
