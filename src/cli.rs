//! The `authledger` command line.
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use authledger_projections::audit_index::AuditIndex;
use authledger_projections::users::UsersProjection;
use authledger_projections::Projector;
use clap::Parser;
use tokio::sync::watch;

use crate::app::{AdminAction, BundleScope, Caller, EventFilter, PageSize, Staff};
use crate::config::{
    AdminCommand, AuditCommand, Cli, Command, Config, DatabaseArgs, DevKey, HealthcheckArgs,
    KeysCommand, ProjectionsCommand,
};
use crate::services::SystemClock;
use crate::startup::{app, shutdown_signal, wire, Application, PostgresBudget};
use crate::transparency::{self, TreeHead};
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
        Some(Command::Migrate(args)) => migrate(&args).await,
        Some(Command::Serve(args)) => run_mode(args, Mode::Serve).await,
        Some(Command::Worker(args)) => run_mode(args, Mode::Worker).await,
        Some(Command::All(args)) => run_mode(args, Mode::All).await,
        Some(Command::Projections(command)) => projections(command).await,
        Some(Command::Audit(command)) => audit(command).await,
        Some(Command::Admin(command)) => admin(command).await,
        Some(Command::Keys(command)) => keys(command).await,
        Some(Command::Healthcheck(args)) => healthcheck(&args).await,
        None => match Config::from_env() {
            Ok(config) => run_mode(config, Mode::All).await,
            Err(err) => Err(err),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One sentence for whoever ran the command, not a log line.
            eprintln!("authledger: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Asks the server on this host for `/healthz` over plain HTTP/1.1: what
/// a container health check needs, without an HTTP client in the image.
async fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut addr = args.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let asked = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = vec![0; 64];
        let read = stream.read(&mut head).await?;
        head.truncate(read);
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .with_context(|| format!("no answer from {addr} within 5 s"))?
        .with_context(|| format!("nothing answers at {addr}"))?;
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status_line.starts_with("HTTP/1.1 200"),
        "{addr}/healthz answered {status_line:?}"
    );
    Ok(())
}

async fn migrate(database: &DatabaseArgs) -> anyhow::Result<()> {
    let pool =
        db::connect_or_create(database.database_url.expose(), 1, database.idle_timeout()).await?;
    db::migrate(&pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn projections(command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::Status(database) => {
            let pool =
                db::connect(database.database_url.expose(), 2, database.idle_timeout()).await?;
            println!(
                "{:<18} {:>12} {:>12} {:>12}  updated",
                "projection", "position", "lag events", "lag seconds"
            );
            let statuses = authledger_projections::status(&pool).await.map_err(|e| {
                e.context("reading projection checkpoints (has `authledger migrate` run?)")
            })?;
            for p in statuses {
                println!(
                    "{:<18} {:>12} {:>12} {:>12.1}  {}",
                    p.name,
                    p.position,
                    p.lag_events,
                    p.lag_seconds,
                    p.updated_at.to_rfc3339()
                );
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { name, config } => {
            let database = &config.database;
            let pool =
                db::connect(database.database_url.expose(), 2, database.idle_timeout()).await?;
            db::migrate(&pool).await?;
            let applied = match name.as_str() {
                authledger_projections::users::NAME => {
                    Projector::new(pool, UsersProjection).rebuild().await?
                }
                authledger_projections::audit_index::NAME => {
                    Projector::new(pool, AuditIndex).rebuild().await?
                }
                // The tree is a function of the log: rebuilt, it has the same
                // hashes, and the signed heads stay valid.
                authledger_projections::tree::NAME => {
                    Projector::new(pool, crate::integrity::merkle_tree(Arc::new(config.keyring(DevKey::MustExist)?)))
                        .with_batch_size(2000)
                        .rebuild()
                        .await?
                }
                authledger_projections::email_relay::NAME => anyhow::bail!(
                    "the email relay cannot be rebuilt: replaying it would mail every notice again"
                ),
                authledger_projections::integration::NAME => anyhow::bail!(
                    "the integration events cannot be rebuilt: replaying them would publish every event again to every subscriber"
                ),
                other => {
                    anyhow::bail!("no projection named {other:?}; projections: users, audit_index, merkle_tree")
                }
            };
            println!("rebuilt {name} from {applied} events");
            Ok(())
        }
    }
}

async fn run_mode(mut config: Config, mode: Mode) -> anyhow::Result<()> {
    let budget = PostgresBudget::of(&config);
    // A worker serves no requests: its API pool only runs the migrations.
    let api = if mode == Mode::Worker { 1 } else { budget.api };
    let url = config.database.database_url.expose();
    let idle = config.database.idle_timeout();
    // What runs migrations may also make the database they go into.
    let pool = if config.no_migrate {
        db::connect(url, api, idle).await?
    } else {
        db::connect_or_create(url, api, idle).await?
    };
    let most = match mode {
        Mode::Serve => api + budget.projectors,
        Mode::Worker => api + budget.worker,
        Mode::All => api + budget.projectors + budget.worker,
    };
    tracing::info!(
        most,
        api,
        projectors = budget.projectors,
        worker = budget.worker,
        "Postgres connections this process may open"
    );
    if !config.no_migrate {
        db::migrate(&pool).await?;
    }
    if config.mail.amqp_prefix.is_none() {
        let prefix = db::installation_prefix(&pool).await.context(
            "reading this database's queue prefix (run `authledger migrate`, or set AUTHLEDGER_AMQP_PREFIX)",
        )?;
        config.mail.amqp_prefix = Some(prefix);
    }
    tracing::info!(
        prefix = config.mail.amqp_prefix.as_deref().unwrap_or_default(),
        "RabbitMQ exchanges and queues"
    );
    if transparency::unadopted(&pool).await? {
        anyhow::bail!(
            "the log holds events written before event MACs: stop every server, run `authledger audit adopt` once, and compare the heads digest it prints with the previous version's `authledger audit verify`"
        );
    }
    let dev_key = config.dev_key_file()?;
    let dev_key_was_there = dev_key.as_ref().is_some_and(|path| path.exists());
    let (app, pipeline) = wire(&config, pool, Arc::new(SystemClock))?;
    if let Err(refused) = refuse_foreign_key(&app, &config).await {
        // A development key made just now for a database it cannot open
        // is of no use to anyone: it does not stay behind.
        if let (Some(path), false) = (&dev_key, dev_key_was_there) {
            let _ = std::fs::remove_file(path);
        }
        return Err(refused);
    }
    let pipeline = Arc::new(pipeline);
    let (stop, stopping) = watch::channel(false);
    let mut tasks = Vec::new();
    if mode != Mode::Worker {
        tasks.extend(pipeline.spawn_projections(&stopping));
        tasks.push(spawn_reset_sweep(
            app.clone(),
            Duration::from_secs(config.reset_sweep_secs.max(1)),
            stopping.clone(),
        ));
    }
    if mode != Mode::Serve {
        tasks.push(pipeline.spawn_worker(&stopping));
    }
    if mode == Mode::Worker {
        tracing::info!("authledger worker running");
        if config.metrics_addr.is_some() {
            crate::startup::serve_metrics(&config, app, shutdown_signal()).await?;
        } else {
            shutdown_signal().await;
        }
    } else {
        let server = Application::build(&config, app).await?;
        tracing::info!(addr = %server.local_addr()?, ?mode, "authledger listening");
        server.run_until(shutdown_signal()).await?;
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

/// Carries out due MFA resets every `every` until `shutdown` flips.
fn spawn_reset_sweep(
    app: crate::app::App,
    every: Duration,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stop = crate::startup::stopped(shutdown);
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticks.tick() => {}
            }
            match app.complete_due_mfa_resets().await {
                Ok(0) => {}
                Ok(done) => tracing::info!(done, "pending MFA resets carried out"),
                Err(error) => tracing::warn!(%error, "the MFA reset sweep failed; it runs again"),
            }
        }
    })
}

async fn audit(command: AuditCommand) -> anyhow::Result<()> {
    use std::io::Write;

    use futures_util::StreamExt;

    match command {
        AuditCommand::History { user, json, config } => {
            let app = command_line_app(&config).await?;
            let mut after = None;
            let mut out = std::io::stdout().lock();
            // A table needs every row to size its columns.
            let mut rows = Vec::new();
            loop {
                let page = app
                    .user_history(&user, after, PageSize::parse(Some(PageSize::MAX))?)
                    .await?;
                for e in &page.events {
                    if json {
                        writeln!(out, "{}", serde_json::to_string(e)?)?;
                    } else {
                        rows.push([
                            e.sequence.to_string(),
                            e.occurred_at.to_rfc3339(),
                            e.event_type.clone(),
                            e.actor.clone(),
                            e.client_ip.clone(),
                            e.request_id.clone(),
                        ]);
                    }
                }
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            if !json {
                let head = [
                    "seq",
                    "occurred at",
                    "event",
                    "actor",
                    "client ip",
                    "request",
                ];
                write!(out, "{}", table(&head, &rows))?;
            }
            Ok(())
        }
        AuditCommand::State {
            user,
            at,
            json,
            config,
        } => {
            let app = command_line_app(&config).await?;
            let (id, at, state, authenticators) = app.user_state(&user, at).await?;
            let authenticators: Vec<serde_json::Value> = authenticators
                .iter()
                .map(|a| serde_json::json!({"id": a.id, "kind": a.kind, "name": a.name, "added_at": a.added_at, "last_used_at": a.last_used_at, "credential_id": a.credential_id, "suspected_copy_at": a.suspected_copy_at}))
                .collect();
            let sessions: Vec<serde_json::Value> = state
                .live_sessions
                .iter()
                .map(|s| serde_json::json!({"method": s.method, "aal": s.aal, "started_at": s.started_at, "expires_at": s.expires_at}))
                .collect();
            let view = serde_json::json!({
                "user_id": id, "at": at, "registered": state.registered,
                "erased": state.erased,
                "mfa_enrolled": state.enrolled_at.is_some(), "mfa_enrolled_at": state.enrolled_at,
                "recovery_code_present": state.recovery_code_present, "locked": state.locked,
                "email_verified": state.email_verified, "pending_mfa_reset_at": state.pending_mfa_reset,
                "throttled_until": state.throttled_until, "consecutive_failures": state.consecutive_failures,
                "authenticators": authenticators,
                "live_sessions": sessions,
            });
            if json {
                println!("{view}");
            } else if let Some(fields) = view.as_object() {
                for (key, value) in fields {
                    println!("{key:<24} {value}");
                }
            }
            Ok(())
        }
        AuditCommand::Export {
            since,
            until,
            signed: true,
            user,
            config,
        } => {
            let app = command_line_app(&config).await?;
            let scope = match user {
                Some(user) => BundleScope::User(user),
                None if since.is_some() || until.is_some() => BundleScope::Period { since, until },
                None => BundleScope::All,
            };
            let (head, label, events) = app.signed_bundle(scope).await?;
            let mut events = Box::pin(events);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            // Written as it streams: a bundle of the whole log need not fit
            // in memory.
            write!(
                out,
                "{{\"format\":{},\"scope\":{},\"tree_head\":{},\"events\":[",
                serde_json::to_string(crate::transparency::BUNDLE_FORMAT)?,
                serde_json::to_string(&label)?,
                serde_json::to_string(&head)?
            )?;
            let mut count = 0u64;
            while let Some(event) = events.next().await {
                if count > 0 {
                    out.write_all(b",")?;
                }
                out.write_all(b"\n")?;
                serde_json::to_writer(&mut out, &event?)?;
                count += 1;
            }
            out.write_all(b"\n]}\n")?;
            out.flush()?;
            eprintln!(
                "exported {count} events with their proofs under the tree head of size {}",
                head.tree_size
            );
            Ok(())
        }
        AuditCommand::Export {
            since,
            until,
            config,
            ..
        } => {
            let app = command_line_app(&config).await?;
            let filter = EventFilter {
                since,
                until,
                ..EventFilter::default()
            };
            let mut events = Box::pin(app.events_stream(filter)?);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut count = 0u64;
            while let Some(event) = events.next().await {
                serde_json::to_writer(&mut out, &event?)?;
                out.write_all(b"\n")?;
                count += 1;
                if count.is_multiple_of(10_000) {
                    eprintln!("exported {count} events");
                }
            }
            out.flush()?;
            eprintln!("exported {count} events");
            Ok(())
        }
        AuditCommand::Verify {
            heads,
            public_key,
            config,
        } => {
            let keyring = config.keyring(DevKey::MustExist)?;
            let given_key = public_key
                .as_deref()
                .map(transparency::decode_public_key)
                .transpose()?;
            let mut saved = Vec::new();
            // The heads the servers wrote outside the database, too.
            if let Some(dir) = &config.tree_heads_dir {
                for head in transparency::saved_heads(dir)? {
                    let key = keyring.tree_public_key(&head.key_id).or(given_key);
                    match key {
                        Some(key) => saved.push((head, key)),
                        None => anyhow::bail!(
                            "the head of size {} in {} is signed with key {}, which this server does not hold: pass --public-key",
                            head.tree_size,
                            dir.display(),
                            head.key_id
                        ),
                    }
                }
            }
            for path in &heads {
                let head: TreeHead = serde_json::from_slice(&std::fs::read(path)?)
                    .map_err(|e| anyhow::anyhow!("{} is not a tree head: {e}", path.display()))?;
                let key = match given_key {
                    Some(key) => key,
                    None => keyring
                        .tree_public_key(&head.key_id)
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "{} is signed with key {}, which this server does not hold: pass --public-key",
                                path.display(),
                                head.key_id
                            )
                        })?,
                };
                saved.push((head, key));
            }
            let pool = db::connect(
                config.database.database_url.expose(),
                2,
                config.database.idle_timeout(),
            )
            .await?;
            let found = transparency::verify_log(&pool, &keyring, &saved, |n| {
                eprintln!("checked {n} events")
            })
            .await?;
            for finding in &found.findings {
                println!("BROKEN: {}: {}", finding.what, finding.reason);
            }
            if found.findings.is_empty() {
                let heads: Vec<String> = found.heads_checked.iter().map(u64::to_string).collect();
                println!(
                    "intact: {} events in {} streams, each hash chain and MAC holds; {} snapshots hold; the events match the signed tree heads at sizes [{}]",
                    found.events,
                    found.streams,
                    found.snapshots,
                    heads.join(", ")
                );
                Ok(())
            } else {
                anyhow::bail!("the log is not intact: {} problem(s)", found.findings.len())
            }
        }
        AuditCommand::VerifyBundle { file, public_key } => {
            let key = transparency::decode_public_key(&public_key)?;
            let bundle: transparency::Bundle = serde_json::from_slice(&std::fs::read(&file)?)
                .map_err(|e| anyhow::anyhow!("{} is not a bundle: {e}", file.display()))?;
            let check = transparency::verify_bundle(&bundle, &key);
            for problem in &check.problems {
                println!("BROKEN: {problem}");
            }
            if check.problems.is_empty() {
                println!(
                    "intact: {} events ({}) are in the tree head of size {} signed at {}",
                    check.events,
                    bundle.scope,
                    bundle.tree_head.tree_size,
                    bundle.tree_head.timestamp.to_rfc3339()
                );
                Ok(())
            } else {
                anyhow::bail!(
                    "the bundle does not verify: {} problem(s)",
                    check.problems.len()
                )
            }
        }
        AuditCommand::Adopt { config } => {
            let pool = db::connect(
                config.database.database_url.expose(),
                2,
                config.database.idle_timeout(),
            )
            .await?;
            let done =
                transparency::adopt_unsealed_events(&pool, &config.keyring(DevKey::MustExist)?)
                    .await?;
            println!(
                "gave {} events in {} streams their MAC; every hash chain held\nheads digest: {}",
                done.events, done.streams, done.heads_digest
            );
            Ok(())
        }
        AuditCommand::PublicKey { config } => {
            let app = command_line_app(&config).await?;
            for key in app.tree_public_keys() {
                let note = if key.current { "  (current)" } else { "" };
                println!("{}  ed25519  {}{note}", key.key_id, key.public_key);
            }
            Ok(())
        }
        AuditCommand::TreeHead { config } => {
            let app = command_line_app(&config).await?;
            let head = app.sign_tree_head().await?;
            println!("{}", serde_json::to_string_pretty(&head)?);
            Ok(())
        }
    }
}

/// The use cases, for a command that runs one of them and sends no mail.
async fn command_line_app(config: &Config) -> anyhow::Result<crate::app::App> {
    let pool = db::connect(
        config.database.database_url.expose(),
        2,
        config.database.idle_timeout(),
    )
    .await?;
    app(config, pool, Arc::new(SystemClock))
}

/// Stops a server whose keys open none of the accounts already stored (a
/// development key made in another directory, a mistyped secret key): it
/// would seal new secrets under a key nothing else holds. Accounts it
/// cannot open beside others it can are a key removed too early, or a
/// partial restore: the server runs for the others and says so.
async fn refuse_foreign_key(app: &crate::app::App, config: &Config) -> anyhow::Result<()> {
    let keys = app.data_keys_held().await?;
    let Some(missing) = &keys.missing else {
        return Ok(());
    };
    if !keys.opens_none() {
        tracing::warn!(
            accounts = keys.unheld,
            key = %missing,
            "accounts whose data key needs a server key this process does not hold cannot sign in; `authledger keys status` lists what needs each key"
        );
        return Ok(());
    }
    let ours = match config.dev_key_file()? {
        Some(path) => format!("the development key at {}", path.display()),
        None => "AUTHLEDGER_SECRET_KEY(S)".to_owned(),
    };
    anyhow::bail!(
        "the database's accounts need server key {missing}, and {ours} is another: start with the key that wrote them (AUTHLEDGER_SECRET_KEY, or AUTHLEDGER_SECRET_KEYS while rotating)"
    )
}

fn command_line_caller(what: &str) -> Caller {
    Caller {
        request_id: uuid::Uuid::new_v4().to_string(),
        client_request_id: None,
        client_ip: "local".into(),
        user_agent: what.into(),
    }
}

async fn admin(command: AdminCommand) -> anyhow::Result<()> {
    #[derive(PartialEq)]
    enum Act {
        Reset,
        Unlock,
        Erase,
    }
    let (user, reason, config, act) = match command {
        AdminCommand::ResetMfa {
            user,
            reason,
            config,
        } => (user, reason, config, Act::Reset),
        AdminCommand::Unlock {
            user,
            reason,
            config,
        } => (user, reason, config, Act::Unlock),
        AdminCommand::Erase {
            user,
            reason,
            config,
        } => (user, reason, config, Act::Erase),
    };
    let app = command_line_app(&config).await?;
    let caller = command_line_caller("authledger admin");
    let admin = Staff::command_line(&std::env::var("USER").unwrap_or_default());
    let sessions_ended = match act {
        Act::Reset => app
            .admin_act(&caller, &admin, &user, AdminAction::ResetMfa, &reason)
            .await
            .map(|done| done.sessions_ended),
        Act::Unlock => app
            .admin_act(&caller, &admin, &user, AdminAction::Unlock, &reason)
            .await
            .map(|done| done.sessions_ended),
        Act::Erase => app.admin_erase(&caller, &admin, &user, &reason).await,
    }
    .map_err(|err| anyhow::anyhow!(err))?;
    if act == Act::Erase {
        println!("erased {user}: {sessions_ended} session(s) ended");
    } else {
        println!("done for {user}: {sessions_ended} session(s) ended");
    }
    Ok(())
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let (config, rotate) = match command {
        KeysCommand::Rotate { config } => (config, true),
        KeysCommand::Status { config } => (config, false),
    };
    let app = command_line_app(&config).await?;
    let remaining = if rotate {
        let report = app.rotate_keys().await?;
        println!(
            "newest key {}: {} data key(s) wrapped again, {} secret(s) of {} account(s) sealed again, {} address index(es) computed again, {} event MAC(s) of {} stream(s) made again",
            report.current_key,
            report.data_keys_rewrapped,
            report.secrets_resealed,
            report.accounts_resealed,
            report.addresses_reindexed,
            report.events_resealed,
            report.streams_resealed
        );
        for (user, why) in &report.failures {
            println!("not moved: user {user}: {why}");
        }
        report.remaining
    } else {
        app.key_uses().await?
    };
    if remaining.is_empty() {
        println!(
            "nothing stored depends on an older key; it can be removed once the links and sessions signed with it have expired"
        );
    }
    for used in remaining {
        println!(
            "key {} still wraps {} data key(s), indexes {} address(es) and {} held address(es), and made the MACs of {} event(s)",
            used.key_id, used.data_keys, used.addresses, used.held_addresses, used.event_macs
        );
    }
    Ok(())
}

/// Rows under a header, each column as wide as its widest cell (the first
/// right-aligned: it holds numbers), two spaces apart.
fn table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = head.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; N]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = " ".repeat(width - cell.chars().count());
            if i == 0 {
                text.push_str(&pad);
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if i + 1 < N {
                    text.push_str(&pad);
                }
            }
        }
        out.push_str(&text);
        out.push('\n');
    };
    line(*head);
    for row in rows {
        line(std::array::from_fn(|i| row[i].as_str()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn a_table_sizes_each_column_to_its_widest_cell() {
        let rows = [
            [
                "1".to_owned(),
                "RegisteredWithPassword".to_owned(),
                "user".to_owned(),
            ],
            ["12".to_owned(), "Mfa".to_owned(), "admin:3f2a9c".to_owned()],
        ];
        assert_eq!(
            table(&["seq", "event", "actor"], &rows),
            "seq  event                   actor\n  \
               1  RegisteredWithPassword  user\n \
               12  Mfa                     admin:3f2a9c\n"
        );
    }
}
