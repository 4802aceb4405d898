//! The email relay: for each event that needs a mail, publish it to
//! RabbitMQ (confirmed), then advance the checkpoint. A crash between the
//! two publishes again: at-least-once, with the event's stream and sequence
//! as message id so the worker sends each mail once.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use authledger_aggregates::{Reference, UserAuthEvent as E};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::mail::{LinkReference, MailKind, MailMessage, Publisher};
use crate::runtime::{Projection, StoredEvent};

pub const NAME: &str = "email_relay";

pub struct EmailRelay {
    publisher: Arc<Publisher>,
}

impl EmailRelay {
    pub fn new(publisher: Arc<Publisher>) -> Self {
        Self { publisher }
    }
}

/// What mail an event calls for, if any, and whether it is the first
/// failure of its login attempt (only that one is reported).
fn mail_for(event: &E) -> Option<(MailKind, Option<LinkReference>, Option<String>)> {
    let notice = |kind| Some((kind, None, None));
    let link = |kind, reference: &Reference, expires_at: &DateTime<Utc>| {
        Some((
            kind,
            Some(LinkReference {
                reference: reference.to_string(),
                expires_at: *expires_at,
            }),
            None,
        ))
    };
    match event {
        E::EmailLinkRequested {
            link: reference,
            expires_at,
            ..
        } => link(MailKind::SignInLink, reference, expires_at),
        E::EmailVerificationRequested {
            link: reference,
            expires_at,
            ..
        } => link(MailKind::VerifyEmail, reference, expires_at),
        E::PasswordResetRequested {
            link: reference,
            expires_at,
            ..
        } => link(MailKind::PasswordResetLink, reference, expires_at),
        // The denial link is worth nothing once the reset has happened.
        E::MfaResetRequested {
            denial,
            effective_at,
            ..
        } => link(MailKind::MfaResetRequested, denial, effective_at),
        E::MfaEnrolled { .. } => notice(MailKind::AuthenticatorEnrolled),
        E::MfaReset { .. } => notice(MailKind::MfaReset),
        E::MfaResetCancelled { reason, .. } => {
            notice(MailKind::MfaResetCancelled { reason: *reason })
        }
        E::RecoveryCodeUsed { .. } => notice(MailKind::RecoveryCodeUsed),
        E::EmailLinkUsed { .. } => notice(MailKind::SignedInWithEmailLink),
        E::RegistrationAttempted { .. } => notice(MailKind::RegistrationAttempted),
        E::PasswordReset { .. } => notice(MailKind::PasswordWasReset),
        E::PasswordChanged { .. } => notice(MailKind::PasswordChanged),
        E::TotpRejected { attempt, .. } | E::RecoveryCodeRejected { attempt, .. } => Some((
            MailKind::SecondFactorFailed,
            None,
            Some(attempt.to_string()),
        )),
        E::AccountLocked { .. } => notice(MailKind::AccountLocked),
        // Listed rather than matched by `_`, so that a new event cannot go
        // without the mail it may call for unnoticed.
        E::UserRegistered { .. }
        | E::PasswordVerified { .. }
        | E::PasswordRejected { .. }
        | E::PasswordRehashed { .. }
        | E::TotpVerified { .. }
        | E::RecoveryCodeIssued { .. }
        | E::MfaEnrollmentStarted { .. }
        | E::SessionStarted { .. }
        | E::SessionActive { .. }
        | E::SessionEnded { .. }
        | E::SignInThrottled { .. }
        | E::AccountUnlocked { .. }
        | E::EmailVerified { .. }
        | E::AttemptFromDevice { .. }
        | E::DevicePasswordRejected { .. }
        | E::DeviceThrottled { .. } => None,
    }
}

/// Where the request behind an event came from; nothing for what the
/// server did by itself.
fn origin(stored: &StoredEvent, key: &str) -> String {
    if stored.meta("actor") == "system" {
        String::new()
    } else {
        stored.meta(key).to_owned()
    }
}

#[async_trait::async_trait]
impl Projection for EmailRelay {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, tx: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        // Reads first, then the publishes, then the writes: the transaction
        // takes an id only at its first write, so it holds back no other
        // projector while it waits for RabbitMQ.
        let mut planned = Vec::new();
        for stored in events {
            let user = stored.user_id()?;
            planned.push((stored, user, mail_for(&stored.event)));
        }
        let known = Known::look_up(
            tx,
            planned
                .iter()
                .filter(|(_, _, mail)| mail.is_some())
                .map(|(_, user, _)| *user),
            planned
                .iter()
                .filter_map(|(_, _, mail)| mail.as_ref()?.2.as_deref()),
        )
        .await?;
        let mut recipients: HashMap<Uuid, String> = HashMap::new();
        let mut reported: HashSet<String> = HashSet::new();
        let mut mails = Vec::new();
        for (stored, user, mail) in planned {
            if let E::UserRegistered { email, .. } = &stored.event {
                recipients.insert(user, email.clone());
                continue;
            }
            let Some((kind, link, attempt)) = mail else {
                continue;
            };
            if let Some(attempt) = attempt {
                if known.reported.contains(&attempt) || !reported.insert(attempt) {
                    continue;
                }
            }
            let Some(to) = recipients
                .get(&user)
                .or_else(|| known.recipients.get(&user))
            else {
                tracing::warn!(%user, "no address for a mail; skipped");
                continue;
            };
            mails.push(MailMessage {
                message_id: format!("{}/{}", stored.aggregate_id, stored.sequence),
                kind,
                user_id: user,
                to: to.clone(),
                at: stored.event.at(),
                client_ip: origin(stored, "client_ip"),
                user_agent: origin(stored, "user_agent"),
                link,
            });
        }
        self.publisher.publish_mails(&mails).await?;
        if !recipients.is_empty() {
            let (users, emails): (Vec<Uuid>, Vec<String>) = recipients.into_iter().unzip();
            sqlx::query(
                "INSERT INTO mail_recipients (user_id, email)
                 SELECT * FROM UNNEST($1::uuid[], $2::text[])
                 ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email",
            )
            .bind(users)
            .bind(emails)
            .execute(&mut *tx)
            .await?;
        }
        if !reported.is_empty() {
            sqlx::query(
                "INSERT INTO mail_attempt_notices (attempt)
                 SELECT * FROM UNNEST($1::text[])
                 ON CONFLICT DO NOTHING",
            )
            .bind(reported.into_iter().collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

/// What earlier batches left: the addresses of the batch's users, and which
/// of its login attempts already had their failure reported.
#[derive(Default)]
struct Known {
    recipients: HashMap<Uuid, String>,
    reported: HashSet<String>,
}

impl Known {
    /// One query for the whole batch, none when it calls for no mail.
    async fn look_up<'a>(
        tx: &mut PgConnection,
        users: impl Iterator<Item = Uuid>,
        attempts: impl Iterator<Item = &'a str>,
    ) -> anyhow::Result<Self> {
        let users: Vec<Uuid> = users.collect::<HashSet<_>>().into_iter().collect();
        let attempts: Vec<&str> = attempts.collect::<HashSet<_>>().into_iter().collect();
        if users.is_empty() && attempts.is_empty() {
            return Ok(Self::default());
        }
        let row = sqlx::query(
            "SELECT COALESCE((SELECT jsonb_object_agg(user_id, email) FROM mail_recipients
                               WHERE user_id = ANY($1)), '{}') AS recipients,
                    ARRAY(SELECT attempt FROM mail_attempt_notices WHERE attempt = ANY($2)) AS reported",
        )
        .bind(users)
        .bind(attempts)
        .fetch_one(&mut *tx)
        .await?;
        let recipients: sqlx::types::Json<HashMap<Uuid, String>> = row.try_get("recipients")?;
        let reported: Vec<String> = row.try_get("reported")?;
        Ok(Self {
            recipients: recipients.0,
            reported: reported.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use authledger_aggregates::{ResetCancellation, Sealed};
    use chrono::TimeZone;

    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_772_366_400, 0).unwrap() + chrono::Duration::minutes(minutes)
    }

    fn sealed() -> Sealed {
        Sealed {
            key_id: "k".into(),
            nonce: "n".into(),
            ciphertext: "c".into(),
        }
    }

    fn link(byte: u8, expires_at: DateTime<Utc>) -> Option<LinkReference> {
        Some(LinkReference {
            reference: Reference::from_bytes([byte; 16]).to_string(),
            expires_at,
        })
    }

    #[test]
    fn each_link_of_recovery_is_mailed_with_its_reference_and_expiry() {
        let cases = [
            (
                E::EmailVerificationRequested {
                    link: Reference::from_bytes([1; 16]),
                    expires_at: at(24 * 60),
                    at: at(0),
                },
                MailKind::VerifyEmail,
                link(1, at(24 * 60)),
            ),
            (
                E::PasswordResetRequested {
                    link: Reference::from_bytes([2; 16]),
                    expires_at: at(30),
                    at: at(0),
                },
                MailKind::PasswordResetLink,
                link(2, at(30)),
            ),
            (
                E::MfaResetRequested {
                    effective_at: at(72 * 60),
                    denial: Reference::from_bytes([3; 16]),
                    at: at(0),
                },
                MailKind::MfaResetRequested,
                link(3, at(72 * 60)),
            ),
        ];
        for (event, kind, link) in cases {
            assert_eq!(mail_for(&event), Some((kind, link, None)), "{event:?}");
        }
        assert_eq!(
            Reference::from_bytes([1; 16]).to_string(),
            "01".repeat(16),
            "the worker reads the reference as hex"
        );
    }

    #[test]
    fn each_notice_of_recovery_is_mailed_without_a_link() {
        let cases = [
            (
                E::RegistrationAttempted { at: at(0) },
                MailKind::RegistrationAttempted,
            ),
            (
                E::PasswordReset {
                    password_hash: sealed(),
                    at: at(0),
                },
                MailKind::PasswordWasReset,
            ),
            (
                E::PasswordChanged {
                    password_hash: sealed(),
                    at: at(0),
                },
                MailKind::PasswordChanged,
            ),
            (
                E::MfaResetCancelled {
                    reason: ResetCancellation::DeniedByLink,
                    at: at(0),
                },
                MailKind::MfaResetCancelled {
                    reason: ResetCancellation::DeniedByLink,
                },
            ),
            (
                E::MfaResetCancelled {
                    reason: ResetCancellation::SignedInWithSecondFactor,
                    at: at(0),
                },
                MailKind::MfaResetCancelled {
                    reason: ResetCancellation::SignedInWithSecondFactor,
                },
            ),
        ];
        for (event, kind) in cases {
            assert_eq!(mail_for(&event), Some((kind, None, None)), "{event:?}");
        }
    }

    #[test]
    fn a_verified_address_and_a_registration_call_for_no_mail_of_their_own() {
        assert_eq!(mail_for(&E::EmailVerified { at: at(0) }), None);
        let registered = E::UserRegistered {
            user_id: uuid::Uuid::from_u128(7),
            email: "ada@example.com".into(),
            password_hash: sealed(),
            at: at(0),
        };
        assert_eq!(mail_for(&registered), None);
    }

    #[test]
    fn a_cancelled_reset_travels_with_its_reason() {
        let kind = MailKind::MfaResetCancelled {
            reason: ResetCancellation::CancelledByUser,
        };
        let json = serde_json::to_value(kind).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"mfa_reset_cancelled": {"reason": "cancelled_by_user"}})
        );
        assert_eq!(serde_json::from_value::<MailKind>(json).unwrap(), kind);
        assert_eq!(
            serde_json::to_value(MailKind::PasswordResetLink).unwrap(),
            "password_reset_link"
        );
    }
}
