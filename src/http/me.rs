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

use super::extract::{body_bytes, parse_json, BearerToken, Json};
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
    /// When a reset asked from a session won by email link takes effect,
    /// unless cancelled.
    pending_reset_at: Option<DateTime<Utc>>,
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
                pending_reset_at: me.pending_mfa_reset,
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
    /// Sessions ended, this one included; absent while the reset waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions_ended: Option<usize>,
    /// When the reset takes effect, for one asked from a session won by
    /// email link; absent for a reset done now.
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_at: Option<DateTime<Utc>>,
}

/// A JSON body that may also be empty.
pub(super) fn optional_body<T: Default + serde::de::DeserializeOwned>(
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<T> {
    let body = body_bytes(body)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(&body)
    }
}

/// "Reset my multi-factor authentication": forgets the authenticator and
/// recovery code and ends every session of the user; the next sign-in
/// enrolls a new authenticator. From a session won by email link (`aal1`)
/// the reset waits (24 hours by default, mailed with a "this wasn't me"
/// link) and any sign-in with the authenticator cancels it. The body may be
/// empty.
#[utoipa::path(post, path = "/v1/me/mfa/reset", tag = "me",
    security(("session" = [])),
    request_body(content = Option<ResetRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Reset; signed out everywhere", body = ResetDone),
        (status = 202, description = "Waiting until `effective_at`", body = ResetDone),
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
) -> Result<(StatusCode, axum::Json<ResetDone>)> {
    let request: ResetRequest = optional_body(body)?;
    let done = ctx
        .app
        .reset_mfa(&caller, &token, request.password.as_deref())
        .await?;
    Ok(match done {
        app::ResetDone::Reset { sessions_ended } => (
            StatusCode::OK,
            axum::Json(ResetDone {
                sessions_ended: Some(sessions_ended),
                effective_at: None,
            }),
        ),
        app::ResetDone::Pending { effective_at } => (
            StatusCode::ACCEPTED,
            axum::Json(ResetDone {
                sessions_ended: None,
                effective_at: Some(effective_at),
            }),
        ),
    })
}

/// Cancels this user's pending MFA reset. Every session won by email link
/// ends with it (this one too, if it was).
#[utoipa::path(post, path = "/v1/me/mfa/reset/cancel", tag = "me",
    security(("session" = [])),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no-pending-mfa-reset`, `contended`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn cancel_mfa_reset(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
) -> Result<StatusCode> {
    ctx.app.cancel_mfa_reset(&caller, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// Needed unless this session was won with a second factor within the
    /// reauthentication window (15 minutes by default).
    current_password: Option<String>,
    new_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct PasswordChanged {
    /// The user's other sessions, ended.
    sessions_ended: usize,
}

/// A new password. Every other session of the user ends; a notice is
/// mailed.
#[utoipa::path(post, path = "/v1/me/password", tag = "me",
    security(("session" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 200, description = "Changed", body = PasswordChanged),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauthentication-required`, `reauthentication-failed`, `account-locked`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `unacceptable-password`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`throttled`, with Retry-After", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn change_password(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
    Json(body): Json<ChangePasswordRequest>,
) -> Result<axum::Json<PasswordChanged>> {
    let sessions_ended = ctx
        .app
        .change_password(
            &caller,
            &token,
            body.current_password.as_deref(),
            &body.new_password,
        )
        .await?;
    Ok(axum::Json(PasswordChanged { sessions_ended }))
}

#[derive(Serialize, ToSchema)]
pub struct NewRecoveryCode {
    /// Shown once: it is stored only as a keyed hash. The old code no
    /// longer works.
    recovery_code: String,
}

/// A new recovery code, for a session won with a second factor; the
/// password is needed when that was longer ago than the reauthentication
/// window. The body may be empty.
#[utoipa::path(post, path = "/v1/me/recovery-code", tag = "me",
    security(("session" = [])),
    request_body(content = Option<ResetRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "The new code", body = NewRecoveryCode),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`second-factor-required`, `reauthentication-required`, `reauthentication-failed`, `account-locked`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`enrollment-required`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `unacceptable-password`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`throttled`, with Retry-After", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn new_recovery_code(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<NewRecoveryCode>> {
    let request: ResetRequest = optional_body(body)?;
    let recovery_code = ctx
        .app
        .regenerate_recovery_code(&caller, &token, request.password.as_deref())
        .await?;
    Ok(axum::Json(NewRecoveryCode { recovery_code }))
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
