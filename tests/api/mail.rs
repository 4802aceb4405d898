//! The email pipeline: events → relay → RabbitMQ → worker → SMTP (MailDev).
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn try_another_method_email_mails_a_link_that_signs_in_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    let requested = app
        .post(
            "/v1/login/email-link",
            json!({"login_token": login["login_token"]}),
        )
        .await;
    assert_eq!(requested.status(), StatusCode::ACCEPTED);
    app.deliver_mail().await;

    let mails = wait_for_mails(&user.email, 2).await;
    let link_mails: Vec<&Value> = mails
        .iter()
        .filter(|m| m["subject"] == "Your sign-in link")
        .collect();
    assert_eq!(link_mails.len(), 1, "{mails:#?}");
    let link = link_in(link_mails[0]);
    assert!(
        link.starts_with("http://127.0.0.1:8080/v1/login/email-link?token=al_link_"),
        "{link}"
    );
    assert!(link_mails[0]["html"].as_str().unwrap().contains("al_link_"));

    // The mailed link, opened in a browser: the page, then its form.
    let path = link.trim_start_matches("http://127.0.0.1:8080");
    let page = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let token = link.split("token=").nth(1).unwrap();
    assert!(html.contains(token));
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

    let again = app
        .post("/v1/login/email-link/redeem", json!({"token": token}))
        .await;
    assert_problem(again, StatusCode::GONE, "email-link-invalid").await;
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_second_mailed_link_voids_the_first(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    for _ in 0..2 {
        app.post(
            "/v1/login/email-link",
            json!({"login_token": login["login_token"]}),
        )
        .await;
    }
    app.deliver_mail().await;
    let links: Vec<String> = wait_for_mails(&user.email, 3)
        .await
        .iter()
        .filter(|m| m["subject"] == "Your sign-in link")
        .map(link_in)
        .collect();
    assert_eq!(links.len(), 2);
    let token = |link: &String| link.split("token=").nth(1).unwrap().to_owned();
    let tokens: Vec<String> = links.iter().map(token).collect();
    // MailDev lists in arrival order; either way exactly one of them works.
    let first = app
        .post("/v1/login/email-link/redeem", json!({"token": tokens[0]}))
        .await
        .status();
    let second = app
        .post("/v1/login/email-link/redeem", json!({"token": tokens[1]}))
        .await
        .status();
    let mut statuses = [first, second];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::GONE]);
    app.remove_topology().await;
}
