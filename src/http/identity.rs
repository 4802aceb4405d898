//! The signed-in user's address and account: change the address (confirmed
//! from the new inbox, undone from the old one), erase the account; and an
//! administrator's erasure.
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::admin::{AdminDone, AdminProblems, AdminRequest};
use super::audit::path_user;
use super::extract::{Admin, BearerToken, Json};
use super::users::TokenRequest;
use super::{ApiContext, BodyProblems, Problem, Result, ServerProblems};
use crate::app::Caller;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEmailRequest {
    /// The new address; a link to confirm it is mailed there.
    email: String,
    /// Needed unless this session was won with a second factor within the
    /// reauthentication window (15 minutes by default).
    password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EmailChangeRequested {
    /// When the mailed link stops working.
    expires_at: DateTime<Utc>,
}

/// Asks to change the account's address, from a session won with a second
/// factor. A link goes to the new address; until it is opened nothing
/// changes. Whether another account has that address is not said here.
#[utoipa::path(post, path = "/v1/me/email", tag = "me",
    security(("session" = [])),
    request_body = ChangeEmailRequest,
    responses(
        (status = 202, description = "A confirmation link was mailed to the new address", body = EmailChangeRequested),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`second-factor-required`, `reauthentication-required`, `reauthentication-failed`, `account-locked`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`same-email`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-email`, `unacceptable-password`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`throttled`, with Retry-After", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn change_email(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
    Json(body): Json<ChangeEmailRequest>,
) -> Result<(StatusCode, axum::Json<EmailChangeRequested>)> {
    let requested = ctx
        .app
        .request_email_change(&caller, &token, body.password.as_deref(), &body.email)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(EmailChangeRequested {
            expires_at: requested.expires_at,
        }),
    ))
}

/// Confirms a new address with the link mailed to it: it becomes the
/// account's address; the previous one is told, with a link to undo it.
#[utoipa::path(post, path = "/v1/me/email/confirm", tag = "me",
    request_body = TokenRequest,
    responses(
        (status = 204, description = "The address changed"),
        (status = 410, description = "`email-change-invalid`: not such a link, used, expired or superseded", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email-taken`: another account has the address, `contended`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn confirm_email_change(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<TokenRequest>,
) -> Result<StatusCode> {
    ctx.app.confirm_email_change(&caller, &body.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SessionsEnded {
    sessions_ended: usize,
}

/// "This wasn't me", with the link mailed to the address that was given
/// up: it becomes the account's address again and every session ends.
/// Then recover with "Forgot password" and the recovery code.
#[utoipa::path(post, path = "/v1/me/email/revert", tag = "me",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "The address is back; signed out everywhere", body = SessionsEnded),
        (status = 410, description = "`email-change-revert-invalid`: not such a link, used or expired", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email-taken`, `contended`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn revert_email_change(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<TokenRequest>,
) -> Result<axum::Json<SessionsEnded>> {
    let sessions_ended = ctx.app.revert_email_change(&caller, &body.token).await?;
    Ok(axum::Json(SessionsEnded { sessions_ended }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// The account's address, typed again.
    confirm_email: String,
    /// Needed unless this session was won with a second factor within the
    /// reauthentication window (15 minutes by default).
    password: Option<String>,
}

/// Erases the account: its personal data (address, IPs, browsers, free
/// text) becomes unreadable for good, its address is free, every session
/// ends. Its history stays, showing `erased` where personal data was.
#[utoipa::path(delete, path = "/v1/me", tag = "me",
    security(("session" = [])),
    request_body = EraseRequest,
    responses(
        (status = 200, description = "Erased; signed out everywhere", body = SessionsEnded),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`second-factor-required`, `reauthentication-required`, `reauthentication-failed`, `account-locked`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `erasure-not-confirmed`, `unacceptable-password`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`throttled`, with Retry-After", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn erase_me(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
    Json(body): Json<EraseRequest>,
) -> Result<axum::Json<SessionsEnded>> {
    let sessions_ended = ctx
        .app
        .erase_me(
            &caller,
            &token,
            body.password.as_deref(),
            &body.confirm_email,
        )
        .await?;
    Ok(axum::Json(SessionsEnded { sessions_ended }))
}

/// Erases an account (a person's request by another channel, a retention
/// rule), with a reason. As `DELETE /v1/me`.
#[utoipa::path(post, path = "/v1/admin/users/{user}/erase", tag = "admin",
    params(("user" = String, Path, description = "User id or email")),
    request_body = AdminRequest,
    security(("admin" = [])),
    responses(
        (status = 200, description = "Erased", body = AdminDone),
        AdminProblems,
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-reason`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn admin_erase(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Admin(admin): Admin,
    user: std::result::Result<Path<String>, PathRejection>,
    Json(body): Json<AdminRequest>,
) -> Result<axum::Json<AdminDone>> {
    let user = path_user(user)?;
    let sessions_ended = ctx
        .app
        .admin_erase(&caller, &admin, &user, body.reason())
        .await?;
    Ok(axum::Json(AdminDone::ended(sessions_ended)))
}
