//! The event store's own guarantees: the hash chain, metadata, snapshots.
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
    assert_eq!(response.headers()["x-request-id"], "req-12345");
    let metadata: sqlx::types::Json<Value> =
        sqlx::query_scalar("SELECT metadata FROM events WHERE aggregate_id = $1")
            .bind(user_id_of(&email).to_string())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(metadata.0["request_id"], "req-12345");
    assert_eq!(metadata.0["client_ip"], "127.0.0.1");
    assert_eq!(metadata.0["user_agent"], "journey-test/1.0");
    assert_eq!(metadata.0["actor"], "user");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn snapshots_are_taken_and_give_the_same_answers(pool: PgPool) {
    let app = spawn_app_with(pool, |s| s.snapshot_every = 3).await;
    let mut user = app.signed_up().await;
    let session = app.sign_in_with_totp(&mut user).await;
    let snapshots: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshots")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(snapshots >= 1);
    let me: Value = app.me(&session).await.json().await.unwrap();
    assert_eq!(me["session"]["method"], "totp");
    assert_eq!(me["mfa"]["enrolled"], true);
    // The failure counter survives snapshots too: the fifth wrong password throttles.
    for _ in 0..4 {
        app.post(
            "/v1/login/password",
            json!({"email": user.email, "password": "wrong password here"}),
        )
        .await;
    }
    app.post(
        "/v1/login/password",
        json!({"email": user.email, "password": "wrong password here"}),
    )
    .await;
    let throttled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'SignInThrottled'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(throttled, 1);
}
