use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

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
pub struct Registered {
    user_id: Uuid,
}

/// Create an account. The account has no authenticator yet: the first
/// sign-in enrolls one.
#[utoipa::path(post, path = "/v1/users", tag = "users",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 403, description = "`registration-closed`: AUTHLEDGER_REGISTRATION is `closed`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email-taken`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-email`, `unacceptable-password` (the detail says why)", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn register(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<RegisterRequest>,
) -> Result<(StatusCode, axum::Json<Registered>)> {
    let user_id = ctx
        .app
        .register(&caller, &body.email, &body.password)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(Registered { user_id })))
}
