//! The HTTP API: one module per resource, merged here with the OpenAPI
//! document generated from the same handlers, so the two cannot drift.
mod admin;
mod audit;
mod console;
mod error;
mod extract;
mod health;
mod limits;
mod login;
mod me;
mod recovery;
mod serve;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub use error::{ApiError, BodyProblems, Problem, Result, SecondFactorProblems, ServerProblems};
use limits::RateLimitedResponses;
pub use limits::{ClientIp, RateLimits};
pub use serve::{serve, ConnectionLimits};

use crate::app::App;

/// Request bodies are small JSON documents; anything larger is refused
/// before it is read.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// What every handler shares: the use cases, how the console's cookies
/// are set, and what the middleware holds clients to.
#[derive(Clone)]
pub struct ApiContext {
    pub app: App,
    /// The console's cookies are `Secure` and `__Host-` prefixed.
    pub secure_cookies: bool,
    pub limits: Arc<RateLimits>,
    /// A request's body must arrive within this long of its head.
    pub body_read_timeout: Duration,
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
    modifiers(&BearerAuth, &RateLimitedResponses)
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
        .routes(routes!(console::links::verification_page, users::verify))
        .routes(routes!(recovery::forgot))
        .routes(routes!(
            console::links::password_reset_page,
            recovery::reset
        ))
        .routes(routes!(
            console::links::denial_page,
            recovery::deny_mfa_reset
        ))
        .routes(routes!(login::password))
        .routes(routes!(login::totp))
        .routes(routes!(login::begin_enrollment))
        .routes(routes!(login::confirm_enrollment))
        .routes(routes!(login::recovery_code))
        .routes(routes!(
            console::links::email_link_page,
            login::request_email_link
        ))
        .routes(routes!(login::redeem_email_link))
        .routes(routes!(me::profile))
        .routes(routes!(me::reset_mfa))
        .routes(routes!(me::cancel_mfa_reset))
        .routes(routes!(me::change_password))
        .routes(routes!(me::new_recovery_code))
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
    let body_read_timeout = context.body_read_timeout;
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
        .with_state(context.clone())
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn_with_state(
            body_read_timeout,
            serve::read_body_in_time,
        ))
        // Outside the body's reading: a client over its rate is refused
        // before its body is read.
        .layer(middleware::from_fn_with_state(context, limits::limit))
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
