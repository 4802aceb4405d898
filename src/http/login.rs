//! The sign-in journey: password, then TOTP, enrollment, a recovery code or
//! an email link.
use authledger_aggregates::SecondFactor;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::Json;
use super::{
    ApiContext, ApiError, BodyProblems, Problem, Result, SecondFactorProblems, ServerProblems,
};
use crate::app::{self, Caller};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    email: String,
    password: String,
    /// The `device_token` an earlier password step answered: the sign-in
    /// then comes from a known device (no new-sign-in notice, and a
    /// stranger's failures do not hold it back).
    device_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Next {
    Totp,
    /// The account holds only security keys or passkeys.
    #[serde(rename = "webauthn")]
    WebAuthn,
    Enroll,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    /// A security key or passkey (`/v1/login/webauthn/options`).
    #[serde(rename = "webauthn")]
    WebAuthn,
    EmailLink,
    RecoveryCode,
}

#[derive(Serialize, ToSchema)]
pub struct LoginAttempt {
    /// Reaches only the second-factor and enrollment endpoints.
    login_token: String,
    next: Next,
    /// Other ways to finish this sign-in: `webauthn` beside `enroll` is a
    /// security key or passkey as the first authenticator; no email link or
    /// recovery code until an authenticator is enrolled, and no email link
    /// after a password reset by email until a sign-in with a second
    /// factor.
    alternatives: Vec<Alternative>,
    expires_at: DateTime<Utc>,
    /// Keep it and send it with later password steps, as a browser keeps
    /// its device cookie: the one sent, or a new one.
    device_token: String,
}

/// Step one: email and password. Unknown email, wrong password, and a
/// throttled or locked account answer the same, byte for byte.
#[utoipa::path(post, path = "/v1/login/password", tag = "login",
    request_body = PasswordRequest,
    responses(
        (status = 200, description = "Password correct: a login attempt is open", body = LoginAttempt),
        (status = 401, description = "`invalid-credentials`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-email`, `unacceptable-password`, `invalid-device-token` (not one this service made)", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn password(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<PasswordRequest>,
) -> Result<axum::Json<LoginAttempt>> {
    let device = match body.device_token {
        Some(token) if ctx.app.is_device_token(&token) => token,
        Some(_) => return Err(ApiError::invalid_device_token()),
        None => ctx.app.new_device_cookie(),
    };
    let opened = ctx
        .app
        .submit_password(&caller, &body.email, &body.password, Some(&device))
        .await?;
    let (next, alternatives) = match opened.next {
        SecondFactor::Totp => {
            let next = if opened.totp_available || !opened.webauthn_available {
                Next::Totp
            } else {
                Next::WebAuthn
            };
            let mut alternatives = Vec::new();
            if next == Next::Totp && opened.webauthn_available {
                alternatives.push(Alternative::WebAuthn);
            }
            if opened.email_link_available {
                alternatives.push(Alternative::EmailLink);
            }
            alternatives.push(Alternative::RecoveryCode);
            (next, alternatives)
        }
        // Enrolling a security key or passkey instead of an app.
        SecondFactor::Enroll if ctx.app.webauthn_available() => {
            (Next::Enroll, vec![Alternative::WebAuthn])
        }
        SecondFactor::Enroll => (Next::Enroll, vec![]),
    };
    Ok(axum::Json(LoginAttempt {
        login_token: opened.login_token,
        next,
        alternatives,
        expires_at: opened.expires_at,
        device_token: device,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    login_token: String,
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionGranted {
    session_token: String,
    expires_at: DateTime<Utc>,
}

impl From<app::SignedIn> for SessionGranted {
    fn from(signed_in: app::SignedIn) -> Self {
        Self {
            session_token: signed_in.session_token,
            expires_at: signed_in.expires_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionWithRecoveryCode {
    session_token: String,
    expires_at: DateTime<Utc>,
    /// Shown once: it is stored only as a keyed hash.
    recovery_code: String,
}

impl From<app::SignedInWithCode> for SessionWithRecoveryCode {
    fn from(signed_in: app::SignedInWithCode) -> Self {
        Self {
            session_token: signed_in.session.session_token,
            expires_at: signed_in.session.expires_at,
            recovery_code: signed_in.recovery_code,
        }
    }
}

/// Second factor: the current code from the authenticator app.
#[utoipa::path(post, path = "/v1/login/totp", tag = "login",
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Signed in", body = SessionGranted),
        (status = 401, description = "`invalid-login-token`, `login-attempt-invalid`, `invalid-code`, `login-attempt-exhausted`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`enrollment-required`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-code-format`", body = Problem, content_type = "application/problem+json"),
        SecondFactorProblems,
        BodyProblems,
        ServerProblems,
    ))]
pub async fn totp(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<CodeRequest>,
) -> Result<axum::Json<SessionGranted>> {
    let signed_in = ctx
        .app
        .submit_totp(&caller, &body.login_token, &body.code)
        .await?;
    Ok(axum::Json(signed_in.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginTokenRequest {
    pub(super) login_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct Enrollment {
    /// Key URI for authenticator apps.
    otpauth_uri: String,
    /// The same secret in base32, for manual entry.
    secret: String,
    /// The URI as a QR code.
    qr_svg: String,
}

impl From<app::Enrollment> for Enrollment {
    fn from(enrollment: app::Enrollment) -> Self {
        Self {
            otpauth_uri: enrollment.otpauth_uri,
            secret: enrollment.secret,
            qr_svg: enrollment.qr_svg,
        }
    }
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
    caller: Caller,
    Json(body): Json<LoginTokenRequest>,
) -> Result<axum::Json<Enrollment>> {
    let enrollment = ctx.app.begin_enrollment(&caller, &body.login_token).await?;
    Ok(axum::Json(enrollment.into()))
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
    caller: Caller,
    Json(body): Json<CodeRequest>,
) -> Result<axum::Json<SessionWithRecoveryCode>> {
    let signed_in = ctx
        .app
        .confirm_enrollment(&caller, &body.login_token, &body.code)
        .await?;
    Ok(axum::Json(signed_in.into()))
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
    caller: Caller,
    Json(body): Json<CodeRequest>,
) -> Result<axum::Json<SessionWithRecoveryCode>> {
    let signed_in = ctx
        .app
        .use_recovery_code(&caller, &body.login_token, &body.code)
        .await?;
    Ok(axum::Json(signed_in.into()))
}

/// "Try another method": a one-time sign-in link by email. The answer is
/// the same whether or not a mail goes out (by default at most 3 per 15 minutes).
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
    caller: Caller,
    Json(body): Json<LoginTokenRequest>,
) -> Result<StatusCode> {
    ctx.app
        .request_email_link(&caller, &body.login_token)
        .await?;
    Ok(StatusCode::ACCEPTED)
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
    caller: Caller,
    Json(body): Json<RedeemRequest>,
) -> Result<axum::Json<SessionGranted>> {
    let signed_in = ctx.app.redeem_email_link(&caller, &body.token).await?;
    Ok(axum::Json(signed_in.into()))
}
