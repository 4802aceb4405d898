//! Registration and the proof of an address.
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::Json;
use super::{ApiContext, BodyProblems, Problem, Result, ServerProblems};
use crate::app::Caller;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    email: String,
    /// 8 to 256 characters; common or guessable passwords are refused.
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// Always `check_your_inbox`.
    status: &'static str,
}

impl Accepted {
    pub(super) const INBOX: Self = Self {
        status: "check_your_inbox",
    };
}

/// Create an account. The answer is the same whether or not the address
/// has one: a new address gets a link to verify it (the account cannot sign
/// in before), a verified one a notice to its owner. A registration not yet
/// verified is replaced by a new one (new password, the earlier link void).
#[utoipa::path(post, path = "/v1/users", tag = "users",
    request_body = RegisterRequest,
    responses(
        (status = 202, description = "Taken: check your inbox", body = Accepted),
        (status = 403, description = "`registration-closed`: AUTHLEDGER_REGISTRATION is `closed`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-email`, `unacceptable-password` (the detail says why)", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn register(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<RegisterRequest>,
) -> Result<(StatusCode, axum::Json<Accepted>)> {
    ctx.app
        .register(&caller, &body.email, &body.password)
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(Accepted::INBOX)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token from the mailed link.
    pub(super) token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The token from the mailed link.
    token: String,
    /// The password chosen at registration.
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Verified {
    verified: bool,
}

/// Redeems the verification link mailed at registration, with the password
/// chosen there (so the owner of an inbox cannot confirm a squatter's
/// registration by mistake); the account can then sign in. Browsers open
/// the link's page instead, whose form posts this.
#[utoipa::path(post, path = "/v1/users/verify", tag = "users",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "The address is verified", body = Verified),
        (status = 401, description = "`invalid-token`: not a verification link of ours; `invalid-credentials`: not the password chosen at registration", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`email-verification-invalid`: used, expired or superseded", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn verify(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<VerifyRequest>,
) -> Result<axum::Json<Verified>> {
    ctx.app
        .verify_email(&caller, &body.token, &body.password)
        .await?;
    Ok(axum::Json(Verified { verified: true }))
}
