//! The sign-in journey: password, then TOTP, enrollment, a recovery code or
//! an email link.
use authledger_aggregates::{
    Email, Password, RecoveryCode, SealPurpose, SecondFactor, TotpCode, TotpSecret,
    UserAuthCommand, UserAuthError, UserAuthEvent,
};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use qrcode::render::svg;
use qrcode::QrCode;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{Json, RequestMeta};
use super::{
    ApiContext, ApiError, BodyProblems, Problem, Result, SecondFactorProblems, ServerProblems,
};
use crate::command_bus::BusError;
use crate::services::{new_recovery_code, new_totp_secret};
use crate::tokens::TokenKind;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    email: String,
    password: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Next {
    Totp,
    Enroll,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    EmailLink,
    RecoveryCode,
}

#[derive(Serialize, ToSchema)]
pub struct LoginAttempt {
    /// Reaches only the second-factor and enrollment endpoints.
    login_token: String,
    next: Next,
    /// Other ways to finish this sign-in; none until an authenticator is enrolled.
    alternatives: Vec<Alternative>,
    expires_at: DateTime<Utc>,
}

/// Step one: email and password. Unknown email, wrong password, and a
/// throttled or locked account answer the same, byte for byte.
#[utoipa::path(post, path = "/v1/login/password", tag = "login",
    request_body = PasswordRequest,
    responses(
        (status = 200, description = "Password correct: a login attempt is open", body = LoginAttempt),
        (status = 401, description = "`invalid-credentials`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-email`, `unacceptable-password`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn password(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    Json(body): Json<PasswordRequest>,
) -> Result<axum::Json<LoginAttempt>> {
    let opened = ctx
        .submit_password(&meta, &body.email, &body.password)
        .await?;
    let alternatives = match opened.next {
        Next::Totp => vec![Alternative::EmailLink, Alternative::RecoveryCode],
        Next::Enroll => vec![],
    };
    Ok(axum::Json(LoginAttempt {
        login_token: opened.login_token,
        next: opened.next,
        alternatives,
        expires_at: opened.expires_at,
    }))
}

/// A login attempt opened by a correct password.
pub(super) struct OpenedAttempt {
    pub login_token: String,
    pub next: Next,
    pub expires_at: DateTime<Utc>,
}

impl ApiContext {
    /// Step one, for the API and the console alike.
    pub(super) async fn submit_password(
        &self,
        meta: &RequestMeta,
        email: &str,
        password: &str,
    ) -> Result<OpenedAttempt> {
        let started = Instant::now();
        let email = Email::parse(email).map_err(|_| ApiError::invalid_email())?;
        let password = Password::parse(password)
            .map_err(|e| ApiError::unacceptable_password().with_detail(e.to_string()))?;
        let user = email.user_id();
        let outcome = self
            .bus
            .execute(
                user,
                UserAuthCommand::SubmitPassword { password },
                &meta.as_user(),
            )
            .await;
        let opened = match outcome {
            Ok(events) => events.iter().find_map(|event| match event {
                UserAuthEvent::PasswordVerified {
                    attempt,
                    expires_at,
                    next,
                    ..
                } => Some((*attempt, *expires_at, *next)),
                _ => None,
            }),
            // A conflict that outlasted the retries can only happen where
            // events are written, i.e. on a real account: it must not
            // answer differently from a wrong password.
            Err(BusError::Refused(UserAuthError::InvalidCredentials) | BusError::Contended) => None,
            Err(other) => return Err(other.into()),
        };
        let Some((attempt, expires_at, next)) = opened else {
            // Every failure waits until the same floor, so neither a missing
            // account nor a recorded failure can be told apart by timing.
            tokio::time::sleep_until(started + self.sign_in_failure_floor).await;
            return Err(ApiError::invalid_credentials());
        };
        Ok(OpenedAttempt {
            login_token: self.tokens.encode(TokenKind::LoginAttempt, user, &attempt),
            next: match next {
                SecondFactor::Totp => Next::Totp,
                SecondFactor::Enroll => Next::Enroll,
            },
            expires_at,
        })
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    login_token: String,
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionGranted {
    pub(super) session_token: String,
    pub(super) expires_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionWithRecoveryCode {
    pub(super) session_token: String,
    pub(super) expires_at: DateTime<Utc>,
    /// Shown once: it is stored only as a keyed hash.
    pub(super) recovery_code: String,
}

impl ApiContext {
    /// The session a command started, or why none was.
    fn session_from(&self, user: Uuid, events: &[UserAuthEvent]) -> Result<SessionGranted> {
        events
            .iter()
            .find_map(|event| match event {
                UserAuthEvent::SessionStarted {
                    session,
                    expires_at,
                    ..
                } => Some(SessionGranted {
                    session_token: self.tokens.encode(TokenKind::Session, user, session),
                    expires_at: *expires_at,
                }),
                _ => None,
            })
            .ok_or_else(|| second_factor_failure(events))
    }

    /// Runs a command that signs in and issues a new recovery code, which
    /// is shown once here and stored only as a keyed hash.
    async fn sign_in_with_new_recovery_code(
        &self,
        user: Uuid,
        meta: &RequestMeta,
        command: impl FnOnce(RecoveryCode) -> UserAuthCommand,
    ) -> Result<SessionWithRecoveryCode> {
        let fresh = new_recovery_code();
        let events = self
            .bus
            .execute(user, command(fresh.clone()), &meta.as_user())
            .await?;
        let session = self.session_from(user, &events)?;
        Ok(SessionWithRecoveryCode {
            session_token: session.session_token,
            expires_at: session.expires_at,
            recovery_code: fresh.display(),
        })
    }

    pub(super) async fn submit_totp(
        &self,
        meta: &RequestMeta,
        login_token: &str,
        code: &str,
    ) -> Result<SessionGranted> {
        let (user, attempt) = self.login_token(login_token)?;
        let code = TotpCode::parse(code).map_err(|_| ApiError::invalid_code_format())?;
        let events = self
            .bus
            .execute(
                user,
                UserAuthCommand::SubmitTotp { attempt, code },
                &meta.as_user(),
            )
            .await?;
        self.session_from(user, &events)
    }

    pub(super) async fn begin_enrollment(
        &self,
        meta: &RequestMeta,
        login_token: &str,
    ) -> Result<Enrollment> {
        let (user, attempt) = self.login_token(login_token)?;
        let secret = new_totp_secret();
        let (_, state) = self
            .bus
            .execute_then_state(
                user,
                UserAuthCommand::BeginEnrollment {
                    attempt,
                    secret: secret.clone(),
                },
                &meta.as_user(),
            )
            .await?;
        let profile = state.profile().ok_or_else(ApiError::internal)?;
        self.enrollment_of(&secret, &profile.email)
    }

    /// The enrollment begun in this login attempt and not yet confirmed, to
    /// show again; `None` when there is none.
    pub(super) async fn pending_enrollment(&self, login_token: &str) -> Result<Option<Enrollment>> {
        let (user, attempt) = self.login_token(login_token)?;
        let state = self.bus.load(user).await?;
        let services = self.bus.services();
        let now = services.clock.now();
        let (Some(sealed), Some(profile)) = (
            state.pending_enrollment_secret(&attempt, now, &services.policy),
            state.profile(),
        ) else {
            return Ok(None);
        };
        let bytes = self
            .bus
            .services()
            .keeper
            .unseal(SealPurpose::TotpSecret, sealed)
            .map_err(ApiError::internal_from)?;
        let secret = TotpSecret::from_slice(&bytes).ok_or_else(ApiError::internal)?;
        self.enrollment_of(&secret, &profile.email).map(Some)
    }

    fn enrollment_of(&self, secret: &TotpSecret, email: &str) -> Result<Enrollment> {
        let otpauth_uri = secret.otpauth_uri(&self.issuer, email);
        let qr_svg = QrCode::new(otpauth_uri.as_bytes())
            .map_err(ApiError::internal_from)?
            .render::<svg::Color>()
            .min_dimensions(200, 200)
            .build();
        Ok(Enrollment {
            otpauth_uri,
            secret: secret.to_base32(),
            qr_svg,
        })
    }

    pub(super) async fn confirm_enrollment(
        &self,
        meta: &RequestMeta,
        login_token: &str,
        code: &str,
    ) -> Result<SessionWithRecoveryCode> {
        let (user, attempt) = self.login_token(login_token)?;
        let code = TotpCode::parse(code).map_err(|_| ApiError::invalid_code_format())?;
        self.sign_in_with_new_recovery_code(user, meta, |recovery_code| {
            UserAuthCommand::EnrollMfa {
                attempt,
                code,
                recovery_code,
            }
        })
        .await
    }

    pub(super) async fn use_recovery_code(
        &self,
        meta: &RequestMeta,
        login_token: &str,
        code: &str,
    ) -> Result<SessionWithRecoveryCode> {
        let (user, attempt) = self.login_token(login_token)?;
        let code = RecoveryCode::parse(code).map_err(|_| ApiError::invalid_code_format())?;
        self.sign_in_with_new_recovery_code(user, meta, |replacement| {
            UserAuthCommand::UseRecoveryCode {
                attempt,
                code,
                replacement,
            }
        })
        .await
    }

    pub(super) async fn request_email_link(
        &self,
        meta: &RequestMeta,
        login_token: &str,
    ) -> Result<()> {
        let (user, attempt) = self.login_token(login_token)?;
        self.bus
            .execute(
                user,
                UserAuthCommand::RequestEmailLink { attempt },
                &meta.as_user(),
            )
            .await?;
        Ok(())
    }

    pub(super) async fn redeem_email_link(
        &self,
        meta: &RequestMeta,
        token: &str,
    ) -> Result<SessionGranted> {
        let (user, link) = self
            .tokens
            .decode(TokenKind::EmailLink, token)
            .map_err(|_| ApiError::invalid_token())?;
        let events = self
            .bus
            .execute(
                user,
                UserAuthCommand::UseEmailLink { link },
                &meta.as_user(),
            )
            .await?;
        self.session_from(user, &events)
    }
}

/// What a second-factor command that started no session recorded instead.
fn second_factor_failure(events: &[UserAuthEvent]) -> ApiError {
    ApiError::from_recorded_failure(events, ApiError::invalid_code())
}

/// Second factor: the current code from the authenticator app.
#[utoipa::path(post, path = "/v1/login/totp", tag = "login",
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Signed in", body = SessionGranted),
        (status = 401, description = "`invalid-login-token`, `login-attempt-invalid`, `invalid-code`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`enrollment-required`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-code-format`", body = Problem, content_type = "application/problem+json"),
        SecondFactorProblems,
        BodyProblems,
        ServerProblems,
    ))]
pub async fn totp(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    Json(body): Json<CodeRequest>,
) -> Result<axum::Json<SessionGranted>> {
    ctx.submit_totp(&meta, &body.login_token, &body.code)
        .await
        .map(axum::Json)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginTokenRequest {
    login_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct Enrollment {
    /// Key URI for authenticator apps.
    pub(super) otpauth_uri: String,
    /// The same secret in base32, for manual entry.
    pub(super) secret: String,
    /// The URI as a QR code.
    pub(super) qr_svg: String,
}

/// Enrollment: a new authenticator secret for an account that has none.
/// Asking again replaces the secret.
#[utoipa::path(post, path = "/v1/login/enrollment", tag = "login",
    request_body = LoginTokenRequest,
    responses(
        (status = 200, description = "Scan this into an authenticator app", body = Enrollment),
        (status = 401, description = "`invalid-login-token`, `login-attempt-invalid`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already-enrolled`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`", body = Problem, content_type = "application/problem+json"),
        SecondFactorProblems,
        BodyProblems,
        ServerProblems,
    ))]
pub async fn begin_enrollment(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    Json(body): Json<LoginTokenRequest>,
) -> Result<axum::Json<Enrollment>> {
    ctx.begin_enrollment(&meta, &body.login_token)
        .await
        .map(axum::Json)
}

/// Enrollment, confirmed with a first code: enrolls the authenticator,
/// issues the recovery code (shown once) and signs in.
#[utoipa::path(post, path = "/v1/login/enrollment/confirm", tag = "login",
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Enrolled and signed in", body = SessionWithRecoveryCode),
        (status = 401, description = "`invalid-login-token`, `login-attempt-invalid`, `invalid-code`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already-enrolled`, `enrollment-not-started`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-code-format`", body = Problem, content_type = "application/problem+json"),
        SecondFactorProblems,
        BodyProblems,
        ServerProblems,
    ))]
pub async fn confirm_enrollment(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    Json(body): Json<CodeRequest>,
) -> Result<axum::Json<SessionWithRecoveryCode>> {
    ctx.confirm_enrollment(&meta, &body.login_token, &body.code)
        .await
        .map(axum::Json)
}

/// "Try another method": the recovery code. It is spent, and a new one is
/// issued and shown once.
#[utoipa::path(post, path = "/v1/login/recovery-code", tag = "login",
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Signed in; `recovery_code` is the new one", body = SessionWithRecoveryCode),
        (status = 401, description = "`invalid-login-token`, `login-attempt-invalid`, `invalid-code`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`enrollment-required`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-code-format`", body = Problem, content_type = "application/problem+json"),
        SecondFactorProblems,
        BodyProblems,
        ServerProblems,
    ))]
pub async fn recovery_code(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    Json(body): Json<CodeRequest>,
) -> Result<axum::Json<SessionWithRecoveryCode>> {
    ctx.use_recovery_code(&meta, &body.login_token, &body.code)
        .await
        .map(axum::Json)
}

/// "Try another method": a one-time sign-in link by email. The answer is
/// the same whether or not a mail goes out (at most 3 per 15 minutes).
#[utoipa::path(post, path = "/v1/login/email-link", tag = "login",
    request_body = LoginTokenRequest,
    responses(
        (status = 202, description = "Accepted"),
        (status = 401, description = "`invalid-login-token`, `login-attempt-invalid`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`enrollment-required`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn request_email_link(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    Json(body): Json<LoginTokenRequest>,
) -> Result<StatusCode> {
    ctx.request_email_link(&meta, &body.login_token).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, IntoParams)]
pub struct LinkQuery {
    /// The token from the mailed link.
    token: Option<String>,
}

/// The page a mailed link opens, part of the web console. Opening it
/// spends nothing (mail scanners prefetch links); its button POSTs the
/// redeem, which signs the browser in.
#[utoipa::path(get, path = "/v1/login/email-link", tag = "login",
    params(LinkQuery),
    responses(
        (status = 200, description = "A confirm page", content_type = "text/html"),
        (status = 400, description = "A page saying the link is broken", content_type = "text/html"),
    ))]
pub async fn email_link_page(
    State(ctx): State<ApiContext>,
    browser: super::console::Browser,
    query: std::result::Result<Query<LinkQuery>, QueryRejection>,
) -> Response {
    let token = query.ok().and_then(|Query(q)| q.token).unwrap_or_default();
    super::console::email_link_page(&ctx, browser, &token).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    token: String,
}

/// Redeems a mailed link: signs in with assurance level aal1 (an email
/// proves no device). Browsers redeem through the console's form instead.
#[utoipa::path(post, path = "/v1/login/email-link/redeem", tag = "login",
    request_body = RedeemRequest,
    responses(
        (status = 200, description = "Signed in", body = SessionGranted),
        (status = 401, description = "`invalid-token`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`account-locked`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`email-link-invalid`: expired, spent, superseded, or its sign-in attempt is over", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`throttled`, with Retry-After", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn redeem_email_link(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    Json(body): Json<RedeemRequest>,
) -> Result<axum::Json<SessionGranted>> {
    ctx.redeem_email_link(&meta, &body.token)
        .await
        .map(axum::Json)
}
