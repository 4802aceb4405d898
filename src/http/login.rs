//! The sign-in journey: password, then TOTP, enrollment, a recovery code or
//! an email link.
use authledger_aggregates::{
    Email, Password, RecoveryCode, SecondFactor, TotpCode, UserAuthCommand, UserAuthError,
    UserAuthEvent,
};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use qrcode::render::svg;
use qrcode::QrCode;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{body_bytes, parse_json, Json, RequestMeta};
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

#[derive(Serialize, ToSchema)]
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
    let started = Instant::now();
    let email = Email::parse(&body.email).map_err(|_| ApiError::invalid_email())?;
    let password = Password::parse(&body.password)
        .map_err(|e| ApiError::unacceptable_password().with_detail(e.to_string()))?;
    let user = email.user_id();
    let outcome = ctx
        .bus
        .execute(
            user,
            UserAuthCommand::SubmitPassword { password },
            &meta.as_user(),
        )
        .await;
    let opened = match &outcome {
        Ok(events) => events.iter().find_map(|event| match event {
            UserAuthEvent::PasswordVerified {
                attempt,
                expires_at,
                next,
                ..
            } => Some((*attempt, *expires_at, *next)),
            _ => None,
        }),
        Err(BusError::Refused(UserAuthError::InvalidCredentials)) => None,
        Err(_) => {
            return Err(outcome
                .err()
                .map(ApiError::from)
                .unwrap_or_else(ApiError::internal))
        }
    };
    let Some((attempt, expires_at, next)) = opened else {
        // Every failure waits until the same floor, so neither a missing
        // account nor a recorded failure can be told apart by timing.
        tokio::time::sleep_until(started + ctx.sign_in_failure_floor).await;
        return Err(ApiError::invalid_credentials());
    };
    let (next, alternatives) = match next {
        SecondFactor::Totp => (
            Next::Totp,
            vec![Alternative::EmailLink, Alternative::RecoveryCode],
        ),
        SecondFactor::Enroll => (Next::Enroll, vec![]),
    };
    Ok(axum::Json(LoginAttempt {
        login_token: ctx.tokens.encode(TokenKind::LoginAttempt, user, &attempt),
        next,
        alternatives,
        expires_at,
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

#[derive(Serialize, ToSchema)]
pub struct SessionWithRecoveryCode {
    session_token: String,
    expires_at: DateTime<Utc>,
    /// Shown once: it is stored only as a keyed hash.
    recovery_code: String,
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
}

impl ApiContext {
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
    let (user, attempt) = ctx.login_token(&body.login_token)?;
    let code = TotpCode::parse(&body.code).map_err(|_| ApiError::invalid_code_format())?;
    let events = ctx
        .bus
        .execute(
            user,
            UserAuthCommand::SubmitTotp { attempt, code },
            &meta.as_user(),
        )
        .await?;
    ctx.session_from(user, &events).map(axum::Json)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginTokenRequest {
    login_token: String,
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
    let (user, attempt) = ctx.login_token(&body.login_token)?;
    let secret = new_totp_secret();
    ctx.bus
        .execute(
            user,
            UserAuthCommand::BeginEnrollment {
                attempt,
                secret: secret.clone(),
            },
            &meta.as_user(),
        )
        .await?;
    let profile = ctx
        .bus
        .load(user)
        .await?
        .profile()
        .ok_or_else(ApiError::internal)?;
    let otpauth_uri = secret.otpauth_uri(&ctx.issuer, &profile.email);
    let qr_svg = QrCode::new(otpauth_uri.as_bytes())
        .map_err(ApiError::internal_from)?
        .render::<svg::Color>()
        .min_dimensions(200, 200)
        .build();
    Ok(axum::Json(Enrollment {
        otpauth_uri,
        secret: secret.to_base32(),
        qr_svg,
    }))
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
    let (user, attempt) = ctx.login_token(&body.login_token)?;
    let code = TotpCode::parse(&body.code).map_err(|_| ApiError::invalid_code_format())?;
    ctx.sign_in_with_new_recovery_code(user, &meta, |recovery_code| UserAuthCommand::EnrollMfa {
        attempt,
        code,
        recovery_code,
    })
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
    let (user, attempt) = ctx.login_token(&body.login_token)?;
    let code = RecoveryCode::parse(&body.code).map_err(|_| ApiError::invalid_code_format())?;
    ctx.sign_in_with_new_recovery_code(user, &meta, |replacement| {
        UserAuthCommand::UseRecoveryCode {
            attempt,
            code,
            replacement,
        }
    })
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
    let (user, attempt) = ctx.login_token(&body.login_token)?;
    ctx.bus
        .execute(
            user,
            UserAuthCommand::RequestEmailLink { attempt },
            &meta.as_user(),
        )
        .await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, IntoParams)]
pub struct LinkQuery {
    /// The token from the mailed link.
    token: Option<String>,
}

/// The page a mailed link opens. Opening it spends nothing (mail scanners
/// prefetch links); its button POSTs the redeem.
#[utoipa::path(get, path = "/v1/login/email-link", tag = "login",
    params(LinkQuery),
    responses(
        (status = 200, description = "A confirm page", content_type = "text/html"),
        (status = 400, description = "A page saying the link is broken", content_type = "text/html"),
    ))]
pub async fn email_link_page(
    query: std::result::Result<Query<LinkQuery>, QueryRejection>,
) -> Response {
    let token = query.ok().and_then(|Query(q)| q.token).unwrap_or_default();
    let well_formed = token.starts_with(TokenKind::EmailLink.prefix())
        && token.len() < 200
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !well_formed {
        return page(
            StatusCode::BAD_REQUEST,
            "This link is broken",
            "<p>The sign-in link is incomplete. Open it from the mail again, or sign in again to get a new one.</p>",
        );
    }
    page(
        StatusCode::OK,
        "Finish signing in",
        &format!(
            "<p>Continue to finish signing in to your account.</p>\
             <form method=\"post\" action=\"/v1/login/email-link/redeem\">\
             <input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <button type=\"submit\">Sign in</button></form>\
             <p>If you did not try to sign in, close this page and change your password.</p>"
        ),
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · authledger</title></head><body><main><h1>{title}</h1>{body}</main></body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    token: String,
}

/// Redeems a mailed link: signs in with assurance level aal1 (an email
/// proves no device). Takes JSON, or the form the link's page posts, which
/// is answered with a page.
#[utoipa::path(post, path = "/v1/login/email-link/redeem", tag = "login",
    request_body(content(
        (RedeemRequest = "application/json"),
        (RedeemRequest = "application/x-www-form-urlencoded"),
    )),
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
    headers: HeaderMap,
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let outcome = redeem(&ctx, &meta, &headers, body, is_form).await;
    match (outcome, is_form) {
        (Ok(session), false) => axum::Json(session).into_response(),
        (Err(problem), false) => problem.into_response(),
        (Ok(_), true) => page(
            StatusCode::OK,
            "You are signed in",
            "<p>This sign-in is complete. If it was not you, reset your multi-factor authentication from your profile and change your password.</p>",
        ),
        (Err(problem), true) => page(
            problem.status(),
            "This link cannot be used",
            "<p>The link has expired, was already used, or a newer one was sent. Sign in again to get a new link.</p>",
        ),
    }
}

async fn redeem(
    ctx: &ApiContext,
    meta: &RequestMeta,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
    is_form: bool,
) -> Result<SessionGranted> {
    let body = body_bytes(body)?;
    let request: RedeemRequest = if is_form {
        serde_urlencoded_form(&body)?
    } else {
        let json_content = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        if !json_content {
            return Err(ApiError::unsupported_media_type());
        }
        parse_json(&body)?
    };
    let (user, link) = ctx
        .tokens
        .decode(TokenKind::EmailLink, &request.token)
        .map_err(|_| ApiError::invalid_token())?;
    let events = ctx
        .bus
        .execute(
            user,
            UserAuthCommand::UseEmailLink { link },
            &meta.as_user(),
        )
        .await?;
    ctx.session_from(user, &events)
}

fn serde_urlencoded_form(body: &[u8]) -> Result<RedeemRequest> {
    let token = url_form_value(body, "token").ok_or_else(ApiError::invalid_body)?;
    Ok(RedeemRequest { token })
}

/// The value of `name` in a form body. Tokens are base64url with an ASCII
/// prefix, so no percent-decoding is needed; anything else is not a token.
fn url_form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}
