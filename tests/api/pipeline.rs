//! The projector runtime and the pipeline's guarantees: notices, order,
//! rebuilds, retries, dead letters, and one relay at a time.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use authledger::keys::{DataKey, UserKeeper};
use authledger::services::SystemClock;
use authledger::worker::{Outcome, Worker, WorkerSettings};
use authledger_aggregates::{
    Clock, Reference, SealPurpose, Sealed, SecretKeeper, UserAuth, UserAuthEvent,
};
use authledger_projections::users::UsersProjection;
use authledger_projections::Projector;
use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::EventStore;
use postgres_es::PostgresEventRepository;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn every_security_notice_arrives_and_none_holds_a_secret(pool: PgPool) {
    let app = spawn_app_with(pool, |s| {
        s.policy.throttle_after_failures = 1000;
        s.policy.lock_after_failures = 3;
    })
    .await;
    let mut secrets = vec![PASSWORD.to_owned()];
    let user = app.signed_up().await;
    secrets.extend([
        user.session_token.clone(),
        user.recovery_code.clone(),
        user.device.totp.secret().to_base32(),
    ]);

    // A correct password, then wrong codes: one notice for the attempt.
    let login = app.password_step(&user.email).await;
    secrets.push(login["login_token"].as_str().unwrap().to_owned());
    for _ in 0..2 {
        app.post(
            "/v1/login/totp",
            json!({"login_token": login["login_token"], "code": "000000"}),
        )
        .await;
    }
    // The recovery code.
    let recovered: Value = app
        .post(
            "/v1/login/recovery-code",
            json!({"login_token": login["login_token"], "code": user.recovery_code}),
        )
        .await
        .json()
        .await
        .unwrap();
    secrets.extend([
        recovered["session_token"].as_str().unwrap().to_owned(),
        recovered["recovery_code"].as_str().unwrap().to_owned(),
    ]);
    // An email link, used.
    let login = app.password_step(&user.email).await;
    app.post(
        "/v1/login/email-link",
        json!({"login_token": login["login_token"]}),
    )
    .await;
    app.deliver_mail().await;
    let link_mail = wait_for_mails(&user.email, 5)
        .await
        .into_iter()
        .find(|m| m["subject"] == "Your sign-in link")
        .unwrap();
    let token = link_in(&link_mail)
        .split("token=")
        .nth(1)
        .unwrap()
        .to_owned();
    let session: Value = app
        .post("/v1/login/email-link/redeem", json!({"token": token}))
        .await
        .json()
        .await
        .unwrap();
    let session_token = session["session_token"].as_str().unwrap().to_owned();
    secrets.push(session_token.clone());
    // An MFA reset from that aal1 session, which waits and mails its
    // "this wasn't me" link, then three wrong passwords: the first calls
    // the waiting reset off, the third locks the account.
    app.post_with_session("/v1/me/mfa/reset", &session_token, None)
        .await;
    for _ in 0..3 {
        app.post(
            "/v1/login/password",
            json!({"email": user.email, "password": "wrong password here"}),
        )
        .await;
    }
    app.deliver_mail().await;

    // The recovery code and the email link each signed in from a client
    // without a device cookie: a new device each time.
    let mails = wait_for_mails(&user.email, 11).await;
    let mut subjects: Vec<&str> = mails
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "A new authenticator was added to your account",
            "A reset of your multi-factor authentication was requested",
            "A sign-in to your account failed its second step",
            "Confirm your email address",
            "New sign-in to your account",
            "New sign-in to your account",
            "The reset of your multi-factor authentication was cancelled",
            "You signed in with an email link",
            "Your account was locked",
            "Your recovery code was used",
            "Your sign-in link",
        ]
    );
    for mail in &mails {
        let text = format!(
            "{}{}",
            mail["text"].as_str().unwrap(),
            mail["html"].as_str().unwrap()
        );
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{} holds a secret",
                mail["subject"]
            );
        }
        assert!(!text.contains("al_sess_") && !text.contains("al_login_"));
        if mail["subject"] == "Your sign-in link" {
            assert!(text.contains("al_link_"));
        } else if let Some(prefix) = match mail["subject"].as_str().unwrap() {
            "Confirm your email address" => Some("al_verify_"),
            "A reset of your multi-factor authentication was requested" => Some("al_deny_"),
            "New sign-in to your account" => Some("al_report_"),
            _ => None,
        } {
            assert!(text.contains(prefix) && !text.contains("al_link_"));
            assert!(
                text.contains("127.0.0.1"),
                "links say where they were asked from"
            );
        } else {
            assert!(
                !text.contains("al_link_"),
                "{} holds a link",
                mail["subject"]
            );
            assert!(
                text.contains("If this was not you") || text.contains("were not yours"),
                "{text}"
            );
            assert!(text.contains("127.0.0.1"), "notices say where from");
        }
    }
    app.remove_topology().await;
}

/// Appends a registration for a made-up user inside `tx`.
async fn append_registration(tx: &mut sqlx::PgConnection) -> uuid::Uuid {
    let user = uuid::Uuid::now_v7();
    let sealed = json!({"key_id": "k", "nonce": "n", "ciphertext": "c"});
    let payload = json!({"UserRegistered": {
        "user_id": user, "email": sealed, "password_hash": sealed,
        "at": "2026-01-01T00:00:00Z"}});
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('UserAuth', $1, 1, 'UserRegistered', '2', $2, '{}')",
    )
    .bind(user.to_string())
    .bind(sqlx::types::Json(payload))
    .execute(tx)
    .await
    .unwrap();
    user
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_slow_transaction_holds_back_later_events_until_it_commits(pool: PgPool) {
    let projector = Projector::new(pool.clone(), UsersProjection);
    let mut slow_tx = pool.begin().await.unwrap();
    let slow = append_registration(&mut slow_tx).await;
    let mut fast_tx = pool.begin().await.unwrap();
    let fast = append_registration(&mut fast_tx).await;
    fast_tx.commit().await.unwrap();

    assert_eq!(
        projector.run_once().await.unwrap(),
        0,
        "the later event waits behind the open transaction"
    );
    slow_tx.commit().await.unwrap();

    // Other databases' transactions on this server can hold the horizon
    // back for a moment; wait for it rather than assume.
    let mut applied = 0;
    for _ in 0..100 {
        applied += projector.catch_up().await.unwrap();
        if applied >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(applied, 2);
    assert_eq!(
        projector.catch_up().await.unwrap(),
        0,
        "each event is applied once"
    );
    let users: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT user_id FROM users ORDER BY user_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut expected = vec![slow, fast];
    expected.sort();
    assert_eq!(users, expected);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn rebuilding_the_users_model_gives_the_same_rows(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let mut user = app.signed_up().await;
    app.sign_in_with_totp(&mut user).await;
    let other = app.signed_up().await;
    app.post_with_session("/v1/me/mfa/reset", &other.session_token, None)
        .await;
    while projection_lag(&app.pool, "users").await > 0 {
        app.pipeline.users.catch_up().await.unwrap();
    }

    let snapshot = |pool: PgPool| async move {
        let users: Vec<String> =
            sqlx::query_scalar("SELECT row_to_json(u)::text FROM users u ORDER BY user_id")
                .fetch_all(&pool)
                .await
                .unwrap();
        let sessions: Vec<String> = sqlx::query_scalar(
            "SELECT row_to_json(s)::text FROM user_sessions s ORDER BY user_id, session",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        (users, sessions)
    };
    let live = snapshot(pool.clone()).await;
    assert_eq!(live.0.len(), 2);
    assert_eq!(
        live.1.len(),
        3,
        "two sign-ins of one user, one of the other"
    );
    let rebuilt_from = app.pipeline.users.rebuild().await.unwrap();
    assert!(rebuilt_from > 10);
    assert_eq!(snapshot(pool.clone()).await, live);
}

fn worker_for(app: &TestApp, smtp_url: &str, max_attempts: u32, retry_base: Duration) -> Worker {
    worker_with_clock(
        app,
        smtp_url,
        max_attempts,
        retry_base,
        Arc::new(SystemClock),
    )
}

fn worker_with_clock(
    app: &TestApp,
    smtp_url: &str,
    max_attempts: u32,
    retry_base: Duration,
    clock: Arc<dyn Clock>,
) -> Worker {
    Worker::new(
        app.pool.clone(),
        Arc::new(
            app.config
                .keyring(authledger::config::DevKey::MustExist)
                .unwrap(),
        ),
        WorkerSettings {
            amqp_url: app.config.mail.amqp_url.clone(),
            topology: app.pipeline_topology(),
            smtp_url: smtp_url.into(),
            from: app.config.mail.mail_from.parse().unwrap(),
            public_url: app.config.public_url.clone(),
            prefetch: 16,
            max_attempts,
            retry_base,
            send_timeout: Duration::from_secs(2),
        },
        clock,
        app.pipeline.mail_metrics().clone(),
    )
    .unwrap()
}

/// The wall clock a day ahead: every link issued today has expired by it.
struct TomorrowClock;

impl Clock for TomorrowClock {
    fn now(&self) -> DateTime<Utc> {
        SystemClock.now() + chrono::Duration::days(1)
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_link_that_expired_by_the_workers_clock_is_dropped_and_notices_still_go(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    request_link(&app, &user.email).await;
    app.relay_everything().await;

    let worker = worker_with_clock(
        &app,
        app.config.mail.smtp_url.expose(),
        5,
        Duration::from_secs(2),
        Arc::new(TomorrowClock),
    );
    assert_eq!(
        worker.run_once().await.unwrap(),
        3,
        "the notice, the verification link and the sign-in link"
    );
    let subjects: Vec<String> = wait_for_mails(&user.email, 1)
        .await
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subjects, ["A new authenticator was added to your account"]);
    assert_eq!(app.queue_depth(&app.pipeline_topology().queue).await, 0);
    assert_eq!(app.pipeline.mail_metrics().sent(), 1);
    app.remove_topology().await;
}

/// An SMTP URL where nothing listens.
const NO_SMTP: &str = "smtp://127.0.0.1:9";

async fn request_link(app: &TestApp, email: &str) {
    let login = app.password_step(email).await;
    let response = app
        .post(
            "/v1/login/email-link",
            json!({"login_token": login["login_token"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_mail_that_fails_while_smtp_is_down_is_retried_and_sent_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    request_link(&app, &user.email).await;
    app.relay_everything().await;

    let down = worker_for(&app, NO_SMTP, 5, Duration::from_secs(2));
    assert!(down.run_once().await.unwrap() >= 1);
    let topology = app.pipeline_topology();
    let waiting =
        app.queue_depth(&topology.retry_queue).await + app.queue_depth(&topology.queue).await;
    assert_eq!(
        waiting, 3,
        "the verification link, the enrollment notice and the sign-in link wait to be retried"
    );

    // SMTP is back: once RabbitMQ's back-off (its own clock, 2 s) has
    // passed, the retries are delivered.
    let mut delivered = 0;
    for _ in 0..100 {
        delivered += app.pipeline.worker.run_once().await.unwrap();
        if delivered >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let subjects: Vec<String> = wait_for_mails(&user.email, 3)
        .await
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        subjects
            .iter()
            .filter(|s| *s == "Your sign-in link")
            .count(),
        1,
        "{subjects:?}"
    );
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    app.remove_topology().await;
}

/// An SMTP server that greets, then reads and never answers again: a
/// relay that hangs mid-session. Its address, and how many connections it
/// took.
async fn silent_smtp() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = stream.write_all(b"220 silent ESMTP\r\n").await;
                let mut buffer = [0u8; 1024];
                while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
            });
        }
    });
    (url, accepted)
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_send_to_an_smtp_server_that_stops_answering_times_out_and_is_retried(pool: PgPool) {
    let app = spawn_app(pool).await;
    let email = unique_email();
    app.register_unverified(&email, PASSWORD).await;
    app.relay_everything().await;

    let (silent, connections) = silent_smtp().await;
    let hanging = worker_for(&app, &silent, 5, Duration::from_secs(60));
    let started = std::time::Instant::now();
    assert_eq!(hanging.run_once().await.unwrap(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the send was not bounded"
    );
    let topology = app.pipeline_topology();
    assert_eq!(
        app.queue_depth(&topology.retry_queue).await,
        1,
        "it waits to be retried"
    );
    assert!(captured_logs().contains("the SMTP server did not accept the mail within 2s"));
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_mail_that_always_fails_ends_in_the_dead_letter_queue_and_the_metric(pool: PgPool) {
    let app = spawn_app(pool).await;
    // One mail: the verification link.
    let email = unique_email();
    app.register_unverified(&email, PASSWORD).await;
    app.relay_everything().await;

    let failing = worker_for(&app, NO_SMTP, 2, Duration::from_millis(100));
    let mut outcomes = Vec::new();
    for _ in 0..50 {
        let (connection, channel) = authledger_projections::mail::connect(
            app.config.mail.amqp_url.expose(),
            &app.pipeline_topology(),
            "test-get",
        )
        .await
        .unwrap();
        if let Some(message) = channel
            .basic_get(
                app.pipeline_topology().queue.as_str().into(),
                Default::default(),
            )
            .await
            .unwrap()
        {
            outcomes.push(failing.handle(&message.delivery).await.unwrap());
        }
        let _ = connection.close(200, "done".into()).await;
        if outcomes.contains(&Outcome::DeadLettered) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outcomes, [Outcome::Retrying, Outcome::DeadLettered]);
    assert_eq!(
        app.queue_depth(&app.pipeline_topology().dead_queue).await,
        1
    );
    assert_eq!(app.pipeline.mail_metrics().dead_lettered(), 1);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("authledger_mail_dead_lettered_total "))
        .unwrap();
    assert_eq!(line, "authledger_mail_dead_lettered_total 1");
    assert!(
        metrics.contains("authledger_projection_lag_events{projection=\"email_relay\"} 0"),
        "{metrics}"
    );
    assert!(mails_to(&email).await.is_empty());
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn two_relays_on_one_database_publish_each_event_once(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |s| s.policy.email_links_per_window = 100).await;
    let user = app.signed_up().await;
    for _ in 0..20 {
        let login = app.password_step(&user.email).await;
        app.post(
            "/v1/login/email-link",
            json!({"login_token": login["login_token"]}),
        )
        .await;
    }
    // A second server's pipeline on the same database and broker.
    let (_, second) = authledger::startup::wire(&app.config, pool, app.clock.clone()).unwrap();
    let mut relayed = 0;
    while projection_lag(&app.pool, "email_relay").await > 0 {
        let (a, b) = tokio::join!(app.pipeline.relay.catch_up(), second.relay.catch_up());
        relayed += a.unwrap() + b.unwrap();
    }
    assert!(relayed > 0);
    assert_eq!(
        app.queue_depth(&app.pipeline_topology().queue).await,
        22,
        "20 sign-in links, the verification link and the enrollment notice"
    );
    app.pipeline.worker.run_once().await.unwrap();
    assert_eq!(wait_for_mails(&user.email, 22).await.len(), 22);
    app.remove_topology().await;
}

/// Appends `events` to `user`'s stream as the command bus commits them,
/// whatever the rules would say: the relay and the worker are under test.
async fn append(pool: &PgPool, user: uuid::Uuid, events: Vec<UserAuthEvent>) {
    let store = PersistedEventStore::<PostgresEventRepository, UserAuth>::new_event_store(
        PostgresEventRepository::new(pool.clone()),
    );
    let context = store.load_aggregate(&user.to_string()).await.unwrap();
    let metadata = HashMap::from([
        ("request_id".to_owned(), "pipeline-test".to_owned()),
        ("client_ip".to_owned(), "203.0.113.7".to_owned()),
        ("user_agent".to_owned(), "pipeline-test/1.0".to_owned()),
        ("actor".to_owned(), "user".to_owned()),
    ]);
    store.commit(events, context, metadata).await.unwrap();
}

/// A clock stopped at one instant.
struct StoppedClock(DateTime<Utc>);

impl Clock for StoppedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// A made-up user with a data key of its own, as a registration makes one,
/// and what seals and opens its personal data.
async fn made_up_user(app: &TestApp) -> (uuid::Uuid, UserKeeper) {
    let user = uuid::Uuid::now_v7();
    let keyring = Arc::new(
        app.config
            .keyring(authledger::config::DevKey::MustExist)
            .unwrap(),
    );
    let key = DataKey::generate();
    let wrapped = keyring.wrap(user, &key).unwrap();
    sqlx::query("INSERT INTO user_keys (user_id, key_id, nonce, wrapped) VALUES ($1, $2, $3, $4)")
        .bind(user)
        .bind(&wrapped.key_id)
        .bind(&wrapped.nonce)
        .bind(&wrapped.wrapped)
        .execute(&app.pool)
        .await
        .unwrap();
    (user, UserKeeper::new(keyring, user, Some(&key)))
}

fn registration(
    keeper: &UserKeeper,
    user: uuid::Uuid,
    email: &str,
    at: DateTime<Utc>,
) -> UserAuthEvent {
    UserAuthEvent::UserRegistered {
        user_id: user,
        email: keeper.seal(SealPurpose::Email, email.as_bytes()).unwrap(),
        password_hash: Sealed {
            key_id: "k".into(),
            nonce: "n".into(),
            ciphertext: "c".into(),
        },
        at,
    }
}

async fn recipient_of(pool: &PgPool, keeper: &UserKeeper, user: uuid::Uuid) -> String {
    let sealed: sqlx::types::Json<Sealed> =
        sqlx::query_scalar("SELECT email FROM mail_recipients WHERE user_id = $1")
            .bind(user)
            .fetch_one(pool)
            .await
            .unwrap();
    keeper.open_text(SealPurpose::Email, &sealed.0).unwrap()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_replaced_registration_moves_the_users_mail_to_its_address(pool: PgPool) {
    let app = spawn_app(pool).await;
    let now = app.clock.now();
    let verification = |byte| UserAuthEvent::EmailVerificationRequested {
        link: Reference::from_bytes([byte; 16]),
        expires_at: now + chrono::Duration::hours(24),
        reason: None,
        at: now,
    };
    // Made-up users whose second registration gives another address, so
    // the mail shows which one the relay used.
    let ((relayed, relayed_keeper), (replaced, replaced_keeper)) =
        (made_up_user(&app).await, made_up_user(&app).await);
    let [first, second, third, fourth] = [(); 4].map(|()| unique_email());
    append(
        &app.pool,
        relayed,
        vec![registration(&relayed_keeper, relayed, &first, now)],
    )
    .await;
    app.relay_everything().await;
    assert_eq!(
        recipient_of(&app.pool, &relayed_keeper, relayed).await,
        first
    );

    // One replaced after the relay recorded it, one before the relay ran.
    append(
        &app.pool,
        relayed,
        vec![
            registration(&relayed_keeper, relayed, &second, now),
            verification(1),
        ],
    )
    .await;
    append(
        &app.pool,
        replaced,
        vec![
            registration(&replaced_keeper, replaced, &third, now),
            verification(2),
            registration(&replaced_keeper, replaced, &fourth, now),
            verification(3),
        ],
    )
    .await;
    app.deliver_mail().await;

    assert_eq!(
        recipient_of(&app.pool, &relayed_keeper, relayed).await,
        second
    );
    assert_eq!(
        recipient_of(&app.pool, &replaced_keeper, replaced).await,
        fourth
    );
    // Each link goes to the address registered when it was asked for.
    for address in [&second, &third, &fourth] {
        assert_eq!(wait_for_mails(address, 1).await.len(), 1, "{address}");
    }
    assert!(mails_to(&first).await.is_empty());
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn every_kind_of_link_that_expired_before_it_was_sent_is_dropped(pool: PgPool) {
    let app = spawn_app(pool).await;
    let now = app.clock.now();
    let (user, keeper) = made_up_user(&app).await;
    let email = unique_email();
    let reference = Reference::from_bytes;
    append(
        &app.pool,
        user,
        vec![
            registration(&keeper, user, &email, now),
            UserAuthEvent::EmailVerificationRequested {
                link: reference([1; 16]),
                expires_at: now + chrono::Duration::hours(24),
                reason: None,
                at: now,
            },
            UserAuthEvent::PasswordResetRequested {
                link: reference([2; 16]),
                expires_at: now + chrono::Duration::minutes(30),
                at: now,
            },
            UserAuthEvent::MfaResetRequested {
                effective_at: now + chrono::Duration::hours(72),
                denial: reference([3; 16]),
                at: now,
            },
            UserAuthEvent::EmailLinkRequested {
                link: reference([4; 16]),
                attempt: reference([5; 16]),
                expires_at: now + chrono::Duration::minutes(15),
                at: now,
            },
            UserAuthEvent::RegistrationAttempted { at: now },
        ],
    )
    .await;
    app.relay_everything().await;

    // The moment the waiting reset took effect: its link, too, is over.
    let worker = worker_with_clock(
        &app,
        app.config.mail.smtp_url.expose(),
        5,
        Duration::from_secs(2),
        Arc::new(StoppedClock(now + chrono::Duration::hours(72))),
    );
    assert_eq!(
        worker.run_once().await.unwrap(),
        5,
        "four links and a notice"
    );
    let subjects: Vec<String> = wait_for_mails(&email, 1)
        .await
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subjects, ["Someone tried to register with your address"]);
    assert_eq!(app.queue_depth(&app.pipeline_topology().queue).await, 0);
    assert_eq!(app.pipeline.mail_metrics().sent(), 1);
    app.remove_topology().await;
}
