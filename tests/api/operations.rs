//! What operators reach: `/metrics` behind a token or on an address of its
//! own, and `/readyz`.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;
use sqlx::PgPool;

use crate::helpers::*;

const METRICS_TOKEN: &str = "test-metrics-credential-5d1e";

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn metrics_behind_a_token_answer_only_its_holder(pool: PgPool) {
    let app = spawn_app_with(pool, |c| c.metrics_token = Some(METRICS_TOKEN.into())).await;
    let bare = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_problem(bare, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    for wrong in ["test-metrics-credential-5d1f", AUDITOR_TOKEN, ADMIN_TOKEN] {
        let refused = app.get_with("/metrics", wrong).await;
        assert_problem(refused, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    let scraped = app.get_with("/metrics", METRICS_TOKEN).await;
    assert_eq!(scraped.status(), StatusCode::OK);
    let text = scraped.text().await.unwrap();
    assert!(text.contains("authledger_projection_lag_events"), "{text}");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn metrics_on_their_own_address_are_not_served_with_the_api(pool: PgPool) {
    let app = spawn_app_with(pool, |c| {
        c.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
        c.metrics_token = Some(METRICS_TOKEN.into());
    })
    .await;
    let on_the_api = app.get_with("/metrics", METRICS_TOKEN).await;
    assert_problem(on_the_api, StatusCode::NOT_FOUND, "not-found").await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "the probes stay on the API");

    let metrics = app.metrics_base.clone().expect("a metrics address");
    let get = |path: &str, token: Option<&str>| {
        let mut request = app.client.get(format!("{metrics}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let scraped = get("/metrics", Some(METRICS_TOKEN)).await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(scraped
        .text()
        .await
        .unwrap()
        .contains("authledger_projection_lag_events"));
    let bare = get("/metrics", None).await.unwrap();
    assert_eq!(
        bare.status(),
        StatusCode::UNAUTHORIZED,
        "the token still counts"
    );
    let api = get("/v1/me", None).await.unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND, "nothing else there");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_burst_of_readiness_probes_is_answered_from_one_broker_check(pool: PgPool) {
    // A "broker" that takes connections and hangs up: each readiness
    // check that reaches it is counted, and fails.
    let broker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = broker.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = broker.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let app = spawn_app_with(pool, |c| {
        c.mail.amqp_url = format!("amqp://guest:guest@{addr}/%2f").as_str().into();
    })
    .await;
    let probes = (0..20).map(|_| app.client.get(app.url("/readyz")).send());
    for answer in futures::future::join_all(probes).await {
        assert_problem(
            answer.unwrap(),
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        )
        .await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection for 20 probes"
    );
}

/// Connections `authledger` processes hold to this test's database.
async fn our_connections(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'authledger'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_all_process_stays_within_its_connections_and_lets_them_go_when_idle(pool: PgPool) {
    // The test's own server lends its key and RabbitMQ names to the
    // process under test, and takes its queues away at the end.
    let app = spawn_app_with(pool.clone(), |s| s.mail.queue_expiry = None).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"))
        .arg("all")
        .env("DATABASE_URL", database_url(&pool).await)
        .env("AUTHLEDGER_ADDR", format!("127.0.0.1:{port}"))
        .env("AUTHLEDGER_SECRET_KEY", app.key.to_base64())
        .env("AUTHLEDGER_AMQP_PREFIX", &app.config.mail.amqp_prefix)
        .env("AUTHLEDGER_NO_MIGRATE", "true")
        .env("AUTHLEDGER_DB_IDLE_SECS", "1")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Registrations at once: each hashes, appends, is relayed and mailed.
    let peak = Arc::new(AtomicUsize::new(0));
    let sampling = {
        let (pool, peak) = (pool.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                let now = usize::try_from(our_connections(&pool).await).unwrap();
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    let registrations = (0..40).map(|_| {
        client
            .post(format!("{base}/v1/users"))
            .json(&serde_json::json!({"email": unique_email(), "password": PASSWORD}))
            .send()
    });
    for answer in futures::future::join_all(registrations).await {
        assert_eq!(answer.unwrap().status(), StatusCode::ACCEPTED);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM sent_mail")
            .fetch_one(&pool)
            .await
            .unwrap();
        if sent == 40 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sent} of 40 mails sent"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sampling.abort();
    let peak = peak.load(Ordering::SeqCst);

    // Idle: each projector's listener, and the connection it polls with
    // every second, stay, and the tree head signer's; the rest go.
    let since = std::time::Instant::now();
    let idle = loop {
        let now = our_connections(&pool).await;
        if now <= 11 || since.elapsed() > std::time::Duration::from_secs(20) {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let queries: Vec<String> = sqlx::query_scalar(
        "SELECT query FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'authledger'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    process.kill().await.unwrap();
    app.remove_topology().await;
    println!(
        "authledger all: at most {peak} Postgres connections under 40 registrations, {idle} after {:.1} s idle",
        since.elapsed().as_secs_f64()
    );
    assert!(peak <= 30, "{peak} connections at the peak");
    assert!(idle <= 11, "{idle}: {queries:#?}");
}
