//! The event store's own guarantees: the hash chain, metadata, snapshots.
use std::sync::Arc;

use authledger::command_bus::CommandBus;
use authledger::services::{Argon2Hasher, HashingQueue, OsRandomness, SystemClock};
use authledger_aggregates::{UserAuth, UserAuthEvent, UserAuthServices};
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn every_event_is_chained_to_its_predecessor(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    app.sign_in_with_totp(&mut user).await;
    app.signed_up().await;

    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(total >= 10);
    let unset: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE chain_hash IS NULL OR length(chain_hash) <> 32",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(unset, 0);
    let linked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e
           LEFT JOIN events p ON p.aggregate_type = e.aggregate_type
                             AND p.aggregate_id = e.aggregate_id
                             AND p.sequence = e.sequence - 1
          WHERE e.chain_hash = sha256(
                  COALESCE(p.chain_hash, '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
                  || event_chain_content(e))",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        linked, total,
        "every hash covers its predecessor's hash and its own content"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn events_cannot_be_changed_or_deleted(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.signed_up().await;
    let update = sqlx::query("UPDATE events SET payload = '{}'")
        .execute(&app.pool)
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM events").execute(&app.pool).await;
    assert!(delete.unwrap_err().to_string().contains("append-only"));
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn every_event_records_who_asked_and_from_where(pool: PgPool) {
    let app = spawn_app(pool).await;
    let email = unique_email();
    let response = app
        .client
        .post(app.url("/v1/users"))
        .header("user-agent", "journey-test/1.0")
        .header("x-request-id", "req-12345")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let ours = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&ours).is_ok(), "{ours}");
    let metadata: sqlx::types::Json<Value> =
        sqlx::query_scalar("SELECT metadata FROM events WHERE aggregate_id = $1")
            .bind(app.user_id(&email).await.to_string())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(metadata.0["request_id"], ours.as_str());
    assert_eq!(metadata.0["client_request_id"], "req-12345");
    assert_eq!(metadata.0["actor"], "user");
    // The IP and browser are the user's personal data: sealed with their
    // key, and opened for auditors.
    assert!(metadata.0.get("client_ip").is_none() && metadata.0.get("user_agent").is_none());
    assert!(!metadata.0.to_string().contains("journey-test"));
    let recorded = &app.audit_events(app.user_id(&email).await).await[0];
    assert_eq!(recorded["client_ip"], "127.0.0.1");
    assert_eq!(recorded["user_agent"], "journey-test/1.0");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_request_id_that_is_not_plain_is_not_recorded(pool: PgPool) {
    let app = spawn_app(pool).await;
    for (i, sent) in ["<b>forged</b>", &"x".repeat(65), "a b"]
        .into_iter()
        .enumerate()
    {
        let email = unique_email();
        let response = app
            .client
            .post(app.url("/v1/users"))
            .header("x-request-id", sent)
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED, "{i}");
        let ours = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let metadata: sqlx::types::Json<Value> =
            sqlx::query_scalar("SELECT metadata FROM events WHERE aggregate_id = $1")
                .bind(app.user_id(&email).await.to_string())
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(metadata.0["request_id"], ours.as_str(), "{sent}");
        assert!(metadata.0.get("client_request_id").is_none(), "{sent}");
    }
}

/// The state a user would have if every event were replayed from the start.
async fn full_replay(pool: &PgPool, user: uuid::Uuid) -> UserAuth {
    let payloads: Vec<sqlx::types::Json<UserAuthEvent>> =
        sqlx::query_scalar("SELECT payload FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(user.to_string())
            .fetch_all(pool)
            .await
            .unwrap();
    payloads
        .into_iter()
        .fold(UserAuth::default(), |mut state, event| {
            state.apply(event.0);
            state
        })
}

fn bus(app: &TestApp, snapshot_every: usize) -> CommandBus {
    let pool = &app.pool;
    let keyring = Arc::new(
        app.config
            .keyring(authledger::config::DevKey::MustExist)
            .unwrap(),
    );
    let services = UserAuthServices {
        clock: Arc::new(SystemClock),
        randomness: Arc::new(OsRandomness),
        hasher: Arc::new(Argon2Hasher::new(1024, 1, 1, HashingQueue::new(1, 64)).unwrap()),
        keeper: keyring.clone(),
        policy: authledger::config::Config::defaults().unwrap().policy(),
    };
    CommandBus::new(
        pool.clone(),
        services,
        keyring,
        snapshot_every,
        Default::default(),
        Default::default(),
    )
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_state_loaded_from_snapshots_equals_a_full_replay(pool: PgPool) {
    for every in [2, 3] {
        let app = spawn_app_with(pool.clone(), |s| s.snapshot_every = every).await;
        let mut user = app.signed_up().await;
        let second = app.sign_in_with_totp(&mut user).await;
        // Five wrong passwords: each failure is one event, the fifth two.
        for _ in 0..5 {
            app.post(
                "/v1/login/password",
                json!({"email": user.email, "password": "wrong password here"}),
            )
            .await;
        }
        // The reset ends two sessions: a batch of three events that
        // crosses a snapshot boundary.
        let reset = app
            .post_with_session("/v1/me/mfa/reset", &user.session_token, None)
            .await;
        assert_eq!(reset.status(), reqwest::StatusCode::OK);
        assert_problem(
            app.me(&second).await,
            reqwest::StatusCode::UNAUTHORIZED,
            "unauthenticated",
        )
        .await;

        let id = app.user_id(&user.email).await;
        let snapshots: i64 =
            sqlx::query_scalar("SELECT count(*) FROM snapshots WHERE aggregate_id = $1")
                .bind(id.to_string())
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(snapshots, 1, "one snapshot per user, the newest");
        let loaded = bus(&app, every).load(id).await.unwrap();
        assert_eq!(
            loaded,
            full_replay(&app.pool, id).await,
            "snapshot every {every}"
        );
        assert!(!loaded.is_enrolled());
    }
}

#[sqlx::test(migrations = false)]
async fn a_database_written_before_personal_data_was_sealed_is_refused_untouched(pool: PgPool) {
    // The schema as the previous version left it, with one of its events.
    for migration in authledger::db::MIGRATOR.iter().filter(|m| m.version < 5) {
        sqlx::raw_sql(&migration.sql).execute(&pool).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('UserAuth', 'c0ffee00-0000-5000-8000-000000000001', 1, 'UserRegistered', '1',
                 '{\"UserRegistered\": {\"email\": \"ada@example.com\"}}', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let refused = authledger::db::migrate(&pool).await;
    assert!(
        matches!(refused, Err(authledger::db::MigrateError::UnsealedHistory)),
        "{refused:?}"
    );
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("audit export") && message.contains("new database"));
    // Nothing was migrated: the old read model is as it was.
    let email_column: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                         WHERE table_name = 'users' AND column_name = 'email')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(email_column);
}
