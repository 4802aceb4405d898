//! One error type at the HTTP edge, answered as RFC 9457 problem+json with a
//! stable `type` per error. Internal causes are logged, never shown.
use authledger_aggregates::FailedFactor;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

use crate::app::AppError;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

const TYPE_PREFIX: &str = "urn:authledger:problem:";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the error, `urn:authledger:problem:<slug>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Seconds to wait before retrying, when throttled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<i64>,
}

/// Problems every route with a JSON body can answer, for the OpenAPI
/// document (never constructed).
#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum BodyProblems {
    /// `malformed-body`: the body is not JSON
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(Problem),
    /// `body-too-large`: over 16 KiB
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// `unsupported-media-type`: not `application/json`
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
}

/// Problems of the second-factor routes, for the OpenAPI document (never
/// constructed).
#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum SecondFactorProblems {
    /// `account-locked`: an administrator must unlock the account
    #[response(status = 403, content_type = "application/problem+json")]
    Locked(Problem),
    /// `throttled`: too many failures; `Retry-After` says when to try again
    #[response(status = 429, content_type = "application/problem+json")]
    Throttled(Problem),
}

/// Problems every route can answer, for the OpenAPI document (never
/// constructed).
#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum ServerProblems {
    /// `internal`: a fault on the server's side, logged there
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
    /// `unavailable`: Postgres does not answer; `overloaded`: too many
    /// password hashes wait (routes that hash one), `Retry-After` says when
    /// to try again
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: Option<String>,
    retry_after: Option<i64>,
}

impl ApiError {
    const fn new(status: StatusCode, slug: &'static str, title: &'static str) -> Self {
        Self {
            status,
            slug,
            title,
            detail: None,
            retry_after: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The stable name of the problem, as in its `type`.
    pub fn slug(&self) -> &'static str {
        self.slug
    }

    pub fn retry_after(&self) -> Option<i64> {
        self.retry_after
    }

    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn malformed_body() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-body",
            "The request body is not valid JSON",
        )
    }
    pub fn invalid_body() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            "A field is missing or has the wrong type",
        )
    }
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "The body must be application/json",
        )
    }
    pub fn body_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "The request body is too large",
        )
    }
    pub fn invalid_query() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "A query parameter is missing or malformed",
        )
    }
    pub fn invalid_email() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-email",
            "The email address is not valid",
        )
    }
    pub fn unacceptable_password() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unacceptable-password",
            "The password is not acceptable",
        )
    }
    pub fn invalid_code_format() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-code-format",
            "The code is not in the expected format",
        )
    }

    pub fn registration_closed() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "registration-closed",
            "This service does not take new registrations",
        )
    }

    pub fn email_taken() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "email-taken",
            "An account with this email already exists",
        )
    }
    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid-credentials",
            "The email or password is incorrect",
        )
    }
    pub fn invalid_login_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid-login-token",
            "The login token is not valid",
        )
    }
    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid-token",
            "The token is not valid",
        )
    }
    pub fn login_attempt_invalid() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "login-attempt-invalid",
            "The sign-in attempt is over; sign in with your password again",
        )
    }
    pub fn invalid_code() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid-code",
            "The code is not correct",
        )
    }
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "A valid session token is required",
        )
    }
    pub fn email_link_invalid() -> Self {
        Self::new(
            StatusCode::GONE,
            "email-link-invalid",
            "The sign-in link is no longer valid",
        )
    }
    pub fn enrollment_required() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "enrollment-required",
            "The account has no authenticator; enroll one first",
        )
    }
    pub fn already_enrolled() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "already-enrolled",
            "The account already has an authenticator",
        )
    }
    pub fn enrollment_not_started() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "enrollment-not-started",
            "No enrollment was started in this sign-in attempt",
        )
    }
    pub fn account_locked() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "account-locked",
            "The account is locked; an administrator must unlock it",
        )
    }
    /// A wait until `until`, `seconds` from now by the domain's clock.
    pub fn throttled(until: DateTime<Utc>, seconds: i64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "Too many failed attempts",
        );
        error.retry_after = Some(seconds);
        error.detail = Some(format!("try again after {}", until.to_rfc3339()));
        error
    }
    /// Over the client's rate for the route's class; `seconds` until its
    /// next request is let through.
    pub fn rate_limited(seconds: i64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests from this client",
        );
        error.retry_after = Some(seconds);
        error
    }
    pub fn overloaded(seconds: i64) -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "The service is at capacity; try again shortly",
        );
        error.retry_after = Some(seconds);
        error
    }
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "The request body did not arrive in time",
        )
    }
    pub fn reauthentication_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "reauthentication-required",
            "This needs a recent sign-in, or the password",
        )
    }
    pub fn reauthentication_failed() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "reauthentication-failed",
            "The password is incorrect",
        )
    }
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "This credential may not do this",
        )
    }
    pub fn login_attempt_exhausted() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "login-attempt-exhausted",
            "Too many wrong codes: this sign-in is over; sign in again",
        )
    }
    pub fn email_verification_invalid() -> Self {
        Self::new(
            StatusCode::GONE,
            "email-verification-invalid",
            "The verification link was already used, has expired, or a newer one was sent",
        )
    }
    pub fn password_reset_invalid() -> Self {
        Self::new(
            StatusCode::GONE,
            "password-reset-invalid",
            "The password reset link was already used, has expired, or a newer one was sent",
        )
    }
    pub fn mfa_reset_denial_invalid() -> Self {
        Self::new(
            StatusCode::GONE,
            "mfa-reset-denial-invalid",
            "No MFA reset is waiting for this link",
        )
    }
    pub fn email_change_invalid() -> Self {
        Self::new(
            StatusCode::GONE,
            "email-change-invalid",
            "The link to confirm a new address was already used, has expired, or a newer one was sent",
        )
    }
    pub fn email_change_revert_invalid() -> Self {
        Self::new(
            StatusCode::GONE,
            "email-change-revert-invalid",
            "The link to undo a change of address was already used or has expired",
        )
    }
    pub fn same_email() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "same-email",
            "The new address is the account's address already",
        )
    }
    pub fn erasure_not_confirmed() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "erasure-not-confirmed",
            "Type the account's address to confirm the erasure",
        )
    }
    pub fn no_pending_mfa_reset() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "no-pending-mfa-reset",
            "No MFA reset is waiting",
        )
    }
    pub fn email_link_unavailable() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "email-link-unavailable",
            "Sign-in links are off after a password reset by email, until a sign-in with the authenticator or recovery code",
        )
    }
    pub fn second_factor_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "second-factor-required",
            "This needs a session won with the authenticator or the recovery code",
        )
    }
    pub fn report_link_invalid() -> Self {
        Self::new(
            StatusCode::GONE,
            "report-link-invalid",
            "The link to report this sign-in has expired",
        )
    }
    pub fn already_reported() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "already-reported",
            "This activity was reported already",
        )
    }
    pub fn not_reportable() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not-reportable",
            "Only a sign-in or a change of credentials can be reported",
        )
    }
    pub fn unknown_activity() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown-activity",
            "No such activity of your account",
        )
    }
    pub fn unknown_session() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown-session",
            "No such session of yours is live",
        )
    }
    pub fn already_suspended() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "already-suspended",
            "The account is suspended already",
        )
    }
    pub fn not_suspended() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "not-suspended",
            "The account is not suspended",
        )
    }
    pub fn already_verified() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "already-verified",
            "The account's address is verified already",
        )
    }
    pub fn verification_mails_exhausted() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "verification-mails-exhausted",
            "Too many verification mails went to this address lately; try again later",
        )
    }
    pub fn invalid_client() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid-client",
            "A valid client credential is required",
        )
    }
    pub fn unknown_user() -> Self {
        Self::new(StatusCode::NOT_FOUND, "unknown-user", "No such user")
    }
    pub fn invalid_device_token() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-device-token",
            "The device token is not one this service made",
        )
    }
    pub fn invalid_reason() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-reason",
            "A reason of 1 to 500 characters without control characters is required",
        )
    }
    pub fn contended() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "contended",
            "The account changed concurrently; try again",
        )
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "No such resource")
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "The method is not allowed here",
        )
    }
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "A dependency is unavailable",
        )
    }
    pub fn no_tree_head() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "no-tree-head",
            "No tree head is signed at this size (or yet)",
        )
    }
    pub fn unknown_event() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown-event",
            "No event at this position is in the tree (yet)",
        )
    }
    pub fn tree_size_unavailable() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "tree-size-unavailable",
            "The tree has not grown to this size yet",
        )
    }
    pub fn integrity_failure() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "integrity-failure",
            "The account's stored history fails its integrity check; operators have been alerted",
        )
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side",
        )
    }

    /// Logs the cause and answers a generic 500.
    pub fn internal_from(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::internal()
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        Self::from(&err)
    }
}

impl From<&AppError> for ApiError {
    /// The problem for a use case's error; the causes of the service's own
    /// failures are logged here, never shown.
    fn from(err: &AppError) -> Self {
        use AppError as E;
        match err {
            E::InvalidEmail(why) => Self::invalid_email().with_detail(why.to_string()),
            E::UnacceptablePassword(why) => {
                Self::unacceptable_password().with_detail(why.to_string())
            }
            E::InvalidCodeFormat => Self::invalid_code_format(),
            E::InvalidReason(why) => Self::invalid_reason().with_detail(why.to_string()),
            E::InvalidAuthenticatorName(why) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-authenticator-name",
                "The authenticator's name is not acceptable",
            )
            .with_detail(why.to_string()),
            E::InvalidQuery(why) => Self::invalid_query().with_detail(*why),
            E::InvalidLoginToken => Self::invalid_login_token(),
            E::InvalidLinkToken => Self::invalid_token(),
            E::Unauthenticated => Self::unauthenticated(),
            E::Forbidden => Self::forbidden(),
            E::RegistrationClosed => Self::registration_closed(),
            E::EmailTaken => Self::email_taken(),
            E::InvalidCredentials => Self::invalid_credentials(),
            E::LoginAttemptInvalid => Self::login_attempt_invalid(),
            E::AttemptExhausted { retry } => {
                let mut error = Self::login_attempt_exhausted();
                if let Some((until, seconds)) = retry {
                    error.retry_after = Some(*seconds);
                    error.detail = Some(format!("sign in again after {}", until.to_rfc3339()));
                }
                error
            }
            E::EmailVerificationInvalid => Self::email_verification_invalid(),
            E::PasswordResetInvalid => Self::password_reset_invalid(),
            E::MfaResetDenialInvalid => Self::mfa_reset_denial_invalid(),
            E::NoPendingMfaReset => Self::no_pending_mfa_reset(),
            E::EmailChangeInvalid => Self::email_change_invalid(),
            E::EmailChangeRevertInvalid => Self::email_change_revert_invalid(),
            E::SameEmail => Self::same_email(),
            E::ErasureNotConfirmed => Self::erasure_not_confirmed(),
            E::EmailLinkUnavailable => Self::email_link_unavailable(),
            E::SecondFactorRequired => Self::second_factor_required(),
            E::InvalidCode => Self::invalid_code(),
            E::WrongPassword => Self::reauthentication_failed(),
            E::Throttled {
                until,
                retry_after_secs,
                failed,
            } => {
                let (until, failed) = (*until, *failed);
                let throttled = Self::throttled(until, *retry_after_secs);
                // The failure that brought the wait on is named too.
                let failed = match failed {
                    None => return throttled,
                    Some(FailedFactor::Password) => Self::reauthentication_failed(),
                    Some(FailedFactor::WebAuthn) => Self::from(&AppError::WebAuthnRejected),
                    Some(FailedFactor::WebAuthnSignCount) => {
                        Self::from(&AppError::WebAuthnSignCountRegressed)
                    }
                    Some(_) => Self::invalid_code(),
                };
                let detail = format!("{}; try again after {}", failed.title, until.to_rfc3339());
                throttled.with_detail(detail)
            }
            E::AccountLocked => Self::account_locked(),
            E::EnrollmentRequired => Self::enrollment_required(),
            E::AlreadyEnrolled => Self::already_enrolled(),
            E::EnrollmentNotStarted => Self::enrollment_not_started(),
            E::EmailLinkInvalid => Self::email_link_invalid(),
            E::ReauthenticationRequired => Self::reauthentication_required(),
            E::NotLocked => Self::new(
                StatusCode::CONFLICT,
                "not-locked",
                "The account is neither locked nor throttled",
            ),
            E::UnknownUser => Self::unknown_user(),
            E::UnknownSession => Self::unknown_session(),
            E::AlreadySuspended => Self::already_suspended(),
            E::NotSuspended => Self::not_suspended(),
            E::AlreadyVerified => Self::already_verified(),
            E::VerificationMailsExhausted => Self::verification_mails_exhausted(),
            E::ReportLinkInvalid => Self::report_link_invalid(),
            E::AlreadyReported => Self::already_reported(),
            E::NotReportable => Self::not_reportable(),
            E::UnknownActivity => Self::unknown_activity(),
            E::UnknownAuthenticator => Self::new(
                StatusCode::NOT_FOUND,
                "unknown-authenticator",
                "No such authenticator on this account",
            ),
            E::LastAuthenticator => Self::new(
                StatusCode::CONFLICT,
                "last-authenticator",
                "This is the account's last authenticator: without it the next sign-in enrolls a new one; confirm to remove it anyway",
            ),
            E::WrongSetupCode => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "setup-code-incorrect",
                "The code does not match the authenticator app being set up",
            ),
            E::TotpDeviceSetupNotStarted => Self::new(
                StatusCode::CONFLICT,
                "authenticator-setup-not-started",
                "No authenticator app is being set up from this session, or it took too long",
            ),
            E::CredentialAlreadyRegistered => Self::new(
                StatusCode::CONFLICT,
                "credential-already-registered",
                "This security key or passkey is registered already",
            ),
            E::WebAuthnUnavailable => Self::new(
                StatusCode::NOT_IMPLEMENTED,
                "webauthn-unavailable",
                "Security keys and passkeys need the service on a domain name, not an IP address",
            ),
            E::NoSecurityKey => Self::new(
                StatusCode::CONFLICT,
                "no-security-key",
                "The account has no security key or passkey",
            ),
            E::WebAuthnChallengeInvalid => Self::new(
                StatusCode::CONFLICT,
                "webauthn-challenge-invalid",
                "No challenge is waiting for this answer: it was answered already, expired, or was never asked for here; ask for new options",
            ),
            E::WebAuthnRegistrationInvalid => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "webauthn-registration-invalid",
                "The security key's answer is not valid for this service and challenge",
            ),
            E::WebAuthnRejected => Self::new(
                StatusCode::UNAUTHORIZED,
                "webauthn-rejected",
                "The security key's or passkey's answer was refused",
            ),
            E::WebAuthnSignCountRegressed => Self::new(
                StatusCode::UNAUTHORIZED,
                "webauthn-sign-count-regressed",
                "The security key's signature count went back: two copies of it may be in use; it is refused, and recorded, until its owner removes it",
            ),
            E::WebAuthnResponseMalformed => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "webauthn-response-malformed",
                "The credential is not a WebAuthn answer of the kind this route takes (the browser's PublicKeyCredential, as its toJSON() gives it)",
            ),
            E::TooManyAuthenticators => Self::new(
                StatusCode::CONFLICT,
                "too-many-authenticators",
                "The account holds 16 authenticators, as many as it may: remove one first",
            ),
            E::InvalidClient => Self::invalid_client(),
            E::Contended => Self::contended(),
            E::Overloaded { retry_after_secs } => Self::overloaded(*retry_after_secs),
            E::Unavailable { what, cause } => {
                tracing::warn!(
                    error = format!("{cause:#}"),
                    what = *what,
                    "a dependency is unavailable"
                );
                Self::unavailable().with_detail(format!("{what} does not answer"))
            }
            E::IntegrityFailure => Self::integrity_failure(),
            E::NoTreeHead => Self::no_tree_head(),
            E::UnknownEvent => Self::unknown_event(),
            E::TreeSizeUnavailable => Self::tree_size_unavailable(),
            E::Internal(cause) => Self::internal_from(format!("{cause:#}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            problem_type: format!("{TYPE_PREFIX}{}", self.slug),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            retry_after: self.retry_after,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
