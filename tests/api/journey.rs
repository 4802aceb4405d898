//! The user's journey over HTTP, as DESIGN section 1 tells it.
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_new_user_enrolls_signs_out_and_signs_in_again_with_totp(pool: PgPool) {
    let app = spawn_app(pool).await;
    let email = unique_email();
    app.register(&email).await;

    let login = app.password_step(&email).await;
    assert_eq!(login["next"], "enroll");
    // No recovery path before an authenticator: only the other kind of
    // first authenticator, a security key or passkey.
    assert_eq!(login["alternatives"], json!(["webauthn"]));
    assert!(login["login_token"]
        .as_str()
        .unwrap()
        .starts_with("al_login_"));

    let enrollment: Value = app
        .post(
            "/v1/login/enrollment",
            json!({"login_token": login["login_token"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let uri = enrollment["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/authledger:"), "{uri}");
    assert!(
        uri.contains("&issuer=authledger&algorithm=SHA1&digits=6&period=30"),
        "{uri}"
    );
    assert!(enrollment["qr_svg"].as_str().unwrap().contains("<svg"));
    assert_eq!(
        enrollment["secret"].as_str().unwrap().len(),
        32,
        "160 bits in unpadded base32"
    );

    let mut user = app
        .enroll(&email, login["login_token"].as_str().unwrap())
        .await;
    assert_eq!(user.recovery_code.len(), 29);

    let me: Value = app.me(&user.session_token).await.json().await.unwrap();
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["user_id"], app.user_id(&email).await.to_string());
    assert_eq!(me["mfa"]["enrolled"], true);
    assert!(me["mfa"]["enrolled_at"].is_string());
    assert_eq!(me["session"]["method"], "enrollment");
    assert_eq!(me["session"]["aal"], "aal2");

    let logout = app
        .post_with_session("/v1/logout", &user.session_token, None)
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.me(&user.session_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    let login = app.password_step(&email).await;
    assert_eq!(login["next"], "totp");
    assert_eq!(
        login["alternatives"],
        json!(["email_link", "recovery_code"])
    );
    let code = user.device.next_code().await;
    let session: Value = app
        .post(
            "/v1/login/totp",
            json!({"login_token": login["login_token"], "code": code}),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = session["session_token"].as_str().unwrap();
    assert!(token.starts_with("al_sess_"));
    let me: Value = app.me(token).await.json().await.unwrap();
    assert_eq!(me["session"]["method"], "totp");
    assert_eq!(me["session"]["aal"], "aal2");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_recovery_code_signs_in_once_and_is_replaced(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;

    let login = app.password_step(&user.email).await;
    let response = app
        .post(
            "/v1/login/recovery-code",
            json!({"login_token": login["login_token"], "code": user.recovery_code}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let signed_in: Value = response.json().await.unwrap();
    let replacement = signed_in["recovery_code"].as_str().unwrap();
    assert_ne!(replacement, user.recovery_code);
    let me: Value = app
        .me(signed_in["session_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["session"]["method"], "recovery_code");
    assert_eq!(me["session"]["aal"], "aal2");

    let login = app.password_step(&user.email).await;
    let reused = app
        .post(
            "/v1/login/recovery-code",
            json!({"login_token": login["login_token"], "code": user.recovery_code}),
        )
        .await;
    assert_problem(reused, StatusCode::UNAUTHORIZED, "invalid-code").await;

    let fresh = app
        .post(
            "/v1/login/recovery-code",
            json!({"login_token": login["login_token"], "code": replacement.to_lowercase()}),
        )
        .await;
    assert_eq!(fresh.status(), StatusCode::OK);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn resetting_mfa_signs_out_everywhere_and_the_next_sign_in_enrolls(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    let other_session = app.sign_in_with_totp(&mut user).await;

    let reset = app
        .post_with_session("/v1/me/mfa/reset", &user.session_token, None)
        .await;
    assert_eq!(reset.status(), StatusCode::OK);
    let reset: Value = reset.json().await.unwrap();
    assert_eq!(reset["sessions_ended"], 2);

    assert_problem(
        app.me(&user.session_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert_problem(
        app.me(&other_session).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    let login = app.password_step(&user.email).await;
    assert_eq!(login["next"], "enroll");
    let old_code = app
        .post(
            "/v1/login/recovery-code",
            json!({"login_token": login["login_token"], "code": user.recovery_code}),
        )
        .await;
    assert_problem(old_code, StatusCode::CONFLICT, "enrollment-required").await;
    let again = app
        .enroll(&user.email, login["login_token"].as_str().unwrap())
        .await;
    let me: Value = app.me(&again.session_token).await.json().await.unwrap();
    assert_eq!(me["mfa"]["enrolled"], true);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_enrolled_account_cannot_enroll_a_second_authenticator(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    let response = app
        .post(
            "/v1/login/enrollment",
            json!({"login_token": login["login_token"]}),
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT, "already-enrolled").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_reset_without_a_recent_sign_in_needs_the_password(pool: PgPool) {
    let app = spawn_app_with(pool, |s| s.policy.reauthentication_window_secs = 0).await;
    let user = app.signed_up().await;

    let bare = app
        .post_with_session("/v1/me/mfa/reset", &user.session_token, None)
        .await;
    assert_problem(bare, StatusCode::FORBIDDEN, "reauthentication-required").await;

    let wrong = app
        .post_with_session(
            "/v1/me/mfa/reset",
            &user.session_token,
            Some(json!({"password": "not it at all"})),
        )
        .await;
    assert_problem(wrong, StatusCode::FORBIDDEN, "reauthentication-failed").await;

    let right = app
        .post_with_session(
            "/v1/me/mfa/reset",
            &user.session_token,
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(right.status(), StatusCode::OK);
}
