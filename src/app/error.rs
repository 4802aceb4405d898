//! The one error of the use cases: every refusal a caller can react to, by
//! name, and the two ways the service itself can fail.
use authledger_aggregates::{
    Consequence, FailedFactor, InvalidAdminReason, InvalidAuthenticatorName, InvalidEmail,
    PasswordError, Rejection, UserAuthError,
};
use chrono::{DateTime, Utc};

use super::App;
use crate::command_bus::BusError;

pub type AppResult<T, E = AppError> = Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    // What was sent does not parse.
    #[error("the email address is not valid: {0}")]
    InvalidEmail(#[source] InvalidEmail),
    #[error("the password is not acceptable: {0}")]
    UnacceptablePassword(#[source] PasswordError),
    #[error("the code is not in the expected format")]
    InvalidCodeFormat,
    #[error(transparent)]
    InvalidReason(#[from] InvalidAdminReason),
    #[error(transparent)]
    InvalidAuthenticatorName(#[from] InvalidAuthenticatorName),
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
    /// This failure used up the attempt's tries: sign in again, no sooner
    /// than `retry` says when the failures also brought a wait.
    #[error("the sign-in attempt is used up")]
    AttemptExhausted { retry: Option<(DateTime<Utc>, i64)> },
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
    #[error("the verification link is no longer valid")]
    EmailVerificationInvalid,
    #[error("the password reset link is no longer valid")]
    PasswordResetInvalid,
    #[error("no MFA reset is waiting for this link")]
    MfaResetDenialInvalid,
    #[error("no MFA reset is waiting")]
    NoPendingMfaReset,
    #[error("the link to confirm a new address is no longer valid")]
    EmailChangeInvalid,
    #[error("the link to undo a change of address is no longer valid")]
    EmailChangeRevertInvalid,
    #[error("the new address is the account's address already")]
    SameEmail,
    #[error("the address typed to confirm the erasure is not the account's")]
    ErasureNotConfirmed,
    #[error("sign-in links are off until a sign-in with a second factor")]
    EmailLinkUnavailable,
    #[error("this needs a session won with the authenticator or recovery code")]
    SecondFactorRequired,
    #[error("no such session of this user is live")]
    UnknownSession,
    #[error("the account is suspended already")]
    AlreadySuspended,
    #[error("the account is not suspended")]
    NotSuspended,
    #[error("the address is verified already")]
    AlreadyVerified,
    #[error("too many verification mails for this address")]
    VerificationMailsExhausted,
    #[error("the link to report a sign-in is no longer valid")]
    ReportLinkInvalid,
    #[error("this activity was reported already")]
    AlreadyReported,
    #[error("only a sign-in or a change of credentials can be reported")]
    NotReportable,
    #[error("no such activity of this account")]
    UnknownActivity,
    #[error("no such authenticator on this account")]
    UnknownAuthenticator,
    #[error("this is the account's last authenticator")]
    LastAuthenticator,
    #[error("the code does not match the authenticator app being set up")]
    WrongSetupCode,
    #[error("no authenticator app is being set up from this session")]
    TotpDeviceSetupNotStarted,
    #[error("this security key or passkey is registered already")]
    CredentialAlreadyRegistered,
    /// The public URL's host is an IP address, which WebAuthn refuses.
    #[error("security keys and passkeys need the service on a domain name")]
    WebAuthnUnavailable,
    #[error("the account has no security key or passkey")]
    NoSecurityKey,
    /// Answered already, expired, never asked for in this attempt or
    /// session, or asked for by another account.
    #[error("no challenge of this sign-in or session is waiting for an answer")]
    WebAuthnChallengeInvalid,
    /// A registration the library refused (another origin or challenge, a
    /// malformed answer).
    #[error("the security key's answer is not valid")]
    WebAuthnRegistrationInvalid,
    /// An assertion that did not finish the sign-in; recorded as a failed
    /// second factor.
    #[error("the security key's or passkey's answer was refused")]
    WebAuthnRejected,
    /// Its signature count did not go up: recorded as a possibly copied
    /// key, a failed second factor.
    #[error("the security key's signature count did not go up")]
    WebAuthnSignCountRegressed,
    /// What was sent as a browser's WebAuthn answer is not one.
    #[error("the credential is not a WebAuthn answer")]
    WebAuthnResponseMalformed,
    #[error("the account holds as many authenticators as it may")]
    TooManyAuthenticators,
    /// The client credential of an introspection is missing or unknown.
    #[error("a valid client credential is required")]
    InvalidClient,
    #[error("the account changed concurrently too often")]
    Contended,
    /// No tree head is signed (at that size).
    #[error("no signed tree head")]
    NoTreeHead,
    /// No event at that position is in the tree yet.
    #[error("no such event in the tree")]
    UnknownEvent,
    /// The tree has not grown to the size asked for.
    #[error("the tree is not that large yet")]
    TreeSizeUnavailable,
    /// Too many password hashes wait already: refused before any work, the
    /// same for every caller.
    #[error("the service is at capacity; try again in {retry_after_secs} s")]
    Overloaded { retry_after_secs: i64 },

    // The service's own failures: logged with their cause, never shown.
    #[error("a dependency is unavailable: {what}")]
    Unavailable {
        what: &'static str,
        #[source]
        cause: anyhow::Error,
    },
    /// The account's stored history fails its integrity check: nothing
    /// is decided on it until an operator has looked (the alarm is raised
    /// where it was found).
    #[error("the account's history fails its integrity check")]
    IntegrityFailure,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// How long an overloaded caller is asked to wait: the queue is bounded,
/// so it drains within about this long.
const OVERLOADED_RETRY_AFTER_SECS: i64 = 1;

impl AppError {
    pub(super) fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }

    pub(super) fn overloaded() -> Self {
        Self::Overloaded {
            retry_after_secs: OVERLOADED_RETRY_AFTER_SECS,
        }
    }
}

impl App {
    /// Refuses, before any work, a request that needs a password hash
    /// while as many hashes wait as may: it could only make everyone's
    /// wait longer. It depends on nothing the caller sent, so it tells
    /// nothing about any account.
    pub(super) fn shed_when_hashing_is_full(&self) -> AppResult<()> {
        if self.hashing.is_full() {
            return Err(AppError::overloaded());
        }
        Ok(())
    }

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
                E::EmailVerificationInvalid => AppError::EmailVerificationInvalid,
                E::PasswordResetInvalid => AppError::PasswordResetInvalid,
                E::MfaResetDenialInvalid => AppError::MfaResetDenialInvalid,
                E::NoPendingMfaReset | E::MfaResetNotDue => AppError::NoPendingMfaReset,
                E::EmailLinkUnavailable => AppError::EmailLinkUnavailable,
                E::SecondFactorRequired => AppError::SecondFactorRequired,
                E::SameEmail => AppError::SameEmail,
                E::UnknownSession => AppError::UnknownSession,
                E::AlreadySuspended => AppError::AlreadySuspended,
                E::NotSuspended => AppError::NotSuspended,
                E::AlreadyVerified => AppError::AlreadyVerified,
                E::VerificationMailsExhausted => AppError::VerificationMailsExhausted,
                E::ReportLinkInvalid => AppError::ReportLinkInvalid,
                E::AlreadyReported => AppError::AlreadyReported,
                E::NotReportable => AppError::NotReportable,
                E::UnknownAuthenticator => AppError::UnknownAuthenticator,
                E::LastAuthenticator => AppError::LastAuthenticator,
                E::WrongSetupCode => AppError::WrongSetupCode,
                E::TotpDeviceSetupNotStarted => AppError::TotpDeviceSetupNotStarted,
                E::CredentialAlreadyRegistered => AppError::CredentialAlreadyRegistered,
                E::TooManyAuthenticators => AppError::TooManyAuthenticators,
                E::Overloaded => AppError::overloaded(),
                E::Service(cause) => AppError::Internal(anyhow::anyhow!(cause)),
            },
            BusError::Contended => AppError::Contended,
            // Only the owner of the address learns this: they opened its link.
            BusError::AddressTaken => AppError::EmailTaken,
            BusError::Tampered { .. } => AppError::IntegrityFailure,
            BusError::Store(cause) => AppError::Unavailable {
                what: "the event store",
                cause: anyhow::anyhow!(cause),
            },
        }
    }

    /// What a factor that failed answers: the lock it brought on; that the
    /// attempt is used up (with the wait, if any, before signing in again);
    /// the wait it brought on; else `otherwise`. A wait is only offered
    /// where trying again in the same attempt can work.
    pub(super) fn rejected(&self, rejection: Rejection, otherwise: AppError) -> AppError {
        let wait = |until: DateTime<Utc>| (until, (until - self.now()).num_seconds().max(1));
        match rejection.consequence {
            Consequence::Locked => AppError::AccountLocked,
            Consequence::ThrottledUntil(until) if rejection.attempt_over => {
                AppError::AttemptExhausted {
                    retry: Some(wait(until)),
                }
            }
            Consequence::None if rejection.attempt_over => {
                AppError::AttemptExhausted { retry: None }
            }
            Consequence::ThrottledUntil(until) => self.throttled(until, Some(rejection.factor)),
            Consequence::None => otherwise,
        }
    }
}
