//! The use cases: what a caller can ask of authledger, whoever the caller
//! is (the JSON API, the web console, the command line). Each takes plain
//! inputs, runs a command through the bus or reads the log, and answers a
//! typed outcome or an [`AppError`]. The edges only translate.
mod activity;
mod admin;
mod audit;
mod authenticators;
mod directory;
mod enrollment;
mod error;
mod identity;
mod operations;
mod pending_resets;
mod profile;
mod recovery;
mod registration;
mod rotation;
mod sessions;
mod sign_in;
mod staff;
mod transparency;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use authledger_aggregates::{Clock, Policy, Reference, UserAuthServices};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

pub use activity::{ActivityEntry, ActivityPage, ActivityPageSize, Reported};
pub use admin::{AdminAction, AdminDone};
pub use audit::{AuditPage, EventFilter, History, PageSize};
pub use authenticators::{AuthenticatorEntry, FactorsOffered, WebAuthnOptions};
pub use directory::{Filter as UserFilter, UserDetail, UserPage, UserQuery, UserSummary};
pub use enrollment::Enrollment;
pub use error::{AppError, AppResult};
pub use identity::EmailChangeRequested;
pub use profile::{Me, ResetDone};
pub use recovery::LinkKind;
pub use rotation::{DataKeysHeld, KeyUse, RotationReport};
pub use sessions::{ActiveSession, Introspection, SessionView};
pub use sign_in::{OpenedAttempt, SignedIn, SignedInWithCode};
pub use staff::{Credentials, Role, Staff, StaffSession};
pub use transparency::{BundleScope, ConsistencyProof, InclusionProof, PublicKey};

pub use crate::tokens::CsrfScope;

use crate::command_bus::{CommandBus, CommandMetadata};
use crate::config::{Config, Secret};
use crate::keys::Keyring;
use crate::metrics::{LoadMetrics, ProcessMetrics};
use crate::services::HashingQueue;
use crate::tokens::{TokenCodec, TokenKind};

/// Who is asking: recorded as metadata on every event a request causes.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Ours, made for this request.
    pub request_id: String,
    /// The `X-Request-Id` the client sent, if it was well-formed: kept to
    /// match our events to a proxy's logs, never taken for ours.
    pub client_request_id: Option<String>,
    pub client_ip: String,
    pub user_agent: String,
}

impl Caller {
    fn as_user(&self) -> CommandMetadata {
        self.metadata("user".into())
    }

    fn as_staff(&self, staff: &Staff) -> CommandMetadata {
        self.metadata(staff.actor())
    }

    fn as_system(&self) -> CommandMetadata {
        self.metadata("system".into())
    }

    fn metadata(&self, actor: String) -> CommandMetadata {
        CommandMetadata {
            request_id: self.request_id.clone(),
            client_request_id: self.client_request_id.clone(),
            client_ip: self.client_ip.clone(),
            user_agent: self.user_agent.clone(),
            actor,
        }
    }
}

pub struct AppInner {
    bus: CommandBus,
    tokens: TokenCodec,
    keyring: Arc<Keyring>,
    pool: PgPool,
    issuer: String,
    registration_open: bool,
    sign_in_failure_floor: Duration,
    /// RabbitMQ, checked for readiness when the pipeline is in use.
    amqp_url: Option<Secret>,
    broker_check: operations::BrokerCheck,
    metrics_access: operations::MetricsAccess,
    credentials: Credentials,
    /// How long an operator's console sign-in lasts.
    staff_session_ttl: chrono::Duration,
    /// This service as a WebAuthn relying party; `None` when its public
    /// URL's host is an IP address.
    relying_party: Option<crate::webauthn::RelyingParty>,
    webauthn_challenge_ttl: chrono::Duration,
    metrics: ProcessMetrics,
    /// The password hashes waiting for a thread: work that would only
    /// queue behind a full one is refused before it begins.
    hashing: HashingQueue,
    load_metrics: LoadMetrics,
}

/// The application: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct App(Arc<AppInner>);

impl Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl App {
    /// Wires the use cases to the event store, the keys and the domain's
    /// services as configured.
    pub fn new(
        config: &Config,
        pool: PgPool,
        keyring: Arc<Keyring>,
        services: UserAuthServices,
        metrics: ProcessMetrics,
        hashing: HashingQueue,
    ) -> anyhow::Result<Self> {
        Ok(Self(Arc::new(AppInner {
            bus: CommandBus::new(
                pool.clone(),
                services,
                keyring.clone(),
                config.snapshot_every,
                crate::metrics::IntegrityAlarms::default(),
                metrics.service.clone(),
            ),
            tokens: TokenCodec::new(keyring.clone()),
            keyring,
            pool,
            issuer: config.issuer.clone(),
            registration_open: config.registration_open(),
            sign_in_failure_floor: config.hashing.sign_in_failure_floor(),
            amqp_url: Some(config.mail.amqp_url.clone()),
            broker_check: operations::BrokerCheck::default(),
            metrics_access: operations::MetricsAccess::new(config.metrics_token.as_ref()),
            credentials: Credentials::new(
                &config.auditor_tokens,
                &config.admin_tokens,
                &config.client_tokens,
            )?,
            staff_session_ttl: chrono::Duration::seconds(config.staff_session_secs),
            relying_party: crate::webauthn::RelyingParty::for_public_url(
                &config.public_url,
                &config.issuer,
                std::time::Duration::from_secs(config.webauthn_challenge_secs.unsigned_abs()),
            )?,
            webauthn_challenge_ttl: chrono::Duration::seconds(config.webauthn_challenge_secs),
            metrics,
            hashing,
            load_metrics: LoadMetrics::default(),
        })))
    }

    /// The time, from the clock the domain decides with.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock().now()
    }

    /// The clock the domain decides with, for whatever else must move
    /// with it in tests (the edge's rate limits).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.bus.services().clock
    }

    /// The counts of requests refused to protect the service, for the edge
    /// to add to and `/metrics` to report.
    pub fn load_metrics(&self) -> &LoadMetrics {
        &self.load_metrics
    }

    /// The counts of what the service did, for the edge to add its
    /// requests to.
    pub fn service_metrics(&self) -> &crate::metrics::ServiceMetrics {
        &self.metrics.service
    }

    /// The rules' numbers, for pages that state them.
    pub fn policy(&self) -> &Policy {
        &self.bus.services().policy
    }

    pub fn registration_open(&self) -> bool {
        self.registration_open
    }

    /// The form tag for a browser's CSRF nonce and the session or login
    /// attempt it holds (signed double submit, bound to the browser's
    /// credential).
    pub fn csrf_tag(&self, nonce: &str, scope: CsrfScope<'_>) -> String {
        self.tokens.csrf_tag(nonce, scope)
    }

    /// Whether `token` looks like a device token this service makes (43
    /// characters of base64url: 32 random bytes). An API client keeps the
    /// one its first password step answered and sends it again, as a
    /// browser sends its cookie.
    pub fn is_device_token(&self, token: &str) -> bool {
        token.len() == 43
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// A new device cookie for a browser that has none: random, and
    /// recorded only as a keyed digest.
    pub fn new_device_cookie(&self) -> String {
        use base64::Engine;
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `tag` belongs to `nonce` in `scope`, compared in constant time.
    pub fn csrf_tag_matches(&self, nonce: &str, scope: CsrfScope<'_>, tag: &str) -> bool {
        self.tokens.csrf_tag_matches(nonce, scope, tag)
    }

    fn login_token(&self, token: &str) -> AppResult<(Uuid, Reference)> {
        self.tokens
            .decode(TokenKind::LoginAttempt, token)
            .map_err(|_| AppError::InvalidLoginToken)
    }

    fn session_token(&self, token: &str) -> AppResult<(Uuid, Reference)> {
        self.tokens
            .decode(TokenKind::Session, token)
            .map_err(|_| AppError::Unauthenticated)
    }
}
