//! The Postgres pool and migrations. SQL schema lives in `migrations/`.
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Session settings for every connection of ours. A transaction left idle
/// holds back the snapshot xmin that projectors read below, cluster-wide.
pub fn configure(options: PgConnectOptions) -> PgConnectOptions {
    options.application_name("authledger").options([
        ("idle_in_transaction_session_timeout", "10s"),
        ("statement_timeout", "30s"),
    ])
}

/// A pool of at most `max_connections`, opened only as needed and closed
/// after `idle_timeout` unused: several processes share one Postgres, and
/// an idle process should not hold what a busy one needs.
pub fn pool_options(max_connections: u32, idle_timeout: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .min_connections(0)
        .idle_timeout(idle_timeout)
        .acquire_timeout(Duration::from_secs(5))
}

pub async fn connect(
    url: &str,
    max_connections: u32,
    idle_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    pool_options(max_connections, idle_timeout)
        .connect_with(configure(options))
        .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
