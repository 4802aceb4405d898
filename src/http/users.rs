use authledger_aggregates::{Email, NewPassword, PasswordError, UserAuthCommand};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{Json, RequestMeta};
use super::{ApiContext, ApiError, BodyProblems, Problem, Result, ServerProblems};

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
    meta: RequestMeta,
    Json(body): Json<RegisterRequest>,
) -> Result<(StatusCode, axum::Json<Registered>)> {
    let user_id = ctx.register(&meta, &body.email, &body.password).await?;
    Ok((StatusCode::CREATED, axum::Json(Registered { user_id })))
}

impl ApiContext {
    pub(super) async fn register(
        &self,
        meta: &RequestMeta,
        email: &str,
        password: &str,
    ) -> Result<Uuid> {
        if !self.registration_open {
            return Err(ApiError::registration_closed());
        }
        let email = Email::parse(email).map_err(|_| ApiError::invalid_email())?;
        let local_part = email
            .as_str()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned();
        let password = NewPassword::parse(password, &[email.as_str(), &local_part])
            .map_err(password_problem)?;
        let user_id = email.user_id();
        self.bus
            .execute(
                user_id,
                UserAuthCommand::RegisterUser { email, password },
                &meta.as_user(),
            )
            .await?;
        Ok(user_id)
    }
}

fn password_problem(err: PasswordError) -> ApiError {
    ApiError::unacceptable_password().with_detail(err.to_string())
}
