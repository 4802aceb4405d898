//! What protects the service from its clients: a rate per client and route
//! class, a bound on the password hashes that may wait, and timeouts and a
//! cap on connections.
use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::*;

/// The server behind a proxy on loopback: `X-Forwarded-For` names the
/// client, so one machine can be several.
async fn behind_a_proxy(
    pool: PgPool,
    adjust: impl FnOnce(&mut authledger::config::Config),
) -> TestApp {
    spawn_app_with(pool, |c| {
        c.limits.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        adjust(c);
    })
    .await
}

impl TestApp {
    async fn password_step_from(&self, client: &str, email: &str) -> reqwest::Response {
        self.client
            .post(self.url("/v1/login/password"))
            .header("x-forwarded-for", client)
            .json(&json!({"email": email, "password": "not the password at all"}))
            .send()
            .await
            .unwrap()
    }
}

fn retry_after(response: &reqwest::Response) -> i64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_client_over_the_password_rate_waits_while_another_client_goes_on(pool: PgPool) {
    let app = behind_a_proxy(pool, |c| {
        c.limits.rate_password_per_minute = 2;
        c.limits.rate_password_burst = 2;
    })
    .await;
    let (sprayer, neighbour) = ("203.0.113.1", "203.0.113.2");
    let email = unique_email();
    for _ in 0..2 {
        let response = app.password_step_from(sprayer, &email).await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "invalid-credentials").await;
    }

    let refused = app.password_step_from(sprayer, &email).await;
    assert_eq!(retry_after(&refused), 30, "two a minute: one every 30 s");
    let problem = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    assert_eq!(problem["retry_after"], 30);

    let other = app.password_step_from(neighbour, &email).await;
    assert_problem(other, StatusCode::UNAUTHORIZED, "invalid-credentials").await;

    // The limits read the server's clock: after the wait, one more.
    app.clock.advance(chrono::Duration::seconds(30));
    let again = app.password_step_from(sprayer, &email).await;
    assert_problem(again, StatusCode::UNAUTHORIZED, "invalid-credentials").await;
    let refused = app.password_step_from(sprayer, &email).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("authledger_rate_limited_total{class=\"password\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("authledger_rate_limited_total{class=\"second_factor\"} 0\n"),
        "{metrics}"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_console_over_the_rate_shows_a_page_with_the_wait_in_words(pool: PgPool) {
    let app = behind_a_proxy(pool, |c| {
        c.limits.rate_password_per_minute = 1;
        c.limits.rate_password_burst = 1;
    })
    .await;
    let post = || {
        app.client
            .post(app.url("/sign-in"))
            .header("x-forwarded-for", "203.0.113.1")
            .form(&[("email", "someone@example.com"), ("password", "whatever")])
            .send()
    };
    // No CSRF tag: refused as a stale form, but counted.
    assert_eq!(post().await.unwrap().status(), StatusCode::FORBIDDEN);
    let refused = post().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&refused), 60);
    assert!(refused.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("Too many requests from your network. Try again in 60 seconds."),
        "{page}"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn events_record_the_client_the_trusted_proxy_names(pool: PgPool) {
    let app = behind_a_proxy(pool, |_| {}).await;
    let email = unique_email();
    let response = app
        .client
        .post(app.url("/v1/users"))
        .header("x-forwarded-for", "198.51.100.66, 203.0.113.7")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let recorded = &app.audit_events(app.user_id(&email).await).await[0];
    assert_eq!(
        recorded["client_ip"], "203.0.113.7",
        "the right-most address not a trusted proxy's"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn without_a_trusted_proxy_a_forwarded_address_is_ignored(pool: PgPool) {
    let app = spawn_app_with(pool, |c| {
        c.limits.rate_password_per_minute = 1;
        c.limits.rate_password_burst = 1;
    })
    .await;
    let email = unique_email();
    let first = app.password_step_from("203.0.113.1", &email).await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    let second = app.password_step_from("203.0.113.2", &email).await;
    assert_eq!(
        second.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a client cannot pick a new address for itself"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_burst_past_the_hashing_queue_is_answered_503_overloaded_alike_for_every_address(
    pool: PgPool,
) {
    let app = spawn_app_with(pool, |c| {
        c.hashing.hashing_threads = Some(1);
        c.hashing.hashing_queue_max = 1;
        // Slow enough hashes that the burst finds the queue full.
        c.hashing.argon2_memory_kib = 65_536;
        c.hashing.argon2_iterations = 3;
    })
    .await;
    let owner = app.signed_up().await;
    // Fewer of the owner's than it takes to throttle the account, should
    // more of them get through than expected.
    let emails: Vec<String> = (0..24)
        .map(|i| {
            if i % 6 == 0 {
                owner.email.clone()
            } else {
                unique_email()
            }
        })
        .collect();
    let app = &app;
    let answers = join_all(emails.iter().map(|email| async move {
        let response = app
            .post(
                "/v1/login/password",
                json!({"email": email, "password": "not the password at all"}),
            )
            .await;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry_after, response.text().await.unwrap())
    }))
    .await;

    let shed: Vec<_> = answers
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(shed.len() >= 12, "{answers:?}");
    let (_, retry, body) = shed[0];
    assert_eq!(retry.as_deref(), Some("1"));
    let problem: Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["type"], "urn:authledger:problem:overloaded");
    for (_, other_retry, other_body) in &shed {
        assert_eq!(
            (other_retry, other_body),
            (retry, body),
            "one answer for all"
        );
    }
    for (status, _, body) in &answers {
        assert!(
            *status == StatusCode::SERVICE_UNAVAILABLE || *status == StatusCode::UNAUTHORIZED,
            "{status} {body}"
        );
    }

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&format!(
            "authledger_shed_total{{class=\"password\"}} {}\n",
            shed.len()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("authledger_hashing_queue_depth 0\n"),
        "{metrics}"
    );
    // Shedding recorded nothing against the owner: the right password
    // still opens an attempt.
    app.password_step(&owner.email).await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn slow_clients_are_closed_by_the_header_timeout_while_others_are_answered(pool: PgPool) {
    let header_timeout = Duration::from_secs(3);
    let app = spawn_app_with(pool, |c| {
        c.connections.header_read_timeout_ms = 3000;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let opened = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET /healthz HT").await.unwrap();
        slow.push(stream);
    }

    // Others are answered meanwhile; their latency is measured, not
    // asserted (the figure goes to the test's output).
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let asked = Instant::now();
        let response = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        latencies.push(asked.elapsed());
    }
    latencies.sort();
    eprintln!(
        "with 500 slow connections open: /healthz median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(opened.elapsed() < header_timeout);
    for stream in &slow {
        let mut buffer = [0u8; 64];
        let read = stream.try_read(&mut buffer);
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the slow ones were still open: {read:?}"
        );
    }

    let closed = tokio::time::timeout(
        Duration::from_secs(10),
        join_all(slow.iter_mut().map(|stream| async {
            let mut buffer = [0u8; 64];
            // Closed without an answer: nothing is read, or the socket
            // was reset.
            matches!(stream.read(&mut buffer).await, Ok(0) | Err(_))
        })),
    )
    .await
    .expect("every slow connection is closed");
    assert!(closed.iter().all(|closed| *closed));
    assert!(opened.elapsed() >= header_timeout);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn past_the_connection_cap_a_client_waits_until_a_slow_one_is_closed(pool: PgPool) {
    let app = spawn_app_with(pool, |c| {
        c.connections.max_connections = 2;
        c.connections.header_read_timeout_ms = 300;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    // The backlog is first come, first served: these two hold the cap.
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        app.client.get(app.url("/healthz")).send(),
    )
    .await
    .expect("served once a slot frees")
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "waited for the silent connections to time out: {:?}",
        started.elapsed()
    );
}
