//! The timed rules over HTTP, with the server's clock moved instead of
//! waiting: each limit holds up to its edge and not past it.
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_login_attempt_takes_no_code_after_five_minutes(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    app.clock
        .advance(Duration::minutes(5) + Duration::seconds(1));
    let code = user.device.next_code().await;
    let late = app
        .post(
            "/v1/login/totp",
            json!({"login_token": login["login_token"], "code": code}),
        )
        .await;
    assert_problem(late, StatusCode::UNAUTHORIZED, "login-attempt-invalid").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_wait_after_five_failures_ends_after_thirty_seconds(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    let wrong = json!({"login_token": login["login_token"], "code": "000000"});
    for _ in 0..5 {
        app.post("/v1/login/totp", wrong.clone()).await;
    }
    let password = json!({"email": user.email, "password": PASSWORD});
    app.clock.advance(Duration::seconds(29));
    let waiting = app.post("/v1/login/password", password.clone()).await;
    assert_problem(waiting, StatusCode::UNAUTHORIZED, "invalid-credentials").await;

    app.clock.advance(Duration::seconds(2));
    app.sign_in_with_totp(&mut user).await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_email_link_is_refused_after_fifteen_minutes(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let id = app.user_id(&user.email).await;
    let login = app.password_step(&user.email).await;
    app.post(
        "/v1/login/email-link",
        json!({"login_token": login["login_token"]}),
    )
    .await;
    let token = app.link_token(id, &app.email_link_references(id).await[0]);
    app.clock
        .advance(Duration::minutes(15) + Duration::seconds(1));
    let late = app
        .post("/v1/login/email-link/redeem", json!({"token": token}))
        .await;
    assert_problem(late, StatusCode::GONE, "email-link-invalid").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_session_ends_after_an_hour_idle_but_use_keeps_it_until_twelve_hours(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    // Used every 50 minutes, it outlives the idle hour, until its twelve
    // hours are up: the fifteenth use is at 12h30.
    for use_ in 1..=14 {
        app.clock.advance(Duration::minutes(50));
        let me = app.me(&user.session_token).await;
        assert_eq!(me.status(), StatusCode::OK, "use {use_}");
    }
    app.clock.advance(Duration::minutes(50));
    assert_problem(
        app.me(&user.session_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    let other = app.signed_up().await;
    app.clock.advance(Duration::minutes(61));
    assert_problem(
        app.me(&other.session_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_reset_needs_the_password_once_the_session_is_fifteen_minutes_old(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    app.clock
        .advance(Duration::minutes(15) + Duration::seconds(1));
    let bare = app
        .post_with_session("/v1/me/mfa/reset", &user.session_token, None)
        .await;
    assert_problem(bare, StatusCode::FORBIDDEN, "reauthentication-required").await;
    let with_password = app
        .post_with_session(
            "/v1/me/mfa/reset",
            &user.session_token,
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(with_password.status(), StatusCode::OK);
}

/// The same limits on the real clock, end to end, shortened to a second:
/// the one place a test waits, so the system clock's path is covered too.
#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn on_the_real_clock_attempts_links_and_idle_sessions_expire(pool: PgPool) {
    let app = spawn_app_with(pool, |config| {
        config.policy.login_attempt_ttl_secs = 1;
        config.policy.email_link_ttl_secs = 1;
        config.policy.session_idle_secs = 1;
    })
    .await;
    let mut user = app.signed_up().await;
    let id = app.user_id(&user.email).await;
    let login = app.password_step(&user.email).await;
    app.post(
        "/v1/login/email-link",
        json!({"login_token": login["login_token"]}),
    )
    .await;
    let link = app.link_token(id, &app.email_link_references(id).await[0]);

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let code = user.device.next_code().await;
    let totp = app
        .post(
            "/v1/login/totp",
            json!({"login_token": login["login_token"], "code": code}),
        )
        .await;
    assert_problem(totp, StatusCode::UNAUTHORIZED, "login-attempt-invalid").await;
    let redeem = app
        .post("/v1/login/email-link/redeem", json!({"token": link}))
        .await;
    assert_problem(redeem, StatusCode::GONE, "email-link-invalid").await;
    assert_problem(
        app.me(&user.session_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
}
