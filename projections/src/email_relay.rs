//! The email relay: for each event that needs a mail, publish it to
//! RabbitMQ (confirmed), then advance the checkpoint. A crash between the
//! two publishes again: at-least-once, with the event's stream and sequence
//! as message id so the worker sends each mail once.
//!
//! The relay never sees an address: it copies the sealed one from the
//! events (and keeps each account's current one, sealed, in
//! `mail_recipients`); only the worker opens it, with the user's data key.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use authledger_aggregates::{Reference, Sealed, UserAuthEvent as E, WebAuthnRejection};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::mail::{LinkReference, MailKind, MailMessage, Publisher};
use crate::runtime::{Projection, StoredEvent, PERSONAL_METADATA};

pub const NAME: &str = "email_relay";

pub struct EmailRelay {
    publisher: Arc<Publisher>,
}

impl EmailRelay {
    pub fn new(publisher: Arc<Publisher>) -> Self {
        Self { publisher }
    }
}

/// A mail an event calls for.
#[derive(Debug, Clone, PartialEq)]
struct Mail {
    kind: MailKind,
    link: Option<LinkReference>,
    /// The address when the event names it: a change of address writes to
    /// the new address to confirm it and to the old one to warn it. `None`:
    /// the account's current address.
    to: Option<Sealed>,
    /// The login attempt whose failure it reports: only the first failure
    /// of an attempt is mailed.
    attempt: Option<String>,
}

impl Mail {
    fn notice(kind: MailKind) -> Self {
        Self {
            kind,
            link: None,
            to: None,
            attempt: None,
        }
    }

    fn link(kind: MailKind, reference: &Reference, expires_at: &DateTime<Utc>) -> Self {
        Self {
            link: Some(LinkReference {
                reference: reference.to_string(),
                expires_at: *expires_at,
            }),
            ..Self::notice(kind)
        }
    }

    fn to(self, address: &Sealed) -> Self {
        Self {
            to: Some(address.clone()),
            ..self
        }
    }
}

/// What mail an event calls for, if any.
fn mail_for(event: &E) -> Option<Mail> {
    let mail = match event {
        E::EmailLinkRequested {
            link, expires_at, ..
        } => Mail::link(MailKind::SignInLink, link, expires_at),
        E::EmailVerificationRequested {
            link, expires_at, ..
        } => Mail::link(MailKind::VerifyEmail, link, expires_at),
        E::PasswordResetRequested {
            link, expires_at, ..
        } => Mail::link(MailKind::PasswordResetLink, link, expires_at),
        // The denial link is worth nothing once the reset has happened.
        E::MfaResetRequested {
            denial,
            effective_at,
            ..
        } => Mail::link(MailKind::MfaResetRequested, denial, effective_at),
        E::EmailChangeRequested {
            link,
            new_email,
            expires_at,
            ..
        } => Mail::link(MailKind::EmailChangeConfirm, link, expires_at).to(new_email),
        // The old address is the one whose owner may not have asked; the
        // link is worth nothing once the hold on that address runs out.
        E::EmailChanged {
            from,
            revert,
            revert_until,
            ..
        } => Mail::link(MailKind::EmailChangedNotice, revert, revert_until).to(from),
        E::EmailChangeReverted { restored, .. } => {
            Mail::notice(MailKind::EmailChangeRevertedNotice).to(restored)
        }
        E::SignedInFromNewDevice {
            report,
            report_until,
            ..
        } => Mail::link(MailKind::NewDeviceSignIn, report, report_until),
        E::MfaEnrolled { .. } => Mail::notice(MailKind::AuthenticatorEnrolled),
        E::TotpDeviceAdded { .. } | E::WebAuthnCredentialAdded { .. } => {
            Mail::notice(MailKind::AuthenticatorAdded)
        }
        E::AuthenticatorRemoved { .. } => Mail::notice(MailKind::AuthenticatorRemoved),
        E::MfaReset { .. } => Mail::notice(MailKind::MfaReset),
        E::MfaResetCancelled { reason, .. } => {
            Mail::notice(MailKind::MfaResetCancelled { reason: *reason })
        }
        E::RecoveryCodeUsed { .. } => Mail::notice(MailKind::RecoveryCodeUsed),
        E::EmailLinkUsed { .. } => Mail::notice(MailKind::SignedInWithEmailLink),
        E::RegistrationAttempted { .. } => Mail::notice(MailKind::RegistrationAttempted),
        E::PasswordReset { .. } => Mail::notice(MailKind::PasswordWasReset),
        E::PasswordChanged { .. } => Mail::notice(MailKind::PasswordChanged),
        // A mistyped first code from an authenticator being set up: no
        // sign-in got past its password and failed, and the enrollment
        // has a notice of its own once it succeeds.
        E::TotpRejected {
            enrolling: true, ..
        } => return None,
        // Told as what it may be, whatever else failed in the attempt.
        E::WebAuthnRejected {
            reason: WebAuthnRejection::SignCountRegressed { .. },
            ..
        } => Mail::notice(MailKind::SecurityKeyCopied),
        E::TotpRejected { attempt, .. }
        | E::RecoveryCodeRejected { attempt, .. }
        | E::WebAuthnRejected { attempt, .. } => Mail {
            attempt: Some(attempt.to_string()),
            ..Mail::notice(MailKind::SecondFactorFailed)
        },
        E::AccountLocked { .. } => Mail::notice(MailKind::AccountLocked),
        // Listed rather than matched by `_`, so that a new event cannot go
        // without the mail it may call for unnoticed. An erased account is
        // mailed nothing: it has no address left to mail.
        E::UserRegistered { .. }
        | E::AccountErased { .. }
        | E::SecretsResealed { .. }
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
        | E::DeviceThrottled { .. }
        | E::AccountSuspended { .. }
        | E::AccountReactivated { .. }
        | E::SessionsEndedByAdmin { .. }
        | E::ReportedByUser { .. }
        | E::TotpDeviceSetupStarted { .. }
        | E::WebAuthnVerified { .. } => return None,
    };
    Some(mail)
}

/// Where an account's mail goes after an event: `Some(Some(address))` a
/// new address, `Some(None)` nowhere any more (erased), `None` unchanged.
/// A requested change moves nothing until the new address confirms it.
fn recipient_after(event: &E) -> Option<Option<&Sealed>> {
    match event {
        E::UserRegistered { email, .. } => Some(Some(email)),
        E::EmailChanged { to, .. } => Some(Some(to)),
        E::EmailChangeReverted { restored, .. } => Some(Some(restored)),
        E::AccountErased { .. } => Some(None),
        _ => None,
    }
}

/// The sealed IP and browser of the request behind an event, as its
/// metadata holds them; nothing for what the server did by itself.
fn origin(stored: &StoredEvent) -> Option<String> {
    if stored.meta("actor") == "system" {
        return None;
    }
    stored.metadata.get(PERSONAL_METADATA).cloned()
}

/// What a batch does: the mails to publish, then the writes.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    mails: Vec<MailMessage>,
    /// Each changed account's address after the batch; `None`: erased.
    recipients: HashMap<Uuid, Option<Sealed>>,
    /// Login attempts whose failure this batch reports.
    reported: HashSet<String>,
}

/// The users whose current address the batch's mails need, and the login
/// attempts whose failures they report: what to look up first.
fn needs(events: &[StoredEvent]) -> anyhow::Result<(HashSet<Uuid>, HashSet<String>)> {
    let mut users = HashSet::new();
    let mut attempts = HashSet::new();
    for stored in events {
        let Some(mail) = mail_for(&stored.event) else {
            continue;
        };
        // A mail to the account's address needs it, and so does an undo:
        // the address it takes away is told too.
        if mail.to.is_none() || matches!(stored.event, E::EmailChangeReverted { .. }) {
            users.insert(stored.user_id()?);
        }
        attempts.extend(mail.attempt);
    }
    Ok((users, attempts))
}

/// The batch's mails and writes, in the log's order, given what earlier
/// batches left.
fn plan(events: &[StoredEvent], known: &Known) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    for stored in events {
        let user = stored.user_id()?;
        let before = match plan.recipients.get(&user) {
            Some(now) => now.clone(),
            None => known.recipients.get(&user).cloned(),
        };
        if let Some(now) = recipient_after(&stored.event) {
            plan.recipients.insert(user, now.cloned());
        }
        let Some(mail) = mail_for(&stored.event) else {
            continue;
        };
        if let Some(attempt) = mail.attempt {
            if known.reported.contains(&attempt) || !plan.reported.insert(attempt) {
                continue;
            }
        }
        let current = match plan.recipients.get(&user) {
            Some(now) => now.clone(),
            None => known.recipients.get(&user).cloned(),
        };
        let Some(to) = mail.to.or(current) else {
            tracing::warn!(%user, kind = ?mail.kind, "no address for a mail; skipped");
            continue;
        };
        // The address an undo took away is told too, under an id of its
        // own: the worker sends each message id once.
        if let (E::EmailChangeReverted { .. }, Some(taken)) = (&stored.event, before) {
            if taken != to {
                plan.mails.push(MailMessage {
                    message_id: format!("{}/{}/undone", stored.aggregate_id, stored.sequence),
                    kind: MailKind::EmailChangeUndoneNotice,
                    user_id: user,
                    to: taken,
                    at: stored.event.at(),
                    origin: origin(stored),
                    link: None,
                });
            }
        }
        plan.mails.push(MailMessage {
            message_id: format!("{}/{}", stored.aggregate_id, stored.sequence),
            kind: mail.kind,
            user_id: user,
            to,
            at: stored.event.at(),
            origin: origin(stored),
            link: mail.link,
        });
    }
    Ok(plan)
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
        let (users, attempts) = needs(events)?;
        let known = Known::look_up(tx, users, attempts).await?;
        let Plan {
            mails,
            recipients,
            reported,
        } = plan(events, &known)?;
        self.publisher.publish_mails(&mails).await?;
        let mut changed = (Vec::new(), Vec::new());
        let mut erased = Vec::new();
        for (user, now) in recipients {
            match now {
                Some(address) => {
                    changed.0.push(user);
                    changed.1.push(Json(address));
                }
                None => erased.push(user),
            }
        }
        if !changed.0.is_empty() {
            sqlx::query(
                "INSERT INTO mail_recipients (user_id, email)
                 SELECT * FROM UNNEST($1::uuid[], $2::jsonb[])
                 ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email",
            )
            .bind(changed.0)
            .bind(changed.1)
            .execute(&mut *tx)
            .await?;
        }
        if !erased.is_empty() {
            sqlx::query("DELETE FROM mail_recipients WHERE user_id = ANY($1)")
                .bind(erased)
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

/// What earlier batches left: the sealed addresses of the batch's users,
/// and which of its login attempts already had their failure reported.
#[derive(Debug, Default)]
struct Known {
    recipients: HashMap<Uuid, Sealed>,
    reported: HashSet<String>,
}

impl Known {
    /// One query for the whole batch, none when it needs nothing.
    async fn look_up(
        tx: &mut PgConnection,
        users: HashSet<Uuid>,
        attempts: HashSet<String>,
    ) -> anyhow::Result<Self> {
        if users.is_empty() && attempts.is_empty() {
            return Ok(Self::default());
        }
        let row = sqlx::query(
            "SELECT COALESCE((SELECT jsonb_object_agg(user_id, email) FROM mail_recipients
                               WHERE user_id = ANY($1)), '{}') AS recipients,
                    ARRAY(SELECT attempt FROM mail_attempt_notices WHERE attempt = ANY($2)) AS reported",
        )
        .bind(users.into_iter().collect::<Vec<_>>())
        .bind(attempts.into_iter().collect::<Vec<_>>())
        .fetch_one(&mut *tx)
        .await?;
        let recipients: Json<HashMap<Uuid, Sealed>> = row.try_get("recipients")?;
        let reported: Vec<String> = row.try_get("reported")?;
        Ok(Self {
            recipients: recipients.0,
            reported: reported.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use authledger_aggregates::{Actor, ResetCancellation, TotpRejection};
    use chrono::TimeZone;

    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_772_366_400, 0).unwrap() + chrono::Duration::minutes(minutes)
    }

    /// A sealed value told apart from others by `name` (the relay never
    /// opens one, so any bytes do).
    fn sealed(name: &str) -> Sealed {
        Sealed {
            key_id: "user".into(),
            nonce: format!("nonce-{name}"),
            ciphertext: format!("ciphertext-{name}"),
        }
    }

    fn link(byte: u8, expires_at: DateTime<Utc>) -> Option<LinkReference> {
        Some(LinkReference {
            reference: Reference::from_bytes([byte; 16]).to_string(),
            expires_at,
        })
    }

    fn user() -> Uuid {
        Uuid::from_u128(0x6f1c_0f5e_1b57_4e35_9d39_3b2f_0a0e_6a11)
    }

    /// The metadata's sealed origin as the command bus writes it.
    const ORIGIN: &str = r#"{"key_id":"user","nonce":"n","ciphertext":"origin"}"#;

    /// `event`, the `sequence`th of the user's stream, asked by `actor`.
    fn stored(sequence: i64, event: E, actor: &str) -> StoredEvent {
        StoredEvent {
            transaction_id: 1,
            position: sequence,
            aggregate_id: user().to_string(),
            sequence,
            event_type: event.name().into(),
            event,
            metadata: HashMap::from([
                ("actor".to_owned(), actor.to_owned()),
                ("request_id".to_owned(), "r".to_owned()),
                (PERSONAL_METADATA.to_owned(), ORIGIN.to_owned()),
            ]),
            recorded_at: at(0),
        }
    }

    /// What earlier batches left: the user's address is `address`.
    fn known(address: &str) -> Known {
        Known {
            recipients: HashMap::from([(user(), sealed(address))]),
            reported: HashSet::new(),
        }
    }

    /// Each planned mail's kind and sealed address.
    fn sent(plan: &Plan) -> Vec<(MailKind, Sealed)> {
        plan.mails
            .iter()
            .map(|mail| (mail.kind, mail.to.clone()))
            .collect()
    }

    #[test]
    fn each_link_of_recovery_is_mailed_with_its_reference_and_expiry() {
        let cases = [
            (
                E::EmailVerificationRequested {
                    link: Reference::from_bytes([1; 16]),
                    expires_at: at(24 * 60),
                    reason: None,
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
            assert_eq!(
                mail_for(&event),
                Some(Mail {
                    kind,
                    link,
                    to: None,
                    attempt: None,
                }),
                "{event:?}"
            );
        }
        assert_eq!(
            Reference::from_bytes([1; 16]).to_string(),
            "01".repeat(16),
            "the worker reads the reference as hex"
        );
    }

    #[test]
    fn each_notice_of_recovery_is_mailed_without_a_link_to_the_accounts_address() {
        let cases = [
            (
                E::RegistrationAttempted { at: at(0) },
                MailKind::RegistrationAttempted,
            ),
            (
                E::PasswordReset {
                    password_hash: sealed("hash"),
                    at: at(0),
                },
                MailKind::PasswordWasReset,
            ),
            (
                E::PasswordChanged {
                    password_hash: sealed("hash"),
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
            assert_eq!(mail_for(&event), Some(Mail::notice(kind)), "{event:?}");
        }
    }

    #[test]
    fn authenticators_added_removed_or_copied_are_each_told_of() {
        let authenticator = authledger_aggregates::AuthenticatorId(uuid::Uuid::from_u128(3));
        let cases = [
            (
                E::TotpDeviceAdded {
                    authenticator,
                    name: sealed("spare"),
                    secret: sealed("secret"),
                    step: 1,
                    at: at(0),
                },
                MailKind::AuthenticatorAdded,
            ),
            (
                E::AuthenticatorRemoved {
                    authenticator,
                    last: false,
                    at: at(0),
                },
                MailKind::AuthenticatorRemoved,
            ),
            (
                E::WebAuthnRejected {
                    attempt: Reference::from_bytes([4; 16]),
                    reason: WebAuthnRejection::SignCountRegressed {
                        authenticator,
                        stored: 5,
                        presented: 2,
                    },
                    at: at(0),
                },
                MailKind::SecurityKeyCopied,
            ),
        ];
        for (event, kind) in cases {
            assert_eq!(mail_for(&event), Some(Mail::notice(kind)), "{event:?}");
        }
    }

    #[test]
    fn a_change_of_address_is_confirmed_from_the_new_inbox() {
        let event = E::EmailChangeRequested {
            link: Reference::from_bytes([4; 16]),
            new_email: sealed("new"),
            expires_at: at(60),
            at: at(0),
        };
        assert_eq!(
            mail_for(&event),
            Some(Mail {
                kind: MailKind::EmailChangeConfirm,
                link: link(4, at(60)),
                to: Some(sealed("new")),
                attempt: None,
            })
        );
        assert_eq!(
            recipient_after(&event),
            None,
            "mail keeps going to the old address until the new one is confirmed"
        );
    }

    #[test]
    fn the_old_address_is_told_of_a_change_with_the_link_that_reverts_it() {
        let event = E::EmailChanged {
            link: Reference::from_bytes([4; 16]),
            from: sealed("old"),
            to: sealed("new"),
            revert: Reference::from_bytes([5; 16]),
            revert_until: at(72 * 60),
            at: at(0),
        };
        assert_eq!(
            mail_for(&event),
            Some(Mail {
                kind: MailKind::EmailChangedNotice,
                link: link(5, at(72 * 60)),
                to: Some(sealed("old")),
                attempt: None,
            })
        );
        assert_eq!(recipient_after(&event), Some(Some(&sealed("new"))));
    }

    #[test]
    fn the_restored_address_is_told_of_the_revert_without_a_link() {
        let event = E::EmailChangeReverted {
            revert: Reference::from_bytes([5; 16]),
            restored: sealed("old"),
            at: at(0),
        };
        assert_eq!(
            mail_for(&event),
            Some(Mail {
                kind: MailKind::EmailChangeRevertedNotice,
                link: None,
                to: Some(sealed("old")),
                attempt: None,
            })
        );
        assert_eq!(recipient_after(&event), Some(Some(&sealed("old"))));
    }

    #[test]
    fn a_registration_sets_the_address_and_calls_for_no_mail_of_its_own() {
        assert_eq!(mail_for(&E::EmailVerified { at: at(0) }), None);
        let registered = E::UserRegistered {
            user_id: user(),
            email: sealed("ada"),
            password_hash: sealed("hash"),
            at: at(0),
        };
        assert_eq!(mail_for(&registered), None);
        assert_eq!(recipient_after(&registered), Some(Some(&sealed("ada"))));
    }

    #[test]
    fn an_erasure_is_mailed_nothing_and_forgets_the_address() {
        let erased = E::AccountErased {
            actor: Actor::Admin,
            reason: Some(sealed("reason")),
            at: at(0),
        };
        assert_eq!(mail_for(&erased), None);
        assert_eq!(recipient_after(&erased), Some(None));
    }

    #[test]
    fn after_a_change_in_the_same_batch_mail_goes_to_the_new_address() {
        let events = [
            stored(
                7,
                E::EmailChanged {
                    link: Reference::from_bytes([4; 16]),
                    from: sealed("old"),
                    to: sealed("new"),
                    revert: Reference::from_bytes([5; 16]),
                    revert_until: at(72 * 60),
                    at: at(0),
                },
                "user",
            ),
            stored(
                8,
                E::PasswordChanged {
                    password_hash: sealed("hash"),
                    at: at(1),
                },
                "user",
            ),
        ];
        let plan = plan(&events, &known("old")).unwrap();
        assert_eq!(
            sent(&plan),
            [
                (MailKind::EmailChangedNotice, sealed("old")),
                (MailKind::PasswordChanged, sealed("new")),
            ]
        );
        assert_eq!(
            plan.recipients,
            HashMap::from([(user(), Some(sealed("new")))])
        );
    }

    #[test]
    fn a_revert_mails_the_restored_address_and_makes_it_the_accounts_again() {
        let events = [stored(
            9,
            E::EmailChangeReverted {
                revert: Reference::from_bytes([5; 16]),
                restored: sealed("old"),
                at: at(0),
            },
            "user",
        )];
        let plan = plan(&events, &known("new")).unwrap();
        assert_eq!(
            sent(&plan),
            [
                (MailKind::EmailChangeUndoneNotice, sealed("new")),
                (MailKind::EmailChangeRevertedNotice, sealed("old"))
            ]
        );
        assert_eq!(
            plan.recipients,
            HashMap::from([(user(), Some(sealed("old")))])
        );
    }

    #[test]
    fn an_erased_account_keeps_no_address_and_is_mailed_nothing_after() {
        let events = [
            stored(
                3,
                E::AccountErased {
                    actor: Actor::Admin,
                    reason: None,
                    at: at(0),
                },
                "admin",
            ),
            stored(
                4,
                E::AccountLocked {
                    failures: 10,
                    at: at(1),
                },
                "user",
            ),
        ];
        let plan = plan(&events, &known("ada")).unwrap();
        assert!(plan.mails.is_empty(), "{:?}", plan.mails);
        assert_eq!(plan.recipients, HashMap::from([(user(), None)]));
    }

    #[test]
    fn a_mail_carries_the_sealed_origin_verbatim_and_none_for_the_server() {
        let event = || E::MfaReset {
            actor: Actor::Admin,
            reason: None,
            at: at(0),
        };
        let events = [stored(5, event(), "user"), stored(6, event(), "system")];
        let plan = plan(&events, &known("ada")).unwrap();
        let origins: Vec<Option<&str>> = plan.mails.iter().map(|m| m.origin.as_deref()).collect();
        assert_eq!(origins, [Some(ORIGIN), None]);
        assert_eq!(plan.mails[0].message_id, format!("{}/5", user()));
        assert_eq!(plan.mails[0].to, sealed("ada"));
    }

    #[test]
    fn only_the_first_failure_of_a_login_attempt_is_mailed() {
        let attempt = Reference::from_bytes([6; 16]);
        let rejected = |minute| E::TotpRejected {
            attempt,
            reason: TotpRejection::WrongCode,
            enrolling: false,
            at: at(minute),
        };
        let events = [
            stored(5, rejected(0), "user"),
            stored(6, rejected(1), "user"),
        ];
        let plan_once = plan(&events, &known("ada")).unwrap();
        assert_eq!(
            sent(&plan_once),
            [(MailKind::SecondFactorFailed, sealed("ada"))]
        );
        assert_eq!(plan_once.reported, HashSet::from([attempt.to_string()]));
        let mut earlier = known("ada");
        earlier.reported.insert(attempt.to_string());
        assert!(plan(&events, &earlier).unwrap().mails.is_empty());
    }

    #[test]
    fn a_wrong_code_while_enrolling_is_not_mailed_as_a_failed_sign_in() {
        let attempt = Reference::from_bytes([6; 16]);
        let events = [stored(
            5,
            E::TotpRejected {
                attempt,
                reason: TotpRejection::WrongCode,
                enrolling: true,
                at: at(0),
            },
            "user",
        )];
        let plan = plan(&events, &known("ada")).unwrap();
        assert!(plan.mails.is_empty(), "{:?}", plan.mails);
        assert!(plan.reported.is_empty(), "{:?}", plan.reported);
    }

    #[test]
    fn a_mail_for_an_account_without_a_known_address_is_skipped() {
        let events = [stored(
            2,
            E::AccountLocked {
                failures: 10,
                at: at(0),
            },
            "user",
        )];
        assert!(plan(&events, &Known::default()).unwrap().mails.is_empty());
    }

    #[test]
    fn only_mails_to_the_accounts_address_look_it_up() {
        let events = [
            stored(
                1,
                E::EmailChangeRequested {
                    link: Reference::from_bytes([4; 16]),
                    new_email: sealed("new"),
                    expires_at: at(60),
                    at: at(0),
                },
                "user",
            ),
            stored(2, E::PasswordRejected { at: at(0) }, "user"),
        ];
        let (users, attempts) = needs(&events).unwrap();
        assert!(users.is_empty() && attempts.is_empty());
        let locked = [stored(
            3,
            E::AccountLocked {
                failures: 10,
                at: at(0),
            },
            "user",
        )];
        assert_eq!(needs(&locked).unwrap().0, HashSet::from([user()]));
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

    #[test]
    fn a_message_carries_the_address_and_origin_sealed_and_nothing_plain() {
        let message = MailMessage {
            message_id: format!("{}/7", user()),
            kind: MailKind::EmailChangedNotice,
            user_id: user(),
            to: sealed("old"),
            at: at(0),
            origin: Some(ORIGIN.into()),
            link: link(5, at(72 * 60)),
        };
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "message_id": "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11/7",
                "kind": "email_changed_notice",
                "user_id": "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11",
                "to": {"key_id": "user", "nonce": "nonce-old", "ciphertext": "ciphertext-old"},
                "at": "2026-03-01T12:00:00Z",
                "origin": ORIGIN,
                "link": {
                    "reference": "05".repeat(16),
                    "expires_at": "2026-03-04T12:00:00Z",
                },
            })
        );
        assert_eq!(
            serde_json::from_value::<MailMessage>(json).unwrap(),
            message
        );
        let by_server = MailMessage {
            origin: None,
            link: None,
            kind: MailKind::MfaReset,
            ..message
        };
        let json = serde_json::to_value(&by_server).unwrap();
        assert!(
            json.get("origin").is_none() && json.get("link").is_none(),
            "{json}"
        );
    }
}
