//! The email relay: for each event that needs a mail, publish it to
//! RabbitMQ (confirmed), then advance the checkpoint. A crash between the
//! two publishes again: at-least-once, with the event's stream and sequence
//! as message id so the worker sends each mail once.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use authledger_aggregates::UserAuthEvent as E;
use sqlx::PgConnection;
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
    match event {
        E::EmailLinkRequested {
            link, expires_at, ..
        } => Some((
            MailKind::SignInLink,
            Some(LinkReference {
                reference: link.to_string(),
                expires_at: *expires_at,
            }),
            None,
        )),
        E::MfaEnrolled { .. } => Some((MailKind::AuthenticatorEnrolled, None, None)),
        E::MfaReset { .. } => Some((MailKind::MfaReset, None, None)),
        E::RecoveryCodeUsed { .. } => Some((MailKind::RecoveryCodeUsed, None, None)),
        E::EmailLinkUsed { .. } => Some((MailKind::SignedInWithEmailLink, None, None)),
        E::TotpRejected { attempt, .. } | E::RecoveryCodeRejected { attempt, .. } => Some((
            MailKind::SecondFactorFailed,
            None,
            Some(attempt.to_string()),
        )),
        E::AccountLocked { .. } => Some((MailKind::AccountLocked, None, None)),
        _ => None,
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
        let mut recipients: HashMap<Uuid, String> = HashMap::new();
        let mut reported: HashSet<String> = HashSet::new();
        let mut mails = Vec::new();
        for stored in events {
            let user: Uuid = stored.aggregate_id.parse()?;
            if let E::UserRegistered { email, .. } = &stored.event {
                recipients.insert(user, email.clone());
                continue;
            }
            let Some((kind, link, attempt)) = mail_for(&stored.event) else {
                continue;
            };
            if let Some(attempt) = attempt {
                let earlier: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM mail_attempt_notices WHERE attempt = $1)",
                )
                .bind(&attempt)
                .fetch_one(&mut *tx)
                .await?;
                if earlier || !reported.insert(attempt) {
                    continue;
                }
            }
            let to = match recipients.get(&user) {
                Some(email) => Some(email.clone()),
                None => {
                    sqlx::query_scalar("SELECT email FROM mail_recipients WHERE user_id = $1")
                        .bind(user)
                        .fetch_optional(&mut *tx)
                        .await?
                }
            };
            let Some(to) = to else {
                tracing::warn!(%user, "no address for a mail; skipped");
                continue;
            };
            mails.push(MailMessage {
                message_id: format!("{}/{}", stored.aggregate_id, stored.sequence),
                kind,
                user_id: user,
                to,
                at: stored.event.at(),
                client_ip: stored.meta("client_ip").to_owned(),
                user_agent: stored.meta("user_agent").to_owned(),
                link,
            });
        }
        self.publisher.publish_mails(&mails).await?;
        for (user, email) in recipients {
            sqlx::query(
                "INSERT INTO mail_recipients (user_id, email) VALUES ($1, $2)
                 ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email",
            )
            .bind(user)
            .bind(email)
            .execute(&mut *tx)
            .await?;
        }
        for attempt in reported {
            sqlx::query(
                "INSERT INTO mail_attempt_notices (attempt) VALUES ($1) ON CONFLICT DO NOTHING",
            )
            .bind(attempt)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}
