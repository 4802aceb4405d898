//! One-time things raced by concurrent requests are used exactly once.
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn twenty_concurrent_submissions_of_one_totp_code_start_one_session(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    let code = user.device.next_code().await;
    let body = json!({"login_token": login["login_token"], "code": code});

    let statuses: Vec<StatusCode> =
        join_all((0..20).map(|_| app.post("/v1/login/totp", body.clone())))
            .await
            .into_iter()
            .map(|r| r.status())
            .collect();

    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'SessionStarted'",
    )
    .bind(app.user_id(&user.email).await.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(sessions, 2, "the enrollment session and exactly one more");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn twenty_concurrent_uses_of_one_recovery_code_sign_in_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    let body = json!({"login_token": login["login_token"], "code": user.recovery_code});

    let statuses: Vec<StatusCode> =
        join_all((0..20).map(|_| app.post("/v1/login/recovery-code", body.clone())))
            .await
            .into_iter()
            .map(|r| r.status())
            .collect();

    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    let used: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'RecoveryCodeUsed'",
    )
    .bind(app.user_id(&user.email).await.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(used, 1);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn ten_concurrent_registrations_of_one_email_answer_alike_and_mail_at_most_the_limit(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let email = unique_email();
    let body = json!({"email": email, "password": PASSWORD});

    let statuses: Vec<StatusCode> = join_all((0..10).map(|_| app.post("/v1/users", body.clone())))
        .await
        .into_iter()
        .map(|r| r.status())
        .collect();

    assert!(
        statuses.iter().all(|s| *s == StatusCode::ACCEPTED),
        "{statuses:?}"
    );
    // Each took its turn on the one stream: the first registered, the next
    // replaced the unverified registration, until the per-address limit of
    // verification mails silently dropped the rest.
    let links = app
        .references(app.user_id(&email).await, "EmailVerificationRequested")
        .await;
    assert_eq!(links.len(), 3);
    // Only the newest link verifies.
    let user = app.user_id(&email).await;
    let old = app
        .tokens
        .encode(TokenKind::EmailVerification, user, &links[0]);
    let newest = app
        .tokens
        .encode(TokenKind::EmailVerification, user, &links[2]);
    let refused = app
        .post(
            "/v1/users/verify",
            json!({"token": old, "password": PASSWORD}),
        )
        .await;
    assert_problem(refused, StatusCode::GONE, "email-verification-invalid").await;
    app.post_ok(
        "/v1/users/verify",
        json!({"token": newest, "password": PASSWORD}),
    )
    .await;
}
