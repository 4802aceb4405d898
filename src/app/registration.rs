//! Creating an account. It has no authenticator yet: the first sign-in
//! enrolls one.
use authledger_aggregates::{Email, NewPassword, UserAuthCommand};
use uuid::Uuid;

use super::{App, AppError, AppResult, Caller};

impl App {
    pub async fn register(&self, caller: &Caller, email: &str, password: &str) -> AppResult<Uuid> {
        if !self.registration_open {
            return Err(AppError::RegistrationClosed);
        }
        let email = Email::parse(email).map_err(|_| AppError::InvalidEmail)?;
        let local_part = email
            .as_str()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned();
        let password = NewPassword::parse(password, &[email.as_str(), &local_part])
            .map_err(AppError::UnacceptablePassword)?;
        let user_id = email.user_id();
        self.run(
            user_id,
            caller,
            UserAuthCommand::RegisterUser { email, password },
        )
        .await?;
        Ok(user_id)
    }
}
