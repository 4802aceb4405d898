//! Creating an account, and proving its address. Registration answers the
//! same for every address, so it tells nobody who has an account: a new
//! address gets a verification link, a verified one a notice to its owner.
use authledger_aggregates::{Email, NewPassword, Password, UserAuthCommand};
use tokio::time::Instant;

use super::{App, AppError, AppResult, Caller};
use crate::tokens::TokenKind;

impl App {
    /// Takes a registration. Whatever became of it, the answer is the same
    /// and comes no sooner than the configured floor.
    pub async fn register(&self, caller: &Caller, email: &str, password: &str) -> AppResult<()> {
        if !self.registration_open {
            return Err(AppError::RegistrationClosed);
        }
        self.shed_when_hashing_is_full()?;
        let started = Instant::now();
        let email = Email::parse(email).map_err(|_| AppError::InvalidEmail)?;
        let local_part = email
            .as_str()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned();
        let password = NewPassword::parse(password, &[email.as_str(), &local_part])
            .map_err(AppError::UnacceptablePassword)?;
        let outcome = self
            .run(
                email.user_id(),
                caller,
                UserAuthCommand::RegisterUser { email, password },
            )
            .await;
        tokio::time::sleep_until(started + self.sign_in_failure_floor).await;
        match outcome {
            // Only a real account can be contended: it must look like any
            // other registration.
            Ok(_) | Err(AppError::Contended) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Redeems the link mailed at registration, with the password chosen
    /// there: the inbox alone confirms nobody's registration but its own.
    pub async fn verify_email(
        &self,
        caller: &Caller,
        token: &str,
        password: &str,
    ) -> AppResult<()> {
        self.shed_when_hashing_is_full()?;
        let (user, link) = self
            .tokens
            .decode(TokenKind::EmailVerification, token)
            .map_err(|_| AppError::InvalidLinkToken)?;
        let password = Password::parse(password).map_err(AppError::UnacceptablePassword)?;
        self.run(
            user,
            caller,
            UserAuthCommand::VerifyEmail { link, password },
        )
        .await?;
        Ok(())
    }
}
