use super::admin_reason::AdminReason;
use super::email::Email;
use super::password::{NewPassword, Password};
use super::recovery_code::RecoveryCode;
use super::reference::Reference;
use super::totp::{TotpCode, TotpSecret};

/// What a caller asks of a user's credentials. Fresh secrets (a TOTP secret,
/// a recovery code) are minted by the caller and handed in, because they
/// must reach the user while only their sealed or hashed form is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAuthCommand {
    RegisterUser {
        email: Email,
        password: NewPassword,
    },
    SubmitPassword {
        password: Password,
    },
    SubmitTotp {
        attempt: Reference,
        code: TotpCode,
    },
    BeginEnrollment {
        attempt: Reference,
        secret: TotpSecret,
    },
    EnrollMfa {
        attempt: Reference,
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
}
