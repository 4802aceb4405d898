//! Creating an account, and proving its address. Registration answers the
//! same for every address, so it tells nobody who has an account: a new
//! address gets a verification link, a verified one a notice to its owner.
use authledger_aggregates::{Email, NewPassword, Password, UserAuthCommand};
use tokio::time::Instant;

use super::{App, AppError, AppResult, Caller};
use crate::tokens::TokenKind;

/// A password chosen for the account at `email`, which it must not lean on.
pub(super) fn new_password(email: &str, raw: &str) -> AppResult<NewPassword> {
    let local_part = email.split('@').next().unwrap_or_default();
    NewPassword::parse(raw, &[email, local_part]).map_err(AppError::UnacceptablePassword)
}

impl App {
    /// Takes a registration. Whatever became of it, the answer is the same
    /// and comes no sooner than the configured floor.
    pub async fn register(&self, caller: &Caller, email: &str, password: &str) -> AppResult<()> {
        if !self.registration_open {
            return Err(AppError::RegistrationClosed);
        }
        self.shed_when_hashing_is_full()?;
        let started = Instant::now();
        let email = Email::parse(email).map_err(AppError::InvalidEmail)?;
        let password = new_password(email.as_str(), password)?;
        let outcome = self.register_address(caller, email, password).await;
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

#[cfg(test)]
mod tests {
    //! Registration takes the address the mail worker will send to, so
    //! whatever `Email::parse` accepts must reach the mailer unchanged.
    use std::str::FromStr;

    use lettre::message::Mailbox;
    use proptest::prelude::*;

    use super::*;

    /// The mailer reads the address as one bare mailbox: no display name,
    /// the same local part and domain, written back the same way.
    fn mailer_reads_back(email: &Email) -> Result<(), TestCaseError> {
        let mailbox = Mailbox::from_str(email.as_str())
            .map_err(|e| TestCaseError::fail(format!("{email}: {e}")))?;
        prop_assert_eq!(mailbox.name.as_deref(), None);
        prop_assert_eq!(mailbox.email.to_string(), email.as_str());
        prop_assert_eq!(mailbox.email.user(), email.local_part());
        let rewritten = Mailbox::from_str(&mailbox.to_string())
            .map_err(|e| TestCaseError::fail(format!("{mailbox}: {e}")))?;
        prop_assert_eq!(rewritten, mailbox);
        Ok(())
    }

    /// Addresses in the shapes people have, in several scripts.
    fn plausible() -> impl Strategy<Value = String> {
        let ascii_local = "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,12}(\\.[a-zA-Z0-9_+-]{1,8}){0,2}";
        let ascii_domain = "([a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?\\.){1,3}[a-zA-Z]{2,6}";
        prop_oneof![
            (ascii_local, ascii_domain),
            ("[a-zäöüßéèçñłø]{1,12}", "[a-zäöüéñ]{1,10}\\.(de|fr|es|com)"),
            ("[а-яё]{1,12}", "[а-я]{1,10}\\.(рф|ru)"),
            ("[α-ω]{1,12}", "[α-ω]{1,10}\\.(gr|ελ)"),
            ("[一-龥]{1,8}", "[一-龥]{1,6}\\.(cn|中国)"),
            (
                "[a-z]{1,4}(e\u{301}|n\u{303})[a-z]{0,4}",
                "[a-z]{1,8}\\.com"
            ),
        ]
        .prop_map(|(local, domain)| format!("{local}@{domain}"))
    }

    proptest! {
        #[test]
        fn every_plausible_address_is_accepted_and_the_mailer_reads_it_back(raw in plausible()) {
            let email = Email::parse(&raw)
                .map_err(|why| TestCaseError::fail(format!("{raw:?}: {why}")))?;
            mailer_reads_back(&email)?;
        }

        #[test]
        fn any_address_accepted_from_hostile_input_the_mailer_reads_back(
            raw in "[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~\"(),:;<>@\\[\\] \\\\\u{0}\u{85}\u{e9}\u{301}\u{430}\u{3b1}\u{200b}\u{202e}\u{ff41}-]{1,16}@[a-zA-Z0-9.\\-_\u{fc}\u{ff45}\u{3002}\u{200d}\\[\\]]{1,16}"
        ) {
            if let Ok(email) = Email::parse(&raw) {
                mailer_reads_back(&email)?;
            }
        }
    }
}
