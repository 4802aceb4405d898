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
        .env("AUTHLEDGER_AMQP_PREFIX", app.amqp_prefix())
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

/// A line of the scraped text that starts with `series ` (name and labels),
/// as its value.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn metrics_count_requests_by_route_and_sign_ins_by_outcome(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    app.sign_in_with_totp(&mut user).await;
    let wrong = app
        .post(
            "/v1/login/password",
            serde_json::json!({"email": user.email, "password": "not-the-password-at-all"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // An address in a path, known route or not, never becomes a label.
    let history = format!("/v1/audit/users/{}/events", user.email);
    assert_eq!(
        app.get_with(&history, AUDITOR_TOKEN).await.status(),
        StatusCode::OK
    );
    let lost = app
        .client
        .get(app.url(&format!("/nowhere/{}", user.email)))
        .send()
        .await
        .unwrap();
    assert_eq!(lost.status(), StatusCode::NOT_FOUND);

    let text = app.metrics().await;
    assert!(
        !text.contains(&user.email),
        "an address in the metrics:\n{text}"
    );
    let requests = |route: &str, status: u16| {
        sample(
            &text,
            &format!("authledger_http_requests_total{{method=\"POST\",route=\"{route}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(requests("/v1/login/password", 200), Some(2.0), "{text}");
    assert_eq!(requests("/v1/login/password", 401), Some(1.0));
    assert_eq!(requests("/v1/login/totp", 200), Some(1.0));
    assert_eq!(
        sample(&text, "authledger_http_requests_total{method=\"GET\",route=\"/v1/audit/users/{user}/events\",status=\"200\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "authledger_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "authledger_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/login/password\",status=\"200\"}"),
        Some(2.0)
    );
    for (method, result, count) in [
        ("password", "accepted", 2.0),
        ("password", "rejected", 1.0),
        ("enrollment", "accepted", 1.0),
        ("totp", "accepted", 1.0),
    ] {
        let series =
            format!("authledger_sign_ins_total{{method=\"{method}\",result=\"{result}\"}}");
        assert_eq!(sample(&text, &series), Some(count), "{series} in\n{text}");
    }
    // Three password hashes (registration and two sign-ins) and the wrong
    // one at least, each timed in the queue.
    let hashed = sample(&text, "authledger_hashing_wait_seconds_count").unwrap();
    assert!(hashed >= 4.0, "{hashed} hashes timed");
    assert!(text.contains("# TYPE authledger_command_conflicts_total counter"));
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_replayed_code_is_counted_as_replayed(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    let code = user.device.next_code().await;
    for _ in 0..2 {
        let login = app.password_step(&user.email).await;
        app.post(
            "/v1/login/totp",
            serde_json::json!({"login_token": login["login_token"], "code": code}),
        )
        .await;
    }
    let text = app.metrics().await;
    assert_eq!(
        sample(
            &text,
            "authledger_sign_ins_total{method=\"totp\",result=\"accepted\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "authledger_sign_ins_total{method=\"totp\",result=\"replayed\"}"
        ),
        Some(1.0)
    );
}

/// `authledger <args>` against `pool`'s database, from `dir`, with `env`;
/// its exit status and standard error.
async fn authledger(
    pool: &PgPool,
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"));
    command
        .args(args)
        .current_dir(dir)
        .env("DATABASE_URL", database_url(pool).await)
        .env_remove("AUTHLEDGER_SECRET_KEY")
        .env_remove("AUTHLEDGER_SECRET_KEYS")
        .env_remove("AUTHLEDGER_KEY_FILE")
        .env("RUST_LOG", "error")
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("the command ended within 60 s")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_process_whose_key_opens_none_of_the_accounts_does_not_start(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    app.signed_up().await;
    let elsewhere =
        std::env::temp_dir().join(format!("authledger-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let prefix = app.amqp_prefix().to_owned();
    let serve_env = [
        ("AUTHLEDGER_ADDR", addr.as_str()),
        ("AUTHLEDGER_AMQP_PREFIX", prefix.as_str()),
        ("AUTHLEDGER_NO_MIGRATE", "true"),
    ];

    // A server started from another directory, on a development key made
    // there: it would seal new secrets no other process can open.
    let (started, said) = authledger(&pool, &elsewhere, &["serve"], &serve_env).await;
    assert!(!started);
    let key_file = elsewhere.join("authledger-dev.key");
    assert!(
        said.starts_with("authledger: the database's accounts need server key ")
            && said.contains(&format!(
                "the development key at {} is another",
                key_file.display()
            )),
        "{said}"
    );
    assert!(!key_file.exists(), "the key made for nothing stays behind");
    // A mistyped secret key, likewise.
    let other = authledger::keys::MasterKey::generate().to_base64();
    let mut with_key = serve_env.to_vec();
    with_key.push(("AUTHLEDGER_SECRET_KEY", other.as_str()));
    let (started, said) = authledger(&pool, &elsewhere, &["serve"], &with_key).await;
    assert!(!started);
    assert!(
        said.contains("and AUTHLEDGER_SECRET_KEY(S) is another"),
        "{said}"
    );
    std::fs::remove_dir_all(&elsewhere).unwrap();
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_command_never_makes_a_key_and_a_public_server_never_uses_one(pool: PgPool) {
    let elsewhere =
        std::env::temp_dir().join(format!("authledger-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (ran, said) = authledger(
        &pool,
        &elsewhere,
        &["audit", "history", "--user", "ada@example.com"],
        &[],
    )
    .await;
    assert!(!ran);
    let key_file = elsewhere.join("authledger-dev.key");
    assert_eq!(
        said,
        format!(
            "authledger: AUTHLEDGER_SECRET_KEY is not set and there is no development key at {}: run the command where the server runs, or set AUTHLEDGER_KEY_FILE to the server's key file",
            key_file.display()
        )
    );
    assert!(!key_file.exists(), "the command made a key");

    let (started, said) = authledger(
        &pool,
        &elsewhere,
        &["serve"],
        &[
            ("AUTHLEDGER_PUBLIC_URL", "https://auth.example.com"),
            ("AUTHLEDGER_NO_MIGRATE", "true"),
        ],
    )
    .await;
    assert!(!started);
    assert_eq!(
        said,
        "authledger: AUTHLEDGER_SECRET_KEY is not set: a development key is only made for a loopback AUTHLEDGER_PUBLIC_URL, and this one is \"https://auth.example.com\""
    );
    assert!(!key_file.exists());
    std::fs::remove_dir_all(&elsewhere).unwrap();
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_new_database_gets_a_queue_prefix_of_its_own_which_a_worker_uses(pool: PgPool) {
    let prefix: String = sqlx::query_scalar("SELECT amqp_prefix FROM installation")
        .fetch_one(&pool)
        .await
        .unwrap();
    let random = prefix.strip_prefix("authledger-").expect("authledger-…");
    assert!(
        random.len() == 12 && random.bytes().all(|b| b.is_ascii_hexdigit()),
        "{prefix}"
    );
    // A worker with no AUTHLEDGER_AMQP_PREFIX declares its queues under it,
    // and serves its metrics on an address of its own.
    let app = spawn_app(pool.clone()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"))
        .arg("worker")
        .env("DATABASE_URL", database_url(&pool).await)
        .env("AUTHLEDGER_SECRET_KEY", app.key.to_base64())
        .env_remove("AUTHLEDGER_AMQP_PREFIX")
        .env("AUTHLEDGER_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("AUTHLEDGER_NO_MIGRATE", "true")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let scraped = loop {
        if let Ok(answer) = app
            .client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            break answer.text().await.unwrap();
        }
        assert!(worker.try_wait().unwrap().is_none(), "the worker stopped");
        assert!(
            std::time::Instant::now() < deadline,
            "no metrics from the worker"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        scraped.contains("authledger_mail_sent_total 0"),
        "{scraped}"
    );
    // As the worker declared them: no expiry, so they are deleted below.
    let topology = authledger_projections::mail::Topology::new(&prefix);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let connection = lapin::Connection::connect(
            app.config.mail.amqp_url.expose(),
            lapin::ConnectionProperties::default(),
        )
        .await
        .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let declared = channel
            .queue_declare(
                topology.queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await;
        let _ = connection.close(200, "done".into()).await;
        if declared.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no queue {} was declared",
            topology.queue
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    worker.kill().await.unwrap();
    let (connection, channel) = authledger_projections::mail::connect(
        app.config.mail.amqp_url.expose(),
        &topology,
        "test-teardown",
    )
    .await
    .unwrap();
    topology.delete(&channel).await.unwrap();
    let _ = connection.close(200, "done".into()).await;
}

#[sqlx::test(migrations = false)]
async fn a_database_that_held_events_keeps_the_prefix_it_had(pool: PgPool) {
    for migration in authledger::db::MIGRATOR.iter().filter(|m| m.version < 11) {
        sqlx::raw_sql(&migration.sql).execute(&pool).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('UserAuth', gen_random_uuid()::text, 1, 'PasswordRejected', '2', '{\"PasswordRejected\": {\"at\": \"2026-01-01T00:00:00Z\"}}', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let installation = authledger::db::MIGRATOR
        .iter()
        .find(|m| m.version == 11)
        .unwrap();
    sqlx::raw_sql(&installation.sql)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        authledger::db::installation_prefix(&pool).await.unwrap(),
        "authledger"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_healthcheck_command_asks_the_server_on_this_host(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let here = std::env::temp_dir();
    let addr = app.base.trim_start_matches("http://").to_owned();
    let (healthy, said) = authledger(
        &pool,
        &here,
        &["healthcheck"],
        &[("AUTHLEDGER_ADDR", &addr)],
    )
    .await;
    assert!(healthy, "{said}");
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (healthy, said) = authledger(
        &pool,
        &here,
        &["healthcheck"],
        &[("AUTHLEDGER_ADDR", &format!("0.0.0.0:{port}"))],
    )
    .await;
    assert!(!healthy);
    assert!(
        said.starts_with(&format!("authledger: nothing answers at 127.0.0.1:{port}")),
        "{said}"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_first_start_creates_its_database(pool: PgPool) {
    let ours = database_url(&pool).await;
    let (server, _) = ours.rsplit_once('/').unwrap();
    let name = format!("authledger_new_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{server}/{name}");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "info")
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("created the database of DATABASE_URL"),
        "{said}"
    );
    let created = sqlx::PgPool::connect(&url).await.unwrap();
    let prefix: String = sqlx::query_scalar("SELECT amqp_prefix FROM installation")
        .fetch_one(&created)
        .await
        .unwrap();
    assert!(prefix.starts_with("authledger-"));
    created.close().await;
    // A second start finds it and creates nothing.
    let again = tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "info")
        .output()
        .await
        .unwrap();
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stdout).contains("created the database"));
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn accounts_under_a_key_not_held_are_counted_beside_the_others(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    app.signed_up().await;
    let fresh = app.app.data_keys_held().await.unwrap();
    assert_eq!((fresh.held, fresh.unheld, fresh.missing), (1, 0, None));
    // An account whose data key an older server key wraps, removed from the
    // configuration before a rotation moved it.
    sqlx::query(
        "INSERT INTO user_keys (user_id, key_id, nonce, wrapped)
         VALUES (gen_random_uuid(), 'deadbeef', '\\x00'::bytea, '\\x00'::bytea)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let partial = app.app.data_keys_held().await.unwrap();
    assert_eq!(
        (partial.held, partial.unheld, partial.missing.as_deref()),
        (1, 1, Some("deadbeef"))
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_service_users_reach_serves_no_unguarded_metrics(pool: PgPool) {
    let app = spawn_app_with(pool, |c| c.public_url = "https://auth.example.test".into()).await;
    let unguarded = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_problem(unguarded, StatusCode::NOT_FOUND, "not-found").await;
    assert!(captured_logs().contains("/metrics is not served"));
}
