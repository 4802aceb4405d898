//! "Try another method": the recovery code, and a one-time sign-in link by
//! email (an account-recovery path, never more than `aal1`).
use authledger_aggregates::{RecoveryCode, UserAuthCommand};

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
        self.sign_in_with_new_code(user, caller, |replacement| {
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
            .run(user, caller, UserAuthCommand::UseEmailLink { link })
            .await?;
        self.signed_in(user, verdict)
    }

    /// The address a well-formed link signs in to, for its confirm page;
    /// `None` for a token that is not a link of ours. Spends nothing.
    pub async fn email_link_account(&self, token: &str) -> AppResult<Option<String>> {
        let Ok((user, _)) = self.tokens.decode(TokenKind::EmailLink, token) else {
            return Ok(None);
        };
        let state = self.bus.load(user).await.map_err(|err| self.refused(err))?;
        Ok(state.profile().map(|profile| profile.email))
    }
}
