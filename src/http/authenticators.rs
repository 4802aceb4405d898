//! Security keys and passkeys at sign-in, and the signed-in user's
//! authenticators: list, add (another app, a security key or passkey),
//! remove. A WebAuthn ceremony is two requests: `…/options` answers what
//! the browser passes to `navigator.credentials` (`{"publicKey": …}`), and
//! the second carries the credential the browser answered, as its
//! `toJSON()` gives it.
use authledger_aggregates::{AuthenticatorId, AuthenticatorKind};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{BearerToken, Json};
use super::login::{Enrollment, LoginTokenRequest, SessionGranted, SessionWithRecoveryCode};
use super::me::optional_body;
use super::{
    ApiContext, ApiError, BodyProblems, Problem, Result, SecondFactorProblems, ServerProblems,
};
use crate::app::{self, AppError, Caller};

/// The options for `navigator.credentials.get()` or `.create()`:
/// `{"publicKey": {...}}`, with binary fields in base64url.
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct WebAuthnOptions(Value);

impl From<app::WebAuthnOptions> for WebAuthnOptions {
    fn from(options: app::WebAuthnOptions) -> Self {
        Self(options.0)
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionRequest {
    login_token: String,
    /// The `PublicKeyCredential` the browser answered, as its `toJSON()`.
    #[schema(value_type = Object)]
    credential: Value,
}

/// A challenge for the second step with a security key or passkey. Asking
/// again replaces it; it expires after `AUTHLEDGER_WEBAUTHN_CHALLENGE_SECS`
/// (5 minutes by default) or with the attempt, whichever comes first.
#[utoipa::path(post, path = "/v1/login/webauthn/options", tag = "login",
    request_body = LoginTokenRequest,
    responses(
        (status = 200, description = "Pass these to `navigator.credentials.get()`", body = WebAuthnOptions),
        (status = 401, description = "`invalid-login-token`, `login-attempt-invalid`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no-security-key`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "`webauthn-unavailable`: the public URL's host is an IP address", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn sign_in_options(
    State(ctx): State<ApiContext>,
    Json(body): Json<LoginTokenRequest>,
) -> Result<axum::Json<WebAuthnOptions>> {
    let options = ctx.app.webauthn_sign_in_options(&body.login_token).await?;
    Ok(axum::Json(options.into()))
}

/// Second factor: a security key's or passkey's answer to the attempt's
/// challenge. The challenge is used up by the first answer, right or wrong.
#[utoipa::path(post, path = "/v1/login/webauthn", tag = "login",
    request_body = AssertionRequest,
    responses(
        (status = 200, description = "Signed in", body = SessionGranted),
        (status = 401, description = "`invalid-login-token`, `login-attempt-invalid`, `webauthn-rejected` (recorded as a failed second factor), `webauthn-sign-count-regressed` (the key's count went back: refused until its owner removes it, recorded as a possibly copied key), `login-attempt-exhausted`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`webauthn-challenge-invalid` (answered already, expired, never asked for in this attempt), `enrollment-required`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `webauthn-response-malformed` (spends neither the challenge nor a try)", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "`webauthn-unavailable`", body = Problem, content_type = "application/problem+json"),
        SecondFactorProblems,
        BodyProblems,
        ServerProblems,
    ))]
pub async fn sign_in(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<AssertionRequest>,
) -> Result<axum::Json<SessionGranted>> {
    let signed_in = ctx
        .app
        .webauthn_sign_in(&caller, &body.login_token, &body.credential)
        .await?;
    Ok(axum::Json(signed_in.into()))
}

/// A challenge to enroll a security key or passkey as the account's first
/// authenticator, instead of an authenticator app.
#[utoipa::path(post, path = "/v1/login/enrollment/webauthn/options", tag = "login",
    request_body = LoginTokenRequest,
    responses(
        (status = 200, description = "Pass these to `navigator.credentials.create()`", body = WebAuthnOptions),
        (status = 401, description = "`invalid-login-token`, `login-attempt-invalid`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already-enrolled`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "`webauthn-unavailable`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn enroll_options(
    State(ctx): State<ApiContext>,
    Json(body): Json<LoginTokenRequest>,
) -> Result<axum::Json<WebAuthnOptions>> {
    let options = ctx.app.webauthn_enroll_options(&body.login_token).await?;
    Ok(axum::Json(options.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollKeyRequest {
    login_token: String,
    /// What the user calls it ("Laptop"), 1 to 64 characters.
    name: String,
    /// The `PublicKeyCredential` the browser answered, as its `toJSON()`.
    #[schema(value_type = Object)]
    credential: Value,
}

/// Enrolls the security key or passkey that answered the enrollment's
/// challenge: issues the recovery code and signs in.
#[utoipa::path(post, path = "/v1/login/enrollment/webauthn", tag = "login",
    request_body = EnrollKeyRequest,
    responses(
        (status = 200, description = "Enrolled and signed in; keep the recovery code", body = SessionWithRecoveryCode),
        (status = 401, description = "`invalid-login-token`, `login-attempt-invalid`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`webauthn-challenge-invalid`, `already-enrolled`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-authenticator-name`, `webauthn-registration-invalid`, `webauthn-response-malformed`", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "`webauthn-unavailable`", body = Problem, content_type = "application/problem+json"),
        SecondFactorProblems,
        BodyProblems,
        ServerProblems,
    ))]
pub async fn enroll(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<EnrollKeyRequest>,
) -> Result<axum::Json<SessionWithRecoveryCode>> {
    let signed_in = ctx
        .app
        .webauthn_enroll(&caller, &body.login_token, &body.name, &body.credential)
        .await?;
    Ok(axum::Json(signed_in.into()))
}

#[derive(Serialize, ToSchema)]
pub struct Authenticator {
    id: Uuid,
    /// `totp` (an authenticator app) or `webauthn` (a security key or passkey).
    #[schema(value_type = String)]
    kind: AuthenticatorKind,
    name: String,
    added_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    /// For a security key: how it reaches the browser (`usb`, `nfc`, `ble`, `internal`, `hybrid`).
    transports: Vec<String>,
    /// Set when the key answered with a signature count that went back:
    /// two copies of it may exist, and it is refused until removed.
    suspected_copy_at: Option<DateTime<Utc>>,
}

impl From<app::AuthenticatorEntry> for Authenticator {
    fn from(entry: app::AuthenticatorEntry) -> Self {
        Self {
            id: entry.id.0,
            kind: entry.kind,
            name: entry.name,
            added_at: entry.added_at,
            last_used_at: entry.last_used_at,
            transports: entry.transports,
            suspected_copy_at: entry.suspected_copy_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Authenticators {
    authenticators: Vec<Authenticator>,
}

/// The user's authenticator apps, security keys and passkeys, oldest first.
#[utoipa::path(get, path = "/v1/me/authenticators", tag = "me",
    security(("session" = [])),
    responses(
        (status = 200, description = "Every authenticator", body = Authenticators),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn list(
    State(ctx): State<ApiContext>,
    BearerToken(token): BearerToken,
) -> Result<axum::Json<Authenticators>> {
    let authenticators = ctx.app.authenticators(&token).await?;
    Ok(axum::Json(Authenticators {
        authenticators: authenticators.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordAgain {
    /// Needed when this session was not won within the reauthentication
    /// window (15 minutes by default).
    password: Option<String>,
}

/// Begins another authenticator app: a fresh secret, which a code from
/// the app confirms within the sign-in attempt's lifetime (5 minutes by
/// default). Needs a session won with a second factor. The body may be
/// empty.
#[utoipa::path(post, path = "/v1/me/authenticators/totp", tag = "me",
    security(("session" = [])),
    request_body(content = Option<PasswordAgain>, content_type = "application/json"),
    responses(
        (status = 200, description = "Scan this into the new app", body = Enrollment),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`second-factor-required`, `reauthentication-required`, `reauthentication-failed`, `account-locked`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`enrollment-required`, `too-many-authenticators`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `unacceptable-password`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`throttled`, with Retry-After", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn begin_totp(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Enrollment>> {
    let request: PasswordAgain = optional_body(body)?;
    let enrollment = ctx
        .app
        .begin_totp_device(&caller, &token, request.password.as_deref())
        .await?;
    Ok(axum::Json(enrollment.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmTotpRequest {
    /// What the user calls it ("Spare phone"), 1 to 64 characters.
    name: String,
    /// The current code from the new app.
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct Added {
    id: Uuid,
}

/// Adds the app begun from this session, confirmed with a code from it. A
/// wrong code changes nothing and counts against nothing.
#[utoipa::path(post, path = "/v1/me/authenticators/totp/confirm", tag = "me",
    security(("session" = [])),
    request_body = ConfirmTotpRequest,
    responses(
        (status = 201, description = "Added", body = Added),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`second-factor-required`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`authenticator-setup-not-started`, `enrollment-required`, `too-many-authenticators`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-authenticator-name`, `invalid-code-format`, `setup-code-incorrect`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn confirm_totp(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
    Json(body): Json<ConfirmTotpRequest>,
) -> Result<(axum::http::StatusCode, axum::Json<Added>)> {
    let id = ctx
        .app
        .add_totp_device(&caller, &token, &body.name, &body.code)
        .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        axum::Json(Added { id: id.0 }),
    ))
}

/// A challenge to register a security key or passkey. Needs a session won
/// with a second factor; the account's keys are excluded, so one key is not
/// registered twice.
#[utoipa::path(post, path = "/v1/me/authenticators/webauthn/options", tag = "me",
    security(("session" = [])),
    responses(
        (status = 200, description = "Pass these to `navigator.credentials.create()`", body = WebAuthnOptions),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`second-factor-required`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`enrollment-required`, `too-many-authenticators`", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "`webauthn-unavailable`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn register_options(
    State(ctx): State<ApiContext>,
    BearerToken(token): BearerToken,
) -> Result<axum::Json<WebAuthnOptions>> {
    let options = ctx.app.webauthn_register_options(&token).await?;
    Ok(axum::Json(options.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterKeyRequest {
    /// What the user calls it ("Work YubiKey"), 1 to 64 characters.
    name: String,
    /// Needed when this session was not won within the reauthentication
    /// window (15 minutes by default).
    password: Option<String>,
    /// The `PublicKeyCredential` the browser answered, as its `toJSON()`.
    #[schema(value_type = Object)]
    credential: Value,
}

/// Adds the security key or passkey that answered this session's
/// challenge; a notice is mailed.
#[utoipa::path(post, path = "/v1/me/authenticators/webauthn", tag = "me",
    security(("session" = [])),
    request_body = RegisterKeyRequest,
    responses(
        (status = 201, description = "Added", body = Added),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`second-factor-required`, `reauthentication-required`, `reauthentication-failed`, `account-locked`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`webauthn-challenge-invalid`, `credential-already-registered`, `enrollment-required`, `too-many-authenticators`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `invalid-authenticator-name`, `unacceptable-password`, `webauthn-registration-invalid`, `webauthn-response-malformed`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`throttled`, with Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "`webauthn-unavailable`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn register(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
    Json(body): Json<RegisterKeyRequest>,
) -> Result<(axum::http::StatusCode, axum::Json<Added>)> {
    let id = ctx
        .app
        .add_webauthn_credential(
            &caller,
            &token,
            body.password.as_deref(),
            &body.name,
            &body.credential,
        )
        .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        axum::Json(Added { id: id.0 }),
    ))
}

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    /// Needed when this session was not won within the reauthentication
    /// window (15 minutes by default).
    password: Option<String>,
    /// Needed to remove the last one: the next sign-in then enrolls a new
    /// authenticator, and the recovery code stops working.
    #[serde(default)]
    confirm_last: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Removed {
    /// None is left: the next sign-in enrolls a new authenticator.
    last: bool,
}

/// Removes one authenticator; a notice is mailed. The body may be empty.
#[utoipa::path(delete, path = "/v1/me/authenticators/{id}", tag = "me",
    security(("session" = [])),
    params(("id" = Uuid, Path, description = "The authenticator's id")),
    request_body(content = Option<RemoveRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`second-factor-required`, `reauthentication-required`, `reauthentication-failed`, `account-locked`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-authenticator`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last-authenticator` (send `confirm_last`), `enrollment-required`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`, `unacceptable-password`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`throttled`, with Retry-After", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn remove(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
    id: std::result::Result<Path<Uuid>, PathRejection>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Removed>> {
    let Path(id) = id.map_err(|_| ApiError::from(AppError::UnknownAuthenticator))?;
    let request: RemoveRequest = optional_body(body)?;
    let last = ctx
        .app
        .remove_authenticator(
            &caller,
            &token,
            request.password.as_deref(),
            AuthenticatorId(id),
            request.confirm_last,
        )
        .await?;
    Ok(axum::Json(Removed { last }))
}
