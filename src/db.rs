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
        // Our queries are short lookups by key; the planner overestimates
        // the rows of a range over the global order by two orders of
        // magnitude, and compiling such a query took 20 times longer than
        // running it (a Merkle tree batch: 220 ms against 12 ms).
        ("jit", "off"),
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
    pool_options(max_connections, idle_timeout)
        .connect_with(configure(connect_options(url)?))
        .await
}

/// The options of `url`. Unless it (or `PGSSLMODE`) says how, a Postgres on
/// this host is reached without TLS: the traffic never leaves the machine,
/// and `prefer` (encrypt whenever the server offers it) cost a quarter of
/// the throughput of introspection there. Any other host keeps `prefer`.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let chosen = url.contains("sslmode=")
        || url.contains("ssl-mode=")
        || std::env::var_os("PGSSLMODE").is_some();
    let host = options.get_host();
    let here = host.eq_ignore_ascii_case("localhost")
        || host.starts_with('/')
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    Ok(if here && !chosen {
        options.ssl_mode(sqlx::postgres::PgSslMode::Disable)
    } else {
        options
    })
}

/// As [`connect`], but a database that does not exist yet is created
/// first, so that a first start needs no `createdb`. Only then is
/// Postgres's maintenance database touched (a role that may not create
/// databases gets Postgres's own refusal).
pub async fn connect_or_create(
    url: &str,
    max_connections: u32,
    idle_timeout: Duration,
) -> anyhow::Result<PgPool> {
    match connect(url, max_connections, idle_timeout).await {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNDEFINED_DATABASE) => {
            use sqlx::migrate::MigrateDatabase;

            match sqlx::Postgres::create_database(url).await {
                Ok(()) => tracing::info!("created the database of DATABASE_URL"),
                // Another process starting at the same time made it first.
                Err(sqlx::Error::Database(e))
                    if matches!(
                        e.code().as_deref(),
                        Some(DUPLICATE_DATABASE | UNIQUE_VIOLATION)
                    ) => {}
                Err(e) => anyhow::bail!("creating the database of DATABASE_URL: {e}"),
            }
            Ok(connect(url, max_connections, idle_timeout).await?)
        }
        connected => Ok(connected?),
    }
}

/// SQLSTATE `invalid_catalog_name`: the database named does not exist.
const UNDEFINED_DATABASE: &str = "3D000";
/// SQLSTATE `duplicate_database`, and `unique_violation`, which two
/// concurrent `CREATE DATABASE` of one name can also meet.
const DUPLICATE_DATABASE: &str = "42P04";
const UNIQUE_VIOLATION: &str = "23505";

/// The queue prefix this database was given by its migrations: its own,
/// or `authledger` for a database that held events before there was one.
pub async fn installation_prefix(pool: &PgPool) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT amqp_prefix FROM installation")
        .fetch_one(pool)
        .await
}

/// The migration that sealed personal data and made ids random.
const IDENTITY_MIGRATION: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "this database holds events written before personal data was sealed (event version 1): \
         their addresses are in plain text and their user ids derive from addresses, so they \
         cannot be erased or changed. This version does not open it. Export its history with \
         the version that wrote it (`authledger audit export`), keep that with its server key, \
         and start this version on a new database"
    )]
    UnsealedHistory,
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Query(#[from] sqlx::Error),
}

/// Applies the pending migrations, refusing a database whose history was
/// written before personal data was sealed: its addresses could never be
/// erased, and its ids would break every lookup.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    if written_before_sealing(pool).await? {
        return Err(MigrateError::UnsealedHistory);
    }
    MIGRATOR.run(pool).await?;
    Ok(())
}

async fn written_before_sealing(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let events_exist: bool = sqlx::query_scalar("SELECT to_regclass('public.events') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !events_exist {
        return Ok(false);
    }
    let tracked: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    if tracked {
        let applied: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM _sqlx_migrations WHERE version = $1)")
                .bind(IDENTITY_MIGRATION)
                .fetch_one(pool)
                .await?;
        if applied {
            return Ok(false);
        }
    }
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE event_version = '1')")
        .fetch_one(pool)
        .await
}

#[cfg(test)]
mod tests {
    use sqlx::postgres::PgSslMode;

    use super::*;

    fn mode(url: &str) -> PgSslMode {
        connect_options(url).unwrap().get_ssl_mode()
    }

    #[test]
    fn tls_is_left_out_only_for_this_host_and_only_unless_asked_for() {
        assert!(matches!(
            mode("postgres://u@127.0.0.1:5432/a"),
            PgSslMode::Disable
        ));
        assert!(matches!(
            mode("postgres://u@localhost/a"),
            PgSslMode::Disable
        ));
        assert!(matches!(
            mode("postgres://u@[::1]:5432/a"),
            PgSslMode::Disable
        ));
        assert!(matches!(
            mode("postgres://u@127.0.0.1/a?sslmode=require"),
            PgSslMode::Require
        ));
        assert!(matches!(
            mode("postgres://u@db.internal/a"),
            PgSslMode::Prefer
        ));
        assert!(matches!(
            mode("postgres://u@db.internal/a?sslmode=verify-full"),
            PgSslMode::VerifyFull
        ));
    }
}
