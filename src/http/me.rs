//! The signed-in user: profile, MFA reset, logout.
use authledger_aggregates::{Assurance, SignInMethod};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{body_bytes, parse_json, BearerToken};
use super::{ApiContext, BodyProblems, Problem, Result, ServerProblems};
use crate::app::{self, Caller};

#[derive(Serialize, ToSchema)]
pub struct Me {
    user_id: Uuid,
    email: String,
    mfa: MfaStatus,
    session: SessionInfo,
}

#[derive(Serialize, ToSchema)]
pub struct MfaStatus {
    enrolled: bool,
    enrolled_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    /// How this session was won: `totp`, `enrollment`, `recovery_code` or `email_link`.
    #[schema(value_type = String)]
    method: SignInMethod,
    /// `aal2`, or `aal1` for an email link (email proves no device).
    #[schema(value_type = String)]
    aal: Assurance,
    started_at: DateTime<Utc>,
    /// The absolute end; the idle timeout (an hour by default) ends it sooner.
    expires_at: DateTime<Utc>,
    idle_expires_at: DateTime<Utc>,
}

/// The signed-in user's profile and how this session was won.
#[utoipa::path(get, path = "/v1/me", tag = "me",
    security(("session" = [])),
    responses(
        (status = 200, description = "The profile", body = Me),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn profile(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
) -> Result<axum::Json<Me>> {
    let me = ctx.app.profile(&caller, &token).await?;
    Ok(axum::Json(me.into()))
}

impl From<app::Me> for Me {
    fn from(me: app::Me) -> Self {
        Self {
            user_id: me.user_id,
            email: me.email,
            mfa: MfaStatus {
                enrolled: me.enrolled_at.is_some(),
                enrolled_at: me.enrolled_at,
            },
            session: SessionInfo {
                method: me.session.method,
                aal: me.session.aal,
                started_at: me.session.started_at,
                expires_at: me.session.expires_at,
                idle_expires_at: me.idle_expires_at,
            },
        }
    }
}

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// Needed when this session was not won within the reauthentication window (15 minutes by default).
    password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ResetDone {
    /// Sessions ended, this one included.
    sessions_ended: usize,
}

/// "Reset my multi-factor authentication": forgets the authenticator and
/// recovery code and ends every session of the user. The next sign-in
/// enrolls a new authenticator. The body may be empty.
#[utoipa::path(post, path = "/v1/me/mfa/reset", tag = "me",
    security(("session" = [])),
    request_body(content = Option<ResetRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Reset; signed out everywhere", body = ResetDone),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauthentication-required`, `reauthentication-failed`, `account-locked`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `unacceptable-password`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`throttled`, with Retry-After", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn reset_mfa(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<ResetDone>> {
    let body = body_bytes(body)?;
    let request: ResetRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ResetRequest::default()
    } else {
        parse_json(&body)?
    };
    let done = ctx
        .app
        .reset_mfa(&caller, &token, request.password.as_deref())
        .await?;
    Ok(axum::Json(ResetDone {
        sessions_ended: done.sessions_ended,
    }))
}

/// Ends this session.
#[utoipa::path(post, path = "/v1/logout", tag = "me",
    security(("session" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn logout(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
) -> Result<StatusCode> {
    ctx.app.logout(&caller, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}
