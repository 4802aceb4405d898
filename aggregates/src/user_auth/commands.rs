use uuid::Uuid;

use super::admin_reason::AdminReason;
use super::authenticator::{
    AuthenticatorId, AuthenticatorName, NewWebAuthnCredential, WebAuthnAssertion,
};
use super::device::DeviceDigest;
use super::email::Email;
use super::events::UserAuthEvent;
use super::password::{NewPassword, Password};
use super::recovery_code::RecoveryCode;
use super::reference::Reference;
use super::totp::{TotpCode, TotpSecret};

/// What a caller asks of a user's credentials. Fresh secrets (a TOTP secret,
/// a recovery code) are minted by the caller and handed in, because they
/// must reach the user while only their sealed or hashed form is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAuthCommand {
    /// `user_id` is chosen by the caller: a fresh random id for an address
    /// without an account, the account's own id for one with.
    RegisterUser {
        user_id: Uuid,
        email: Email,
        password: NewPassword,
    },
    SubmitPassword {
        password: Password,
        /// The digest of the browser's device cookie, when it has one.
        device: Option<DeviceDigest>,
    },
    SubmitTotp {
        attempt: Reference,
        code: TotpCode,
    },
    /// A security key or passkey answered the attempt's challenge; the
    /// caller checked its signature against the ceremony it kept.
    SubmitWebAuthn {
        attempt: Reference,
        assertion: WebAuthnAssertion,
    },
    /// The account's first authenticator is a security key or passkey,
    /// registered in the attempt instead of an authenticator app.
    EnrollWebAuthn {
        attempt: Reference,
        key: NewWebAuthnCredential,
        recovery_code: RecoveryCode,
    },
    /// Another authenticator app, from an `aal2` session that is recent (or
    /// that gives the password again): its fresh secret waits for a code.
    BeginTotpDevice {
        session: Reference,
        password: Option<Password>,
        secret: TotpSecret,
    },
    /// Confirms the authenticator app begun from `session` with a code.
    AddTotpDevice {
        session: Reference,
        authenticator: AuthenticatorId,
        name: AuthenticatorName,
        code: TotpCode,
    },
    /// A security key or passkey registered from an `aal2` session that is
    /// recent (or that gives the password again).
    AddWebAuthnCredential {
        session: Reference,
        password: Option<Password>,
        key: NewWebAuthnCredential,
    },
    /// Removes one authenticator, from an `aal2` session that is recent (or
    /// that gives the password again). The last one goes only with
    /// `confirm_last`: the next sign-in then enrolls a new one.
    RemoveAuthenticator {
        session: Reference,
        password: Option<Password>,
        authenticator: AuthenticatorId,
        confirm_last: bool,
    },
    BeginEnrollment {
        attempt: Reference,
        secret: TotpSecret,
    },
    EnrollMfa {
        attempt: Reference,
        authenticator: AuthenticatorId,
        code: TotpCode,
        recovery_code: RecoveryCode,
    },
    UseRecoveryCode {
        attempt: Reference,
        code: RecoveryCode,
        replacement: RecoveryCode,
    },
    RequestEmailLink {
        attempt: Reference,
    },
    UseEmailLink {
        link: Reference,
    },
    /// Records that a session was used, for the idle timeout.
    TouchSession {
        session: Reference,
    },
    ResetMfa {
        session: Reference,
        password: Option<Password>,
    },
    Logout {
        session: Reference,
    },
    AdminResetMfa {
        reason: AdminReason,
    },
    UnlockAccount {
        reason: AdminReason,
    },
    /// Redeems the verification link mailed at registration, with the
    /// password chosen then.
    VerifyEmail {
        link: Reference,
        password: Password,
    },
    /// "Forgot password?": mails a reset link to a verified account with an
    /// authenticator.
    RequestPasswordReset,
    /// Sets a new password through a mailed reset link; starts no session.
    ResetPassword {
        link: Reference,
        password: NewPassword,
    },
    /// The signed-in user's new password, from an `aal2` session only;
    /// `current` is needed unless that session is recent.
    ChangePassword {
        session: Reference,
        current: Option<Password>,
        new: NewPassword,
    },
    /// A new recovery code, minted by the caller, for an `aal2` session
    /// that is recent (or that gives the password again).
    RegenerateRecoveryCode {
        session: Reference,
        password: Option<Password>,
        code: RecoveryCode,
    },
    /// The user cancels their pending MFA reset.
    CancelMfaReset {
        session: Reference,
    },
    /// The "this wasn't me" link of a pending MFA reset.
    DenyMfaReset {
        link: Reference,
    },
    /// Carries out a pending MFA reset whose waiting period is over.
    CompletePendingMfaReset,
    /// A new address for the account, from an `aal2` session that is recent
    /// (or that gives the password again); a link to confirm it is mailed
    /// to the new address.
    RequestEmailChange {
        session: Reference,
        password: Option<Password>,
        new_email: Email,
    },
    /// The link mailed to the new address.
    ConfirmEmailChange {
        link: Reference,
    },
    /// The "this wasn't me" link mailed to the old address after a change.
    RevertEmailChange {
        revert: Reference,
    },
    /// Ends every session and forgets the account; the caller deletes the
    /// user's data key, which erases what the events hold of them.
    EraseAccount {
        by: ErasureRequest,
    },
    /// Ends one of the user's other sessions, from an `aal2` session.
    EndSession {
        session: Reference,
        target: Reference,
    },
    /// Ends every session of the user but `session`, an `aal2` one.
    EndOtherSessions {
        session: Reference,
    },
    /// An administrator ends every session of the account.
    AdminEndSessions {
        reason: AdminReason,
    },
    /// An administrator suspends the account: it cannot sign in by any
    /// route until reactivated, and its sessions end.
    SuspendAccount {
        reason: AdminReason,
    },
    ReactivateAccount {
        reason: AdminReason,
    },
    /// An administrator has a new verification link mailed to an account
    /// that has not confirmed its address.
    ResendVerification {
        reason: AdminReason,
    },
    /// Seals again with the current server key each secret sealed with an
    /// older one, so that the older key can be retired.
    ResealSecrets,
    /// "This wasn't me": the user says `reported` was not them.
    ReportActivity {
        reported: ReportedActivity,
        by: Reporter,
    },
}

/// An event of the user's own stream, as the caller read it from the log,
/// with its sequence there: the rule judges whether it may be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedActivity {
    pub sequence: u64,
    /// Boxed: an event is larger than any other command.
    pub event: Box<UserAuthEvent>,
}

/// Through what a report came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// One of the user's live sessions, of any assurance: whoever lost
    /// their authenticator must still be able to say so.
    Session(Reference),
    /// The link mailed with a new-device notice, about that sign-in.
    Link(Reference),
}

/// Who asks for an account to be erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasureRequest {
    /// The user, from an `aal2` session that is recent (or that gives the
    /// password again).
    User {
        session: Reference,
        password: Option<Password>,
    },
    Admin {
        reason: AdminReason,
    },
}
