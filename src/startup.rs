//! Builds the application from settings and runs it until stopped.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use authledger_aggregates::{Policy, UserAuthServices};
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::command_bus::CommandBus;
use crate::http::{router, ApiContext, ContextInner};
use crate::keys::{Keyring, MasterKey};
use crate::services::{Argon2Hasher, OsRandomness, SystemClock};
use crate::tokens::TokenCodec;

/// Everything the server needs besides its database pool.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub public_url: String,
    pub master_key: MasterKey,
    pub issuer: String,
    pub snapshot_every: usize,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub hashing_threads: usize,
    pub sign_in_failure_floor: Duration,
    pub policy: Policy,
}

impl Settings {
    /// The documented defaults, with the given key.
    pub fn with_key(master_key: MasterKey) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            master_key,
            issuer: "authledger".into(),
            snapshot_every: 50,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hashing_threads: default_hashing_threads(),
            sign_in_failure_floor: Duration::from_millis(200),
            policy: Policy::default(),
        }
    }
}

pub fn default_hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub struct Application {
    listener: TcpListener,
    context: ApiContext,
}

impl Application {
    /// Binds the listener (port 0 picks a free port) and wires the services.
    pub async fn build(settings: Settings, pool: PgPool) -> anyhow::Result<Self> {
        let keyring = Arc::new(Keyring::new(&settings.master_key));
        let hasher = Argon2Hasher::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            settings.hashing_threads,
        )?;
        let services = UserAuthServices {
            clock: Arc::new(SystemClock),
            randomness: Arc::new(OsRandomness),
            hasher: Arc::new(hasher),
            keeper: keyring.clone(),
            policy: settings.policy.clone(),
        };
        let context = ApiContext::new(ContextInner {
            bus: CommandBus::new(pool.clone(), services, settings.snapshot_every),
            tokens: TokenCodec::new(keyring),
            pool,
            issuer: settings.issuer,
            public_url: settings.public_url,
            sign_in_failure_floor: settings.sign_in_failure_floor,
        });
        let listener = TcpListener::bind(settings.addr).await?;
        Ok(Self { listener, context })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = router(self.context).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
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
