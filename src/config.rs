//! Configuration from environment variables and the matching flags, parsed
//! once into a `Config`. Every default is written here and nowhere else;
//! they match docker-compose.yml and a local Postgres.
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use anyhow::Context;
use authledger_aggregates::Policy;
use chrono::Duration;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use ipnet::IpNet;

use crate::keys::{Keyring, MasterKey};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/authledger";
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

#[derive(Debug, Parser)]
#[command(
    name = "authledger",
    version,
    about = "Event-sourced authentication with mandatory MFA"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(Config),
    /// The email worker: sends the mail the relay publishes.
    Worker(Config),
    /// API, projectors, relay and worker in one process; the default for
    /// development.
    All(Config),
    /// Inspect or rebuild projections.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Read the MFA history, as an auditor, without HTTP access.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Admin commands, without HTTP access.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Server key rotation.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Apply pending database migrations, then exit.
    Migrate(DatabaseArgs),
    /// Exit 0 when this host's server answers `/healthz`, for container
    /// health checks in images without curl.
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The server's listen address; an unspecified one (0.0.0.0, ::) is
    /// asked on loopback.
    #[arg(long, env = "AUTHLEDGER_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ProjectionsCommand {
    /// Each projection's position and lag.
    Status(DatabaseArgs),
    /// Empty a read model and replay the whole log into it.
    Rebuild {
        /// The projection: `users`, `audit_index` or `merkle_tree`.
        name: String,
        /// The server keys: the tree checks each event's MAC.
        #[command(flatten)]
        config: Config,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// A user's events, oldest first, with who asked and from where.
    History {
        /// User id or email.
        #[arg(long)]
        user: String,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// The server keys open the personal data in the history.
        #[command(flatten)]
        config: Config,
    },
    /// A user's MFA state at an instant.
    State {
        #[arg(long)]
        user: String,
        /// RFC 3339, e.g. 2026-03-01T09:00:00Z (default: now).
        #[arg(long, value_parser = instant)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: Config,
    },
    /// Every event (or those in a period) as NDJSON on standard output; or,
    /// with `--signed`, a bundle anyone can verify offline.
    Export {
        /// Events that occurred (with `--signed`: were stored) at or after
        /// this instant (RFC 3339).
        #[arg(long, value_parser = instant)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Events that occurred (with `--signed`: were stored) before this
        /// instant (RFC 3339).
        #[arg(long, value_parser = instant)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Write one JSON bundle: a tree head signed now, and each event as
        /// stored with its inclusion proof under that head.
        #[arg(long)]
        signed: bool,
        /// With `--signed`: only this user's events (id or email).
        #[arg(long, requires = "signed", conflicts_with_all = ["since", "until"])]
        user: Option<String>,
        #[command(flatten)]
        config: Config,
    },
    /// Checks the stored log: every stream's hash chain and MACs, every
    /// snapshot's MAC, and the events against the newest signed tree head
    /// and any saved ones. Names each problem; exits non-zero if any.
    Verify {
        /// A tree head saved earlier (JSON, as `/v1/audit/checkpoints`
        /// serves it); may be given several times.
        #[arg(long = "head", value_name = "FILE")]
        heads: Vec<std::path::PathBuf>,
        /// The public key (base64) the saved heads are checked with
        /// (default: the server's own keys).
        #[arg(long)]
        public_key: Option<String>,
        #[command(flatten)]
        config: Config,
    },
    /// Checks a bundle from `export --signed` with the public key alone: no
    /// database, no secret.
    VerifyBundle {
        file: std::path::PathBuf,
        /// The Ed25519 public key, base64, as `audit public-key` prints it.
        #[arg(long)]
        public_key: String,
    },
    /// Once, when upgrading a log written before event MACs: checks every
    /// stream's hash chain, gives each of those events its MAC, and prints
    /// the heads digest to compare with the previous version's `verify`.
    Adopt {
        #[command(flatten)]
        config: Config,
    },
    /// Prints the public keys tree heads are signed with, the current first.
    PublicKey {
        #[command(flatten)]
        config: Config,
    },
    /// Signs a tree head over the whole log now and prints it, to keep.
    TreeHead {
        #[command(flatten)]
        config: Config,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Forget a user's authenticator and recovery code; end every session.
    ResetMfa {
        #[arg(long)]
        user: String,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        config: Config,
    },
    /// Unlock a locked or throttled account.
    Unlock {
        #[arg(long)]
        user: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        config: Config,
    },
    /// Erase an account: its personal data becomes unreadable, its address
    /// free, its sessions end; its history stays, showing "erased".
    Erase {
        #[arg(long)]
        user: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        config: Config,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Move everything current onto the newest key of
    /// AUTHLEDGER_SECRET_KEYS and report what still needs an older one.
    Rotate {
        #[command(flatten)]
        config: Config,
    },
    /// Report what still needs a key other than the newest.
    Status {
        #[command(flatten)]
        config: Config,
    },
}

/// An instant on the command line, with the format said when it is not one.
fn instant(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&chrono::Utc))
        .map_err(|_| "expected an instant in RFC 3339, e.g. 2026-03-01T09:00:00Z".to_owned())
}

fn amqp_prefix(raw: &str) -> Result<String, String> {
    let fits = (1..=100).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if fits {
        Ok(raw.to_owned())
    } else {
        Err("expected 1 to 100 letters, digits, '_', '.' or '-'".to_owned())
    }
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: Secret,
    /// Connections in the API's pool: requests, the MFA reset sweep,
    /// `/readyz` and `/metrics`. The projectors and the mail worker have
    /// pools of their own (see docs/operations.md, Postgres connections).
    #[arg(long, env = "AUTHLEDGER_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// A pooled connection unused this long is closed, in every pool, so
    /// an idle process holds only its projectors' listeners.
    #[arg(long, env = "AUTHLEDGER_DB_IDLE_SECS", default_value_t = 60)]
    pub db_idle_secs: u64,
}

impl DatabaseArgs {
    pub fn idle_timeout(&self) -> StdDuration {
        StdDuration::from_secs(self.db_idle_secs.max(1))
    }
}

/// Everything a long-running process (`serve`, `worker`, `all`) and the
/// admin command line are configured with.
#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "AUTHLEDGER_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
    /// The URL users reach this service at; links are built from it, never
    /// from a request's Host header. Its host is also the WebAuthn relying
    /// party, which must be a domain name: `localhost` rather than
    /// `127.0.0.1`, so that security keys and passkeys work out of the box.
    #[arg(
        long,
        env = "AUTHLEDGER_PUBLIC_URL",
        default_value = "http://localhost:8080"
    )]
    pub public_url: String,
    /// Base64 of the 32-byte server key. Without it a development key is
    /// generated once into AUTHLEDGER_KEY_FILE.
    #[arg(long, env = "AUTHLEDGER_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<MasterKey>,
    /// Several server keys, comma-separated, newest first, for rotation:
    /// new tokens, seals and indexes use the first; anything made with a
    /// later one still opens until `authledger keys rotate` has moved it.
    /// Instead of AUTHLEDGER_SECRET_KEY, not beside it.
    #[arg(
        long,
        env = "AUTHLEDGER_SECRET_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        conflicts_with = "secret_key"
    )]
    pub secret_keys: Vec<MasterKey>,
    /// Where the development key is kept when no AUTHLEDGER_SECRET_KEY is set.
    #[arg(
        long,
        env = "AUTHLEDGER_KEY_FILE",
        default_value = "authledger-dev.key"
    )]
    pub key_file: PathBuf,
    /// Issuer shown in authenticator apps.
    #[arg(long, env = "AUTHLEDGER_ISSUER", default_value = "authledger")]
    pub issuer: String,
    /// Store a snapshot of a user's state every N events.
    #[arg(long, env = "AUTHLEDGER_SNAPSHOT_EVERY", default_value_t = 50)]
    pub snapshot_every: usize,
    /// How often, at most, a new signed tree head is made while events
    /// arrive.
    #[arg(long, env = "AUTHLEDGER_TREE_HEAD_SECS", default_value_t = 10)]
    pub tree_head_secs: u64,
    /// A directory each new signed tree head is also written to (as
    /// `tree-head-<size>.json`), to keep copies outside the database.
    #[arg(long, env = "AUTHLEDGER_TREE_HEADS_DIR")]
    pub tree_heads_dir: Option<std::path::PathBuf>,
    /// Do not run pending migrations at start (`true`, `1`, `yes` or `on`).
    #[arg(long, env = "AUTHLEDGER_NO_MIGRATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_migrate: bool,
    /// How often a server looks for pending MFA resets whose waiting period
    /// is over, and carries them out.
    #[arg(long, env = "AUTHLEDGER_RESET_SWEEP_SECS", default_value_t = 60)]
    pub reset_sweep_secs: u64,
    /// The longest wait between a failed batch of a projector (the email
    /// relay's, when RabbitMQ is away) and its retry. The first wait is
    /// 100 ms, doubling per failed attempt up to this; it is how late
    /// publishing can resume after the broker returns.
    #[arg(
        long,
        env = "AUTHLEDGER_PROJECTION_RETRY_MAX_MS",
        default_value_t = 1000
    )]
    pub projection_retry_max_ms: u64,
    /// Tokens that may read the audit routes, comma-separated.
    #[arg(
        long,
        env = "AUTHLEDGER_AUDITOR_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auditor_tokens: Vec<Secret>,
    /// Tokens that may run the admin commands, comma-separated.
    #[arg(
        long,
        env = "AUTHLEDGER_ADMIN_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub admin_tokens: Vec<Secret>,
    /// Tokens of the apps that may introspect sessions
    /// (`POST /v1/introspect`), comma-separated.
    #[arg(
        long,
        env = "AUTHLEDGER_CLIENT_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub client_tokens: Vec<Secret>,
    /// How long an operator's sign-in to the operators' console (`/admin`)
    /// lasts before the credential must be given again.
    #[arg(
        long,
        env = "AUTHLEDGER_STAFF_SESSION_SECS",
        default_value_t = 3600,
        value_parser = clap::value_parser!(i64).range(60..=86_400)
    )]
    pub staff_session_secs: i64,
    /// How long a security key or passkey has to answer a challenge, in
    /// seconds; never longer than the sign-in attempt it belongs to.
    #[arg(
        long,
        env = "AUTHLEDGER_WEBAUTHN_CHALLENGE_SECS",
        default_value_t = 300,
        value_parser = clap::value_parser!(i64).range(30..=600)
    )]
    pub webauthn_challenge_secs: i64,
    /// A bearer token `/metrics` asks for; without one it answers anyone
    /// who reaches it.
    #[arg(long, env = "AUTHLEDGER_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,
    /// Serve `/metrics` only on this address (e.g. one that only the
    /// monitoring network reaches) instead of on AUTHLEDGER_ADDR.
    #[arg(long, env = "AUTHLEDGER_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Whether anyone may create an account (the API's `POST /v1/users`
    /// and the console's "Create account").
    #[arg(
        long,
        env = "AUTHLEDGER_REGISTRATION",
        value_enum,
        default_value_t = Registration::Open
    )]
    pub registration: Registration,
    #[command(flatten)]
    pub mail: MailArgs,
    #[command(flatten)]
    pub hashing: HashingArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

#[derive(Debug, Clone, Args)]
pub struct MailArgs {
    /// RabbitMQ, for the email pipeline.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: Secret,
    /// Prefix of the exchanges and queues the pipeline declares. Without
    /// it, the one the database was given at its first migration
    /// (`authledger-` and 12 random hex digits), so two databases on one
    /// broker never share a queue.
    #[arg(long, env = "AUTHLEDGER_AMQP_PREFIX", value_parser = amqp_prefix)]
    pub amqp_prefix: Option<String>,
    /// The SMTP server mail is sent through: `smtp://host:port` (plain),
    /// `smtp://host:587?tls=required` (STARTTLS) or `smtps://host:465`, with
    /// `user:password@` when it needs credentials.
    #[arg(
        long,
        env = "SMTP_URL",
        default_value = "smtp://127.0.0.1:1025",
        hide_env_values = true
    )]
    pub smtp_url: Secret,
    /// The sender of every mail.
    #[arg(
        long,
        env = "AUTHLEDGER_MAIL_FROM",
        default_value = "authledger <no-reply@authledger.localhost>"
    )]
    pub mail_from: String,
    /// Sends tried before a mail goes to the dead-letter queue.
    #[arg(long, env = "AUTHLEDGER_MAIL_ATTEMPTS", default_value_t = 10)]
    pub mail_attempts: u32,
    /// The first retry of a failed mail waits this long, each next twice as
    /// long, at most 10 minutes: with the defaults a mail is tried for about
    /// half an hour before it is dead-lettered.
    #[arg(long, env = "AUTHLEDGER_MAIL_RETRY_BASE_MS", default_value_t = 5000)]
    pub mail_retry_base_ms: u64,
    /// Mails a worker sends at once, each holding one of the worker's
    /// Postgres connections. A worker killed mid-send can send at most
    /// this many again (accepted by SMTP, not yet recorded).
    #[arg(long, env = "AUTHLEDGER_MAIL_CONCURRENCY", default_value_t = 8)]
    pub mail_concurrency: u16,
    /// The longest one mail's send may take, from taking an SMTP
    /// connection to the server's acceptance; past it the mail is retried
    /// like any failed send.
    #[arg(long, env = "AUTHLEDGER_MAIL_SEND_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub mail_send_timeout_secs: u64,
    /// Queues unused this long are deleted by RabbitMQ; tests set it so
    /// their per-test queues go away. Not a flag.
    #[arg(skip)]
    pub queue_expiry: Option<StdDuration>,
}

impl MailArgs {
    pub fn retry_base(&self) -> StdDuration {
        StdDuration::from_millis(self.mail_retry_base_ms)
    }

    /// The exchanges and queues the pipeline declares, once the prefix is
    /// known (set, or read from the database by the caller).
    pub fn topology(&self) -> anyhow::Result<authledger_projections::mail::Topology> {
        let Some(prefix) = &self.amqp_prefix else {
            anyhow::bail!("the queue prefix was not read from the database");
        };
        let mut topology = authledger_projections::mail::Topology::new(prefix);
        topology.expires = self.queue_expiry;
        Ok(topology)
    }
}

#[derive(Debug, Clone, Args)]
pub struct HashingArgs {
    /// argon2id memory cost in KiB (OWASP: 19456).
    #[arg(long, env = "AUTHLEDGER_ARGON2_MEMORY_KIB", default_value_t = 19456)]
    pub argon2_memory_kib: u32,
    /// argon2id iterations (OWASP: 2).
    #[arg(long, env = "AUTHLEDGER_ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,
    /// argon2id lanes (OWASP: 1).
    #[arg(long, env = "AUTHLEDGER_ARGON2_PARALLELISM", default_value_t = 1)]
    pub argon2_parallelism: u32,
    /// Hashes computed at once; default one per core, so a burst of sign-ins
    /// queues instead of exhausting memory.
    #[arg(long, env = "AUTHLEDGER_HASHING_THREADS")]
    pub hashing_threads: Option<usize>,
    /// Hashes that may wait for a thread; past that a request that needs a
    /// hash is answered `503 overloaded` at once.
    #[arg(long, env = "AUTHLEDGER_HASHING_QUEUE_MAX", default_value_t = 64)]
    pub hashing_queue_max: usize,
    /// A failed password step answers no sooner than this, so whether the
    /// account exists, is throttled or recorded a failure cannot be timed.
    #[arg(
        long,
        env = "AUTHLEDGER_SIGN_IN_FAILURE_FLOOR_MS",
        default_value_t = 200
    )]
    pub sign_in_failure_floor_ms: u64,
}

impl HashingArgs {
    /// One hash per core unless configured.
    pub fn threads(&self) -> usize {
        self.hashing_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }

    pub fn sign_in_failure_floor(&self) -> StdDuration {
        StdDuration::from_millis(self.sign_in_failure_floor_ms)
    }
}

#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    #[arg(long, env = "AUTHLEDGER_LOGIN_ATTEMPT_TTL_SECS", default_value_t = 300)]
    pub login_attempt_ttl_secs: i64,
    #[arg(long, env = "AUTHLEDGER_SECOND_FACTOR_TRIES", default_value_t = 5)]
    pub second_factor_tries: u32,
    #[arg(long, env = "AUTHLEDGER_THROTTLE_AFTER_FAILURES", default_value_t = 5)]
    pub throttle_after_failures: u32,
    #[arg(long, env = "AUTHLEDGER_THROTTLE_BASE_SECS", default_value_t = 30)]
    pub throttle_base_secs: i64,
    #[arg(long, env = "AUTHLEDGER_THROTTLE_MAX_SECS", default_value_t = 3600)]
    pub throttle_max_secs: i64,
    /// Consecutive failures that lock the account until an administrator
    /// unlocks it; 0 (the default) never locks: a lock lets anyone who
    /// knows an address keep its owner out, and throttling already stops
    /// guessing.
    #[arg(long, env = "AUTHLEDGER_LOCK_AFTER_FAILURES", default_value_t = 0)]
    pub lock_after_failures: u32,
    #[arg(long, env = "AUTHLEDGER_EMAIL_LINK_TTL_SECS", default_value_t = 900)]
    pub email_link_ttl_secs: i64,
    #[arg(long, env = "AUTHLEDGER_EMAIL_LINK_LIMIT", default_value_t = 3)]
    pub email_links_per_window: usize,
    #[arg(long, env = "AUTHLEDGER_EMAIL_LINK_WINDOW_SECS", default_value_t = 900)]
    pub email_link_window_secs: i64,
    #[arg(long, env = "AUTHLEDGER_TOTP_SKEW_STEPS", default_value_t = 1)]
    pub totp_skew_steps: u64,
    #[arg(long, env = "AUTHLEDGER_SESSION_TTL_SECS", default_value_t = 43200)]
    pub session_ttl_secs: i64,
    #[arg(long, env = "AUTHLEDGER_SESSION_IDLE_SECS", default_value_t = 3600)]
    pub session_idle_secs: i64,
    #[arg(
        long,
        env = "AUTHLEDGER_REAUTHENTICATION_WINDOW_SECS",
        default_value_t = 900
    )]
    pub reauthentication_window_secs: i64,
    /// Life of the link that verifies a new account's address.
    #[arg(
        long,
        env = "AUTHLEDGER_EMAIL_VERIFICATION_TTL_SECS",
        default_value_t = 86400
    )]
    pub email_verification_ttl_secs: i64,
    /// Verification links and "someone tried to register" notices per
    /// address per window; more are answered alike and send nothing.
    #[arg(long, env = "AUTHLEDGER_REGISTRATION_MAIL_LIMIT", default_value_t = 3)]
    pub registration_mails_per_window: usize,
    #[arg(
        long,
        env = "AUTHLEDGER_REGISTRATION_MAIL_WINDOW_SECS",
        default_value_t = 3600
    )]
    pub registration_mail_window_secs: i64,
    /// Life of a forgotten-password link.
    #[arg(
        long,
        env = "AUTHLEDGER_PASSWORD_RESET_TTL_SECS",
        default_value_t = 1800
    )]
    pub password_reset_ttl_secs: i64,
    /// Forgotten-password links per account per window.
    #[arg(long, env = "AUTHLEDGER_PASSWORD_RESET_LIMIT", default_value_t = 3)]
    pub password_resets_per_window: usize,
    #[arg(
        long,
        env = "AUTHLEDGER_PASSWORD_RESET_WINDOW_SECS",
        default_value_t = 3600
    )]
    pub password_reset_window_secs: i64,
    /// How long an MFA reset asked from a session won by email link waits
    /// before it takes effect; 0 makes it immediate.
    #[arg(
        long,
        env = "AUTHLEDGER_AAL1_MFA_RESET_DELAY_SECS",
        default_value_t = 86400,
        value_parser = clap::value_parser!(i64).range(0..)
    )]
    pub aal1_mfa_reset_delay_secs: i64,
    /// Life of the link that confirms a new address, mailed to it.
    #[arg(
        long,
        env = "AUTHLEDGER_EMAIL_CHANGE_TTL_SECS",
        default_value_t = 86400,
        value_parser = clap::value_parser!(i64).range(60..)
    )]
    pub email_change_ttl_secs: i64,
    /// How long the address given up by a change may take the account
    /// back ("this wasn't me"); it is held for the account until then.
    #[arg(
        long,
        env = "AUTHLEDGER_EMAIL_CHANGE_REVERT_SECS",
        default_value_t = 259200,
        value_parser = clap::value_parser!(i64).range(3600..)
    )]
    pub email_change_revert_secs: i64,
    /// Links to new addresses per account per window; more are refused
    /// with `429 throttled` until the oldest leaves the window.
    #[arg(long, env = "AUTHLEDGER_EMAIL_CHANGE_LIMIT", default_value_t = 3)]
    pub email_changes_per_window: usize,
    #[arg(
        long,
        env = "AUTHLEDGER_EMAIL_CHANGE_WINDOW_SECS",
        default_value_t = 3600
    )]
    pub email_change_window_secs: i64,
    /// Life of the "this wasn't me" link of a new-device notice.
    #[arg(
        long,
        env = "AUTHLEDGER_REPORT_LINK_TTL_SECS",
        default_value_t = 604800,
        value_parser = clap::value_parser!(i64).range(3600..)
    )]
    pub report_link_ttl_secs: i64,
}

impl PolicyArgs {
    pub fn policy(&self) -> Policy {
        let session_idle = Duration::seconds(self.session_idle_secs);
        Policy {
            login_attempt_ttl: Duration::seconds(self.login_attempt_ttl_secs),
            second_factor_tries: self.second_factor_tries,
            totp_skew_steps: self.totp_skew_steps,
            throttle_after_failures: self.throttle_after_failures,
            throttle_base: Duration::seconds(self.throttle_base_secs),
            throttle_max: Duration::seconds(self.throttle_max_secs),
            lock_after_failures: match self.lock_after_failures {
                0 => u32::MAX,
                n => n,
            },
            email_link_ttl: Duration::seconds(self.email_link_ttl_secs),
            email_link_window: Duration::seconds(self.email_link_window_secs),
            email_links_per_window: self.email_links_per_window,
            session_absolute: Duration::seconds(self.session_ttl_secs),
            session_idle,
            // Activity is recorded often enough that a session in use never
            // reaches its idle limit.
            session_activity_granularity: Duration::minutes(5).min(session_idle / 4),
            reauthentication_window: Duration::seconds(self.reauthentication_window_secs),
            email_verification_ttl: Duration::seconds(self.email_verification_ttl_secs),
            registration_mails_per_window: self.registration_mails_per_window,
            registration_mail_window: Duration::seconds(self.registration_mail_window_secs),
            password_reset_ttl: Duration::seconds(self.password_reset_ttl_secs),
            password_resets_per_window: self.password_resets_per_window,
            password_reset_window: Duration::seconds(self.password_reset_window_secs),
            aal1_mfa_reset_delay: Duration::seconds(self.aal1_mfa_reset_delay_secs),
            email_change_ttl: Duration::seconds(self.email_change_ttl_secs),
            email_change_revert_window: Duration::seconds(self.email_change_revert_secs),
            email_changes_per_window: self.email_changes_per_window,
            email_change_window: Duration::seconds(self.email_change_window_secs),
            report_link_ttl: Duration::seconds(self.report_link_ttl_secs),
        }
    }
}

/// The requests one client may send, per route class, and how the client
/// is told apart. Counted in memory by each process: with several
/// processes behind a balancer a client gets each process's allowance.
#[derive(Debug, Clone, Args)]
pub struct LimitsArgs {
    /// Proxies, as addresses or CIDRs, comma-separated, whose forwarding
    /// header names the client. Without it the client is the TCP peer.
    #[arg(long, env = "AUTHLEDGER_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<TrustedProxy>,
    /// The header the trusted proxies set. Only one is read: a client can
    /// send the other one itself, so believing both would let it choose
    /// its own address.
    #[arg(
        long,
        env = "AUTHLEDGER_FORWARDED_HEADER",
        value_enum,
        default_value_t = ForwardedHeader::XForwardedFor
    )]
    pub forwarded_header: ForwardedHeader,
    /// Password-class requests (password step, registration, address
    /// confirmation, forgotten and reset password) per client per minute;
    /// 0 turns the limit off.
    #[arg(
        long,
        env = "AUTHLEDGER_RATE_PASSWORD_PER_MINUTE",
        default_value_t = 60
    )]
    pub rate_password_per_minute: u32,
    #[arg(long, env = "AUTHLEDGER_RATE_PASSWORD_BURST", default_value_t = 60)]
    pub rate_password_burst: u32,
    /// Second-factor-class requests (code, recovery code, enrollment,
    /// email link, the denial link) per client per minute; 0 turns it off.
    #[arg(
        long,
        env = "AUTHLEDGER_RATE_SECOND_FACTOR_PER_MINUTE",
        default_value_t = 120
    )]
    pub rate_second_factor_per_minute: u32,
    #[arg(
        long,
        env = "AUTHLEDGER_RATE_SECOND_FACTOR_BURST",
        default_value_t = 60
    )]
    pub rate_second_factor_burst: u32,
    /// Session-class requests (`/v1/me*`, sign-out, the profile's forms)
    /// per client per minute; 0 turns it off.
    #[arg(
        long,
        env = "AUTHLEDGER_RATE_SESSION_PER_MINUTE",
        default_value_t = 600
    )]
    pub rate_session_per_minute: u32,
    #[arg(long, env = "AUTHLEDGER_RATE_SESSION_BURST", default_value_t = 120)]
    pub rate_session_burst: u32,
    /// Staff-class requests (audit and admin routes) per client per
    /// minute; 0 turns it off.
    #[arg(long, env = "AUTHLEDGER_RATE_STAFF_PER_MINUTE", default_value_t = 600)]
    pub rate_staff_per_minute: u32,
    #[arg(long, env = "AUTHLEDGER_RATE_STAFF_BURST", default_value_t = 120)]
    pub rate_staff_burst: u32,
}

/// Routes that share a rate limit, by what a flood of them costs or risks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// A password hash each, and guesses at passwords.
    Password,
    /// Guesses at codes and links.
    SecondFactor,
    /// A signed-in user's own requests.
    Session,
    /// Auditors and admins.
    Staff,
}

impl RouteClass {
    pub const ALL: [Self; 4] = [
        Self::Password,
        Self::SecondFactor,
        Self::Session,
        Self::Staff,
    ];

    /// Its name in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::SecondFactor => "second_factor",
            Self::Session => "session",
            Self::Staff => "staff",
        }
    }
}

/// Requests per minute, and how many may come at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}

impl LimitsArgs {
    /// The class's rate, or `None` when it is unlimited. A burst of 0 is
    /// read as 1: a limit that refuses everything is not one anybody means.
    pub fn rate(&self, class: RouteClass) -> Option<Rate> {
        let (per_minute, burst) = match class {
            RouteClass::Password => (self.rate_password_per_minute, self.rate_password_burst),
            RouteClass::SecondFactor => (
                self.rate_second_factor_per_minute,
                self.rate_second_factor_burst,
            ),
            RouteClass::Session => (self.rate_session_per_minute, self.rate_session_burst),
            RouteClass::Staff => (self.rate_staff_per_minute, self.rate_staff_burst),
        };
        Some(Rate {
            per_minute: NonZeroU32::new(per_minute)?,
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        })
    }
}

/// A proxy's address or network; a bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy(pub IpNet);

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map(Self)
            .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR network"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1`
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`
    Forwarded,
}

/// How long a connection may take to say what it wants, and how many may
/// be open. Without these a client that opens connections and sends
/// nothing, or a request line a byte at a time, holds them forever.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// A request's line and headers must arrive within this long of their
    /// first byte (of the connection's opening, for its first request).
    #[arg(
        long,
        env = "AUTHLEDGER_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive in full within this long of its
    /// headers; a slower one is answered `408 request-timeout`.
    #[arg(
        long,
        env = "AUTHLEDGER_BODY_READ_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub body_read_timeout_ms: u64,
    /// A kept-alive connection with no request for this long is closed.
    /// Longer than the usual proxies' 60 s, so a proxy that pools
    /// connections closes them first and never sends on one being closed.
    #[arg(long, env = "AUTHLEDGER_IDLE_TIMEOUT_MS", default_value_t = 75_000)]
    pub idle_timeout_ms: u64,
    /// Connections open at once; more wait in the listen backlog until one
    /// closes. Keep it under the process's file descriptor limit, less
    /// what Postgres, RabbitMQ and SMTP connections take.
    #[arg(long, env = "AUTHLEDGER_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: u32,
}

impl ConnectionArgs {
    pub fn header_read_timeout(&self) -> StdDuration {
        StdDuration::from_millis(self.header_read_timeout_ms)
    }

    pub fn body_read_timeout(&self) -> StdDuration {
        StdDuration::from_millis(self.body_read_timeout_ms)
    }

    pub fn idle_timeout(&self) -> StdDuration {
        StdDuration::from_millis(self.idle_timeout_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Registration {
    Open,
    Closed,
}

/// Only for parsing a `Config` on its own, without a subcommand.
#[derive(Parser)]
struct Standalone {
    #[command(flatten)]
    config: Config,
}

impl Config {
    pub fn projection_retry_max(&self) -> StdDuration {
        StdDuration::from_millis(self.projection_retry_max_ms)
    }

    /// The configuration as the environment gives it, every flag at its
    /// default: what `authledger all` would run with.
    pub fn from_env() -> anyhow::Result<Self> {
        Standalone::try_parse_from(["authledger"])
            .map(|s| s.config)
            .context("reading the configuration from the environment")
    }

    /// Every flag at its documented default, whatever the environment
    /// says: for tests and benchmarks that must not pick up an operator's
    /// settings.
    pub fn defaults() -> anyhow::Result<Self> {
        let command = Standalone::command().mut_args(|arg| arg.env(None::<&str>));
        let matches = command
            .try_get_matches_from(["authledger"])
            .context("building the default configuration")?;
        Ok(Standalone::from_arg_matches(&matches)?.config)
    }

    pub fn registration_open(&self) -> bool {
        self.registration == Registration::Open
    }

    pub fn policy(&self) -> Policy {
        self.policy.policy()
    }

    /// The development key's file, absolute, when no server key is set.
    pub fn dev_key_file(&self) -> anyhow::Result<Option<PathBuf>> {
        if self.secret_key.is_some() || !self.secret_keys.is_empty() {
            return Ok(None);
        }
        self.absolute_key_file().map(Some)
    }

    fn absolute_key_file(&self) -> anyhow::Result<PathBuf> {
        std::path::absolute(&self.key_file)
            .with_context(|| format!("resolving the key file {}", self.key_file.display()))
    }

    /// The server keys: AUTHLEDGER_SECRET_KEYS or AUTHLEDGER_SECRET_KEY, or
    /// else the development key in AUTHLEDGER_KEY_FILE, with a loud warning
    /// naming the file by its absolute path. Only a server makes that file,
    /// and only for a loopback public URL: a command run from another
    /// directory, or a server that users reach, would otherwise start with a
    /// new key that opens nothing already written.
    pub fn keyring(&self, dev_key: DevKey) -> anyhow::Result<Keyring> {
        if !self.secret_keys.is_empty() {
            return Ok(Keyring::new(&self.secret_keys)?);
        }
        if let Some(key) = &self.secret_key {
            return Ok(Keyring::single(key));
        }
        anyhow::ensure!(
            is_loopback_url(&self.public_url),
            "AUTHLEDGER_SECRET_KEY is not set: a development key is only made for a loopback AUTHLEDGER_PUBLIC_URL, and this one is {:?}",
            self.public_url
        );
        let path = self.absolute_key_file()?;
        let key = match (MasterKey::load(&path)?, dev_key) {
            (Some(key), _) => key,
            (None, DevKey::MayCreate) => {
                let key = MasterKey::create(&path)?;
                tracing::warn!(key_file = %path.display(), "made a new development key");
                key
            }
            (None, DevKey::MustExist) => anyhow::bail!(
                "AUTHLEDGER_SECRET_KEY is not set and there is no development key at {}: run the command where the server runs, or set AUTHLEDGER_KEY_FILE to the server's key file",
                path.display()
            ),
        };
        tracing::warn!(
            key_file = %path.display(),
            "NO AUTHLEDGER_SECRET_KEY IS SET: using a development key kept in a local file. \
             Anyone who reads that file can forge tokens and open sealed secrets. \
             Set AUTHLEDGER_SECRET_KEY in production."
        );
        Ok(Keyring::single(&key))
    }
}

/// Whether the development key may be made when its file is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevKey {
    /// A server makes it on its first start.
    MayCreate,
    /// A command only reads the key a server made.
    MustExist,
}

/// Whether users reach `public_url` on their own machine: its host is
/// `localhost` or a loopback address. A URL that does not parse is not.
pub fn is_loopback_url(public_url: &str) -> bool {
    let Ok(uri) = public_url.parse::<axum::http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A configured value that must never be printed: a credential, or a URL
/// that may hold one. `Debug` shows only that it is there.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_loopback_host_is_loopback() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://LOCALHOST:8080/x",
            "http://[::1]:8080/",
            "http://127.0.0.2",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "https://auth.example.com",
            "http://127.0.0.1.nip.io",
            "http://localhost.example.com",
            "http://evil.example\\@localhost",
            "http://10.0.0.5:8080",
            "not a url",
            "",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let config = Standalone::try_parse_from([
            "authledger",
            "--admin-tokens",
            "admin-token-value",
            "--metrics-token",
            "metrics-token-value",
            "--smtp-url",
            "smtp://user:smtp-password@mail.example:587",
        ])
        .unwrap()
        .config;
        let printed = format!("{config:?}");
        assert!(!printed.contains("admin-token-value"), "{printed}");
        assert!(!printed.contains("metrics-token-value"), "{printed}");
        assert!(!printed.contains("smtp-password"), "{printed}");
        assert!(!printed.contains("postgres:postgres"), "{printed}");
        assert_eq!(config.admin_tokens[0].expose(), "admin-token-value");
    }

    #[test]
    fn the_policy_follows_the_configured_numbers() {
        let config = Standalone::try_parse_from([
            "authledger",
            "--second-factor-tries",
            "7",
            "--session-idle-secs",
            "600",
        ])
        .unwrap()
        .config;
        let policy = config.policy();
        assert_eq!(policy.second_factor_tries, 7);
        assert_eq!(policy.session_idle, Duration::minutes(10));
        // Activity is recorded at least four times per idle period.
        assert_eq!(policy.session_activity_granularity, Duration::seconds(150));
    }
}
