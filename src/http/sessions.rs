//! The signed-in user's sessions, and session introspection for the apps
//! that rely on authledger (RFC 7662).
use authledger_aggregates::{Assurance, SignInMethod};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{body_bytes, BearerToken};
use super::{ApiContext, ApiError, BodyProblems, Problem, Result, ServerProblems};
use crate::app::{self, Caller, Introspection};

#[derive(Serialize, ToSchema)]
pub struct Sessions {
    /// The live sessions, oldest first.
    sessions: Vec<SessionItem>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionItem {
    /// The session's id, for ending it.
    id: String,
    /// `totp`, `enrollment`, `recovery_code` or `email_link`.
    #[schema(value_type = String)]
    method: SignInMethod,
    /// `aal2`, or `aal1` for an email link.
    #[schema(value_type = String)]
    aal: Assurance,
    started_at: DateTime<Utc>,
    last_active_at: DateTime<Utc>,
    /// When it ends unless used again.
    idle_expires_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// The IP the sign-in came from.
    ip: Option<String>,
    /// The browser and system of the sign-in, in words, e.g. "Firefox on Linux".
    browser: Option<String>,
    /// Whether this is the session asking.
    current: bool,
}

impl From<app::SessionView> for SessionItem {
    fn from(view: app::SessionView) -> Self {
        Self {
            id: view.id.to_string(),
            method: view.method,
            aal: view.aal,
            started_at: view.started_at,
            last_active_at: view.last_active_at,
            idle_expires_at: view.idle_expires_at,
            expires_at: view.expires_at,
            ip: view.ip,
            browser: view.browser,
            current: view.current,
        }
    }
}

pub fn session_items(views: Vec<app::SessionView>) -> Vec<SessionItem> {
    views.into_iter().map(SessionItem::from).collect()
}

/// The signed-in user's live sessions: when and how each began, its last
/// activity, and the IP and browser it began from.
#[utoipa::path(get, path = "/v1/me/sessions", tag = "me",
    security(("session" = [])),
    responses(
        (status = 200, description = "The live sessions", body = Sessions),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn list(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
) -> Result<axum::Json<Sessions>> {
    let views = ctx.app.my_sessions(&caller, &token).await?;
    Ok(axum::Json(Sessions {
        sessions: session_items(views),
    }))
}

/// Ends one of the signed-in user's sessions (this one too: a logout).
/// Needs a session won with the authenticator or recovery code.
#[utoipa::path(delete, path = "/v1/me/sessions/{id}", tag = "me",
    params(("id" = String, Path, description = "The session's id, as listed")),
    security(("session" = [])),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`second-factor-required`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-session`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn end(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    let Path(id) = id.map_err(|_| ApiError::unknown_session())?;
    ctx.app.end_my_session(&caller, &token, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct OthersEnded {
    sessions_ended: usize,
}

/// "Sign out everywhere else": ends every session of the user but this
/// one. Needs a session won with the authenticator or recovery code.
#[utoipa::path(post, path = "/v1/me/sessions/end-others", tag = "me",
    security(("session" = [])),
    responses(
        (status = 200, description = "The other sessions ended", body = OthersEnded),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`second-factor-required`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn end_others(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
) -> Result<axum::Json<OthersEnded>> {
    let sessions_ended = ctx.app.end_my_other_sessions(&caller, &token).await?;
    Ok(axum::Json(OthersEnded { sessions_ended }))
}

/// RFC 7662's request: a form with the token.
#[derive(Deserialize, ToSchema)]
pub struct IntrospectionRequest {
    /// The session token (`al_sess_…`) to ask about.
    token: String,
    /// Ignored: every token this answers for is a session token.
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// RFC 7662's answer. An inactive token has `active: false` and nothing
/// else, whatever the reason.
#[derive(Serialize, ToSchema, Default)]
pub struct IntrospectionResponse {
    active: bool,
    /// The user's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<Uuid>,
    /// The session's id (`sid`), as the user's session list shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    /// When the session ends unless used again, in seconds since the epoch
    /// (never later than its absolute expiry).
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    /// When the session began, in seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    /// When the user signed in, in seconds since the epoch (= `iat`).
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    /// `aal2`, or `aal1` for a session won by email link.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    aal: Option<Assurance>,
    /// How the session was won: `totp`, `webauthn` (a security key or passkey), `enrollment`, `recovery_code` or `email_link`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    method: Option<SignInMethod>,
    /// RFC 8176 methods: `pwd`, plus `otp` and `mfa` for a TOTP code, `hwk` and `mfa` for a security key or passkey, `mfa` for a recovery code.
    #[serde(skip_serializing_if = "Option::is_none")]
    amr: Option<Vec<&'static str>>,
}

/// Problems of the introspection route, for the OpenAPI document (never
/// constructed).
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
pub enum IntrospectionProblems {
    /// `invalid-client`: no client credential, or not one of `AUTHLEDGER_CLIENT_TOKENS`
    #[response(status = 401, content_type = "application/problem+json")]
    InvalidClient(Problem),
}

fn amr(method: SignInMethod) -> Vec<&'static str> {
    match method {
        SignInMethod::Totp | SignInMethod::Enrollment => vec!["pwd", "otp", "mfa"],
        SignInMethod::RecoveryCode => vec!["pwd", "mfa"],
        SignInMethod::EmailLink => vec!["pwd"],
        // RFC 8176: proof of possession of a hardware-secured key.
        SignInMethod::WebAuthn => vec!["pwd", "hwk", "mfa"],
    }
}

/// Session introspection (RFC 7662) for an app relying on authledger: is
/// this session token live, whose is it, how was it won. The app
/// authenticates with its client credential as a bearer token; the body
/// is a form, `token=al_sess_…`. An active answer counts as use of the
/// session (its idle timeout starts again).
#[utoipa::path(post, path = "/v1/introspect", tag = "introspection",
    request_body(content = IntrospectionRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client" = [])),
    responses(
        (status = 200, description = "Whether the token is active, and if so about its session", body = IntrospectionResponse),
        IntrospectionProblems,
        (status = 422, description = "`invalid-body`: no `token` field", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn introspect(
    State(ctx): State<ApiContext>,
    caller: Caller,
    client: Option<BearerToken>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<IntrospectionResponse>> {
    let Some(BearerToken(client)) = client else {
        return Err(ApiError::invalid_client());
    };
    let body = body_bytes(body)?;
    let request: IntrospectionRequest =
        serde_urlencoded::from_bytes(&body).map_err(|_| ApiError::invalid_body())?;
    let answer = ctx.app.introspect(&caller, &client, &request.token).await?;
    Ok(axum::Json(match answer {
        Introspection::Inactive => IntrospectionResponse::default(),
        Introspection::Active(session) => IntrospectionResponse {
            active: true,
            sub: Some(session.user_id),
            sid: Some(session.session.to_string()),
            iss: Some(ctx.public_origin.clone()),
            token_type: Some("session"),
            exp: Some(session.expires_at.timestamp()),
            iat: Some(session.auth_time.timestamp()),
            auth_time: Some(session.auth_time.timestamp()),
            aal: Some(session.aal),
            method: Some(session.method),
            amr: Some(amr(session.method)),
        },
    }))
}
