//! Throttling over HTTP: after a correct password, second-factor answers say
//! when to retry; at the password step a throttled account looks like a
//! wrong password.
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_fifth_wrong_code_ends_the_attempt_and_says_when_to_sign_in_again(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    let wrong = json!({"login_token": login["login_token"], "code": "000000"});
    for _ in 0..4 {
        let response = app.post("/v1/login/totp", wrong.clone()).await;
        // A six-zero code is right once in a million; then this test is wrong too.
        assert_problem(response, StatusCode::UNAUTHORIZED, "invalid-code").await;
    }
    let fifth = app.post("/v1/login/totp", wrong.clone()).await;
    let retry_after: u64 = fifth.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_problem(fifth, StatusCode::UNAUTHORIZED, "login-attempt-exhausted").await;

    // The attempt is over: even the right code is refused in it.
    let code = user.device.next_code().await;
    let right = app
        .post(
            "/v1/login/totp",
            json!({"login_token": login["login_token"], "code": code}),
        )
        .await;
    assert_problem(right, StatusCode::UNAUTHORIZED, "login-attempt-invalid").await;

    // The throttled account's right password now looks like a wrong one.
    let password = app
        .post(
            "/v1/login/password",
            json!({"email": user.email, "password": PASSWORD}),
        )
        .await;
    assert_problem(password, StatusCode::UNAUTHORIZED, "invalid-credentials").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_wait_inside_a_live_attempt_answers_429_with_retry_after(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    // Three failures in one attempt, two in the next: the fifth
    // consecutive failure brings a wait while the second attempt can
    // still take a code.
    for wrong_codes in [3, 2] {
        let login = app.password_step(&user.email).await;
        let wrong = json!({"login_token": login["login_token"], "code": "000000"});
        for i in 1..=wrong_codes {
            let response = app.post("/v1/login/totp", wrong.clone()).await;
            if wrong_codes == 2 && i == 2 {
                let retry_after: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=30).contains(&retry_after), "{retry_after}");
                assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "throttled").await;
            } else {
                assert_problem(response, StatusCode::UNAUTHORIZED, "invalid-code").await;
            }
        }
    }
}
