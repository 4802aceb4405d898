use std::fmt;

/// The most characters a password may have; longer input is refused before
/// it reaches the hasher so a client cannot make the server hash megabytes.
pub const MAX_PASSWORD_CHARS: usize = 256;
pub const MIN_NEW_PASSWORD_CHARS: usize = 8;

/// A password as typed at sign-in. Any non-empty string of printable
/// characters up to the maximum length: existing passwords are checked by
/// the hash, not by rules.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must not be empty")]
    Empty,
    #[error("the password must have at most {MAX_PASSWORD_CHARS} characters")]
    TooLong,
    /// Nobody types a NUL or an escape; such input is a client's mistake or
    /// a probe, and some password managers and terminals mangle it.
    #[error("the password must not contain control characters")]
    ControlCharacter,
    #[error("the password must have at least {MIN_NEW_PASSWORD_CHARS} characters")]
    TooShort,
    /// Holds zxcvbn's advice as a phrase without its closing period, like
    /// the other messages here: whoever shows it ends the sentence.
    #[error("the password is too easy to guess: {0}")]
    TooGuessable(String),
}

impl Password {
    pub fn parse(raw: &str) -> Result<Self, PasswordError> {
        if raw.is_empty() {
            return Err(PasswordError::Empty);
        }
        if raw.chars().count() > MAX_PASSWORD_CHARS {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A password chosen at registration: 8 to 256 characters, no composition
/// rules, and refused when zxcvbn scores it below 3 (NIST SP 800-63B 3.1.1.2).
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(Password);

impl NewPassword {
    /// `context` holds words the password must not lean on, such as the email.
    pub fn parse(raw: &str, context: &[&str]) -> Result<Self, PasswordError> {
        let password = Password::parse(raw)?;
        // Refused when chosen, never when signing in: a password set before
        // this rule must keep working.
        if raw.chars().any(char::is_control) {
            return Err(PasswordError::ControlCharacter);
        }
        if raw.chars().count() < MIN_NEW_PASSWORD_CHARS {
            return Err(PasswordError::TooShort);
        }
        let entropy = zxcvbn::zxcvbn(raw, context);
        if u8::from(entropy.score()) < 3 {
            let reason = entropy
                .feedback()
                .and_then(|feedback| {
                    feedback
                        .warning()
                        .map(|warning| warning.to_string())
                        .or_else(|| feedback.suggestions().first().map(|s| s.to_string()))
                })
                .unwrap_or_else(|| "add more words or characters that are hard to guess".into());
            let reason = reason.trim_end().trim_end_matches('.').to_owned();
            return Err(PasswordError::TooGuessable(reason));
        }
        Ok(Self(password))
    }

    pub fn as_password(&self) -> &Password {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_unusual_passphrase_is_accepted() {
        assert!(NewPassword::parse("correct horse battery staple umbrella", &[]).is_ok());
    }

    #[test]
    fn a_common_password_is_refused_with_a_reason() {
        let err = NewPassword::parse("password123", &[]).unwrap_err();
        let PasswordError::TooGuessable(reason) = err else {
            panic!("expected a guessability error, got {err:?}");
        };
        assert!(!reason.is_empty());
    }

    #[test]
    fn the_reason_a_password_is_refused_ends_without_a_period_so_a_sentence_can_end_it() {
        // Each gets another warning or suggestion from zxcvbn, every one
        // of them a sentence of its own with its period.
        for raw in [
            "password123",
            "qwertyuiop",
            "aaaaaaaaaaaa",
            "abcdefgh1234",
            "Password2024",
            "drowssap",
        ] {
            let err = NewPassword::parse(raw, &[]).unwrap_err();
            let message = format!("Choose another password: {err}.");
            assert!(!message.ends_with(".."), "{message}");
            assert!(!err.to_string().ends_with('.'), "{err}");
        }
    }

    #[test]
    fn a_password_built_from_the_email_is_refused() {
        let email = "alice@example.com";
        for password in ["alice@example.com", "alice2024!"] {
            assert!(matches!(
                NewPassword::parse(password, &[email, "alice"]),
                Err(PasswordError::TooGuessable(_))
            ));
        }
    }

    #[test]
    fn seven_characters_are_too_few() {
        assert_eq!(
            NewPassword::parse("x7#Kq9!", &[]).unwrap_err(),
            PasswordError::TooShort
        );
    }

    #[test]
    fn more_than_256_characters_are_too_many() {
        let long = "a".repeat(257);
        assert_eq!(Password::parse(&long).unwrap_err(), PasswordError::TooLong);
    }

    #[test]
    fn a_new_password_with_a_control_character_is_refused_but_an_old_one_still_signs_in() {
        for raw in [
            "pass\u{0}word",
            "pass\tword",
            "password\n",
            "pass\u{1b}word",
            "pass\u{9f}word",
        ] {
            assert_eq!(
                NewPassword::parse(raw, &[]).unwrap_err(),
                PasswordError::ControlCharacter,
                "{raw:?}"
            );
            assert!(Password::parse(raw).is_ok(), "{raw:?}");
        }
    }

    #[test]
    fn any_printable_character_is_allowed_in_a_password() {
        for raw in [
            " leading space",
            "\"quotes\" <and> 'more'",
            "ünïcödé ☃ 🔑",
            "\u{200b}zero width",
        ] {
            assert!(Password::parse(raw).is_ok(), "{raw:?}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let password = Password::parse("hunter2-is-my-secret").unwrap();
        assert!(!format!("{password:?}").contains("hunter2"));
    }
}
