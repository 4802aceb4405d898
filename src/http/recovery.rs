//! A forgotten password, and the "this wasn't me" link of a pending MFA
//! reset. Neither starts a session.
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::Json;
use super::users::{Accepted, TokenRequest};
use super::{ApiContext, BodyProblems, Problem, Result, ServerProblems};
use crate::app::Caller;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    email: String,
}

/// "Forgot password?": a verified account gets a link to set a new
/// password (30 minutes, the newest only, at most 3 an hour by default).
/// The answer is the same for every address.
#[utoipa::path(post, path = "/v1/password/forgot", tag = "password",
    request_body = ForgotRequest,
    responses(
        (status = 202, description = "Taken: check your inbox", body = Accepted),
        (status = 422, description = "`invalid-body`, `invalid-email`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn forgot(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<ForgotRequest>,
) -> Result<(StatusCode, axum::Json<Accepted>)> {
    ctx.app.forgot_password(&caller, &body.email).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(Accepted::INBOX)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// The token from the mailed link.
    token: String,
    /// The new password, under the same rules as at registration.
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionsEnded {
    sessions_ended: usize,
}

/// Sets a new password through a mailed reset link. Every session ends and
/// none starts: sign in with the new password and a second factor. Until
/// then, sign-in links by email are off.
#[utoipa::path(post, path = "/v1/password/reset", tag = "password",
    request_body = ResetPasswordRequest,
    responses(
        (status = 200, description = "The password is set; signed out everywhere", body = SessionsEnded),
        (status = 401, description = "`invalid-token`: not a reset link of ours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`password-reset-invalid`: used, expired, superseded, or the password changed since", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `unacceptable-password`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn reset(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<ResetPasswordRequest>,
) -> Result<axum::Json<SessionsEnded>> {
    let sessions_ended = ctx
        .app
        .reset_password(&caller, &body.token, &body.password)
        .await?;
    Ok(axum::Json(SessionsEnded { sessions_ended }))
}

/// "This wasn't me": cancels the pending MFA reset the mailed link names
/// and ends every session of the account.
#[utoipa::path(post, path = "/v1/mfa-reset/deny", tag = "me",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Cancelled; signed out everywhere", body = SessionsEnded),
        (status = 401, description = "`invalid-token`: not such a link of ours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`mfa-reset-denial-invalid`: no reset is waiting for it", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn deny_mfa_reset(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<TokenRequest>,
) -> Result<axum::Json<SessionsEnded>> {
    let sessions_ended = ctx.app.deny_mfa_reset(&caller, &body.token).await?;
    Ok(axum::Json(SessionsEnded { sessions_ended }))
}
