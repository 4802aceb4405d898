use chrono::{DateTime, Utc};

use super::services::ServiceError;

/// Why a command was refused. A refusal records nothing; failures that
/// count against the account are recorded as events instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserAuthError {
    #[error("an account with this email already exists")]
    AlreadyRegistered,
    #[error("the email or password is incorrect")]
    InvalidCredentials,
    #[error("the sign-in attempt is no longer valid; sign in with your password again")]
    LoginAttemptInvalid,
    #[error("too many failed attempts; try again after {retry_after}")]
    Throttled { retry_after: DateTime<Utc> },
    #[error("the account is locked; an administrator must unlock it")]
    AccountLocked,
    #[error("the account has no authenticator yet; enroll one first")]
    EnrollmentRequired,
    #[error("the account already has an authenticator")]
    AlreadyEnrolled,
    #[error("no enrollment was started in this sign-in attempt")]
    EnrollmentNotStarted,
    #[error("the sign-in link is no longer valid")]
    EmailLinkInvalid,
    #[error("the session is not valid")]
    SessionInvalid,
    #[error("this needs a recent sign-in: sign in again or include your password")]
    ReauthenticationRequired,
    #[error("the account is neither locked nor throttled")]
    NotLocked,
    #[error("no such user")]
    UnknownUser,
    #[error("the verification link is no longer valid")]
    EmailVerificationInvalid,
    #[error("the password reset link is no longer valid")]
    PasswordResetInvalid,
    #[error("the link is no longer valid: no MFA reset is waiting")]
    MfaResetDenialInvalid,
    #[error("no MFA reset is waiting")]
    NoPendingMfaReset,
    #[error("the pending MFA reset is not due yet")]
    MfaResetNotDue,
    #[error(
        "sign-in links are off until the next sign-in with your authenticator or recovery code"
    )]
    EmailLinkUnavailable,
    #[error("this needs a sign-in with your authenticator or recovery code")]
    SecondFactorRequired,
    #[error("the new address is the account's address already")]
    SameEmail,
    #[error("no such session of this user is live")]
    UnknownSession,
    #[error("the account is suspended already")]
    AlreadySuspended,
    #[error("the account is not suspended")]
    NotSuspended,
    #[error("the address is verified already")]
    AlreadyVerified,
    #[error("too many verification mails for this address; try again later")]
    VerificationMailsExhausted,
    #[error("the link to report a sign-in is no longer valid")]
    ReportLinkInvalid,
    #[error("this activity was reported already")]
    AlreadyReported,
    #[error("only a sign-in or a change of credentials can be reported")]
    NotReportable,
    #[error("no such authenticator on this account")]
    UnknownAuthenticator,
    #[error("this is the account's last authenticator: removing it makes the next sign-in enroll a new one; confirm to remove it anyway")]
    LastAuthenticator,
    #[error("the code does not match the authenticator app being set up")]
    WrongSetupCode,
    #[error("no authenticator app is being set up from this session")]
    TotpDeviceSetupNotStarted,
    #[error("this security key or passkey is registered already")]
    CredentialAlreadyRegistered,
    #[error("the account holds as many authenticators as it may; remove one first")]
    TooManyAuthenticators,
    /// A service the rule needed (the password hasher) is at capacity and
    /// refused the work before it began: nothing was decided, so nothing
    /// counts against the account.
    #[error("the service is at capacity; try again shortly")]
    Overloaded,
    #[error("a service failed: {0}")]
    Service(String),
}

impl From<ServiceError> for UserAuthError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Busy => Self::Overloaded,
            ServiceError::Failed(cause) => Self::Service(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_service_is_an_overload_not_a_failure() {
        assert_eq!(
            UserAuthError::from(ServiceError::Busy),
            UserAuthError::Overloaded
        );
        assert_eq!(
            UserAuthError::from(ServiceError::Failed("broken".into())),
            UserAuthError::Service("broken".into())
        );
    }
}
