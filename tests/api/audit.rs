//! Auditors replay the MFA history; admins act; neither is a user session.
#![allow(clippy::disallowed_methods)] // the test takes instants from the wall clock, as the server does

use std::time::Duration;

use authledger_aggregates::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn audit_reads_need_an_auditor_and_admin_actions_an_admin(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let history = format!("/v1/audit/users/{}/events", user.email);
    let unlock = format!("/v1/admin/users/{}/unlock", user.email);

    let none = app.client.get(app.url(&history)).send().await.unwrap();
    assert_problem(none, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    assert_problem(
        app.get_with(&history, &user.session_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert_problem(
        app.get_with(&history, ADMIN_TOKEN).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.get_with(&history, AUDITOR_TOKEN).await.status(),
        StatusCode::OK
    );

    let reason = json!({"reason": "support ticket 42"});
    let as_auditor = app
        .post_with_session(&unlock, AUDITOR_TOKEN, Some(reason.clone()))
        .await;
    assert_problem(as_auditor, StatusCode::FORBIDDEN, "forbidden").await;
    let as_user = app
        .post_with_session(&unlock, &user.session_token, Some(reason.clone()))
        .await;
    assert_problem(as_user, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    // An admin may act; this account is not locked.
    let as_admin = app
        .post_with_session(&unlock, ADMIN_TOKEN, Some(reason))
        .await;
    assert_problem(as_admin, StatusCode::CONFLICT, "not-locked").await;
    let unknown = app
        .get_with("/v1/audit/users/nobody@example.com/events", AUDITOR_TOKEN)
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "unknown-user").await;
}

async fn state_at(app: &TestApp, email: &str, at: chrono::DateTime<chrono::Utc>) -> Value {
    let path = format!(
        "/v1/audit/users/{email}/state?at={}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    let response = app.get_with(&path, AUDITOR_TOKEN).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_history_lists_every_event_and_the_state_is_right_at_any_instant(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    let enrolled = app.clock.now();

    // Five wrong codes: a throttle.
    let login = app.password_step(&user.email).await;
    for _ in 0..5 {
        app.post(
            "/v1/login/totp",
            json!({"login_token": login["login_token"], "code": "000000"}),
        )
        .await;
    }
    let throttled = app.clock.now();
    // The wait passes.
    app.clock.advance(chrono::Duration::seconds(31));
    // Sign-ins by TOTP, recovery code and email link.
    app.sign_in_with_totp(&mut user).await;
    let login = app.password_step(&user.email).await;
    let recovered = app
        .post_ok(
            "/v1/login/recovery-code",
            json!({"login_token": login["login_token"], "code": user.recovery_code}),
        )
        .await;
    let login = app.password_step(&user.email).await;
    app.post(
        "/v1/login/email-link",
        json!({"login_token": login["login_token"]}),
    )
    .await;
    let id = app.user_id(&user.email).await;
    let link = app.link_token(id, &app.email_link_references(id).await[0]);
    app.post_ok("/v1/login/email-link/redeem", json!({"token": link}))
        .await;
    let signed_in_thrice = app.clock.now();
    // Reset, then re-enrollment.
    app.post_with_session(
        "/v1/me/mfa/reset",
        recovered["session_token"].as_str().unwrap(),
        None,
    )
    .await;
    let between = app.clock.now();
    let login = app.password_step(&user.email).await;
    app.enroll(&user.email, login["login_token"].as_str().unwrap())
        .await;
    let reenrolled = app.clock.now();
    // Failures, a throttle, and an admin's unlock.
    for _ in 0..5 {
        app.post(
            "/v1/login/password",
            json!({"email": user.email, "password": "wrong password here"}),
        )
        .await;
    }
    let unlock = format!("/v1/admin/users/{}/unlock", user.email);
    let unlocked = app
        .post_with_session(
            &unlock,
            ADMIN_TOKEN,
            Some(json!({"reason": "owner called"})),
        )
        .await;
    assert_eq!(unlocked.status(), StatusCode::OK);

    let history: Value = app
        .get_with(
            &format!("/v1/audit/users/{}/events?limit=1000", user.email),
            AUDITOR_TOKEN,
        )
        .await
        .json()
        .await
        .unwrap();
    let events = history["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for expected in [
        "UserRegistered",
        "PasswordVerified",
        "MfaEnrollmentStarted",
        "MfaEnrolled",
        "RecoveryCodeIssued",
        "SessionStarted",
        "TotpRejected",
        "SignInThrottled",
        "TotpVerified",
        "RecoveryCodeUsed",
        "EmailLinkRequested",
        "EmailLinkUsed",
        "MfaReset",
        "SessionEnded",
        "PasswordRejected",
        "AccountUnlocked",
    ] {
        assert!(
            types.contains(&expected),
            "{expected} missing from {types:?}"
        );
    }
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event["sequence"],
            i as i64 + 1,
            "oldest first, none missing"
        );
        assert_eq!(event["version"], "2");
        assert_eq!(event["client_ip"], "127.0.0.1");
        assert!(!event["request_id"].as_str().unwrap().is_empty());
        assert!(
            event["position"].is_i64()
                && event["recorded_at"].is_string()
                && event["occurred_at"].is_string()
        );
    }
    let unlock_event = events
        .iter()
        .find(|e| e["type"] == "AccountUnlocked")
        .unwrap();
    assert!(unlock_event["actor"]
        .as_str()
        .unwrap()
        .starts_with("admin:"));
    assert_eq!(unlock_event["payload"]["reason"], "owner called");
    assert_eq!(events[0]["actor"], "user");
    assert_eq!(events[0]["payload"]["password_hash"], "sealed");

    let at_enrollment = state_at(&app, &user.email, enrolled).await;
    assert_eq!(at_enrollment["mfa_enrolled"], true);
    assert_eq!(at_enrollment["recovery_code_present"], true);
    assert_eq!(at_enrollment["live_sessions"].as_array().unwrap().len(), 1);
    assert!(at_enrollment["throttled_until"].is_null());

    let in_throttle = state_at(&app, &user.email, throttled).await;
    assert!(in_throttle["throttled_until"].is_string(), "{in_throttle}");
    assert_eq!(in_throttle["consecutive_failures"], 5);

    let after_sign_ins = state_at(&app, &user.email, signed_in_thrice).await;
    assert_eq!(
        after_sign_ins["live_sessions"].as_array().unwrap().len(),
        4,
        "enrollment, TOTP, recovery-code and email-link sessions"
    );
    assert!(after_sign_ins["throttled_until"].is_null());

    let in_between = state_at(&app, &user.email, between).await;
    assert_eq!(in_between["mfa_enrolled"], false);
    assert_eq!(in_between["recovery_code_present"], false);
    assert!(
        in_between["live_sessions"].as_array().unwrap().is_empty(),
        "signed out everywhere"
    );

    let again = state_at(&app, &user.email, reenrolled).await;
    assert_eq!(again["mfa_enrolled"], true);
    assert_eq!(again["live_sessions"].as_array().unwrap().len(), 1);
    assert_ne!(again["mfa_enrolled_at"], at_enrollment["mfa_enrolled_at"]);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_global_history_pages_filters_and_streams(pool: PgPool) {
    let app = spawn_app(pool).await;
    let first = app.signed_up().await;
    let second = app.signed_up().await;
    let mut applied = 0;
    while projection_lag(&app.pool, "audit_index").await > 0 {
        applied += app.pipeline.audit_index.catch_up().await.unwrap();
    }
    assert!(applied > 0);

    let page: Value = app
        .get_with("/v1/audit/events?limit=5", AUDITOR_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 5);
    let next = page["next"].as_str().unwrap();
    let rest: Value = app
        .get_with(
            &format!("/v1/audit/events?limit=1000&after={next}"),
            AUDITOR_TOKEN,
        )
        .await
        .json()
        .await
        .unwrap();
    let total = 5 + rest["events"].as_array().unwrap().len();
    assert!(rest["next"].is_null());

    let enrolled: Value = app
        .get_with("/v1/audit/events?type=MfaEnrolled", AUDITOR_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    let users: Vec<&str> = enrolled["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        [
            app.user_id(&first.email).await.to_string(),
            app.user_id(&second.email).await.to_string()
        ]
    );
    let future: Value = app
        .get_with("/v1/audit/events?since=2999-01-01T00:00:00Z", AUDITOR_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert!(future["events"].as_array().unwrap().is_empty());

    let ndjson = app
        .client
        .get(app.url("/v1/audit/events"))
        .bearer_auth(AUDITOR_TOKEN)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let text = ndjson.text().await.unwrap();
    assert_eq!(text.lines().count(), total);
    let secrets = [
        first.session_token.as_str(),
        first.recovery_code.as_str(),
        second.session_token.as_str(),
        PASSWORD,
    ];
    for secret in secrets {
        assert!(!text.contains(secret), "an audit answer holds a secret");
    }
    for line in text.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        if let Some(secret) = event["payload"].get("secret") {
            assert_eq!(
                secret, "sealed",
                "the TOTP secret shows only as sealed, not even as ciphertext"
            );
        }
    }
    assert!(
        !text.contains("al_sess_") && !text.contains("al_login_") && !text.contains("ciphertext")
    );
    let bad = app
        .get_with("/v1/audit/events?after=nonsense", AUDITOR_TOKEN)
        .await;
    assert_problem(bad, StatusCode::BAD_REQUEST, "invalid-query").await;
}

/// Runs `statements` (each bound to `user`) as a DBA would tamper: with the
/// append-only trigger switched off, in one transaction.
async fn tamper(pool: &PgPool, user: &str, statements: &[&str]) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete")
        .execute(&mut *tx)
        .await
        .unwrap();
    for statement in statements {
        sqlx::query(statement)
            .bind(user)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query("ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// What `audit verify` names, as (what, reason).
async fn findings(app: &TestApp) -> Vec<(String, String)> {
    app.verify_log()
        .await
        .findings
        .into_iter()
        .map(|f| (f.what, f.reason))
        .collect()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn verification_names_each_tampered_event(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let first = app.signed_up().await;
    app.signed_up().await;
    assert_eq!(findings(&app).await, vec![], "an intact log verifies");

    let id = app.user_id(&first.email).await.to_string();

    // A rewritten payload: its hash and its MAC both say so, and nothing
    // after it is blamed.
    tamper(
        &pool,
        &id,
        &["UPDATE events SET payload = '{\"PasswordRejected\": {\"at\": \"2026-01-01T00:00:00Z\"}}' WHERE aggregate_id = $1 AND sequence = 3"],
    )
    .await;
    let found = findings(&app).await;
    let what = format!("user {id} event 3");
    assert!(
        found.iter().all(|(w, _)| *w == what),
        "only the edited event is named: {found:?}"
    );
    assert!(found
        .iter()
        .any(|(_, why)| why.contains("hash does not match")));
    assert!(found
        .iter()
        .any(|(_, why)| why.contains("MAC does not match")));

    // The command line says so too, and fails.
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"))
        .args(["audit", "verify"])
        .env("DATABASE_URL", database_url(&pool).await)
        .env("AUTHLEDGER_SECRET_KEY", app.key.to_base64())
        .output()
        .await
        .unwrap();
    assert!(!cli.status.success());
    let said =
        String::from_utf8_lossy(&cli.stdout).into_owned() + &String::from_utf8_lossy(&cli.stderr);
    assert!(
        said.contains(&format!("BROKEN: user {id} event 3: ")),
        "{said}"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_deleted_or_reordered_event_is_caught(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let deleted = app.user_id(&app.signed_up().await.email).await.to_string();
    let reordered = app.user_id(&app.signed_up().await.email).await.to_string();
    tamper(
        &pool,
        &deleted,
        &["DELETE FROM events WHERE aggregate_id = $1 AND sequence = 2"],
    )
    .await;
    let found = findings(&app).await;
    assert!(
        found.contains(&(
            format!("user {deleted} event 3"),
            "events 2 to 2 are missing".into()
        )),
        "{found:?}"
    );

    // Put the deleted stream aside, then swap two events of the other.
    tamper(
        &pool,
        &deleted,
        &["DELETE FROM events WHERE aggregate_id = $1"],
    )
    .await;
    tamper(
        &pool,
        &reordered,
        &[
            "UPDATE events SET sequence = sequence + 1000 WHERE aggregate_id = $1 AND sequence IN (2, 3)",
            "UPDATE events SET sequence = CASE sequence WHEN 1002 THEN 3 ELSE 2 END WHERE aggregate_id = $1 AND sequence > 1000",
        ],
    )
    .await;
    let found = findings(&app).await;
    assert!(
        found
            .iter()
            .any(|(what, _)| *what == format!("user {reordered} event 2")),
        "{found:?}"
    );
}

/// The URL of this test's own database, for a child process.
#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_admin_unlocks_from_the_command_line(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let user = app.signed_up().await;
    for _ in 0..5 {
        app.post(
            "/v1/login/password",
            json!({"email": user.email, "password": "wrong password here"}),
        )
        .await;
    }
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"))
        .args([
            "admin",
            "unlock",
            "--user",
            &user.email,
            "--reason",
            "verified by phone",
        ])
        .env("DATABASE_URL", database_url(&pool).await)
        .env("AUTHLEDGER_SECRET_KEY", app.key.to_base64())
        .env("AUTHLEDGER_ARGON2_MEMORY_KIB", "1024")
        .output()
        .await
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stdout)
    );
    let unlocked = app
        .audit_events(app.user_id(&user.email).await)
        .await
        .into_iter()
        .find(|e| e["type"] == "AccountUnlocked")
        .unwrap();
    assert_eq!(unlocked["payload"]["reason"], "verified by phone");
    let actor = unlocked["actor"].as_str().unwrap();
    assert!(actor.starts_with("admin:cli"), "{actor}");
    // The owner's right password works again at once.
    app.password_step(&user.email).await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_export_of_100000_events_streams_in_flat_memory(pool: PgPool) {
    // 1,000 users with 100 events each, chained by the trigger as usual.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'UserAuth', u.id::text, s, 'PasswordRejected', '2',
                json_build_object('PasswordRejected', json_build_object('at', '2026-01-01T00:00:00Z')),
                '{\"actor\": \"user\", \"client_ip\": \"192.0.2.1\", \"request_id\": \"r\", \"user_agent\": \"load\"}'::json
           FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, 1000)) u, generate_series(1, 100) s
          ORDER BY u.id, s",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO audit_index (transaction_id, position, user_id, sequence, event_type, occurred_at, recorded_at)
         SELECT transaction_id, position, aggregate_id::uuid, sequence, event_type, '2026-01-01T00:00:00Z', recorded_at FROM events",
    )
    .execute(&pool)
    .await
    .unwrap();
    // The projectors have nothing to catch up: what is measured is the
    // export's memory, not theirs (the integration events alone would
    // publish 100,000 messages meanwhile).
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, transaction_id, position)
         SELECT name, (SELECT max(transaction_id) FROM events), (SELECT max(position) FROM events)
           FROM unnest(ARRAY['users', 'audit_index', 'email_relay', 'integration_events', 'merkle_tree']) AS name
         ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, position = EXCLUDED.position",
    )
    .execute(&pool)
    .await
    .unwrap();

    // The server as its own process, so its memory is its own.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"))
        .arg("serve")
        .env("DATABASE_URL", database_url(&pool).await)
        .env("AUTHLEDGER_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "AUTHLEDGER_SECRET_KEY",
            authledger::keys::MasterKey::generate().to_base64(),
        )
        .env("AUTHLEDGER_AUDITOR_TOKENS", AUDITOR_TOKEN)
        .env(
            "AUTHLEDGER_AMQP_PREFIX",
            format!("test-{}", uuid::Uuid::new_v4().simple()),
        )
        .env("AUTHLEDGER_NO_MIGRATE", "true")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = server.id().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // A loaded machine (the whole suite at once) can take seconds to start
    // a process; the test waits for it rather than failing its first call.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            server.try_wait().unwrap().is_none(),
            "the server stopped before it answered"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not answer within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warm up: one page, so the baseline holds what any request allocates.
    let page = client
        .get(format!("{base}/v1/audit/events?limit=1000"))
        .bearer_auth(AUDITOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    page.bytes().await.unwrap();
    let baseline = rss_kib(pid);

    let mut response = client
        .get(format!("{base}/v1/audit/events"))
        .bearer_auth(AUDITOR_TOKEN)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    let (mut lines, mut bytes, mut peak) = (0usize, 0usize, baseline);
    while let Some(chunk) = response.chunk().await.unwrap() {
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        bytes += chunk.len();
        peak = peak.max(rss_kib(pid));
    }
    server.kill().await.unwrap();
    assert_eq!(lines, 100_000);
    let grown_kib = peak.saturating_sub(baseline);
    let streamed_kib = (bytes / 1024) as u64;
    eprintln!("export of {lines} events: {streamed_kib} KiB streamed, server RSS grew {grown_kib} KiB (from {baseline} KiB)");
    assert!(streamed_kib > 25_000, "{streamed_kib} KiB streamed");
    assert!(
        grown_kib < streamed_kib / 4,
        "the server grew {grown_kib} KiB while streaming {streamed_kib} KiB"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_signed_head_shows_a_stream_that_lost_its_newest_event(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let user = app.user_id(&app.signed_up().await.email).await.to_string();
    let head = app.app.sign_tree_head().await.unwrap();
    let before = app.verify_log().await;
    assert!(before.findings.is_empty(), "{:?}", before.findings);
    assert_eq!(before.heads_checked, vec![head.tree_size]);

    tamper(
        &pool,
        &user,
        &["DELETE FROM events WHERE aggregate_id = $1 AND sequence = (SELECT max(sequence) FROM events WHERE aggregate_id = $1)"],
    )
    .await;
    // The stream alone still holds together; the signed head does not.
    let found = findings(&app).await;
    assert_eq!(
        found,
        vec![(
            format!("the signed head at size {}", head.tree_size),
            format!(
                "the log holds only {} events: events it covers were removed",
                head.tree_size - 1
            )
        )]
    );

    let unknown = app
        .get_with("/v1/audit/users/nobody@example.com/state", AUDITOR_TOKEN)
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "unknown-user").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_export_that_fails_part_way_is_logged_with_its_cause(pool: PgPool) {
    // 25 pages of 1,000, then an event this version cannot read, then 25
    // more. The failure comes from the data, at a page the test knows: a
    // failure caused from outside while the body streams (the table renamed
    // after the first chunk) raced the kernel, whose socket buffers can hold
    // the whole export (tcp_rmem's maximum is 32 MiB on some machines).
    let events = |users: i32| {
        format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT 'UserAuth', u.id::text, s, 'PasswordRejected', '2',
                    json_build_object('PasswordRejected', json_build_object('at', '2026-01-01T00:00:00Z')),
                    '{{\"actor\": \"user\", \"client_ip\": \"192.0.2.1\", \"request_id\": \"r\", \"user_agent\": \"load\"}}'::json
               FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, {users})) u, generate_series(1, 100) s
              ORDER BY u.id, s"
        )
    };
    sqlx::query(&events(250)).execute(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('UserAuth', gen_random_uuid()::text, 1, 'FromAFutureVersion', '9',
                 '{\"FromAFutureVersion\": {\"at\": \"2026-01-01T00:00:00Z\"}}', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&events(250)).execute(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO audit_index (transaction_id, position, user_id, sequence, event_type, occurred_at, recorded_at)
         SELECT transaction_id, position, aggregate_id::uuid, sequence, event_type, '2026-01-01T00:00:00Z', recorded_at FROM events",
    )
    .execute(&pool)
    .await
    .unwrap();
    let app = spawn_app(pool.clone()).await;
    let mut response = app
        .client
        .get(app.url("/v1/audit/events"))
        .bearer_auth(AUDITOR_TOKEN)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut lines = 0;
    let cut = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => lines += chunk.iter().filter(|b| **b == b'\n').count(),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(cut, "the body ends without its terminating chunk");
    // What the server had buffered when it gave up may be lost with the
    // connection, so the client sees at most the pages before.
    assert!(lines <= 25_000, "{lines} lines: past the unreadable event");
    let logs = captured_logs();
    let logged = logs
        .lines()
        .find(|line| line.contains("the audit export failed part-way"));
    let logged = logged.expect("the failure is logged");
    assert!(
        logged.contains("streamed=25000") && logged.contains("FromAFutureVersion"),
        "with how far it got and its cause: {logged}"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_command_line_says_what_went_wrong_in_one_sentence(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let database = database_url(&pool).await;
    let run = |args: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"))
            .args(args)
            .env("DATABASE_URL", &database)
            .env("AUTHLEDGER_SECRET_KEY", app.key.to_base64())
            .output()
    };
    let unknown = run(&["audit", "state", "--user", "nobody@example.com"])
        .await
        .unwrap();
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(said.trim(), "authledger: no such user", "{said}");
    let yesterday = run(&[
        "audit",
        "state",
        "--user",
        "nobody@example.com",
        "--at",
        "yesterday",
    ])
    .await
    .unwrap();
    assert!(!yesterday.status.success());
    let said = String::from_utf8_lossy(&yesterday.stderr);
    assert!(
        said.contains("expected an instant in RFC 3339, e.g. 2026-03-01T09:00:00Z"),
        "{said}"
    );
}
