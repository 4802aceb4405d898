//! What an administrator may do to an account, always with a stated reason:
//! reset its MFA (for a user who lost their device) and lift a throttle or
//! lock. A reason may say anything about the user, so it is sealed with
//! their data key and goes when their data does.
use chrono::{DateTime, Utc};

use super::Decision;
use crate::user_auth::{
    Actor, AdminReason, Decided, SealPurpose, Sealed, ServiceError, UserAuth,
    UserAuthError as Error, UserAuthEvent as E, UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) fn admin_reset_mfa(
        &self,
        reason: AdminReason,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if !self.is_registered() {
            return Err(Error::UnknownUser);
        }
        let reason = seal_reason(&reason, s)?;
        Ok(self.mfa_reset(Actor::Admin, Some(reason), s, now))
    }

    pub(in crate::user_auth) fn unlock_account(
        &self,
        reason: AdminReason,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if !self.is_registered() {
            return Err(Error::UnknownUser);
        }
        if !self.locked && self.throttled_at(now).is_none() && self.consecutive_failures == 0 {
            return Err(Error::NotLocked);
        }
        Ok(Decided {
            events: vec![E::AccountUnlocked {
                reason: seal_reason(&reason, s)?,
                at: now,
            }],
            verdict: Verdict::Unlocked,
        })
    }
}

pub(super) fn seal_reason(
    reason: &AdminReason,
    s: &UserAuthServices,
) -> Result<Sealed, ServiceError> {
    s.keeper
        .seal(SealPurpose::FreeText, reason.as_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    #[test]
    fn an_admin_unlocks_a_locked_account() {
        let mut given = registered();
        given.push(E::AccountLocked {
            failures: 100,
            at: later(1),
        });
        at(later(2))
            .given(given)
            .when(UserAuthCommand::UnlockAccount {
                reason: AdminReason::parse("owner verified by phone").unwrap(),
            })
            .then_expect_events(vec![E::AccountUnlocked {
                reason: sealed_text("owner verified by phone"),
                at: later(2),
            }]);
    }

    #[test]
    fn unlocking_an_account_in_good_standing_is_refused() {
        at(later(2))
            .given(registered())
            .when(UserAuthCommand::UnlockAccount {
                reason: AdminReason::parse("why").unwrap(),
            })
            .then_expect_error(UserAuthError::NotLocked);
    }

    #[test]
    fn after_an_unlock_a_correct_password_is_accepted_again() {
        let mut given = registered();
        given.extend([
            E::AccountLocked {
                failures: 100,
                at: later(1),
            },
            E::AccountUnlocked {
                reason: sealed_text("verified"),
                at: later(2),
            },
        ]);
        let events = events_of(
            at(later(3)),
            given,
            UserAuthCommand::SubmitPassword {
                password: password(),
                device: None,
            },
        );
        assert!(matches!(events.as_slice(), [E::PasswordVerified { .. }]));
    }

    #[test]
    fn an_admin_reset_records_the_reason_and_ends_every_session() {
        let now = later(10);
        let when = now + Duration::minutes(30);
        at(when)
            .given(signed_in(now))
            .when(UserAuthCommand::AdminResetMfa {
                reason: AdminReason::parse("lost phone, identity checked").unwrap(),
            })
            .then_expect_events(vec![
                E::MfaReset {
                    actor: Actor::Admin,
                    reason: Some(sealed_text("lost phone, identity checked")),
                    at: when,
                },
                E::SessionEnded {
                    session: reference(8),
                    reason: SessionEndReason::MfaReset,
                    at: when,
                },
            ]);
    }

    #[test]
    fn admin_commands_on_an_unknown_user_are_refused() {
        at(t0())
            .given_no_previous_events()
            .when(UserAuthCommand::AdminResetMfa {
                reason: AdminReason::parse("x").unwrap(),
            })
            .then_expect_error(UserAuthError::UnknownUser);
    }

    #[test]
    fn an_admin_reset_reports_how_many_sessions_ended() {
        let now = later(10);
        let verdict = decided(
            now + Duration::minutes(30),
            signed_in(now),
            UserAuthCommand::AdminResetMfa {
                reason: AdminReason::parse("lost phone, identity checked").unwrap(),
            },
        )
        .verdict;
        assert_eq!(verdict, Verdict::MfaReset { sessions_ended: 1 });
    }

    #[test]
    fn unlocking_says_the_account_is_unlocked() {
        let mut given = registered();
        given.push(E::AccountLocked {
            failures: 100,
            at: later(1),
        });
        let verdict = decided(
            later(2),
            given,
            UserAuthCommand::UnlockAccount {
                reason: AdminReason::parse("owner verified by phone").unwrap(),
            },
        )
        .verdict;
        assert_eq!(verdict, Verdict::Unlocked);
    }
}
