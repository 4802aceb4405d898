//! Erasing an account, asked by its user from what changing the password
//! takes (an `aal2` session, recent or with the password again), or by an
//! administrator with a reason. Every session ends and the account answers
//! from then on as one never registered. What the events hold of the user
//! is sealed with their data key, which the caller deletes: the log stays
//! whole and no longer says who they were.
use chrono::{DateTime, Utc};

use super::admin::seal_reason;
use super::reauthentication::Reauthentication;
use super::Decision;
use crate::user_auth::{
    Actor, Decided, ErasureRequest, SessionEndReason, UserAuth, UserAuthError as Error,
    UserAuthEvent as E, UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) async fn erase_account(
        &self,
        by: ErasureRequest,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        let (actor, reason) = match by {
            ErasureRequest::User { session, password } => {
                if let Reauthentication::Failed(rejected) = self
                    .reauthenticate_aal2(&session, password.as_ref(), s, now)
                    .await?
                {
                    return Ok(rejected);
                }
                (Actor::User, None)
            }
            ErasureRequest::Admin { reason } => {
                if !self.is_registered() {
                    return Err(Error::UnknownUser);
                }
                (Actor::Admin, Some(seal_reason(&reason, s)?))
            }
        };
        let mut events = self.end_sessions(SessionEndReason::AccountErased, None, s, now);
        let sessions_ended = events.len();
        events.push(E::AccountErased {
            actor,
            reason,
            at: now,
        });
        Ok(Decided {
            events,
            verdict: Verdict::Erased { sessions_ended },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    fn by_user(password: Option<Password>) -> UserAuthCommand {
        UserAuthCommand::EraseAccount {
            by: ErasureRequest::User {
                session: reference(8),
                password,
            },
        }
    }

    fn by_admin() -> UserAuthCommand {
        UserAuthCommand::EraseAccount {
            by: ErasureRequest::Admin {
                reason: AdminReason::parse("asked by letter, identity checked").unwrap(),
            },
        }
    }

    fn ended(session: u64, at: DateTime<Utc>) -> UserAuthEvent {
        E::SessionEnded {
            session: reference(session),
            reason: SessionEndReason::AccountErased,
            at,
        }
    }

    fn erased_by_user(at: DateTime<Utc>) -> UserAuthEvent {
        E::AccountErased {
            actor: Actor::User,
            reason: None,
            at,
        }
    }

    /// Signed in at `now` with sessions 8 and 9, then erased by the user.
    fn erased(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
        let mut events = signed_in(now);
        events.extend([
            session_started(9, SignInMethod::EmailLink, now),
            ended(8, now),
            ended(9, now),
            erased_by_user(now),
        ]);
        events
    }

    #[test]
    fn a_fresh_aal2_session_erases_the_account_after_ending_every_session() {
        let now = later(10);
        let when = now + Duration::minutes(10);
        let mut given = signed_in(now);
        given.push(session_started(9, SignInMethod::EmailLink, now));
        at(when)
            .given(given)
            .when(by_user(None))
            .then_expect_events(vec![ended(8, when), ended(9, when), erased_by_user(when)]);
    }

    #[test]
    fn an_old_aal2_session_erases_the_account_only_with_the_password() {
        let now = later(10);
        let when = now + Duration::minutes(20);
        let mut given = signed_in(now);
        given.push(E::SessionActive {
            session: reference(8),
            at: when,
        });
        at(when)
            .given(given.clone())
            .when(by_user(None))
            .then_expect_error(UserAuthError::ReauthenticationRequired);
        at(when)
            .given(given.clone())
            .when(by_user(Some(wrong_password())))
            .then_expect_events(vec![E::PasswordRejected { at: when }]);
        at(when)
            .given(given)
            .when(by_user(Some(password())))
            .then_expect_events(vec![ended(8, when), erased_by_user(when)]);
    }

    #[test]
    fn an_aal1_session_cannot_erase_the_account_even_with_the_password() {
        let now = later(10);
        let mut given = enrolled();
        given.push(session_started(8, SignInMethod::EmailLink, now));
        at(now)
            .given(given)
            .when(by_user(Some(password())))
            .then_expect_error(UserAuthError::SecondFactorRequired);
    }

    #[test]
    fn an_administrator_erases_an_account_with_a_sealed_reason() {
        let now = later(10);
        at(now)
            .given(signed_in(now))
            .when(by_admin())
            .then_expect_events(vec![
                ended(8, now),
                E::AccountErased {
                    actor: Actor::Admin,
                    reason: Some(sealed_text("asked by letter, identity checked")),
                    at: now,
                },
            ]);
    }

    #[test]
    fn an_administrator_cannot_erase_a_user_never_registered() {
        at(later(10))
            .given_no_previous_events()
            .when(by_admin())
            .then_expect_error(UserAuthError::UnknownUser);
    }

    #[test]
    fn an_erased_account_answers_every_command_as_a_user_never_registered() {
        let now = later(10);
        let commands = [
            UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            },
            UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_at(now),
            },
            UserAuthCommand::UseRecoveryCode {
                attempt: reference(7),
                code: recovery(1),
                replacement: recovery(2),
            },
            UserAuthCommand::TouchSession {
                session: reference(8),
            },
            UserAuthCommand::RequestPasswordReset,
            UserAuthCommand::ResetMfa {
                session: reference(8),
                password: Some(password()),
            },
            UserAuthCommand::AdminResetMfa {
                reason: AdminReason::parse("lost phone, identity checked").unwrap(),
            },
            UserAuthCommand::UnlockAccount {
                reason: AdminReason::parse("owner verified by phone").unwrap(),
            },
            UserAuthCommand::VerifyEmail {
                link: reference(50),
                password: password(),
            },
            UserAuthCommand::CompletePendingMfaReset,
            UserAuthCommand::RequestEmailChange {
                session: reference(8),
                password: Some(password()),
                new_email: Email::parse("bob@example.com").unwrap(),
            },
            UserAuthCommand::ConfirmEmailChange {
                link: reference(21),
            },
            UserAuthCommand::RevertEmailChange {
                revert: reference(31),
            },
            UserAuthCommand::Logout {
                session: reference(8),
            },
            UserAuthCommand::ResealSecrets,
            by_user(Some(password())),
            by_admin(),
        ];
        for command in commands {
            let erased = with_hashing_work(now, erased(now), command.clone());
            let never_registered = with_hashing_work(now, vec![], command.clone());
            assert_eq!(erased, never_registered, "{command:?}");
            assert!(erased.0.is_err() || erased.0.unwrap().events.is_empty());
        }
    }

    #[test]
    fn erasing_twice_is_refused_as_for_a_user_never_registered() {
        let now = later(10);
        at(now)
            .given(erased(now))
            .when(by_admin())
            .then_expect_error(UserAuthError::UnknownUser);
        at(now)
            .given(erased(now))
            .when(by_user(None))
            .then_expect_error(UserAuthError::SessionInvalid);
    }

    #[test]
    fn an_erased_account_takes_no_new_registration() {
        at(later(10))
            .given(erased(later(10)))
            .when(UserAuthCommand::RegisterUser {
                user_id: user_id(),
                email: email(),
                password: new_password(),
            })
            .then_expect_error(UserAuthError::UnknownUser);
    }

    #[test]
    fn an_erased_account_keeps_no_credential_and_says_it_is_erased() {
        let now = later(10);
        let state = folded(erased(now));
        assert!(state.is_erased() && !state.is_enrolled() && !state.is_verified());
        let audit = state.audit_state(now, &policy());
        assert!(audit.erased);
        assert!(audit.live_sessions.is_empty());
        assert!(!audit.recovery_code_present && audit.enrolled_at.is_none());
        let profile = state.profile().unwrap();
        assert_eq!(profile.user_id, user_id());
        assert!(profile.erased && profile.enrolled_at.is_none());
        assert!(!folded(signed_in(now)).profile().unwrap().erased);
    }

    #[test]
    fn erasing_reports_how_many_sessions_ended() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(session_started(9, SignInMethod::Totp, now));
        assert_eq!(
            decided(now, given, by_user(None)).verdict,
            Verdict::Erased { sessions_ended: 2 }
        );
        assert_eq!(
            decided(now, enrolled(), by_admin()).verdict,
            Verdict::Erased { sessions_ended: 0 }
        );
    }
}
