//! The HTTP API: one module per resource, merged here with the OpenAPI
//! document generated from the same handlers, so the two cannot drift.
mod admin;
mod audit;
mod console;
mod error;
mod extract;
mod health;
mod login;
mod me;
mod users;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use authledger_aggregates::Reference;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sqlx::PgPool;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub use error::{ApiError, BodyProblems, Problem, Result, SecondFactorProblems, ServerProblems};

use crate::command_bus::CommandBus;
use crate::tokens::{TokenCodec, TokenKind};

/// Request bodies are small JSON documents; anything larger is refused
/// before it is read.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

pub struct ContextInner {
    pub bus: CommandBus,
    pub tokens: TokenCodec,
    pub pool: PgPool,
    pub issuer: String,
    pub public_url: String,
    /// Whether anyone may create an account.
    pub registration_open: bool,
    /// The console's cookies are `Secure` and `__Host-` prefixed.
    pub secure_cookies: bool,
    pub sign_in_failure_floor: Duration,
    /// RabbitMQ, checked by `/readyz` when the pipeline is in use.
    pub amqp_url: Option<String>,
    pub credentials: Credentials,
}

/// Auditor and admin tokens, kept as SHA-256 digests and compared in
/// constant time.
#[derive(Clone, Default)]
pub struct Credentials {
    auditors: Vec<[u8; 32]>,
    admins: Vec<[u8; 32]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Auditor,
    Admin,
}

impl Credentials {
    /// Tokens are trimmed and empty ones dropped; a token in both lists is
    /// refused, since its role would be ambiguous.
    pub fn new(auditors: &[String], admins: &[String]) -> anyhow::Result<Self> {
        let clean = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect()
        };
        let (auditors, admins) = (clean(auditors), clean(admins));
        anyhow::ensure!(
            !auditors.iter().any(|t| admins.contains(t)),
            "a token is both an auditor's and an admin's: give each role its own"
        );
        let digest = |t: &String| -> [u8; 32] {
            <sha2::Sha256 as sha2::Digest>::digest(t.as_bytes()).into()
        };
        Ok(Self {
            auditors: auditors.iter().map(digest).collect(),
            admins: admins.iter().map(digest).collect(),
        })
    }

    /// Whose token this is, and a name for it that is safe to record (the
    /// first bytes of its digest).
    pub fn role_of(&self, token: &str) -> Option<(Role, String)> {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let presented: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        // Every configured token is compared, so timing tells nothing.
        for (role, list) in [(Role::Auditor, &self.auditors), (Role::Admin, &self.admins)] {
            for known in list {
                if bool::from(known.ct_eq(&presented)) {
                    found = Some(role);
                }
            }
        }
        let name: String = presented[..4].iter().map(|b| format!("{b:02x}")).collect();
        found.map(|role| (role, name))
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct ApiContext(Arc<ContextInner>);

impl ApiContext {
    pub fn new(inner: ContextInner) -> Self {
        Self(Arc::new(inner))
    }

    fn login_token(&self, token: &str) -> Result<(Uuid, Reference)> {
        self.tokens
            .decode(TokenKind::LoginAttempt, token)
            .map_err(|_| ApiError::invalid_login_token())
    }

    fn session_token(&self, token: &str) -> Result<(Uuid, Reference)> {
        self.tokens
            .decode(TokenKind::Session, token)
            .map_err(|_| ApiError::unauthenticated())
    }
}

impl Deref for ApiContext {
    type Target = ContextInner;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "authledger",
        description = "Event-sourced authentication with mandatory multi-factor authentication. \
            Errors are RFC 9457 problem documents whose `type` is `urn:authledger:problem:<slug>`; \
            each response lists the slugs it can carry."
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            for scheme in ["session", "auditor", "admin"] {
                components.add_security_scheme(
                    scheme,
                    SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
                );
            }
        }
    }
}

/// The routes and the OpenAPI document that describes them.
pub fn api() -> (Router<ApiContext>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(users::register))
        .routes(routes!(login::password))
        .routes(routes!(login::totp))
        .routes(routes!(login::begin_enrollment))
        .routes(routes!(login::confirm_enrollment))
        .routes(routes!(login::recovery_code))
        .routes(routes!(login::email_link_page, login::request_email_link))
        .routes(routes!(login::redeem_email_link))
        .routes(routes!(me::profile))
        .routes(routes!(me::reset_mfa))
        .routes(routes!(me::logout))
        .routes(routes!(audit::user_events))
        .routes(routes!(audit::user_state))
        .routes(routes!(audit::events))
        .routes(routes!(admin::reset_mfa))
        .routes(routes!(admin::unlock))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .split_for_parts()
}

pub fn router(context: ApiContext) -> Router {
    let (routes, openapi) = api();
    let openapi = Arc::new(openapi);
    routes
        .merge(console::routes())
        .route(
            "/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { axum::Json(openapi.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(context)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        .layer(
            // Only the path is logged: query strings can carry link tokens,
            // and headers carry bearer tokens.
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let request_id = req.extensions().get::<RequestId>().map(|id| id.0.as_str()).unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(middleware::from_fn(assign_request_id))
}

/// The id of a request, recorded with the events it causes.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Keeps a well-formed incoming `X-Request-Id` (from a proxy), otherwise
/// makes one, and echoes it in the response.
async fn assign_request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}
