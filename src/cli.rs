//! The `authledger` command line.
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use authledger_projections::users::UsersProjection;
use authledger_projections::Projector;
use clap::Parser;
use tokio::sync::watch;

use crate::config::{Cli, Command, ProjectionsCommand, ServeArgs};
use crate::keys::MasterKey;
use crate::startup::{default_hashing_threads, shutdown_signal, Application, Pipeline, Settings};
use crate::{db, telemetry};

/// What a long-running process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    Worker,
    All,
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let result = match cli.command {
        Some(Command::Migrate(args)) => migrate(&args.database_url, args.db_max_connections).await,
        Some(Command::Serve(args)) => run_mode(args, Mode::Serve).await,
        Some(Command::Worker(args)) => run_mode(args, Mode::Worker).await,
        Some(Command::All(args)) => run_mode(args, Mode::All).await,
        Some(Command::Projections(command)) => projections(command).await,
        None => match Cli::try_parse_from(["authledger", "all"]) {
            Ok(Cli {
                command: Some(Command::All(args)),
            }) => run_mode(args, Mode::All).await,
            _ => Err(anyhow::anyhow!("could not build the default configuration")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "authledger stopped");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(url: &str, max_connections: u32) -> anyhow::Result<()> {
    let pool = db::connect(url, max_connections).await?;
    db::migrate(&pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn projections(command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::Status(database) => {
            let pool = db::connect(&database.database_url, 2).await?;
            println!(
                "{:<14} {:>12} {:>12} {:>12}  updated",
                "projection", "position", "lag events", "lag seconds"
            );
            let statuses = authledger_projections::status(&pool).await.map_err(|e| {
                e.context("reading projection checkpoints (has `authledger migrate` run?)")
            })?;
            for p in statuses {
                println!(
                    "{:<14} {:>12} {:>12} {:>12.1}  {}",
                    p.name,
                    p.position,
                    p.lag_events,
                    p.lag_seconds,
                    p.updated_at.to_rfc3339()
                );
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { name, database } => {
            let pool = db::connect(&database.database_url, 2).await?;
            db::migrate(&pool).await?;
            let applied = match name.as_str() {
                authledger_projections::users::NAME => {
                    Projector::new(pool, UsersProjection).rebuild().await?
                }
                authledger_projections::email_relay::NAME => anyhow::bail!(
                    "the email relay cannot be rebuilt: replaying it would mail every notice again"
                ),
                other => anyhow::bail!("no projection named {other:?}; projections: users"),
            };
            println!("rebuilt {name} from {applied} events");
            Ok(())
        }
    }
}

fn settings(args: &ServeArgs, master_key: MasterKey) -> Settings {
    Settings {
        addr: args.addr,
        public_url: args.public_url.clone(),
        master_key,
        issuer: args.issuer.clone(),
        snapshot_every: args.snapshot_every,
        argon2_memory_kib: args.hashing.argon2_memory_kib,
        argon2_iterations: args.hashing.argon2_iterations,
        argon2_parallelism: args.hashing.argon2_parallelism,
        hashing_threads: args
            .hashing
            .hashing_threads
            .unwrap_or_else(default_hashing_threads),
        sign_in_failure_floor: Duration::from_millis(args.hashing.sign_in_failure_floor_ms),
        policy: args.policy.policy(),
        amqp_url: args.mail.amqp_url.clone(),
        amqp_prefix: args.mail.amqp_prefix.clone(),
        smtp_url: args.mail.smtp_url.clone(),
        mail_from: args.mail.mail_from.clone(),
        mail_attempts: args.mail.mail_attempts,
        mail_retry_base: Duration::from_millis(args.mail.mail_retry_base_ms),
        amqp_queue_expiry: None,
    }
}

fn master_key(args: &ServeArgs) -> anyhow::Result<MasterKey> {
    if let Some(key) = args.secret_key.clone() {
        return Ok(key);
    }
    let key = MasterKey::load_or_create(&args.key_file)?;
    tracing::warn!(
        key_file = %args.key_file.display(),
        "NO AUTHLEDGER_SECRET_KEY IS SET: using a development key kept in a local file. \
         Anyone who reads that file can forge tokens and open sealed secrets. \
         Set AUTHLEDGER_SECRET_KEY in production."
    );
    Ok(key)
}

async fn run_mode(args: ServeArgs, mode: Mode) -> anyhow::Result<()> {
    let master_key = master_key(&args)?;
    let pool = db::connect(
        &args.database.database_url,
        args.database.db_max_connections,
    )
    .await?;
    if !args.no_migrate {
        db::migrate(&pool).await?;
    }
    let settings = settings(&args, master_key);
    let pipeline = Arc::new(Pipeline::new(&settings, pool.clone())?);
    let (stop, stopping) = watch::channel(false);
    let mut tasks = Vec::new();
    if mode != Mode::Worker {
        tasks.extend(pipeline.spawn_projections(&stopping));
    }
    if mode != Mode::Serve {
        tasks.push(pipeline.spawn_worker(&stopping));
    }
    if mode == Mode::Worker {
        tracing::info!("authledger worker running");
        shutdown_signal().await;
    } else {
        let app = Application::build(settings, pool).await?;
        tracing::info!(addr = %app.local_addr()?, ?mode, "authledger listening");
        app.run_until(shutdown_signal()).await?;
    }
    // In-flight requests are drained; now let the background tasks finish
    // what they hold (a batch, a mail being sent and acked).
    let _ = stop.send(true);
    let drained = tokio::time::timeout(
        Duration::from_secs(15),
        futures_util::future::join_all(tasks),
    )
    .await;
    if drained.is_err() {
        tracing::warn!("background tasks did not stop within 15 s");
    }
    Ok(())
}
