//! Consuming: deliveries from RabbitMQ, each sent once (the `sent_mail`
//! record under an advisory lock on its message id), acked, retried with
//! back-off, or dead-lettered. The address and origin travel sealed with
//! the user's data key and are opened here, just before sending.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use authledger_aggregates::{Clock, Reference, SealPurpose};
use authledger_projections::locks::{advisory_key, LockPurpose};
use authledger_projections::mail::{connect, MailMessage, Publisher, Topology};
use authledger_projections::PERSONAL_METADATA;
use data_encoding::HEXLOWER_PERMISSIVE;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sqlx::PgPool;
use uuid::Uuid;

use crate::command_bus::client_origin;
use crate::config::Secret;
use crate::keys::{Keyring, UserKeeper};
use crate::metrics::{DropReason, MailMetrics};
use crate::store;
use crate::tokens::TokenCodec;

use super::templates::{self, LinkTarget, Origin};

const ATTEMPTS_HEADER: &str = "x-authledger-attempts";

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub amqp_url: Secret,
    pub topology: Topology,
    pub smtp_url: Secret,
    pub from: Mailbox,
    pub public_url: String,
    pub prefetch: u16,
    /// Sends tried before a mail is dead-lettered.
    pub max_attempts: u32,
    /// The first retry waits this long, each further one twice as long.
    pub retry_base: Duration,
    /// The longest a send may take, from taking a connection to the SMTP
    /// server's acceptance.
    pub send_timeout: Duration,
}

pub struct Worker {
    pool: PgPool,
    keyring: Arc<Keyring>,
    tokens: TokenCodec,
    settings: WorkerSettings,
    /// Replaced whole when a send times out: see `send`.
    transport: std::sync::RwLock<Arc<AsyncSmtpTransport<Tokio1Executor>>>,
    publisher: Publisher,
    clock: Arc<dyn Clock>,
    metrics: MailMetrics,
}

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    AlreadySent,
    Retrying,
    DeadLettered,
    /// A link that expired while it waited: not worth sending.
    Expired,
    /// The account was erased while its mail waited: the address no longer
    /// opens, so there is nobody to send it to.
    Erased,
}

/// Why a mail was not sent: the SMTP server (retried, then dead-lettered),
/// or our own database (the message comes back later).
enum SendError {
    Smtp(anyhow::Error),
    Store(anyhow::Error),
}

/// The longest a failed mail waits before its next attempt.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(600);

impl Worker {
    /// `keyring` makes the links' tokens and opens the users' data keys;
    /// `clock` decides when a link has expired; `metrics` counts what this
    /// worker sends, retries, dead-letters and drops.
    pub fn new(
        pool: PgPool,
        keyring: Arc<Keyring>,
        settings: WorkerSettings,
        clock: Arc<dyn Clock>,
        metrics: MailMetrics,
    ) -> anyhow::Result<Self> {
        let transport = std::sync::RwLock::new(Arc::new(smtp_transport(&settings)?));
        let publisher = Publisher::new(settings.amqp_url.expose(), settings.topology.clone());
        Ok(Self {
            pool,
            tokens: TokenCodec::new(keyring.clone()),
            keyring,
            settings,
            transport,
            publisher,
            clock,
            metrics,
        })
    }

    /// Handles every message waiting now, then returns how many it took.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let (connection, channel) = connect(
            self.settings.amqp_url.expose(),
            &self.settings.topology,
            "authledger-worker",
        )
        .await?;
        let mut handled = 0;
        while let Some(message) = channel
            .basic_get(
                self.settings.topology.queue.as_str().into(),
                BasicGetOptions::default(),
            )
            .await?
        {
            self.handle(&message.delivery).await?;
            handled += 1;
        }
        let _ = connection.close(200, "done".into()).await;
        Ok(handled)
    }

    /// Consumes until `shutdown` completes, reconnecting with back-off when
    /// the broker goes away. A delivery in progress finishes (and is acked)
    /// before shutdown returns.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(500);
        loop {
            let session = async {
                let (connection, channel) = connect(
                    self.settings.amqp_url.expose(),
                    &self.settings.topology,
                    "authledger-worker",
                )
                .await?;
                channel
                    .basic_qos(self.settings.prefetch, BasicQosOptions::default())
                    .await?;
                let consumer = channel
                    .basic_consume(
                        self.settings.topology.queue.as_str().into(),
                        ShortString::from(""),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                anyhow::Ok((connection, channel, consumer))
            };
            let (connection, _channel, mut consumer) = tokio::select! {
                () = &mut shutdown => return,
                result = session => match result {
                    Ok(session) => session,
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), ?backoff, "mail worker cannot reach RabbitMQ; retrying");
                        tokio::select! {
                            () = &mut shutdown => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
            };
            backoff = Duration::from_millis(500);
            // Up to `prefetch` mails are sent at once: each waits on the SMTP
            // server and Postgres, not on the CPU. The advisory lock per
            // message keeps two copies of one message from both going out.
            let failing = AtomicU64::new(500);
            let limit = usize::from(self.settings.prefetch.max(1));
            let mut in_flight = futures_util::stream::FuturesUnordered::new();
            tracing::info!("mail worker consuming");
            loop {
                let next = tokio::select! {
                    biased;
                    () = &mut shutdown => {
                        // Deliveries already taken finish, and are acked,
                        // before the connection closes.
                        while in_flight.next().await.is_some() {}
                        let _ = connection.close(200, "shutting down".into()).await;
                        return;
                    }
                    Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
                    next = consumer.next(), if in_flight.len() < limit => next,
                };
                match next {
                    Some(Ok(delivery)) => {
                        in_flight.push(self.handle_or_redeliver(delivery, &failing))
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "mail consumer failed; reconnecting");
                        break;
                    }
                    None => break,
                }
            }
            while in_flight.next().await.is_some() {}
        }
    }

    /// Handles a delivery; when something of ours fails (Postgres, a
    /// publish), waits before the message comes back, so it does not spin,
    /// and the wait grows while failures go on. A reject counts towards the
    /// queue's delivery limit.
    async fn handle_or_redeliver(&self, delivery: Delivery, failing: &AtomicU64) {
        match self.handle(&delivery).await {
            Ok(_) => failing.store(500, Ordering::Relaxed),
            Err(error) => {
                let wait = Duration::from_millis(failing.load(Ordering::Relaxed));
                tracing::warn!(
                    error = format!("{error:#}"),
                    ?wait,
                    "mail not handled; it will be redelivered"
                );
                tokio::time::sleep(wait).await;
                let _ = failing.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |ms| {
                    Some((ms * 2).min(30_000))
                });
                let _ = delivery.reject(BasicRejectOptions { requeue: true }).await;
            }
        }
    }

    /// Sends one delivery, or moves it on to retry or the dead-letter
    /// queue, then acks it. An error leaves it unacked for redelivery.
    pub async fn handle(&self, delivery: &Delivery) -> anyhow::Result<Outcome> {
        let attempts = attempts_of(&delivery.properties).saturating_add(1);
        let message: MailMessage = match serde_json::from_slice(&delivery.data) {
            Ok(message) => message,
            Err(error) => {
                // Where, not what: the error's text can quote the message,
                // and a message of an older shape held a plain address.
                tracing::error!(
                    category = ?error.classify(),
                    line = error.line(),
                    column = error.column(),
                    "a mail message does not parse; dead-lettering it"
                );
                return self
                    .give_up(delivery, attempts, "unparseable message")
                    .await;
            }
        };
        if templates::link_target(message.kind).is_some() != message.link.is_some() {
            // No attempt could ever send it: retrying would only delay the
            // dead-letter queue.
            tracing::error!(message_id = %message.message_id, kind = ?message.kind, "a link mail without its link, or a notice with one; dead-lettering it");
            return self
                .give_up(delivery, attempts, "link does not match the kind")
                .await;
        }
        if let Some(link) = &message.link {
            if link.expires_at <= self.clock.now() {
                tracing::info!(message_id = %message.message_id, kind = ?message.kind, "link expired before it could be mailed; dropped");
                delivery.ack(BasicAckOptions::default()).await?;
                self.metrics.count_dropped(DropReason::Expired);
                return Ok(Outcome::Expired);
            }
        }
        // The user's data key as it is now, not when the mail was queued:
        // an account erased meanwhile has none, and its mail is not sent.
        let keeper = store::user_keeper(&self.pool, &self.keyring, message.user_id).await?;
        let recipient = match Recipient::open(&message, &keeper) {
            Ok(recipient) => recipient,
            Err(Unopened::Erased) => {
                tracing::info!(user = %message.user_id, kind = ?message.kind, "the account was erased; mail dropped");
                delivery.ack(BasicAckOptions::default()).await?;
                self.metrics.count_dropped(DropReason::Erased);
                return Ok(Outcome::Erased);
            }
            Err(Unopened::Broken(reason)) => {
                tracing::error!(message_id = %message.message_id, kind = ?message.kind, reason, "dead-lettering the mail");
                return self.give_up(delivery, attempts, reason).await;
            }
        };
        // One worker at a time per message id, from the check to the record:
        // a message published twice and taken by two workers at once is
        // sent once. A session lock, not a transaction, so no transaction
        // id is held while SMTP answers.
        let lock = advisory_key(LockPurpose::Mail, &message.message_id);
        let mut connection = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(lock)
            .execute(&mut *connection)
            .await?;
        let sent = self.send_once(&mut connection, &message, &recipient).await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(lock)
            .execute(&mut *connection)
            .await?;
        match sent {
            Ok(true) => {
                delivery.ack(BasicAckOptions::default()).await?;
                Ok(Outcome::AlreadySent)
            }
            Ok(false) => {
                delivery.ack(BasicAckOptions::default()).await?;
                self.metrics.count_sent();
                tracing::info!(message_id = %message.message_id, kind = ?message.kind, "mail sent");
                Ok(Outcome::Sent)
            }
            Err(SendError::Store(error)) => Err(error),
            Err(SendError::Smtp(error)) if attempts >= self.settings.max_attempts => {
                tracing::error!(message_id = %message.message_id, %error, attempts, "mail failed every attempt; dead-lettering it");
                self.give_up(delivery, attempts, &error.to_string()).await
            }
            Err(SendError::Smtp(error)) => {
                let wait = (self.settings.retry_base * 2u32.saturating_pow(attempts - 1))
                    .min(MAX_RETRY_WAIT);
                tracing::warn!(message_id = %message.message_id, %error, attempts, ?wait, "mail not sent; will retry");
                let properties = forward_properties(&delivery.properties, attempts)
                    .with_expiration(ShortString::from(wait.as_millis().to_string()));
                self.publisher
                    .publish(
                        &self.settings.topology.retry_exchange,
                        &delivery.data,
                        properties,
                    )
                    .await?;
                delivery.ack(BasicAckOptions::default()).await?;
                self.metrics.count_retried();
                Ok(Outcome::Retrying)
            }
        }
    }

    async fn give_up(
        &self,
        delivery: &Delivery,
        attempts: u32,
        reason: &str,
    ) -> anyhow::Result<Outcome> {
        let mut properties = forward_properties(&delivery.properties, attempts);
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(
            "x-authledger-error".into(),
            AMQPValue::LongString(reason.chars().take(500).collect::<String>().into()),
        );
        properties = properties.with_headers(headers);
        self.publisher
            .publish(
                &self.settings.topology.dead_exchange,
                &delivery.data,
                properties,
            )
            .await?;
        delivery.ack(BasicAckOptions::default()).await?;
        self.metrics.count_dead_lettered();
        Ok(Outcome::DeadLettered)
    }

    /// Sends unless already sent, and records it. `Ok(true)`: it had been
    /// sent before.
    async fn send_once(
        &self,
        connection: &mut sqlx::PgConnection,
        message: &MailMessage,
        recipient: &Recipient,
    ) -> Result<bool, SendError> {
        let already: Option<String> =
            sqlx::query_scalar("SELECT message_id FROM sent_mail WHERE message_id = $1")
                .bind(&message.message_id)
                .fetch_optional(&mut *connection)
                .await
                .map_err(|e| SendError::Store(e.into()))?;
        if already.is_some() {
            return Ok(true);
        }
        self.send(message, recipient)
            .await
            .map_err(|error| SendError::Smtp(masked(&error, &recipient.address)))?;
        sqlx::query("INSERT INTO sent_mail (message_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(&message.message_id)
            .execute(&mut *connection)
            .await
            .map_err(|e| SendError::Store(e.into()))?;
        Ok(false)
    }

    async fn send(&self, message: &MailMessage, recipient: &Recipient) -> anyhow::Result<()> {
        let link = match (templates::link_target(message.kind), &message.link) {
            (Some(target), Some(link)) => Some(link_url(
                &self.tokens,
                &self.settings.public_url,
                target,
                message.user_id,
                &link.reference,
            )?),
            _ => None,
        };
        let mail = templates::render(message, &recipient.origin, link.as_deref())?;
        let email = Message::builder()
            .from(self.settings.from.clone())
            .to(recipient.mailbox.clone())
            .subject(mail.subject)
            .message_id(Some(format!(
                "<{}@authledger>",
                message.message_id.replace('/', ".")
            )))
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))?;
        // lettre bounds only the connect: a server that stops answering
        // mid-session would hold the send, and with it a slot of the
        // worker, for good, and say nothing.
        let transport = self
            .transport
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match tokio::time::timeout(self.settings.send_timeout, transport.send(email)).await {
            Ok(sent) => {
                sent?;
                Ok(())
            }
            Err(_) => {
                // The abandoned connection goes back to its pool as if
                // whole; a new transport (a new pool) keeps it from the next
                // sends, and the old pool closes it when its last send ends.
                let mut current = self
                    .transport
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if Arc::ptr_eq(&current, &transport) {
                    *current = Arc::new(smtp_transport(&self.settings)?);
                }
                anyhow::bail!(
                    "the SMTP server did not accept the mail within {:?}",
                    self.settings.send_timeout
                )
            }
        }
    }
}

/// The SMTP transport of `settings`: it keeps one connection per mail in
/// flight (beyond lettre's default of 10 kept, each send opened a
/// connection of its own and closed it after: connect, EHLO, QUIT per
/// mail).
fn smtp_transport(settings: &WorkerSettings) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::from_url(settings.smtp_url.expose())?
            .timeout(Some(Duration::from_secs(10)))
            .pool_config(PoolConfig::new().max_size(u32::from(settings.prefetch.max(1))))
            .build(),
    )
}

/// What the worker opens of a message with the user's data key. No
/// `Debug`: it holds the address.
struct Recipient {
    address: String,
    mailbox: Mailbox,
    origin: Origin,
}

/// Why a message's address did not open.
#[derive(Debug, PartialEq, Eq)]
enum Unopened {
    /// The user's data key is gone: the account was erased.
    Erased,
    /// The key is there and still the message cannot be sent: no attempt
    /// would do better.
    Broken(&'static str),
}

impl Recipient {
    fn open(message: &MailMessage, keeper: &UserKeeper) -> Result<Self, Unopened> {
        let Some(address) = keeper.open_text(SealPurpose::Email, &message.to) else {
            return Err(if keeper.holds_personal_key() {
                Unopened::Broken("the address does not open with the user's key")
            } else {
                Unopened::Erased
            });
        };
        let mailbox = address
            .parse()
            .map_err(|_| Unopened::Broken("the address is not a mailbox"))?;
        let origin = match &message.origin {
            None => Origin::Server,
            Some(sealed) => {
                let metadata = HashMap::from([(PERSONAL_METADATA.to_owned(), sealed.clone())]);
                client_origin(&metadata, keeper).map_or(Origin::Unknown, Origin::Client)
            }
        };
        Ok(Self {
            address,
            mailbox,
            origin,
        })
    }
}

/// `error` with `address` masked: an SMTP server's answer often quotes the
/// recipient ("550 <ada@example.com>: no such user"), and the text goes to
/// the logs and the dead-letter queue.
fn masked(error: &anyhow::Error, address: &str) -> anyhow::Error {
    anyhow::anyhow!(mask(&format!("{error:#}"), address))
}

/// `text` with every occurrence of `address` replaced, whatever its ASCII
/// case (servers may lower-case it).
fn mask(text: &str, address: &str) -> String {
    if address.is_empty() {
        return text.to_owned();
    }
    // ASCII case folding keeps every byte where it was, so the positions
    // found in the folded text are positions in `text`.
    let folded = text.to_ascii_lowercase();
    let needle = address.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    for (start, _) in folded.match_indices(&needle) {
        out.push_str(&text[rest..start]);
        out.push_str("[address]");
        rest = start + needle.len();
    }
    out.push_str(&text[rest..]);
    out
}

/// The link a mail carries: its token is made here from the reference
/// with the server key, so neither RabbitMQ nor Postgres holds it.
fn link_url(
    tokens: &TokenCodec,
    public_url: &str,
    target: LinkTarget,
    user: Uuid,
    reference_hex: &str,
) -> anyhow::Result<String> {
    let bytes = HEXLOWER_PERMISSIVE
        .decode(reference_hex.as_bytes())
        .context("a link reference is not hex")?;
    let bytes: [u8; 16] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a link reference is 16 bytes"))?;
    let token = tokens.encode(target.token, user, &Reference::from_bytes(bytes));
    Ok(format!(
        "{}{}?token={token}",
        public_url.trim_end_matches('/'),
        target.path
    ))
}

fn attempts_of(properties: &BasicProperties) -> u32 {
    properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPTS_HEADER).cloned())
        .and_then(|v| match v {
            AMQPValue::LongUInt(n) => Some(n),
            AMQPValue::LongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
            _ => None,
        })
        .unwrap_or(0)
}

/// The message's properties for its next queue, with the attempts made.
fn forward_properties(properties: &BasicProperties, attempts: u32) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongUInt(attempts));
    let mut forwarded = BasicProperties::default().with_headers(headers);
    if let Some(id) = properties.message_id() {
        forwarded = forwarded.with_message_id(id.clone());
    }
    if let Some(content_type) = properties.content_type() {
        forwarded = forwarded.with_content_type(content_type.clone());
    }
    forwarded
}

#[cfg(test)]
mod tests {
    use authledger_aggregates::{ResetCancellation, SecretKeeper};
    use authledger_projections::mail::MailKind;
    use chrono::{TimeZone, Utc};

    use crate::command_bus::ClientOrigin;
    use crate::keys::{DataKey, Keyring, MasterKey};
    use crate::tokens::TokenKind;

    use super::*;

    fn codec() -> TokenCodec {
        TokenCodec::new(Arc::new(Keyring::single(&MasterKey::generate())))
    }

    const REFERENCE: &str = "00112233445566778899aabbccddeeff";

    fn reference() -> Reference {
        Reference::from_bytes([
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ])
    }

    fn target(kind: MailKind) -> LinkTarget {
        templates::link_target(kind).unwrap()
    }

    #[test]
    fn a_link_carries_a_token_for_the_events_reference() {
        let tokens = codec();
        let user = Uuid::from_u128(7);
        let url = link_url(
            &tokens,
            "https://auth.example.com/",
            target(MailKind::SignInLink),
            user,
            REFERENCE,
        )
        .unwrap();
        let token = url
            .strip_prefix("https://auth.example.com/v1/login/email-link?token=")
            .unwrap();
        assert_eq!(
            tokens.decode(TokenKind::EmailLink, token).unwrap(),
            (user, reference())
        );
    }

    #[test]
    fn each_link_mail_links_to_its_own_page_with_a_token_of_its_own_kind() {
        let tokens = codec();
        let user = Uuid::from_u128(7);
        for (kind, page, token_kind) in [
            (
                MailKind::VerifyEmail,
                "https://auth.example.com/v1/users/verify?token=al_verify_",
                TokenKind::EmailVerification,
            ),
            (
                MailKind::PasswordResetLink,
                "https://auth.example.com/v1/password/reset?token=al_reset_",
                TokenKind::PasswordReset,
            ),
            (
                MailKind::MfaResetRequested,
                "https://auth.example.com/v1/mfa-reset/deny?token=al_deny_",
                TokenKind::ResetDenial,
            ),
            (
                MailKind::EmailChangeConfirm,
                "https://auth.example.com/v1/me/email/confirm?token=al_newaddr_",
                TokenKind::EmailChange,
            ),
            (
                MailKind::EmailChangedNotice,
                "https://auth.example.com/v1/me/email/revert?token=al_undo_",
                TokenKind::EmailChangeRevert,
            ),
            (
                MailKind::NewDeviceSignIn,
                "https://auth.example.com/v1/report?token=al_report_",
                TokenKind::Report,
            ),
        ] {
            let url = link_url(
                &tokens,
                "https://auth.example.com",
                target(kind),
                user,
                REFERENCE,
            )
            .unwrap();
            assert!(url.starts_with(page), "{url}");
            let token = url.split_once("?token=").unwrap().1;
            assert_eq!(
                tokens.decode(token_kind, token).unwrap(),
                (user, reference()),
                "{kind:?}"
            );
            assert!(
                tokens.decode(TokenKind::EmailLink, token).is_err(),
                "{kind:?}'s link is no sign-in link"
            );
        }
    }

    #[test]
    fn notices_have_no_link_target() {
        for kind in [
            MailKind::AuthenticatorEnrolled,
            MailKind::MfaReset,
            MailKind::RegistrationAttempted,
            MailKind::PasswordWasReset,
            MailKind::PasswordChanged,
            MailKind::MfaResetCancelled {
                reason: ResetCancellation::DeniedByLink,
            },
            MailKind::EmailChangeRevertedNotice,
            MailKind::EmailChangeUndoneNotice,
        ] {
            assert_eq!(templates::link_target(kind), None, "{kind:?}");
        }
    }

    #[test]
    fn a_reference_that_is_not_sixteen_bytes_of_hex_makes_no_link() {
        let tokens = codec();
        let user = Uuid::from_u128(7);
        for reference in ["zz112233445566778899aabbccddeeff", "0011", "0", ""] {
            assert!(
                link_url(
                    &tokens,
                    "https://auth.example.com",
                    target(MailKind::PasswordResetLink),
                    user,
                    reference
                )
                .is_err(),
                "{reference:?}"
            );
        }
    }

    fn user() -> Uuid {
        Uuid::from_u128(7)
    }

    /// A keeper holding `user()`'s data key, and one for the same user
    /// after erasure.
    fn keepers() -> (UserKeeper, UserKeeper) {
        let ring = Arc::new(Keyring::single(&MasterKey::generate()));
        let held = UserKeeper::new(ring.clone(), user(), Some(&DataKey::generate()));
        (held, UserKeeper::new(ring, user(), None))
    }

    /// The metadata's sealed origin, as the command bus writes it.
    fn sealed_origin(keeper: &UserKeeper, client_ip: &str, user_agent: &str) -> String {
        let origin = ClientOrigin {
            client_ip: client_ip.into(),
            user_agent: user_agent.into(),
        };
        let sealed = keeper
            .seal(SealPurpose::FreeText, &serde_json::to_vec(&origin).unwrap())
            .unwrap();
        serde_json::to_string(&sealed).unwrap()
    }

    /// A notice to `address`, sealed by `keeper`, with `origin`.
    fn mail_to(keeper: &UserKeeper, address: &str, origin: Option<String>) -> MailMessage {
        MailMessage {
            message_id: format!("{}/3", user()),
            kind: MailKind::PasswordChanged,
            user_id: user(),
            to: keeper.seal(SealPurpose::Email, address.as_bytes()).unwrap(),
            at: Utc.timestamp_opt(1_772_366_400, 0).unwrap(),
            origin,
            link: None,
        }
    }

    #[test]
    fn the_address_and_origin_open_with_the_users_key() {
        let (keeper, _) = keepers();
        let origin = sealed_origin(&keeper, "203.0.113.9", "curl/8.5");
        let message = mail_to(&keeper, "ada@example.com", Some(origin));
        let Ok(recipient) = Recipient::open(&message, &keeper) else {
            panic!("the address does not open");
        };
        assert_eq!(recipient.address, "ada@example.com");
        assert_eq!(recipient.mailbox.email.to_string(), "ada@example.com");
        match recipient.origin {
            Origin::Client(origin) => assert_eq!(
                origin,
                ClientOrigin {
                    client_ip: "203.0.113.9".into(),
                    user_agent: "curl/8.5".into(),
                }
            ),
            Origin::Server | Origin::Unknown => panic!("the origin does not open"),
        }
    }

    #[test]
    fn an_erased_accounts_mail_does_not_open() {
        let (keeper, erased) = keepers();
        let message = mail_to(&keeper, "ada@example.com", None);
        assert_eq!(
            Recipient::open(&message, &erased).err(),
            Some(Unopened::Erased)
        );
    }

    #[test]
    fn an_address_that_does_not_open_with_the_key_held_is_broken_not_erased() {
        let (keeper, _) = keepers();
        let (someone_else, _) = keepers();
        let message = mail_to(&someone_else, "ada@example.com", None);
        assert!(matches!(
            Recipient::open(&message, &keeper),
            Err(Unopened::Broken(_))
        ));
        let not_a_mailbox = mail_to(&keeper, "not an address", None);
        assert!(matches!(
            Recipient::open(&not_a_mailbox, &keeper),
            Err(Unopened::Broken(_))
        ));
    }

    #[test]
    fn no_origin_is_the_server_and_one_that_does_not_open_is_unknown() {
        let (keeper, _) = keepers();
        let (someone_else, _) = keepers();
        let by_server = mail_to(&keeper, "ada@example.com", None);
        assert!(matches!(
            Recipient::open(&by_server, &keeper).map(|r| r.origin),
            Ok(Origin::Server)
        ));
        let foreign = sealed_origin(&someone_else, "203.0.113.9", "curl/8.5");
        for origin in [foreign, "not sealed".to_owned()] {
            let message = mail_to(&keeper, "ada@example.com", Some(origin));
            assert!(matches!(
                Recipient::open(&message, &keeper).map(|r| r.origin),
                Ok(Origin::Unknown)
            ));
        }
    }

    #[test]
    fn an_smtp_answer_quoting_the_address_is_masked_in_any_case() {
        let error = anyhow::anyhow!("550 5.1.1 <Ada@Example.COM>: Recipient address rejected")
            .context("permanent error");
        assert_eq!(
            masked(&error, "ada@example.com").to_string(),
            "permanent error: 550 5.1.1 <[address]>: Recipient address rejected"
        );
        assert_eq!(
            mask("to ada@example.com and ada@example.com", "ada@example.com"),
            "to [address] and [address]"
        );
        assert_eq!(
            mask("connection refused", "ada@example.com"),
            "connection refused"
        );
        assert_eq!(
            mask("naïve ADA@example.com", "ada@example.com"),
            "naïve [address]"
        );
    }
}
