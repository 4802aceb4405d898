//! The signed-in user: profile, MFA reset, logout.
use authledger_aggregates::{Assurance, Password, SignInMethod, UserAuthCommand, UserAuthEvent};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{body_bytes, parse_json, BearerToken, RequestMeta};
use super::{ApiContext, ApiError, BodyProblems, Problem, Result, ServerProblems};

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub(super) user_id: Uuid,
    pub(super) email: String,
    pub(super) mfa: MfaStatus,
    pub(super) session: SessionInfo,
}

#[derive(Serialize, ToSchema)]
pub struct MfaStatus {
    pub(super) enrolled: bool,
    pub(super) enrolled_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    /// How this session was won: `totp`, `enrollment`, `recovery_code` or `email_link`.
    #[schema(value_type = String)]
    pub(super) method: SignInMethod,
    /// `aal2`, or `aal1` for an email link (email proves no device).
    #[schema(value_type = String)]
    pub(super) aal: Assurance,
    pub(super) started_at: DateTime<Utc>,
    /// The absolute end; an hour without use ends it sooner.
    pub(super) expires_at: DateTime<Utc>,
    pub(super) idle_expires_at: DateTime<Utc>,
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
    meta: RequestMeta,
    BearerToken(token): BearerToken,
) -> Result<axum::Json<Me>> {
    ctx.profile(&meta, &token).await.map(axum::Json)
}

impl ApiContext {
    pub(super) async fn profile(&self, meta: &RequestMeta, session_token: &str) -> Result<Me> {
        let (user, session) = self.session_token(session_token)?;
        let services = self.bus.services();
        // Touching the session checks it is live and records activity; the
        // state after it is what the profile shows.
        let (_, state) = self
            .bus
            .execute_then_state(
                user,
                UserAuthCommand::TouchSession { session },
                &meta.as_user(),
            )
            .await?;
        let live = state
            .live_session(&session, services.clock.now(), &services.policy)
            .cloned()
            .ok_or_else(ApiError::unauthenticated)?;
        let profile = state.profile().ok_or_else(ApiError::unauthenticated)?;
        Ok(Me {
            user_id: profile.user_id,
            email: profile.email,
            mfa: MfaStatus {
                enrolled: profile.enrolled_at.is_some(),
                enrolled_at: profile.enrolled_at,
            },
            session: SessionInfo {
                method: live.method,
                aal: live.aal,
                started_at: live.started_at,
                expires_at: live.expires_at,
                idle_expires_at: (live.last_active_at + services.policy.session_idle)
                    .min(live.expires_at),
            },
        })
    }

    pub(super) async fn reset_mfa(
        &self,
        meta: &RequestMeta,
        session_token: &str,
        password: Option<&str>,
    ) -> Result<ResetDone> {
        let (user, session) = self.session_token(session_token)?;
        let password = password
            .map(Password::parse)
            .transpose()
            .map_err(|e| ApiError::unacceptable_password().with_detail(e.to_string()))?;
        let events = self
            .bus
            .execute(
                user,
                UserAuthCommand::ResetMfa { session, password },
                &meta.as_user(),
            )
            .await?;
        if events
            .iter()
            .any(|e| matches!(e, UserAuthEvent::PasswordRejected { .. }))
        {
            return Err(ApiError::from_recorded_failure(
                &events,
                ApiError::reauthentication_failed(),
            ));
        }
        let sessions_ended = events
            .iter()
            .filter(|e| matches!(e, UserAuthEvent::SessionEnded { .. }))
            .count();
        Ok(ResetDone { sessions_ended })
    }

    pub(super) async fn logout(&self, meta: &RequestMeta, session_token: &str) -> Result<()> {
        let (user, session) = self.session_token(session_token)?;
        self.bus
            .execute(user, UserAuthCommand::Logout { session }, &meta.as_user())
            .await?;
        Ok(())
    }
}

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// Needed when this session was not won in the last 15 minutes.
    password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ResetDone {
    /// Sessions ended, this one included.
    pub(super) sessions_ended: usize,
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
    meta: RequestMeta,
    BearerToken(token): BearerToken,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<ResetDone>> {
    let body = body_bytes(body)?;
    let request: ResetRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ResetRequest::default()
    } else {
        parse_json(&body)?
    };
    ctx.reset_mfa(&meta, &token, request.password.as_deref())
        .await
        .map(axum::Json)
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
    meta: RequestMeta,
    BearerToken(token): BearerToken,
) -> Result<StatusCode> {
    ctx.logout(&meta, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}
