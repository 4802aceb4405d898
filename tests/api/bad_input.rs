//! Every bad input gets a clear 4xx problem, never a 5xx.
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn malformed_bodies_are_answered_with_problems(pool: PgPool) {
    let app = spawn_app(pool).await;
    let raw = |body: &'static str| {
        app.client
            .post(app.url("/v1/users"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_problem(
        raw("{not json").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed-body",
    )
    .await;
    let wrong_type = raw(r#"{"email": 42, "password": ["secret-in-an-array"]}"#)
        .await
        .unwrap();
    let problem =
        assert_problem(wrong_type, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;
    assert!(
        !problem.to_string().contains("secret-in-an-array"),
        "the value is not echoed"
    );
    let missing = assert_problem(
        raw(r#"{"email": "a@example.com"}"#).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-body",
    )
    .await;
    assert_eq!(missing["detail"], "missing field `password`");
    let unknown = raw(r#"{"email": "a@example.com", "password": "x", "admin": true}"#)
        .await
        .unwrap();
    assert_problem(unknown, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;

    let no_content_type = app
        .client
        .post(app.url("/v1/users"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(
        no_content_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;

    let megabyte = format!(
        r#"{{"email": "a@example.com", "password": "{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    let large = app
        .client
        .post(app.url("/v1/login/password"))
        .header("content-type", "application/json")
        .body(megabyte)
        .send()
        .await
        .unwrap();
    assert_problem(large, StatusCode::PAYLOAD_TOO_LARGE, "body-too-large").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn invalid_fields_are_answered_with_problems(pool: PgPool) {
    let app = spawn_app(pool).await;
    let invalid_email = app
        .post(
            "/v1/users",
            json!({"email": "not-an-email", "password": PASSWORD}),
        )
        .await;
    assert_problem(
        invalid_email,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-email",
    )
    .await;

    let weak = app
        .post(
            "/v1/users",
            json!({"email": unique_email(), "password": "password1"}),
        )
        .await;
    let problem = assert_problem(
        weak,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unacceptable-password",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("too easy to guess"),
        "{problem}"
    );

    let short = app
        .post(
            "/v1/users",
            json!({"email": unique_email(), "password": "Xq7#"}),
        )
        .await;
    assert_problem(
        short,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unacceptable-password",
    )
    .await;

    let user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    let letters = app
        .post(
            "/v1/login/totp",
            json!({"login_token": login["login_token"], "code": "12a456"}),
        )
        .await;
    assert_problem(
        letters,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-code-format",
    )
    .await;
    let bad_recovery = app
        .post(
            "/v1/login/recovery-code",
            json!({"login_token": login["login_token"], "code": "nope"}),
        )
        .await;
    assert_problem(
        bad_recovery,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-code-format",
    )
    .await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn tokens_are_refused_when_tampered_with_or_of_the_wrong_kind(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    let login_token = login["login_token"].as_str().unwrap().to_owned();

    // A login token is not a session.
    assert_problem(
        app.me(&login_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    // A session is not a login token.
    let code = user.device.next_code().await;
    let as_login = app
        .post(
            "/v1/login/totp",
            json!({"login_token": user.session_token, "code": code}),
        )
        .await;
    assert_problem(as_login, StatusCode::UNAUTHORIZED, "invalid-login-token").await;

    // One changed character breaks the MAC.
    let mut tampered = user.session_token.clone().into_bytes();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_problem(
        app.me(&tampered).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    let tampered_login = format!("{}x", &login_token[..login_token.len() - 1]);
    let response = app
        .post(
            "/v1/login/totp",
            json!({"login_token": tampered_login, "code": "123456"}),
        )
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid-login-token").await;

    // No header, or another scheme.
    let bare = app.client.get(app.url("/v1/me")).send().await.unwrap();
    assert_problem(bare, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let basic = app
        .client
        .get(app.url("/v1/me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_problem(basic, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // A link token must be a link token.
    let redeem = app
        .post("/v1/login/email-link/redeem", json!({"token": login_token}))
        .await;
    assert_problem(redeem, StatusCode::UNAUTHORIZED, "invalid-token").await;
    let page = app
        .client
        .get(app.url("/v1/login/email-link"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn unknown_email_and_wrong_password_answer_byte_for_byte_the_same(pool: PgPool) {
    let app = spawn_app(pool).await;
    let email = unique_email();
    app.register(&email).await;

    let wrong = app
        .post(
            "/v1/login/password",
            json!({"email": email, "password": "wrong password here"}),
        )
        .await;
    let unknown = app
        .post(
            "/v1/login/password",
            json!({"email": unique_email(), "password": "wrong password here"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status(), unknown.status());
    let strip = |r: &reqwest::Response| {
        let mut headers: Vec<(String, String)> = r
            .headers()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "date" | "x-request-id"))
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        headers.sort();
        headers
    };
    assert_eq!(strip(&wrong), strip(&unknown));
    assert_eq!(wrong.bytes().await.unwrap(), unknown.bytes().await.unwrap());
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn unknown_routes_and_methods_are_problems_too(pool: PgPool) {
    let app = spawn_app(pool).await;
    let missing = app
        .client
        .get(app.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_problem(missing, StatusCode::NOT_FOUND, "not-found").await;
    let method = app
        .client
        .delete(app.url("/v1/users"))
        .send()
        .await
        .unwrap();
    assert_problem(method, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
}
