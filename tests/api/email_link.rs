//! "Try another method → Email": the link is recorded; these tests derive
//! its token from the event with the server key, as the mail worker does.
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_email_link_signs_in_once_at_assurance_level_one(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let id = app.user_id(&user.email).await;
    let login = app.password_step(&user.email).await;

    let requested = app
        .post(
            "/v1/login/email-link",
            json!({"login_token": login["login_token"]}),
        )
        .await;
    assert_eq!(requested.status(), StatusCode::ACCEPTED);
    let links = app.email_link_references(id).await;
    assert_eq!(links.len(), 1);
    let token = app.link_token(id, &links[0]);

    // Opening the link (as a mail scanner would) spends nothing.
    for _ in 0..2 {
        let page = app
            .client
            .get(app.url("/v1/login/email-link"))
            .query(&[("token", &token)])
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()["referrer-policy"], "no-referrer");
        let html = page.text().await.unwrap();
        assert!(html.contains("action=\"/sign-in/email-link\""));
    }

    let redeemed = app
        .post("/v1/login/email-link/redeem", json!({"token": token}))
        .await;
    assert_eq!(redeemed.status(), StatusCode::OK);
    let session: Value = redeemed.json().await.unwrap();
    let me: Value = app
        .me(session["session_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["session"]["method"], "email_link");
    assert_eq!(me["session"]["aal"], "aal1");

    let again = app
        .post("/v1/login/email-link/redeem", json!({"token": token}))
        .await;
    assert_problem(again, StatusCode::GONE, "email-link-invalid").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_newer_link_voids_the_older_one(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let id = app.user_id(&user.email).await;
    let login = app.password_step(&user.email).await;
    for _ in 0..2 {
        app.post(
            "/v1/login/email-link",
            json!({"login_token": login["login_token"]}),
        )
        .await;
    }
    let links = app.email_link_references(id).await;
    assert_eq!(links.len(), 2);

    let old = app
        .post(
            "/v1/login/email-link/redeem",
            json!({"token": app.link_token(id, &links[0])}),
        )
        .await;
    assert_problem(old, StatusCode::GONE, "email-link-invalid").await;
    let new = app
        .post(
            "/v1/login/email-link/redeem",
            json!({"token": app.link_token(id, &links[1])}),
        )
        .await;
    assert_eq!(new.status(), StatusCode::OK);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_fourth_link_in_fifteen_minutes_gets_the_same_answer_and_no_link(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    for _ in 0..4 {
        let response = app
            .post(
                "/v1/login/email-link",
                json!({"login_token": login["login_token"]}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(
        app.email_link_references(app.user_id(&user.email).await)
            .await
            .len(),
        3
    );
}
