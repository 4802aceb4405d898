//! The `users` read model: MFA status, lock, suspension, last sign-in and
//! sessions, for profiles, the operators' console and metrics. It keeps
//! the address only as the events hold it, sealed with the user's data
//! key, for the console to open in memory: erasure deletes that key, and
//! an erased account leaves no row.
//!
//! [`reduce`] turns an event into the operations it calls for, without
//! I/O; [`write`] sends a batch of them to `users_projection_apply`
//! (migration 0006), which runs them in order.
use authledger_aggregates::{Assurance, Reference, Sealed, SignInMethod, UserAuthEvent as E};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::runtime::{Projection, StoredEvent};

pub struct UsersProjection;

pub const NAME: &str = "users";

/// A change to the read model. Serialised, each is one element of the
/// array `users_projection_apply` takes: `op` names the case of its
/// `CASE`, the fields are the keys it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum UsersOp {
    Registered {
        user: Uuid,
        email: Sealed,
        at: DateTime<Utc>,
    },
    /// The account's address is now `email`.
    Address {
        user: Uuid,
        email: Sealed,
    },
    VerificationRequested {
        user: Uuid,
    },
    Verified {
        user: Uuid,
    },
    Suspended {
        user: Uuid,
        at: DateTime<Utc>,
    },
    Reactivated {
        user: Uuid,
    },
    MfaResetPending {
        user: Uuid,
        due: DateTime<Utc>,
    },
    MfaResetCalledOff {
        user: Uuid,
    },
    Enrolled {
        user: Uuid,
        at: DateTime<Utc>,
    },
    MfaReset {
        user: Uuid,
    },
    SessionStarted {
        user: Uuid,
        session: Reference,
        method: SignInMethod,
        aal: Assurance,
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    SessionActive {
        user: Uuid,
        session: Reference,
        at: DateTime<Utc>,
    },
    SessionEnded {
        user: Uuid,
        session: Reference,
        at: DateTime<Utc>,
    },
    Throttled {
        user: Uuid,
        until: DateTime<Utc>,
    },
    Locked {
        user: Uuid,
        at: DateTime<Utc>,
    },
    Unlocked {
        user: Uuid,
    },
    /// The user reported activity of theirs as not them.
    Reported {
        user: Uuid,
        at: DateTime<Utc>,
    },
    /// The account and its sessions leave the model.
    Erased {
        user: Uuid,
    },
}

/// Postgres keeps microseconds: truncated here as a bound parameter would
/// be, rather than rounded by the text input of `timestamptz`, so a rebuild
/// and a bound read agree to the microsecond.
fn micros(at: &DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// What `event`, in `user`'s stream, changes in the read model.
pub fn reduce(user: Uuid, event: &E) -> Vec<UsersOp> {
    let op = match event {
        E::UserRegistered { email, at, .. } => UsersOp::Registered {
            user,
            email: email.clone(),
            at: micros(at),
        },
        E::EmailChanged { to, .. } => UsersOp::Address {
            user,
            email: to.clone(),
        },
        E::EmailChangeReverted { restored, .. } => UsersOp::Address {
            user,
            email: restored.clone(),
        },
        E::EmailVerificationRequested { .. } => UsersOp::VerificationRequested { user },
        E::EmailVerified { .. } => UsersOp::Verified { user },
        E::AccountSuspended { at, .. } => UsersOp::Suspended {
            user,
            at: micros(at),
        },
        E::AccountReactivated { .. } => UsersOp::Reactivated { user },
        E::MfaResetRequested { effective_at, .. } => UsersOp::MfaResetPending {
            user,
            due: micros(effective_at),
        },
        E::MfaResetCancelled { .. } => UsersOp::MfaResetCalledOff { user },
        E::MfaEnrolled { at, .. } => UsersOp::Enrolled {
            user,
            at: micros(at),
        },
        // No authenticator left: the read model sees what a reset leaves,
        // an account that enrolls at its next sign-in.
        E::MfaReset { .. } | E::AuthenticatorRemoved { last: true, .. } => {
            UsersOp::MfaReset { user }
        }
        E::SessionStarted {
            session,
            method,
            aal,
            expires_at,
            at,
        } => UsersOp::SessionStarted {
            user,
            session: *session,
            method: *method,
            aal: *aal,
            at: micros(at),
            expires_at: micros(expires_at),
        },
        E::SessionActive { session, at } => UsersOp::SessionActive {
            user,
            session: *session,
            at: micros(at),
        },
        E::SessionEnded { session, at, .. } => UsersOp::SessionEnded {
            user,
            session: *session,
            at: micros(at),
        },
        E::SignInThrottled { until, .. } => UsersOp::Throttled {
            user,
            until: micros(until),
        },
        E::AccountLocked { at, .. } => UsersOp::Locked {
            user,
            at: micros(at),
        },
        E::AccountUnlocked { .. } => UsersOp::Unlocked { user },
        E::AccountErased { .. } => UsersOp::Erased { user },
        E::ReportedByUser { at, .. } => UsersOp::Reported {
            user,
            at: micros(at),
        },
        _ => return Vec::new(),
    };
    vec![op]
}

/// Applies `ops` in order, in one round trip.
pub async fn write(tx: &mut PgConnection, ops: &[UsersOp]) -> anyhow::Result<()> {
    if ops.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT users_projection_apply($1)")
        .bind(sqlx::types::Json(ops))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, tx: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        let mut ops = Vec::new();
        for stored in events {
            ops.extend(reduce(stored.user_id()?, &stored.event));
        }
        write(tx, &ops).await
    }

    async fn reset(&self, tx: &mut PgConnection) -> anyhow::Result<()> {
        sqlx::query("TRUNCATE user_sessions, users")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use authledger_aggregates::{Actor, SessionEndReason};
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn user() -> Uuid {
        Uuid::from_u128(0x6f1c_0f5e_1b57_4e35_9d39_3b2f_0a0e_6a11)
    }

    /// 2026-03-01 12:00:00.123456789 UTC: finer than Postgres keeps.
    fn at() -> DateTime<Utc> {
        Utc.timestamp_opt(1_772_366_400, 123_456_789).unwrap()
    }

    fn session() -> Reference {
        Reference::from_bytes([0xab; 16])
    }

    fn sealed() -> Sealed {
        Sealed {
            key_id: "user".into(),
            nonce: "n".into(),
            ciphertext: "c".into(),
        }
    }

    #[test]
    fn a_registration_adds_the_user_with_its_sealed_address_to_the_microsecond() {
        let event = E::UserRegistered {
            user_id: user(),
            email: sealed(),
            password_hash: sealed(),
            at: at(),
        };
        let ops = reduce(user(), &event);
        assert_eq!(
            ops,
            [UsersOp::Registered {
                user: user(),
                email: sealed(),
                at: Utc.timestamp_opt(1_772_366_400, 123_456_000).unwrap(),
            }]
        );
        assert_eq!(
            serde_json::to_value(&ops).unwrap(),
            json!([{
                "op": "registered",
                "user": "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11",
                "email": {"key_id": "user", "nonce": "n", "ciphertext": "c"},
                "at": "2026-03-01T12:00:00.123456Z",
            }])
        );
    }

    #[test]
    fn an_erased_account_leaves_the_model() {
        let event = E::AccountErased {
            actor: Actor::Admin,
            reason: Some(sealed()),
            at: at(),
        };
        assert_eq!(
            serde_json::to_value(reduce(user(), &event)).unwrap(),
            json!([{"op": "erased", "user": "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11"}])
        );
    }

    #[test]
    fn the_model_takes_an_address_once_it_is_the_accounts() {
        let link = Reference::from_bytes([1; 16]);
        let requested = E::EmailChangeRequested {
            link,
            new_email: sealed(),
            expires_at: at(),
            at: at(),
        };
        assert!(reduce(user(), &requested).is_empty());
        let changed = E::EmailChanged {
            link,
            from: sealed(),
            to: sealed(),
            revert: link,
            revert_until: at(),
            at: at(),
        };
        let reverted = E::EmailChangeReverted {
            revert: link,
            restored: sealed(),
            at: at(),
        };
        for event in [changed, reverted] {
            assert_eq!(
                reduce(user(), &event),
                [UsersOp::Address {
                    user: user(),
                    email: sealed()
                }],
                "{event:?}"
            );
        }
    }

    #[test]
    fn a_started_session_is_written_as_the_apply_function_reads_it() {
        let event = E::SessionStarted {
            session: session(),
            method: SignInMethod::RecoveryCode,
            aal: Assurance::Aal2,
            expires_at: at() + chrono::Duration::hours(12),
            at: at(),
        };
        let ops = serde_json::to_value(reduce(user(), &event)).unwrap();
        assert_eq!(
            ops,
            json!([{
                "op": "session-started",
                "user": "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11",
                "session": "abababababababababababababababab",
                "method": "recovery_code",
                "aal": "aal2",
                "at": "2026-03-01T12:00:00.123456Z",
                "expires_at": "2026-03-02T00:00:00.123456Z",
            }])
        );
    }

    #[test]
    fn every_operation_is_named_as_the_apply_function_names_it() {
        let ops = [
            UsersOp::Registered {
                user: user(),
                email: sealed(),
                at: at(),
            },
            UsersOp::Address {
                user: user(),
                email: sealed(),
            },
            UsersOp::VerificationRequested { user: user() },
            UsersOp::Verified { user: user() },
            UsersOp::Suspended {
                user: user(),
                at: at(),
            },
            UsersOp::Reactivated { user: user() },
            UsersOp::MfaResetPending {
                user: user(),
                due: at(),
            },
            UsersOp::MfaResetCalledOff { user: user() },
            UsersOp::Enrolled {
                user: user(),
                at: at(),
            },
            UsersOp::MfaReset { user: user() },
            UsersOp::SessionStarted {
                user: user(),
                session: session(),
                method: SignInMethod::Totp,
                aal: Assurance::Aal2,
                at: at(),
                expires_at: at(),
            },
            UsersOp::SessionActive {
                user: user(),
                session: session(),
                at: at(),
            },
            UsersOp::SessionEnded {
                user: user(),
                session: session(),
                at: at(),
            },
            UsersOp::Throttled {
                user: user(),
                until: at(),
            },
            UsersOp::Locked {
                user: user(),
                at: at(),
            },
            UsersOp::Unlocked { user: user() },
            UsersOp::Reported {
                user: user(),
                at: at(),
            },
            UsersOp::Erased { user: user() },
        ];
        let names: Vec<String> = ops
            .iter()
            .map(|op| {
                serde_json::to_value(op).unwrap()["op"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "registered",
                "address",
                "verification-requested",
                "verified",
                "suspended",
                "reactivated",
                "mfa-reset-pending",
                "mfa-reset-called-off",
                "enrolled",
                "mfa-reset",
                "session-started",
                "session-active",
                "session-ended",
                "throttled",
                "locked",
                "unlocked",
                "reported",
                "erased",
            ]
        );
        // The newest definition of the function takes every one of them.
        let apply = include_str!("../../migrations/0010_reported_activity.sql");
        for name in names {
            assert!(apply.contains(&format!("WHEN '{name}' THEN")), "{name}");
        }
    }

    #[test]
    fn an_ended_session_records_when_it_ended() {
        let event = E::SessionEnded {
            session: session(),
            reason: SessionEndReason::Logout,
            at: at(),
        };
        let ops = serde_json::to_value(reduce(user(), &event)).unwrap();
        assert_eq!(
            ops,
            json!([{
                "op": "session-ended",
                "user": "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11",
                "session": "abababababababababababababababab",
                "at": "2026-03-01T12:00:00.123456Z",
            }])
        );
    }

    #[test]
    fn a_throttle_records_its_end_not_when_it_began() {
        let until = at() + chrono::Duration::minutes(5);
        let event = E::SignInThrottled {
            failures: 5,
            until,
            at: at(),
        };
        assert_eq!(
            reduce(user(), &event),
            [UsersOp::Throttled {
                user: user(),
                until: Utc.timestamp_opt(1_772_366_700, 123_456_000).unwrap(),
            }]
        );
    }

    #[test]
    fn an_mfa_reset_and_an_unlock_carry_only_the_user() {
        let reset = E::MfaReset {
            actor: Actor::Admin,
            reason: Some(sealed()),
            at: at(),
        };
        let unlock = E::AccountUnlocked {
            reason: sealed(),
            at: at(),
        };
        assert_eq!(
            serde_json::to_value([reduce(user(), &reset), reduce(user(), &unlock)]).unwrap(),
            json!([
                [{"op": "mfa-reset", "user": "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11"}],
                [{"op": "unlocked", "user": "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11"}],
            ])
        );
    }

    #[test]
    fn events_about_sign_in_steps_leave_the_model_alone() {
        let attempt = Reference::from_bytes([1; 16]);
        for event in [
            E::PasswordRejected { at: at() },
            E::TotpVerified {
                attempt,
                step: 1,
                authenticator: None,
                at: at(),
            },
            E::EmailLinkUsed {
                link: attempt,
                at: at(),
            },
            E::RecoveryCodeRejected { attempt, at: at() },
        ] {
            assert!(reduce(user(), &event).is_empty(), "{event:?}");
        }
    }
}
