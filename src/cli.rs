//! The `authledger` command line.
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::config::{Cli, Command, ServeArgs};
use crate::keys::MasterKey;
use crate::startup::{default_hashing_threads, shutdown_signal, Application, Settings};
use crate::{db, telemetry};

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let result = match cli.command {
        Some(Command::Migrate(args)) => migrate(&args.database_url, args.db_max_connections).await,
        Some(Command::Serve(args)) | Some(Command::All(args)) => serve(args).await,
        None => match Cli::try_parse_from(["authledger", "all"]) {
            Ok(Cli {
                command: Some(Command::All(args)),
            }) => serve(args).await,
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let master_key = match args.secret_key.clone() {
        Some(key) => key,
        None => {
            let key = MasterKey::load_or_create(&args.key_file)?;
            tracing::warn!(
                key_file = %args.key_file.display(),
                "NO AUTHLEDGER_SECRET_KEY IS SET: using a development key kept in a local file. \
                 Anyone who reads that file can forge tokens and open sealed secrets. \
                 Set AUTHLEDGER_SECRET_KEY in production."
            );
            key
        }
    };
    let pool = db::connect(
        &args.database.database_url,
        args.database.db_max_connections,
    )
    .await?;
    if !args.no_migrate {
        db::migrate(&pool).await?;
    }
    let settings = Settings {
        addr: args.addr,
        public_url: args.public_url,
        master_key,
        issuer: args.issuer,
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
    };
    let app = Application::build(settings, pool).await?;
    tracing::info!(addr = %app.local_addr()?, "authledger listening");
    app.run_until(shutdown_signal()).await?;
    Ok(())
}
