//! Mail through RabbitMQ: the message the relay publishes and the worker
//! sends, the topology both declare (with the exchange of the public
//! integration events), and a confirmed publisher that reconnects after the
//! broker goes away.
use std::time::Duration;

use authledger_aggregates::{ResetCancellation, Sealed};
use chrono::{DateTime, Utc};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use uuid::Uuid;

/// What a mail is about. Each says what happened and what to do if it was
/// not the account's owner. `SignInLink`, `VerifyEmail`,
/// `PasswordResetLink`, `MfaResetRequested`, `EmailChangeConfirm`,
/// `EmailChangedNotice` and `NewDeviceSignIn` carry a link; the others are
/// notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailKind {
    SignInLink,
    AuthenticatorEnrolled,
    MfaReset,
    RecoveryCodeUsed,
    SignedInWithEmailLink,
    SecondFactorFailed,
    AccountLocked,
    /// The link that confirms a new account's address.
    VerifyEmail,
    /// Someone tried to register the address of an existing account.
    RegistrationAttempted,
    /// The link of "Forgot password?".
    PasswordResetLink,
    /// The password was set through a reset link.
    PasswordWasReset,
    /// The signed-in user changed their password.
    PasswordChanged,
    /// An MFA reset waits; the link cancels it ("this wasn't me") and its
    /// expiry is when the reset takes effect.
    MfaResetRequested,
    MfaResetCancelled {
        reason: ResetCancellation,
    },
    /// To the address an account asked to change to: a change is confirmed
    /// from the new inbox, so that an address nobody reads is never taken.
    EmailChangeConfirm,
    /// To the address given up; its link ("this wasn't me") restores it and
    /// ends every session, until the hold on the old address runs out.
    EmailChangedNotice,
    /// To the restored address: every session ended; what to do if someone
    /// else had access.
    EmailChangeRevertedNotice,
    /// To the address the undo took away: its owner may have moved away
    /// from a mailbox someone else reads, who just took the account back.
    EmailChangeUndoneNotice,
    /// A sign-in from a browser new to the account; its link ("this wasn't
    /// me") ends every session and reports it.
    NewDeviceSignIn,
    /// Another authenticator app, security key or passkey was added.
    AuthenticatorAdded,
    /// An authenticator was removed.
    AuthenticatorRemoved,
    /// A security key answered with a signature count that did not go up:
    /// two copies of it may exist.
    SecurityKeyCopied,
}

/// A mail to send. It holds no secret and nothing plain about the user: a
/// link is carried as its reference, and only the worker, holding the
/// server key, makes the token; the address and where the request came from
/// stay sealed with the user's data key, so an account erased while its
/// mail waits in a queue leaves nothing there that can be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailMessage {
    /// The event's stream and sequence: `<user id>/<sequence>`.
    pub message_id: String,
    pub kind: MailKind,
    pub user_id: Uuid,
    /// The address, as the events sealed it (`SealPurpose::Email`).
    pub to: Sealed,
    pub at: DateTime<Utc>,
    /// The event metadata's sealed IP and browser, verbatim (see
    /// [`crate::PERSONAL_METADATA`]); `None` for what the server did by
    /// itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkReference>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkReference {
    /// The link's reference, hex.
    pub reference: String,
    /// After this the link is refused, so a mail not sent by then is not
    /// sent at all.
    pub expires_at: DateTime<Utc>,
}

/// Names of the exchanges and queues, under one prefix (tests use their own).
#[derive(Debug, Clone)]
pub struct Topology {
    pub exchange: String,
    pub queue: String,
    pub retry_exchange: String,
    pub retry_queue: String,
    pub dead_exchange: String,
    pub dead_queue: String,
    /// The topic exchange of the public integration events; other services
    /// bind their own queues to it.
    pub events_exchange: String,
    /// Deliveries of one message before the broker dead-letters it (a
    /// worker that crashes on it every time).
    pub delivery_limit: i64,
    /// Queues unused this long are deleted by the broker; for throwaway
    /// topologies such as tests'. `None` in production.
    pub expires: Option<std::time::Duration>,
}

impl Topology {
    pub fn new(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}.mail"),
            queue: format!("{prefix}.mail"),
            retry_exchange: format!("{prefix}.mail.retry"),
            retry_queue: format!("{prefix}.mail.retry"),
            dead_exchange: format!("{prefix}.mail.dead"),
            dead_queue: format!("{prefix}.mail.dead"),
            events_exchange: format!("{prefix}.events"),
            delivery_limit: 20,
            expires: None,
        }
    }

    /// Declares everything, idempotently:
    /// - `mail`: a durable direct exchange and a quorum queue with a delivery
    ///   limit, dead-lettering at-least-once to `mail.dead`;
    /// - `mail.retry`: where a failed mail waits out its back-off (per-message
    ///   TTL), then dead-letters back to `mail`;
    /// - `mail.dead`: mails that failed every attempt, kept for operators;
    /// - `events`: a durable topic exchange and no queue: the services that
    ///   read the integration events declare and bind their own.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        channel
            .exchange_declare(
                self.events_exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        for exchange in [&self.exchange, &self.retry_exchange, &self.dead_exchange] {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Direct,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        let mut main = self.quorum();
        main.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(self.delivery_limit),
        );
        main.insert("x-dead-letter-exchange".into(), string(&self.dead_exchange));
        main.insert("x-dead-letter-strategy".into(), string("at-least-once"));
        // at-least-once dead-lettering needs the queue to refuse, not drop,
        // messages when it is full.
        main.insert("x-overflow".into(), string("reject-publish"));
        let mut retry = self.quorum();
        retry.insert("x-dead-letter-exchange".into(), string(&self.exchange));
        retry.insert("x-dead-letter-strategy".into(), string("at-least-once"));
        retry.insert("x-overflow".into(), string("reject-publish"));
        for (queue, exchange, arguments) in [
            (&self.queue, &self.exchange, main),
            (&self.retry_queue, &self.retry_exchange, retry),
            (&self.dead_queue, &self.dead_exchange, self.quorum()),
        ] {
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    arguments,
                )
                .await?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    ROUTING_KEY.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}

/// Every queue is bound with this key on its own exchange.
pub const ROUTING_KEY: &str = "mail";

impl Topology {
    fn quorum(&self) -> FieldTable {
        let mut table = FieldTable::default();
        table.insert("x-queue-type".into(), string("quorum"));
        if let Some(expires) = self.expires {
            let millis = i64::try_from(expires.as_millis()).unwrap_or(i64::MAX);
            table.insert("x-expires".into(), AMQPValue::LongLongInt(millis));
        }
        table
    }

    /// Deletes the queues and exchanges (for tests that made their own).
    pub async fn delete(&self, channel: &Channel) -> lapin::Result<()> {
        for queue in [&self.queue, &self.retry_queue, &self.dead_queue] {
            channel
                .queue_delete(
                    queue.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await?;
        }
        for exchange in [
            &self.exchange,
            &self.retry_exchange,
            &self.dead_exchange,
            &self.events_exchange,
        ] {
            channel
                .exchange_delete(
                    exchange.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await?;
        }
        Ok(())
    }
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("no connection to RabbitMQ within {0:?}")]
    Connect(Duration),
    #[error("the broker did not confirm within {0:?}")]
    Timeout(Duration),
    #[error("the broker refused the message")]
    Nacked,
    #[error("the message could not be routed to a queue")]
    Unroutable,
    #[error("a message does not encode as JSON")]
    Encode(#[source] serde_json::Error),
}

/// A message for a topic exchange: where it goes is its routing key.
#[derive(Debug, Clone)]
pub struct RoutedMessage {
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub properties: BasicProperties,
}

/// Whether a message that reaches no queue is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Routing {
    /// Mail must reach its queue: the broker returns it otherwise, and the
    /// publish fails.
    Mandatory,
    /// The broker drops it, and confirms it all the same.
    Optional,
}

/// Publishes persistent messages and waits for the broker's confirm, each
/// within a timeout. The connection is made on first use and made again
/// after any failure.
pub struct Publisher {
    url: String,
    topology: Topology,
    confirm_timeout: Duration,
    channel: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    pub fn new(url: &str, topology: Topology) -> Self {
        Self {
            url: url.to_owned(),
            topology,
            confirm_timeout: Duration::from_secs(5),
            channel: Mutex::new(None),
        }
    }

    /// Publishes to `exchange` and waits for the confirm.
    pub async fn publish(
        &self,
        exchange: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        self.publish_all(exchange, &[(payload.to_vec(), properties)])
            .await
    }

    /// Publishes every message, then waits for all their confirms at once
    /// (pipelined), within one confirm timeout.
    pub async fn publish_all(
        &self,
        exchange: &str,
        messages: &[(Vec<u8>, BasicProperties)],
    ) -> Result<(), PublishError> {
        let routed: Vec<(&str, &[u8], &BasicProperties)> = messages
            .iter()
            .map(|(payload, properties)| (ROUTING_KEY, payload.as_slice(), properties))
            .collect();
        self.send(exchange, &routed, Routing::Mandatory).await
    }

    /// Publishes each message with its own routing key, then waits for all
    /// their confirms at once. A message no queue is bound for is dropped
    /// by the broker, and that is not an error: the integration events'
    /// exchange has subscribers only when other services bound a queue, and
    /// publishing must not stall until one does.
    pub async fn publish_routed(
        &self,
        exchange: &str,
        messages: &[RoutedMessage],
    ) -> Result<(), PublishError> {
        let routed: Vec<(&str, &[u8], &BasicProperties)> = messages
            .iter()
            .map(|m| (m.routing_key.as_str(), m.payload.as_slice(), &m.properties))
            .collect();
        self.send(exchange, &routed, Routing::Optional).await
    }

    async fn send(
        &self,
        exchange: &str,
        messages: &[(&str, &[u8], &BasicProperties)],
        routing: Routing,
    ) -> Result<(), PublishError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut slot = self.channel.lock().await;
        if slot.as_ref().is_none_or(|(connection, channel)| {
            !connection.status().connected() || !channel.status().connected()
        }) {
            *slot = None;
            let connecting = connect(&self.url, &self.topology, "authledger-publisher");
            *slot = Some(
                tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                    .await
                    .map_err(|_| PublishError::Connect(CONNECT_TIMEOUT))??,
            );
        }
        let Some((_, channel)) = slot.as_ref() else {
            return Err(PublishError::Connect(CONNECT_TIMEOUT));
        };
        let outcome = tokio::time::timeout(self.confirm_timeout, async {
            let mut confirms = Vec::with_capacity(messages.len());
            for (routing_key, payload, properties) in messages {
                let confirm = channel
                    .basic_publish(
                        exchange.into(),
                        (*routing_key).into(),
                        BasicPublishOptions {
                            mandatory: routing == Routing::Mandatory,
                            ..Default::default()
                        },
                        payload,
                        (*properties).clone().with_delivery_mode(2),
                    )
                    .await?;
                confirms.push(confirm);
            }
            let mut results = Vec::with_capacity(confirms.len());
            for confirm in confirms {
                results.push(confirm.await?);
            }
            lapin::Result::Ok(results)
        })
        .await;
        let result = match outcome {
            Err(_) => Err(PublishError::Timeout(self.confirm_timeout)),
            Ok(Err(e)) => Err(PublishError::Broker(e)),
            Ok(Ok(confirmations)) => confirmations.into_iter().try_for_each(|c| match c {
                Confirmation::Ack(None) => Ok(()),
                Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable),
                Confirmation::Nack(_) | Confirmation::NotRequested => Err(PublishError::Nacked),
            }),
        };
        if result.is_err() {
            // Start afresh next time rather than reuse a channel in an
            // unknown state.
            *slot = None;
        }
        result
    }

    /// Publishes mails for the worker, with confirms.
    pub async fn publish_mails(&self, mails: &[MailMessage]) -> Result<(), PublishError> {
        let messages = mails
            .iter()
            .map(|mail| {
                let payload = serde_json::to_vec(mail).map_err(PublishError::Encode)?;
                let properties = BasicProperties::default()
                    .with_message_id(ShortString::from(mail.message_id.as_str()))
                    .with_content_type("application/json".into());
                Ok((payload, properties))
            })
            .collect::<Result<Vec<(Vec<u8>, BasicProperties)>, PublishError>>()?;
        self.publish_all(&self.topology.exchange.clone(), &messages)
            .await
    }
}

/// lapin has no connect timeout of its own; a broker that drops packets
/// would otherwise hold a caller for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection and a confirm-mode channel with the topology declared.
pub async fn connect(
    url: &str,
    topology: &Topology,
    name: &str,
) -> lapin::Result<(Connection, Channel)> {
    let connection = Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    topology.declare(&channel).await?;
    Ok((connection, channel))
}
