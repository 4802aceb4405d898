//! Configuration from environment variables and the matching flags. The
//! defaults match docker-compose.yml and a local Postgres.
use std::net::SocketAddr;
use std::path::PathBuf;

use authledger_aggregates::Policy;
use chrono::Duration;
use clap::{Args, Parser, Subcommand};

use crate::keys::MasterKey;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/authledger";

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
    Serve(ServeArgs),
    /// The email worker: sends the mail the relay publishes.
    Worker(ServeArgs),
    /// API, projectors, relay and worker in one process; the default for
    /// development.
    All(ServeArgs),
    /// Inspect or rebuild projections.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Read the MFA history, as an auditor, without HTTP access.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Admin commands, without HTTP access.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Apply pending database migrations, then exit.
    Migrate(DatabaseArgs),
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection's position and lag.
    Status(DatabaseArgs),
    /// Empty a read model and replay the whole log into it.
    Rebuild {
        /// The projection: `users`.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
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
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// A user's MFA state at an instant.
    State {
        #[arg(long)]
        user: String,
        /// RFC 3339, e.g. 2026-03-01T09:00:00Z (default: now).
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Every event (or those in a period) as NDJSON on standard output.
    Export {
        /// Events that occurred at or after this instant (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Events that occurred before this instant (RFC 3339).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Walks every stream's hash chain; exits non-zero naming the first
    /// broken event.
    Verify {
        #[command(flatten)]
        database: DatabaseArgs,
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
        serve: ServeArgs,
    },
    /// Unlock a locked or throttled account.
    Unlock {
        #[arg(long)]
        user: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Connections in the pool.
    #[arg(long, env = "AUTHLEDGER_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "AUTHLEDGER_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// The URL users reach this service at; links are built from it, never
    /// from a request's Host header.
    #[arg(
        long,
        env = "AUTHLEDGER_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub public_url: String,
    /// Base64 of the 32-byte server key. Without it a development key is
    /// generated once into AUTHLEDGER_KEY_FILE.
    #[arg(long, env = "AUTHLEDGER_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<MasterKey>,
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
    /// Do not run pending migrations at start.
    #[arg(long, env = "AUTHLEDGER_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Tokens that may read the audit routes, comma-separated.
    #[arg(
        long,
        env = "AUTHLEDGER_AUDITOR_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auditor_tokens: Vec<String>,
    /// Tokens that may run the admin commands, comma-separated.
    #[arg(
        long,
        env = "AUTHLEDGER_ADMIN_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub admin_tokens: Vec<String>,
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
}

#[derive(Debug, Clone, Args)]
pub struct MailArgs {
    /// RabbitMQ, for the email pipeline.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Prefix of the exchanges and queues the pipeline declares.
    #[arg(long, env = "AUTHLEDGER_AMQP_PREFIX", default_value = "authledger")]
    pub amqp_prefix: String,
    /// The SMTP server mail is sent through: `smtp://host:port` (plain),
    /// `smtp://host:587?tls=required` (STARTTLS) or `smtps://host:465`, with
    /// `user:password@` when it needs credentials.
    #[arg(long, env = "SMTP_URL", default_value = "smtp://127.0.0.1:1025")]
    pub smtp_url: String,
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
    /// Mails a worker sends at once. A worker killed mid-send can send at
    /// most this many again (accepted by SMTP, not yet recorded).
    #[arg(long, env = "AUTHLEDGER_MAIL_CONCURRENCY", default_value_t = 16)]
    pub mail_concurrency: u16,
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
    /// A failed password step answers no sooner than this, so whether the
    /// account exists, is throttled or recorded a failure cannot be timed.
    #[arg(
        long,
        env = "AUTHLEDGER_SIGN_IN_FAILURE_FLOOR_MS",
        default_value_t = 200
    )]
    pub sign_in_failure_floor_ms: u64,
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
    #[arg(long, env = "AUTHLEDGER_LOCK_AFTER_FAILURES", default_value_t = 100)]
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
            lock_after_failures: self.lock_after_failures,
            email_link_ttl: Duration::seconds(self.email_link_ttl_secs),
            email_link_window: Duration::seconds(self.email_link_window_secs),
            email_links_per_window: self.email_links_per_window,
            session_absolute: Duration::seconds(self.session_ttl_secs),
            session_idle,
            // Activity is recorded often enough that a session in use never
            // reaches its idle limit.
            session_activity_granularity: Duration::minutes(5).min(session_idle / 4),
            reauthentication_window: Duration::seconds(self.reauthentication_window_secs),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Registration {
    Open,
    Closed,
}
