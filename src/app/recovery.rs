//! "Try another method": the recovery code, and a one-time sign-in link by
//! email (an account-recovery path, never more than `aal1`).
use authledger_aggregates::{
    Email, MailedLink, RecoveryCode, SealPurpose, UserAuthCommand, Verdict,
};
use tokio::time::Instant;

use super::{App, AppError, AppResult, Caller, SignedIn, SignedInWithCode};
use crate::tokens::TokenKind;

impl App {
    /// Signs in with the recovery code, which is spent; a new one is issued
    /// and shown once.
    pub async fn use_recovery_code(
        &self,
        caller: &Caller,
        login_token: &str,
        code: &str,
    ) -> AppResult<SignedInWithCode> {
        let (user, attempt) = self.login_token(login_token)?;
        let code = RecoveryCode::parse(code).map_err(|_| AppError::InvalidCodeFormat)?;
        self.sign_in_with_new_code("recovery_code", user, caller, |replacement| {
            UserAuthCommand::UseRecoveryCode {
                attempt,
                code,
                replacement,
            }
        })
        .await
    }

    /// Asks for a sign-in link by mail. The answer is the same whether or
    /// not the per-account limit let a mail go out.
    pub async fn request_email_link(&self, caller: &Caller, login_token: &str) -> AppResult<()> {
        let (user, attempt) = self.login_token(login_token)?;
        self.run(user, caller, UserAuthCommand::RequestEmailLink { attempt })
            .await?;
        Ok(())
    }

    /// Redeems a mailed link's token.
    pub async fn redeem_email_link(&self, caller: &Caller, token: &str) -> AppResult<SignedIn> {
        let (user, link) = self
            .tokens
            .decode(TokenKind::EmailLink, token)
            .map_err(|_| AppError::InvalidLinkToken)?;
        let verdict = self
            .run_sign_in(
                "email_link",
                user,
                caller,
                UserAuthCommand::UseEmailLink { link },
            )
            .await?;
        self.signed_in("email_link", user, verdict)
    }

    /// The address a mailed link of `kind` is for, for its page, while the
    /// link can still be used; `None` for a token that is not such a link
    /// of ours. A link of ours that was used, has expired or was superseded
    /// is refused as its button would be, and names nobody. Spends nothing.
    pub async fn link_account(&self, kind: LinkKind, token: &str) -> AppResult<Option<String>> {
        let Ok((user, reference)) = self.tokens.decode(kind.token_kind(), token) else {
            return Ok(None);
        };
        let (state, keeper) = self
            .bus
            .load_with_keeper(user)
            .await
            .map_err(|err| self.refused(err))?;
        state
            .mailed_link_address(kind.mailed(), &reference, self.now(), self.policy())
            .and_then(|address| keeper.open_text(SealPurpose::Email, address))
            .map(Some)
            .ok_or_else(|| kind.dead())
    }

    /// Whether "Email" may be offered in this login attempt.
    pub async fn email_link_offered(&self, login_token: &str) -> AppResult<bool> {
        let (user, _) = self.login_token(login_token)?;
        let state = self.bus.load(user).await.map_err(|err| self.refused(err))?;
        Ok(state.email_link_available())
    }

    /// "Forgot password?": a verified account gets a reset link. The answer
    /// is the same for every address, no sooner than the configured floor.
    pub async fn forgot_password(&self, caller: &Caller, email: &str) -> AppResult<()> {
        let started = Instant::now();
        let email = Email::parse(email).map_err(AppError::InvalidEmail)?;
        let outcome = match self.account_of(&email).await {
            Ok(Some(user)) => {
                self.run(user, caller, UserAuthCommand::RequestPasswordReset)
                    .await
            }
            Ok(None) => Ok(Verdict::PasswordResetRequested { mailed: false }),
            Err(err) => Err(err),
        };
        tokio::time::sleep_until(started + self.sign_in_failure_floor).await;
        match outcome {
            Ok(_) | Err(AppError::Contended) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Sets a new password through a mailed reset link. Every session ends
    /// and none starts: the user signs in with the new password and a
    /// second factor.
    pub async fn reset_password(
        &self,
        caller: &Caller,
        token: &str,
        password: &str,
    ) -> AppResult<usize> {
        self.shed_when_hashing_is_full()?;
        let (user, link) = self
            .tokens
            .decode(TokenKind::PasswordReset, token)
            .map_err(|_| AppError::InvalidLinkToken)?;
        let (state, keeper) = self
            .bus
            .load_with_keeper(user)
            .await
            .map_err(|err| self.refused(err))?;
        // A dead link says so before the new password is judged.
        let email = super::identity::address_of(&state, &keeper)
            .filter(|_| {
                state.mailed_link_live(MailedLink::PasswordReset, &link, self.now(), self.policy())
            })
            .ok_or(AppError::PasswordResetInvalid)?;
        let password = super::registration::new_password(&email, password)?;
        match self
            .run(
                user,
                caller,
                UserAuthCommand::ResetPassword { link, password },
            )
            .await?
        {
            Verdict::PasswordReset { sessions_ended } => Ok(sessions_ended),
            _ => Err(AppError::internal(anyhow::anyhow!(
                "a password reset answered something else"
            ))),
        }
    }
}

/// The mailed links that open a page first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    SignIn,
    Verification,
    PasswordReset,
    ResetDenial,
    EmailChange,
    EmailChangeRevert,
    /// "This wasn't me" of a new-device notice.
    Report,
}

impl LinkKind {
    fn mailed(self) -> MailedLink {
        match self {
            Self::SignIn => MailedLink::SignIn,
            Self::Verification => MailedLink::Verification,
            Self::PasswordReset => MailedLink::PasswordReset,
            Self::ResetDenial => MailedLink::ResetDenial,
            Self::EmailChange => MailedLink::EmailChange,
            Self::EmailChangeRevert => MailedLink::EmailChangeRevert,
            Self::Report => MailedLink::Report,
        }
    }

    /// The refusal of a link of this kind that can no longer be used: the
    /// one the rule that redeems it gives.
    fn dead(self) -> AppError {
        match self {
            Self::SignIn => AppError::EmailLinkInvalid,
            Self::Verification => AppError::EmailVerificationInvalid,
            Self::PasswordReset => AppError::PasswordResetInvalid,
            Self::ResetDenial => AppError::MfaResetDenialInvalid,
            Self::EmailChange => AppError::EmailChangeInvalid,
            Self::EmailChangeRevert => AppError::EmailChangeRevertInvalid,
            Self::Report => AppError::ReportLinkInvalid,
        }
    }

    fn token_kind(self) -> TokenKind {
        match self {
            Self::SignIn => TokenKind::EmailLink,
            Self::Verification => TokenKind::EmailVerification,
            Self::PasswordReset => TokenKind::PasswordReset,
            Self::ResetDenial => TokenKind::ResetDenial,
            Self::EmailChange => TokenKind::EmailChange,
            Self::EmailChangeRevert => TokenKind::EmailChangeRevert,
            Self::Report => TokenKind::Report,
        }
    }
}
