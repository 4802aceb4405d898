//! Admin commands: reset a user's MFA, unlock an account. The events record
//! the admin credential as actor, and the reason.
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::path_user;
use super::extract::{Admin, Json};
use super::{ApiContext, BodyProblems, Problem, Result, ServerProblems};
use crate::app::{AdminDone as Done, Caller};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminRequest {
    /// Why, for the record: 1 to 500 characters, without control characters.
    reason: String,
}

impl AdminRequest {
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[derive(Serialize, ToSchema)]
pub struct AdminDone {
    sessions_ended: usize,
}

impl AdminDone {
    pub fn ended(sessions_ended: usize) -> Self {
        Self { sessions_ended }
    }
}

/// Problems both admin routes can answer, for the OpenAPI document (never
/// constructed).
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
pub enum AdminProblems {
    /// `unauthenticated`: no admin credential
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(Problem),
    /// `forbidden`: an auditor's credential
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// `unknown-user`
    #[response(status = 404, content_type = "application/problem+json")]
    UnknownUser(Problem),
}

impl From<Done> for AdminDone {
    fn from(done: Done) -> Self {
        Self {
            sessions_ended: done.sessions_ended,
        }
    }
}

/// Resets a user's MFA (lost phone, identity checked out of band): the
/// authenticator and recovery code are forgotten and every session ends.
#[utoipa::path(post, path = "/v1/admin/users/{user}/mfa/reset", tag = "admin",
    params(("user" = String, Path, description = "User id or email")),
    request_body = AdminRequest,
    security(("admin" = [])),
    responses(
        (status = 200, description = "Reset", body = AdminDone),
        AdminProblems,
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-reason`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn reset_mfa(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Admin(admin): Admin,
    user: std::result::Result<Path<String>, PathRejection>,
    Json(body): Json<AdminRequest>,
) -> Result<axum::Json<AdminDone>> {
    let user = path_user(user)?;
    let done = ctx
        .app
        .admin_reset_mfa(&caller, &admin, &user, &body.reason)
        .await?;
    Ok(axum::Json(done.into()))
}

/// Unlocks a locked or throttled account and clears its failure count.
#[utoipa::path(post, path = "/v1/admin/users/{user}/unlock", tag = "admin",
    params(("user" = String, Path, description = "User id or email")),
    request_body = AdminRequest,
    security(("admin" = [])),
    responses(
        (status = 200, description = "Unlocked", body = AdminDone),
        AdminProblems,
        (status = 409, description = "`not-locked`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-reason`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn unlock(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Admin(admin): Admin,
    user: std::result::Result<Path<String>, PathRejection>,
    Json(body): Json<AdminRequest>,
) -> Result<axum::Json<AdminDone>> {
    let user = path_user(user)?;
    let done = ctx
        .app
        .unlock_account(&caller, &admin, &user, &body.reason)
        .await?;
    Ok(axum::Json(done.into()))
}
