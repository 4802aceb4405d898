//! The one error of the use cases: every refusal a caller can react to, by
//! name, and the two ways the service itself can fail.
use authledger_aggregates::{
    Consequence, FailedFactor, InvalidAdminReason, PasswordError, Rejection, UserAuthError,
};
use chrono::{DateTime, Utc};

use super::App;
use crate::command_bus::BusError;

pub type AppResult<T, E = AppError> = Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    // What was sent does not parse.
    #[error("the email address is not valid")]
    InvalidEmail,
    #[error("the password is not acceptable: {0}")]
    UnacceptablePassword(#[source] PasswordError),
    #[error("the code is not in the expected format")]
    InvalidCodeFormat,
    #[error(transparent)]
    InvalidReason(#[from] InvalidAdminReason),
    #[error("{0}")]
    InvalidQuery(&'static str),

    // Who is asking.
    #[error("the login token is not valid")]
    InvalidLoginToken,
    #[error("the sign-in link's token is not valid")]
    InvalidLinkToken,
    #[error("a valid session is required")]
    Unauthenticated,
    #[error("this credential may not do this")]
    Forbidden,

    // What the rules refused.
    #[error("registration is closed")]
    RegistrationClosed,
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Unknown email, wrong password, throttled or locked: one answer.
    #[error("the email or password is incorrect")]
    InvalidCredentials,
    #[error("the sign-in attempt is over")]
    LoginAttemptInvalid,
    #[error("the code is not correct")]
    InvalidCode,
    /// The password given to confirm a sensitive change is wrong.
    #[error("the password is incorrect")]
    WrongPassword,
    /// Sign-in waits until `until`; `failed` names the factor whose failure
    /// brought the wait on, when this very request did.
    #[error("too many failed attempts; try again after {until}")]
    Throttled {
        until: DateTime<Utc>,
        retry_after_secs: i64,
        failed: Option<FailedFactor>,
    },
    #[error("the account is locked")]
    AccountLocked,
    #[error("the account has no authenticator yet")]
    EnrollmentRequired,
    #[error("the account already has an authenticator")]
    AlreadyEnrolled,
    #[error("no enrollment was started in this sign-in attempt")]
    EnrollmentNotStarted,
    #[error("the sign-in link is no longer valid")]
    EmailLinkInvalid,
    #[error("this needs a recent sign-in or the password")]
    ReauthenticationRequired,
    #[error("the account is neither locked nor throttled")]
    NotLocked,
    #[error("no such user")]
    UnknownUser,
    #[error("the account changed concurrently too often")]
    Contended,

    // The service's own failures: logged with their cause, never shown.
    #[error("a dependency is unavailable: {what}")]
    Unavailable {
        what: &'static str,
        #[source]
        cause: anyhow::Error,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub(super) fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }
}

impl App {
    /// A wait until `until`, with the seconds to it by the domain's clock.
    pub(super) fn throttled(&self, until: DateTime<Utc>, failed: Option<FailedFactor>) -> AppError {
        AppError::Throttled {
            until,
            retry_after_secs: (until - self.now()).num_seconds().max(1),
            failed,
        }
    }

    /// What a refused or failed command answers.
    pub(super) fn refused(&self, err: BusError) -> AppError {
        use UserAuthError as E;
        match err {
            BusError::Refused(refusal) => match refusal {
                E::AlreadyRegistered => AppError::EmailTaken,
                E::InvalidCredentials => AppError::InvalidCredentials,
                E::LoginAttemptInvalid => AppError::LoginAttemptInvalid,
                E::Throttled { retry_after } => self.throttled(retry_after, None),
                E::AccountLocked => AppError::AccountLocked,
                E::EnrollmentRequired => AppError::EnrollmentRequired,
                E::AlreadyEnrolled => AppError::AlreadyEnrolled,
                E::EnrollmentNotStarted => AppError::EnrollmentNotStarted,
                E::EmailLinkInvalid => AppError::EmailLinkInvalid,
                E::SessionInvalid => AppError::Unauthenticated,
                E::ReauthenticationRequired => AppError::ReauthenticationRequired,
                E::NotLocked => AppError::NotLocked,
                E::UnknownUser => AppError::UnknownUser,
                E::Service(cause) => AppError::Internal(anyhow::anyhow!(cause)),
            },
            BusError::Contended => AppError::Contended,
            BusError::Store(cause) => AppError::Unavailable {
                what: "the event store",
                cause: anyhow::anyhow!(cause),
            },
        }
    }

    /// What a factor that failed answers: the lock or the wait it brought
    /// on, else `otherwise`.
    pub(super) fn rejected(&self, rejection: Rejection, otherwise: AppError) -> AppError {
        match rejection.consequence {
            Consequence::Locked => AppError::AccountLocked,
            Consequence::ThrottledUntil(until) => self.throttled(until, Some(rejection.factor)),
            Consequence::None => otherwise,
        }
    }
}
