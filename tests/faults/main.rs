//! Faults that disturb shared services (RabbitMQ stopped, a worker process
//! killed). This binary runs on its own (cargo runs test binaries one after
//! another) and its tests take turns.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;
use tokio::process::{Child, Command};
use tokio::sync::{watch, Mutex};

use helpers::*;

/// The tests here take turns: each disturbs something the other uses.
static TURN: Mutex<()> = Mutex::const_new(());

/// Runs `rabbitmqctl`, on this machine or in the compose stack's container.
fn rabbitmqctl(arg: &str) {
    let local = std::process::Command::new("rabbitmqctl")
        .arg(arg)
        .stdout(Stdio::null())
        .status();
    let status = match local {
        Ok(status) => status,
        Err(_) => std::process::Command::new("docker")
            .args(["compose", "exec", "-T", "rabbitmq", "rabbitmqctl", arg])
            .stdout(Stdio::null())
            .status()
            .expect("rabbitmqctl, locally or through docker compose"),
    };
    assert!(status.success(), "rabbitmqctl {arg} failed");
}

/// Starts RabbitMQ's app again however the test ends.
struct RestartRabbit;

impl Drop for RestartRabbit {
    fn drop(&mut self) {
        start_rabbit();
    }
}

/// When RabbitMQ's app was last started by a test here.
static STARTED: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

fn start_rabbit() {
    rabbitmqctl("start_app");
    *STARTED.lock().unwrap() = Some(Instant::now());
}

/// RabbitMQ 3.10 can lose the supervisor of at-least-once dead-lettering a
/// moment after its app starts, when queues of earlier tests expire while
/// it recovers them (seen here: `noproc rabbit_fifo_dlx_sup` in its log);
/// every quorum queue declared after that refuses what is published to it.
/// A test begins on a broker whose supervisor is there, the app started
/// again until it stays.
async fn whole_rabbit() {
    for _ in 0..3 {
        let started = *STARTED.lock().unwrap();
        if let Some(wait) = started
            .and_then(|at| (at + Duration::from_secs(5)).checked_duration_since(Instant::now()))
        {
            tokio::time::sleep(wait).await;
        }
        let found = std::process::Command::new("rabbitmqctl")
            .args(["eval", "whereis(rabbit_fifo_dlx_sup)."])
            .output();
        // Without a local rabbitmqctl (the compose stack), nothing to check.
        let Ok(found) = found else { return };
        if !String::from_utf8_lossy(&found.stdout).contains("undefined") {
            return;
        }
        rabbitmqctl("stop_app");
        start_rabbit();
    }
    panic!("RabbitMQ keeps losing its dead-letter supervisor: restart the node");
}

async fn signed_up_with_links(app: &TestApp) -> String {
    let user = app.signed_up().await;
    user.email
}

async fn request_links(app: &TestApp, email: &str, count: usize) {
    for _ in 0..count {
        let login = app.password_step(email).await;
        let response = app
            .post(
                "/v1/login/email-link",
                json!({"login_token": login["login_token"]}),
            )
            .await;
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    }
}

/// Waits until MailDev holds `count` distinct sign-in links for `email`;
/// returns every link mail's link, doubles included.
async fn wait_for_links(email: &str, count: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let links: Vec<String> = mails_to(email)
            .await
            .iter()
            .filter(|m| m["subject"] == "Your sign-in link")
            .map(link_in)
            .collect();
        let distinct = links.iter().collect::<HashSet<_>>().len();
        if distinct >= count || Instant::now() > deadline {
            return links;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn rabbitmq_stopped_while_100_links_are_requested_loses_no_mail(pool: PgPool) {
    let _turn = TURN.lock().await;
    whole_rabbit().await;
    let app = spawn_app_with(pool, |s| {
        s.policy.email_links_per_window = 1000;
        // One test client makes every request here: no per-client rate.
        s.limits.rate_password_per_minute = 0;
        s.limits.rate_second_factor_per_minute = 0;
    })
    .await;
    let email = signed_up_with_links(&app).await;
    let (stop, stopping) = watch::channel(false);
    let mut tasks = app.pipeline.spawn_projections(&stopping);
    tasks.push(app.pipeline.spawn_worker(&stopping));

    let restart = RestartRabbit;
    rabbitmqctl("stop_app");
    request_links(&app, &email, 100).await;
    drop(restart);

    let links = wait_for_links(&email, 100, Duration::from_secs(120)).await;
    let distinct: HashSet<&String> = links.iter().collect();
    assert_eq!(distinct.len(), 100, "every link arrived");
    assert_eq!(links.len(), 100, "and none twice");
    let _ = stop.send(true);
    futures::future::join_all(tasks).await;
    app.remove_topology().await;
}

/// `authledger worker` as its own process, on this test's database and queues.
async fn worker_process(app: &TestApp) -> Child {
    authledger_process(app, "worker").await
}

/// `authledger <mode>` as its own process, on this test's database and queues.
async fn authledger_process(app: &TestApp, mode: &str) -> Child {
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").unwrap();
    let url = format!("{}/{database}", base.rsplit_once('/').unwrap().0);
    Command::new(env!("CARGO_BIN_EXE_authledger"))
        .arg(mode)
        .env("DATABASE_URL", url)
        .env("AUTHLEDGER_ADDR", "127.0.0.1:0")
        .env("AUTHLEDGER_SECRET_KEY", app.key.to_base64())
        .env("AUTHLEDGER_AMQP_PREFIX", app.amqp_prefix())
        .env("AUTHLEDGER_PUBLIC_URL", &app.config.public_url)
        .env(
            "AUTHLEDGER_MAIL_CONCURRENCY",
            app.config.mail.mail_concurrency.to_string(),
        )
        .env("AUTHLEDGER_NO_MIGRATE", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_worker_killed_in_the_middle_of_100_mails_loses_none(pool: PgPool) {
    let _turn = TURN.lock().await;
    whole_rabbit().await;
    let app = spawn_app_with(pool, |s| {
        s.policy.email_links_per_window = 1000;
        s.limits.rate_password_per_minute = 0;
        s.limits.rate_second_factor_per_minute = 0;
        // The worker process declares the queues as production does, so
        // they must not differ in their arguments.
        s.mail.queue_expiry = None;
    })
    .await;
    let email = signed_up_with_links(&app).await;
    request_links(&app, &email, 100).await;
    app.relay_everything().await;

    let mut first = worker_process(&app).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let sent_before_kill = loop {
        let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM sent_mail")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if sent >= 30 || Instant::now() > deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill().await.unwrap();
    assert!(
        (30..100).contains(&sent_before_kill),
        "killed in the middle ({sent_before_kill} sent)"
    );

    let mut second = worker_process(&app).await;
    let links = wait_for_links(&email, 100, Duration::from_secs(60)).await;
    second.kill().await.unwrap();
    let distinct: HashSet<&String> = links.iter().collect();
    assert_eq!(distinct.len(), 100, "every link arrived");
    // The mails the killed worker had accepted by SMTP but not yet
    // recorded (at most one per concurrent send) can go out again; no other.
    let concurrency = usize::from(app.config.mail.mail_concurrency);
    assert!(
        links.len() <= 100 + concurrency,
        "{} mails for 100 links",
        links.len()
    );
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn two_serve_processes_on_one_database_relay_each_event_once(pool: PgPool) {
    let _turn = TURN.lock().await;
    whole_rabbit().await;
    let app = spawn_app_with(pool, |s| {
        s.policy.email_links_per_window = 1000;
        s.limits.rate_password_per_minute = 0;
        s.limits.rate_second_factor_per_minute = 0;
        s.mail.queue_expiry = None;
    })
    .await;
    let email = signed_up_with_links(&app).await;
    let mut servers = vec![
        authledger_process(&app, "serve").await,
        authledger_process(&app, "serve").await,
    ];
    request_links(&app, &email, 30).await;
    // Both servers' relays run; when the log is relayed, the queue holds
    // each mail once (the worker has not run, so nothing hides a double).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if projection_lag(&app.pool, "email_relay").await == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the relays did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Time for either relay to (wrongly) publish again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for server in &mut servers {
        server.kill().await.unwrap();
    }
    assert_eq!(
        app.queue_depth(&app.pipeline_topology().queue).await,
        32,
        "30 links, the address's confirmation and the enrollment notice, once each"
    );
    app.pipeline.worker.run_once().await.unwrap();
    let links = wait_for_links(&email, 30, Duration::from_secs(20)).await;
    assert_eq!(links.len(), 30, "each link mailed once");
    app.remove_topology().await;
}

/// Waits until the running relay has published every event so far.
async fn wait_until_relayed(pool: &PgPool, within: Duration) {
    let deadline = Instant::now() + within;
    while projection_lag(pool, "email_relay").await > 0 {
        assert!(Instant::now() < deadline, "the relay did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn publishing_resumes_within_two_seconds_of_rabbitmqs_return(pool: PgPool) {
    let _turn = TURN.lock().await;
    whole_rabbit().await;
    let app = spawn_app_with(pool, |s| {
        s.policy.email_links_per_window = 1000;
        // One test client makes every request here: no per-client rate.
        s.limits.rate_password_per_minute = 0;
        s.limits.rate_second_factor_per_minute = 0;
    })
    .await;
    let email = signed_up_with_links(&app).await;
    let (stop, stopping) = watch::channel(false);
    let tasks = app.pipeline.spawn_projections(&stopping);
    // Signing up mailed twice: the relay holds a live connection when the
    // broker goes away.
    wait_until_relayed(&app.pool, Duration::from_secs(20)).await;

    let restart = RestartRabbit;
    rabbitmqctl("stop_app");
    let outage = Instant::now();
    let mut requested = 0;
    while outage.elapsed() < Duration::from_secs(5) {
        request_links(&app, &email, 1).await;
        requested += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let waiting = projection_lag(&app.pool, "email_relay").await;
    assert!(
        waiting > 0,
        "nothing could be published while the broker was away"
    );
    drop(restart);
    let back = Instant::now();
    let down_for = back - outage;

    // The relay's checkpoint moves only once the broker has confirmed the
    // batch, and the batch it is stuck on holds the first link.
    let resumed = loop {
        if projection_lag(&app.pool, "email_relay").await < waiting {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "publishing did not resume"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "RabbitMQ away {:.1} s during {requested} link requests; the first mail was published {} ms after start_app returned",
        down_for.as_secs_f64(),
        resumed.as_millis()
    );
    assert!(
        resumed <= Duration::from_secs(2),
        "published {} ms after the broker's return",
        resumed.as_millis()
    );
    wait_until_relayed(&app.pool, Duration::from_secs(30)).await;
    assert!(
        app.queue_depth(&app.pipeline_topology().queue).await >= requested + 2,
        "every link, the confirmation and the enrollment notice are queued"
    );
    let _ = stop.send(true);
    futures::future::join_all(tasks).await;
    app.remove_topology().await;
}

/// Waits until the running integration events' projector has published
/// every event so far.
async fn wait_until_published(pool: &PgPool, within: Duration) {
    let deadline = Instant::now() + within;
    while projection_lag(pool, authledger_projections::integration::NAME).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the integration events did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn rabbitmq_stopped_while_users_sign_in_and_out_loses_no_integration_event(pool: PgPool) {
    let _turn = TURN.lock().await;
    whole_rabbit().await;
    let app = spawn_app_with(pool, |s| {
        s.limits.rate_password_per_minute = 0;
        s.limits.rate_second_factor_per_minute = 0;
    })
    .await;
    let queue = app.subscribe_to_events("user.#").await;
    let (stop, stopping) = watch::channel(false);
    let tasks = app.pipeline.spawn_projections(&stopping);
    let mut user = app.signed_up().await;
    let mut expected = vec![
        "user.registered",
        "user.verified",
        "user.mfa_enrolled",
        "user.signed_in",
    ];
    // The projector holds a live connection when the broker goes away.
    wait_until_published(&app.pool, Duration::from_secs(20)).await;

    let restart = RestartRabbit;
    rabbitmqctl("stop_app");
    for _ in 0..10 {
        let wrong = app
            .post(
                "/v1/login/password",
                json!({"email": user.email, "password": "not the password at all"}),
            )
            .await;
        assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
        let session = app.sign_in_with_totp(&mut user).await;
        let logout = app.post_with_session("/v1/logout", &session, None).await;
        assert_eq!(logout.status(), reqwest::StatusCode::NO_CONTENT);
        expected.extend([
            "user.sign_in_failed",
            "user.signed_in",
            "user.session_ended",
        ]);
    }
    assert!(
        projection_lag(&app.pool, authledger_projections::integration::NAME).await > 0,
        "nothing could be published while the broker was away"
    );
    drop(restart);
    wait_until_published(&app.pool, Duration::from_secs(60)).await;

    // Each id once, in the order of first arrival; a message published
    // again (a confirm lost with the broker) is the same message.
    let mut first: Vec<PublishedEvent> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while first.len() < expected.len() && Instant::now() < deadline {
        for event in app.take_events(&queue).await {
            match first.iter().find(|e| e.body["id"] == event.body["id"]) {
                Some(earlier) => assert_eq!(earlier.body, event.body, "a double differs"),
                None => first.push(event),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let types: Vec<&str> = first
        .iter()
        .map(|e| e.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, expected, "every event arrived, in order");
    let _ = stop.send(true);
    futures::future::join_all(tasks).await;
    app.delete_queue(&queue).await;
    app.remove_topology().await;
}
