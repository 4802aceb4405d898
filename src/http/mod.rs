//! The HTTP API: one module per resource, merged here with the OpenAPI
//! document generated from the same handlers, so the two cannot drift.
mod activity;
mod admin;
mod audit;
mod authenticators;
mod console;
mod error;
mod extract;
mod health;
mod identity;
mod limits;
mod login;
mod me;
mod recovery;
mod serve;
mod sessions;
mod transparency;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
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
    /// The public URL's origin (`https://auth.example.com`), the only one a
    /// console form may come from.
    pub public_origin: String,
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
            for scheme in ["session", "auditor", "admin", "client", "metrics"] {
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
    routes(true).split_for_parts()
}

/// Every route, `/metrics` among them unless it is served elsewhere.
fn routes(with_metrics: bool) -> OpenApiRouter<ApiContext> {
    let routes = OpenApiRouter::with_openapi(ApiDoc::openapi())
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
        .routes(routes!(authenticators::sign_in_options))
        .routes(routes!(authenticators::sign_in))
        .routes(routes!(authenticators::enroll_options))
        .routes(routes!(authenticators::enroll))
        .routes(routes!(authenticators::list))
        .routes(routes!(authenticators::begin_totp))
        .routes(routes!(authenticators::confirm_totp))
        .routes(routes!(authenticators::register_options))
        .routes(routes!(authenticators::register))
        .routes(routes!(authenticators::remove))
        .routes(routes!(
            console::links::email_link_page,
            login::request_email_link
        ))
        .routes(routes!(login::redeem_email_link))
        .routes(routes!(me::reset_mfa))
        .routes(routes!(me::cancel_mfa_reset))
        .routes(routes!(me::change_password))
        .routes(routes!(me::new_recovery_code))
        .routes(routes!(me::logout))
        .routes(routes!(me::profile, identity::erase_me))
        .routes(routes!(sessions::list))
        .routes(routes!(sessions::end))
        .routes(routes!(sessions::end_others))
        .routes(routes!(sessions::introspect))
        .routes(routes!(activity::list))
        .routes(routes!(activity::report))
        .routes(routes!(
            console::activity::report_page,
            activity::report_by_link
        ))
        .routes(routes!(identity::change_email))
        .routes(routes!(
            console::identity::email_change_page,
            identity::confirm_email_change
        ))
        .routes(routes!(
            console::identity::email_revert_page,
            identity::revert_email_change
        ))
        .routes(routes!(audit::user_events))
        .routes(routes!(audit::user_state))
        .routes(routes!(audit::events))
        .routes(routes!(transparency::public_key))
        .routes(routes!(transparency::latest_checkpoint))
        .routes(routes!(transparency::checkpoint))
        .routes(routes!(transparency::sign_checkpoint))
        .routes(routes!(transparency::inclusion))
        .routes(routes!(transparency::consistency))
        .routes(routes!(admin::reset_mfa))
        .routes(routes!(admin::unlock))
        .routes(routes!(identity::admin_erase))
        .routes(routes!(admin::suspend))
        .routes(routes!(admin::reactivate))
        .routes(routes!(admin::end_sessions))
        .routes(routes!(admin::resend_verification))
        .routes(routes!(admin::list_users))
        .routes(routes!(admin::user_detail))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz));
    if with_metrics {
        routes.routes(routes!(health::metrics))
    } else {
        routes
    }
}

/// The service's routes. `metrics_here` is false when `/metrics` has a
/// listener of its own ([`metrics_router`]); the OpenAPI document
/// describes it either way.
pub fn router(context: ApiContext, metrics_here: bool) -> Router {
    let (_, openapi) = api();
    let (routes, _) = routes(metrics_here).split_for_parts();
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
        .layer(middleware::from_fn_with_state(context.clone(), limits::limit))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        // Outside the limits, so that refusals are counted too, and the
        // panics' 500s.
        .layer(middleware::from_fn_with_state(context, observe))
        .layer(
            // Only the route is logged, as declared (`/v1/audit/users/{user}/…`):
            // query strings can carry link tokens, headers bearer tokens, and
            // a path an address, which must not outlive its account's erasure.
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let request_id = req.extensions().get::<RequestId>().map(|id| id.0.as_str()).unwrap_or("");
                    let client_request_id = req.extensions().get::<ClientRequestId>().map(|id| id.0.as_str());
                    let route = req.extensions().get::<MatchedPath>().map_or("(no route)", MatchedPath::as_str);
                    tracing::info_span!("request", method = %req.method(), route, request_id, client_request_id)
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(middleware::from_fn(assign_request_id))
}

/// `/metrics` alone, for its own listen address.
pub fn metrics_router(context: ApiContext) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::not_found() })
        .with_state(context)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal().into_response()
        }))
}

/// The id of a request, recorded with the events it causes.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The `X-Request-Id` a client or proxy sent, when it looks like an id.
/// It is the sender's word, so events record it under its own name,
/// `client_request_id`, beside ours.
#[derive(Debug, Clone)]
pub struct ClientRequestId(pub String);

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// At most 64 letters, digits, `-`, `_` and `.`: enough for a UUID or a
/// proxy's id, too little for markup, a line break or a log line of its own.
fn is_safe_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Counts each answered request by method, route as declared and status,
/// with the time to its answer.
async fn observe(
    axum::extract::State(ctx): axum::extract::State<ApiContext>,
    req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    // Only the standard methods: any other word a client sends would be a
    // new series.
    let method = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::POST => "POST",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    ctx.app.service_metrics().observe_request(
        method,
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Gives every request an id of ours, echoed in the response, and keeps a
/// well-formed incoming `X-Request-Id` beside it as the client's.
async fn assign_request_id(mut req: Request, next: Next) -> Response {
    let client = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_safe_request_id(v))
        .map(|v| ClientRequestId(v.to_owned()));
    let id = Uuid::new_v4().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    if let Some(client) = client {
        req.extensions_mut().insert(client);
    }
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::is_safe_request_id;

    #[test]
    fn only_plain_short_request_ids_are_kept() {
        for kept in [
            "req-12345",
            "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11",
            "Root-1.abc_def",
        ] {
            assert!(is_safe_request_id(kept), "{kept}");
        }
        for dropped in [
            "",
            "two words",
            "id\nforged log line",
            "<script>",
            "a/b",
            "ä",
            &"a".repeat(65),
        ] {
            assert!(!is_safe_request_id(dropped), "{dropped:?}");
        }
    }
}
