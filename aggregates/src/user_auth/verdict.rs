//! What a command did, as the rule that handled it decided. Callers act on
//! the verdict; they never read it back out of the events.
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::authenticator::AuthenticatorId;
use super::events::{Assurance, SecondFactor, SignInMethod, UserAuthEvent};
use super::reference::Reference;
use super::services::Sealed;

/// What a command did, decided by the rule that handled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A registration was taken; every case answers the caller alike.
    Registered {
        user_id: Uuid,
        outcome: Registration,
    },
    /// A correct password opened a login attempt.
    AttemptOpened {
        attempt: Reference,
        next: SecondFactor,
        expires_at: DateTime<Utc>,
        /// Whether "Email" may be offered: not after a password reset by
        /// email until the next sign-in with a second factor.
        email_link_available: bool,
        /// Which kinds of authenticator the account holds, to offer each.
        totp_available: bool,
        webauthn_available: bool,
    },
    EnrollmentStarted,
    /// TOTP, enrollment, recovery code or email link started a session.
    SessionStarted(StartedSession),
    /// A factor was tried and failed; the failure was recorded.
    Rejected(Rejection),
    /// RequestEmailLink: `mailed` is false when the per-account limit silently dropped it.
    EmailLinkRequested {
        mailed: bool,
    },
    /// TouchSession: `recorded` is false when the last activity was recent enough.
    SessionTouched {
        recorded: bool,
    },
    MfaReset {
        sessions_ended: usize,
    },
    LoggedOut,
    Unlocked,
    EmailVerified,
    /// RequestPasswordReset: `mailed` is false for an unknown or unverified
    /// account, one without an authenticator, or over the limit; the
    /// caller's answer is the same.
    PasswordResetRequested {
        mailed: bool,
    },
    /// The password was set by a reset link; no session was started.
    PasswordReset {
        sessions_ended: usize,
    },
    /// Every other session of the user ended.
    PasswordChanged {
        sessions_ended: usize,
    },
    RecoveryCodeReplaced,
    /// An MFA reset from an `aal1` session waits until `effective_at`.
    MfaResetPending {
        effective_at: DateTime<Utc>,
    },
    /// A pending MFA reset was called off: by the user, ending the
    /// sessions won by email link (the cancelling one too, if it is one),
    /// or by the denial link, ending every session.
    MfaResetCancelled {
        sessions_ended: usize,
    },
    /// A link to confirm the new address is to be mailed to it.
    EmailChangeRequested {
        link: Reference,
        expires_at: DateTime<Utc>,
    },
    /// The address is now `to`; the "this wasn't me" link `revert` is to be
    /// mailed to `from`, the address given up.
    EmailChanged {
        from: Sealed,
        to: Sealed,
        revert: Reference,
        revert_until: DateTime<Utc>,
    },
    /// The address is `restored` again, `replaced` is given up, and every
    /// session ended.
    EmailChangeReverted {
        restored: Sealed,
        replaced: Sealed,
        sessions_ended: usize,
    },
    /// The account is erased and every session ended; the user's data key
    /// is the caller's to delete.
    Erased {
        sessions_ended: usize,
    },
    /// How many secrets were sealed again; zero records nothing.
    SecretsResealed {
        resealed: usize,
    },
    /// The account is suspended and every session ended.
    Suspended {
        sessions_ended: usize,
    },
    Reactivated,
    /// Sessions other than the caller's ended, by the user or an
    /// administrator; zero records nothing.
    SessionsEnded {
        sessions_ended: usize,
    },
    /// The one session named ended.
    SessionEnded,
    /// An administrator had a new verification link mailed.
    VerificationResent,
    /// Another authenticator app's secret waits for a code from it.
    TotpDeviceSetupStarted,
    /// An authenticator was added from a session.
    AuthenticatorAdded {
        authenticator: AuthenticatorId,
    },
    /// An authenticator was removed; `last` when the account has none left
    /// and enrolls again at its next sign-in.
    AuthenticatorRemoved {
        last: bool,
    },
    /// A report was recorded, every session ended, and a waiting MFA reset
    /// was called off if there was one.
    Reported {
        sessions_ended: usize,
        reset_cancelled: bool,
    },
}

/// What became of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// A new, unverified account; a verification link is mailed.
    New,
    /// An unverified registration replaced: new password, new link.
    Replaced,
    /// The address has a verified account: its owner is told.
    OwnerNotified,
    /// Over the per-address limit of mails: nothing recorded.
    Dropped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartedSession {
    pub session: Reference,
    pub method: SignInMethod,
    pub aal: Assurance,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub factor: FailedFactor,
    /// What the failure brought on.
    pub consequence: Consequence,
    /// This failure used up the login attempt's second-factor tries.
    pub attempt_over: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedFactor {
    Password,
    TotpCode,
    ReplayedTotpCode,
    RecoveryCode,
    /// A security key's or passkey's assertion that did not check out.
    WebAuthn,
    /// A security key's or passkey's signature count went back: a cloned
    /// key, recorded for the audit.
    WebAuthnSignCount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consequence {
    None,
    ThrottledUntil(DateTime<Utc>),
    Locked,
}

/// The events a command records and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub events: Vec<UserAuthEvent>,
    pub verdict: Verdict,
}
