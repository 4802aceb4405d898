//! The `UserAuth` aggregate: one user's credentials, attempts and sessions.
mod admin_reason;
mod authenticator;
mod commands;
mod device;
mod email;
mod error;
mod events;
mod links;
mod password;
mod recovery_code;
mod reference;
mod rules;
mod services;
mod state;
mod totp;
mod verdict;

#[cfg(test)]
mod testing;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;

pub use admin_reason::{AdminReason, InvalidAdminReason};
pub use authenticator::{
    AuthenticatorId, AuthenticatorKind, AuthenticatorName, AuthenticatorView,
    InvalidAuthenticatorName, NewWebAuthnCredential, WebAuthnAssertion, WebAuthnCredential,
};
pub use commands::{ErasureRequest, ReportedActivity, Reporter, UserAuthCommand};
pub use device::DeviceDigest;
pub use email::{Email, InvalidEmail};
pub use error::UserAuthError;
pub use events::{
    Actor, Assurance, ResealedSecret, ResetCancellation, SecondFactor, SessionEndReason,
    SignInMethod, TotpRejection, UserAuthEvent, WebAuthnRejection,
};
pub use links::MailedLink;
pub use password::{NewPassword, Password, PasswordError, MAX_PASSWORD_CHARS};
pub use recovery_code::{
    recovery_code_matches, seal_recovery_code, InvalidRecoveryCode, RecoveryCode,
    RECOVERY_CODE_BYTES,
};
pub use reference::Reference;
pub use rules::MAX_AUTHENTICATORS;
pub use services::{
    Clock, PasswordCheck, PasswordHash, PasswordHasher, Policy, Randomness, SealPurpose, Sealed,
    SecretKeeper, ServiceError, UserAuthServices,
};
pub use state::{AuditState, Profile, Session, UserAuth};
pub use totp::{
    check_code, code_at_step, time_step, InvalidTotpCode, TotpCheck, TotpCode, TotpSecret,
    TOTP_PERIOD_SECS, TOTP_SECRET_BYTES,
};
pub use verdict::{
    Consequence, Decided, FailedFactor, Registration, Rejection, StartedSession, Verdict,
};

impl Aggregate for UserAuth {
    const TYPE: &'static str = "UserAuth";
    type Command = UserAuthCommand;
    type Event = UserAuthEvent;
    type Error = UserAuthError;
    type Services = UserAuthServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let Decided { events, .. } = self.decide(command, services).await?;
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.apply_event(event);
    }
}

impl UserAuth {
    /// Decides `command` against the current state: the events to record
    /// and what they amount to. Records nothing itself; a refusal is an
    /// error and records nothing at all. Each rule lives in `rules/`.
    pub async fn decide(
        &self,
        command: UserAuthCommand,
        services: &UserAuthServices,
    ) -> Result<Decided, UserAuthError> {
        if !self.erased {
            return self.decide_live(command, services).await;
        }
        // An erased account answers as one never registered, refusals and
        // the work they cost alike, so nobody learns that it existed. Its
        // id is never registered again: the caller mints a new one.
        if let UserAuthCommand::RegisterUser { .. } = command {
            return Err(UserAuthError::UnknownUser);
        }
        UserAuth::default().decide_live(command, services).await
    }

    async fn decide_live(
        &self,
        command: UserAuthCommand,
        services: &UserAuthServices,
    ) -> Result<Decided, UserAuthError> {
        use UserAuthCommand as C;
        let s = services;
        let now = s.clock.now();
        match command {
            C::RegisterUser {
                user_id,
                email,
                password,
            } => self.register(user_id, &email, &password, s, now).await,
            C::SubmitPassword { password, device } => {
                self.submit_password(password, device, s, now).await
            }
            C::SubmitTotp { attempt, code } => self.submit_totp(attempt, &code, s, now),
            C::BeginEnrollment { attempt, secret } => {
                self.begin_enrollment(attempt, &secret, s, now)
            }
            C::EnrollMfa {
                attempt,
                authenticator,
                code,
                recovery_code,
            } => self.enroll(attempt, authenticator, &code, &recovery_code, s, now),
            C::EnrollWebAuthn {
                attempt,
                key,
                recovery_code,
            } => self.enroll_webauthn(attempt, key, &recovery_code, s, now),
            C::SubmitWebAuthn { attempt, assertion } => {
                self.submit_webauthn(attempt, assertion, s, now)
            }
            C::BeginTotpDevice {
                session,
                password,
                secret,
            } => {
                self.begin_totp_device(session, password, &secret, s, now)
                    .await
            }
            C::AddTotpDevice {
                session,
                authenticator,
                name,
                code,
            } => self.add_totp_device(session, authenticator, &name, &code, s, now),
            C::AddWebAuthnCredential {
                session,
                password,
                key,
            } => {
                self.add_webauthn_credential(session, password, key, s, now)
                    .await
            }
            C::RemoveAuthenticator {
                session,
                password,
                authenticator,
                confirm_last,
            } => {
                self.remove_authenticator(session, password, authenticator, confirm_last, s, now)
                    .await
            }
            C::UseRecoveryCode {
                attempt,
                code,
                replacement,
            } => self.use_recovery_code(attempt, &code, &replacement, s, now),
            C::RequestEmailLink { attempt } => self.request_email_link(attempt, s, now),
            C::UseEmailLink { link } => self.use_email_link(link, s, now),
            C::TouchSession { session } => self.touch_session(session, s, now),
            C::ResetMfa { session, password } => self.reset_mfa(session, password, s, now).await,
            C::Logout { session } => self.logout(session, s, now),
            C::AdminResetMfa { reason } => self.admin_reset_mfa(reason, s, now),
            C::UnlockAccount { reason } => self.unlock_account(reason, s, now),
            C::VerifyEmail { link, password } => self.verify_email(link, &password, s, now).await,
            C::RequestPasswordReset => self.request_password_reset(s, now),
            C::ResetPassword { link, password } => {
                self.reset_password(link, &password, s, now).await
            }
            C::ChangePassword {
                session,
                current,
                new,
            } => self.change_password(session, current, &new, s, now).await,
            C::RegenerateRecoveryCode {
                session,
                password,
                code,
            } => {
                self.regenerate_recovery_code(session, password, &code, s, now)
                    .await
            }
            C::CancelMfaReset { session } => self.cancel_mfa_reset(session, s, now),
            C::DenyMfaReset { link } => self.deny_mfa_reset(link, s, now),
            C::CompletePendingMfaReset => self.complete_pending_mfa_reset(s, now),
            C::RequestEmailChange {
                session,
                password,
                new_email,
            } => {
                self.request_email_change(session, password, &new_email, s, now)
                    .await
            }
            C::ConfirmEmailChange { link } => self.confirm_email_change(link, s, now),
            C::RevertEmailChange { revert } => self.revert_email_change(revert, s, now),
            C::EraseAccount { by } => self.erase_account(by, s, now).await,
            C::ResealSecrets => self.reseal_secrets(s, now),
            C::EndSession { session, target } => self.end_session(session, target, s, now),
            C::EndOtherSessions { session } => self.end_other_sessions(session, s, now),
            C::AdminEndSessions { reason } => self.admin_end_sessions(reason, s, now),
            C::SuspendAccount { reason } => self.suspend(reason, s, now),
            C::ReactivateAccount { reason } => self.reactivate(reason, s, now),
            C::ResendVerification { reason } => self.resend_verification(reason, s, now),
            C::ReportActivity { reported, by } => self.report_activity(reported, by, s, now),
        }
    }
}
