//! The email relay: for each event that needs a mail, publish it to
//! RabbitMQ (confirmed), then advance the checkpoint. A crash between the
//! two publishes again: at-least-once, with the event's stream and sequence
//! as message id so the worker sends each mail once.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use authledger_aggregates::UserAuthEvent as E;
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
                client_ip: stored.meta("client_ip").to_owned(),
                user_agent: stored.meta("user_agent").to_owned(),
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
