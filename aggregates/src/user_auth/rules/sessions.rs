//! Sessions: a new one at every sign-in, recording how it was won and its
//! assurance; alive until its absolute expiry or an idle hour; ended by
//! logout, or all at once when a credential changes.
use chrono::{DateTime, Utc};

use super::Decision;
use crate::user_auth::{
    Decided, Reference, SessionEndReason, SignInMethod, StartedSession, UserAuth,
    UserAuthError as Error, UserAuthEvent as E, UserAuthEvent, UserAuthServices, Verdict,
};

impl UserAuth {
    pub(in crate::user_auth) fn touch_session(
        &self,
        session: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        let live = self
            .live_session(&session, now, &s.policy)
            .ok_or(Error::SessionInvalid)?;
        // An event per request would grow the log with every call; the idle
        // rule needs activity only this fresh.
        let recorded = now - live.last_active_at >= s.policy.session_activity_granularity;
        Ok(Decided {
            events: if recorded {
                vec![E::SessionActive { session, at: now }]
            } else {
                vec![]
            },
            verdict: Verdict::SessionTouched { recorded },
        })
    }

    pub(in crate::user_auth) fn logout(
        &self,
        session: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.live_session(&session, now, &s.policy)
            .ok_or(Error::SessionInvalid)?;
        Ok(Decided {
            events: vec![E::SessionEnded {
                session,
                reason: SessionEndReason::Logout,
                at: now,
            }],
            verdict: Verdict::LoggedOut,
        })
    }

    /// Ends every live session but `keep`, for `reason`.
    pub(super) fn end_sessions(
        &self,
        reason: SessionEndReason,
        keep: Option<&Reference>,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Vec<UserAuthEvent> {
        self.live_sessions(now, &s.policy)
            .filter(|session| Some(&session.reference) != keep)
            .map(|session| E::SessionEnded {
                session: session.reference,
                reason,
                at: now,
            })
            .collect()
    }

    /// A second factor succeeded: `proof` and a new session, in that order.
    pub(super) fn sign_in(
        &self,
        mut proof: Vec<UserAuthEvent>,
        method: SignInMethod,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decided {
        let started = StartedSession {
            session: s.randomness.reference(),
            method,
            aal: method.assurance(),
            expires_at: now + s.policy.session_absolute,
        };
        proof.push(E::SessionStarted {
            session: started.session,
            method: started.method,
            aal: started.aal,
            expires_at: started.expires_at,
            at: now,
        });
        Decided {
            events: proof,
            verdict: Verdict::SessionStarted(started),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::user_auth::testing::*;

    #[test]
    fn logout_ends_the_session() {
        let now = later(10);
        at(now)
            .given(signed_in(now))
            .when(UserAuthCommand::Logout {
                session: reference(8),
            })
            .then_expect_events(vec![E::SessionEnded {
                session: reference(8),
                reason: SessionEndReason::Logout,
                at: now,
            }]);
    }

    #[test]
    fn an_ended_session_cannot_log_out_again() {
        let now = later(10);
        let mut given = signed_in(now);
        given.push(E::SessionEnded {
            session: reference(8),
            reason: SessionEndReason::Logout,
            at: now,
        });
        at(now)
            .given(given)
            .when(UserAuthCommand::Logout {
                session: reference(8),
            })
            .then_expect_error(UserAuthError::SessionInvalid);
    }

    #[test]
    fn a_session_idle_for_an_hour_is_over() {
        at(later(10) + Duration::hours(1))
            .given(signed_in(later(10)))
            .when(UserAuthCommand::Logout {
                session: reference(8),
            })
            .then_expect_error(UserAuthError::SessionInvalid);
    }

    #[test]
    fn activity_keeps_a_session_alive_but_not_past_twelve_hours() {
        let start = later(10);
        let mut given = signed_in(start);
        given.extend((1..12).map(|h| E::SessionActive {
            session: reference(8),
            at: start + Duration::hours(h),
        }));
        let state = given.into_iter().fold(UserAuth::default(), |mut s, e| {
            s.apply_event(e);
            s
        });
        let policy = policy();
        assert!(state
            .live_session(
                &reference(8),
                start + Duration::minutes(11 * 60 + 30),
                &policy
            )
            .is_some());
        assert!(state
            .live_session(&reference(8), start + Duration::hours(12), &policy)
            .is_none());
    }

    #[test]
    fn a_session_idles_out_an_hour_after_its_last_activity_but_never_past_twelve_hours() {
        let start = later(10);
        let mut given = signed_in(start);
        given.push(E::SessionActive {
            session: reference(8),
            at: start + Duration::minutes(30),
        });
        let state = folded(given.clone());
        let session = state
            .live_session(&reference(8), start + Duration::minutes(31), &policy())
            .unwrap();
        assert_eq!(
            session.idle_expires_at(&policy()),
            start + Duration::minutes(90)
        );
        given.push(E::SessionActive {
            session: reference(8),
            at: start + Duration::minutes(11 * 60 + 30),
        });
        let state = folded(given);
        let session = state
            .live_session(
                &reference(8),
                start + Duration::minutes(11 * 60 + 31),
                &policy(),
            )
            .unwrap();
        assert_eq!(
            session.idle_expires_at(&policy()),
            start + Duration::hours(12)
        );
    }

    #[test]
    fn touching_a_session_records_activity_only_when_the_last_is_stale() {
        let start = later(10);
        at(start + Duration::minutes(4))
            .given(signed_in(start))
            .when(UserAuthCommand::TouchSession {
                session: reference(8),
            })
            .then_expect_events(vec![]);
        at(start + Duration::minutes(6))
            .given(signed_in(start))
            .when(UserAuthCommand::TouchSession {
                session: reference(8),
            })
            .then_expect_events(vec![E::SessionActive {
                session: reference(8),
                at: start + Duration::minutes(6),
            }]);
    }

    #[test]
    fn touching_a_session_says_whether_it_recorded_activity() {
        let start = later(10);
        let touch = || UserAuthCommand::TouchSession {
            session: reference(8),
        };
        assert_eq!(
            decided(start + Duration::minutes(4), signed_in(start), touch()).verdict,
            Verdict::SessionTouched { recorded: false }
        );
        assert_eq!(
            decided(start + Duration::minutes(6), signed_in(start), touch()).verdict,
            Verdict::SessionTouched { recorded: true }
        );
    }

    #[test]
    fn logout_says_the_session_ended() {
        let now = later(10);
        let verdict = decided(
            now,
            signed_in(now),
            UserAuthCommand::Logout {
                session: reference(8),
            },
        )
        .verdict;
        assert_eq!(verdict, Verdict::LoggedOut);
    }
}
