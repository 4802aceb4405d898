//! The operators' API against the real server and Postgres: finding
//! accounts, one account's page, and the actions on it, suspension first.
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;
use crate::sessions::{active, CLIENT_TOKEN};

fn configured(config: &mut authledger::config::Config) {
    config.client_tokens = vec![CLIENT_TOKEN.into()];
    config.limits.rate_password_per_minute = 0;
    config.limits.rate_session_per_minute = 0;
}

async fn listed(app: &TestApp, query: &str, token: &str) -> Value {
    let response = app
        .get_with(&format!("/v1/admin/users?{query}"), token)
        .await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn addresses(page: &Value) -> Vec<String> {
    page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn operators_find_accounts_by_whole_address_by_its_start_and_by_state(pool: PgPool) {
    let app = spawn_app_with(pool, configured).await;
    let tag = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let address = |name: &str| format!("Ops-{tag}-{name}@example.com");
    let signed_up = |name: &'static str| {
        let app = &app;
        let email = address(name);
        async move {
            app.register(&email).await;
            let login = app.password_step(&email).await;
            app.enroll(&email, login["login_token"].as_str().unwrap())
                .await
        }
    };
    let fine = signed_up("fine").await;
    app.register_unverified(&address("unconfirmed"), PASSWORD)
        .await;
    let suspended = signed_up("suspended").await;
    let throttled = signed_up("throttled").await;
    let suspend = format!("/v1/admin/users/{}/suspend", suspended.email);
    assert_eq!(
        app.admin_post(&suspend, "left").await.status(),
        StatusCode::OK
    );
    for _ in 0..5 {
        app.post(
            "/v1/login/password",
            json!({"email": throttled.email, "password": "not the password"}),
        )
        .await;
    }
    app.project_users().await;

    let prefix = format!("prefix=ops-{tag}");
    let everyone = listed(&app, &prefix, ADMIN_TOKEN).await;
    let mut all = addresses(&everyone);
    all.sort();
    let mut expected: Vec<String> = ["fine", "suspended", "throttled", "unconfirmed"]
        .iter()
        .map(|n| address(n).to_lowercase())
        .collect();
    expected.sort();
    assert_eq!(all, expected, "addresses are kept as typed, lowercased");
    for (filter, name) in [
        ("suspended", "suspended"),
        ("locked", "throttled"),
        ("unverified", "unconfirmed"),
        ("no-authenticator", "unconfirmed"),
    ] {
        let page = listed(&app, &format!("{prefix}&filter={filter}"), AUDITOR_TOKEN).await;
        assert_eq!(addresses(&page), [address(name).to_lowercase()], "{filter}");
    }
    let page = listed(&app, &format!("{prefix}&filter=suspended"), ADMIN_TOKEN).await;
    assert!(page["users"][0]["suspended_at"].is_string());

    let exact = listed(&app, &format!("email={}", fine.email), ADMIN_TOKEN).await;
    assert_eq!(addresses(&exact), [fine.email.to_lowercase()]);
    let nobody = listed(&app, "email=nobody-here@example.com", ADMIN_TOKEN).await;
    assert!(addresses(&nobody).is_empty());

    // Pages of two, newest first, end to end without a repeat.
    let first = listed(&app, &format!("{prefix}&limit=2"), ADMIN_TOKEN).await;
    let next = first["next"].as_str().unwrap();
    let second = listed(&app, &format!("{prefix}&limit=2&after={next}"), ADMIN_TOKEN).await;
    assert!(second.get("next").is_none());
    let mut paged = addresses(&first);
    paged.extend(addresses(&second));
    let mut newest_first = addresses(&everyone);
    assert_eq!(paged, newest_first);
    newest_first.dedup();
    assert_eq!(newest_first.len(), 4);

    // Who may ask, and what a bad question answers.
    let anonymous = app
        .client
        .get(app.url("/v1/admin/users"))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    for token in [fine.session_token.as_str(), CLIENT_TOKEN] {
        let refused = app.get_with("/v1/admin/users", token).await;
        assert_problem(refused, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    for query in ["filter=deleted", "limit=0", "limit=201", "after=nonsense"] {
        let refused = app
            .get_with(&format!("/v1/admin/users?{query}"), ADMIN_TOKEN)
            .await;
        assert_problem(refused, StatusCode::BAD_REQUEST, "invalid-query").await;
    }
    let refused = app
        .get_with("/v1/admin/users?email=not-an-address", ADMIN_TOKEN)
        .await;
    assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid-email").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_suspended_account_signs_in_by_no_route_until_it_is_reactivated(pool: PgPool) {
    let app = spawn_app_with(pool, configured).await;
    let mut user = app.signed_up().await;
    let user_id = app.user_id(&user.email).await;
    // An attempt opened and a link mailed before the suspension.
    let open = app.password_step(&user.email).await;
    let requested = app
        .post(
            "/v1/login/email-link",
            json!({"login_token": open["login_token"]}),
        )
        .await;
    assert_eq!(requested.status(), StatusCode::ACCEPTED);
    let link = app
        .newest_link(&user.email, "EmailLinkRequested", TokenKind::EmailLink)
        .await;

    let suspend = format!("/v1/admin/users/{}/suspend", user.email);
    let done: Value = app
        .admin_post(&suspend, "fraud inquiry")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["sessions_ended"], 1);
    let again = app.admin_post(&suspend, "twice").await;
    assert_problem(again, StatusCode::CONFLICT, "already-suspended").await;

    assert_eq!(
        app.me(&user.session_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let password = app
        .post(
            "/v1/login/password",
            json!({"email": user.email, "password": PASSWORD}),
        )
        .await;
    assert_problem(password, StatusCode::UNAUTHORIZED, "invalid-credentials").await;
    let code = user.device.next_code().await;
    let totp = app
        .post(
            "/v1/login/totp",
            json!({"login_token": open["login_token"], "code": code}),
        )
        .await;
    assert!(totp.status().is_client_error());
    assert!(app
        .post("/v1/login/email-link/redeem", json!({"token": link}))
        .await
        .status()
        .is_client_error());
    let resets_before = app
        .references(user_id, "PasswordResetRequested")
        .await
        .len();
    let forgot = app
        .post("/v1/password/forgot", json!({"email": user.email}))
        .await;
    assert_eq!(forgot.status(), StatusCode::ACCEPTED);
    assert_eq!(
        app.references(user_id, "PasswordResetRequested")
            .await
            .len(),
        resets_before,
        "no reset link for a suspended account"
    );
    // Failures while suspended count for nothing.
    let state: Value = app
        .get_with(&format!("/v1/admin/users/{user_id}"), AUDITOR_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(state["state"]["suspended"], true);
    assert_eq!(state["state"]["consecutive_failures"], 0);

    let reactivate = format!("/v1/admin/users/{}/reactivate", user.email);
    assert_eq!(
        app.admin_post(&reactivate, "cleared").await.status(),
        StatusCode::OK
    );
    let again = app.admin_post(&reactivate, "twice").await;
    assert_problem(again, StatusCode::CONFLICT, "not-suspended").await;
    let token = app.sign_in_with_totp(&mut user).await;
    assert_eq!(active(&app, &token).await["active"], true);

    let history = app.audit_events(user_id).await;
    let suspended = history
        .iter()
        .find(|e| e["type"] == "AccountSuspended")
        .unwrap();
    assert_eq!(suspended["payload"]["reason"], "fraud inquiry");
    assert!(suspended["actor"].as_str().unwrap().starts_with("admin:"));
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_administrator_ends_every_session_and_mails_a_confirmation_again(pool: PgPool) {
    let app = spawn_app_with(pool, configured).await;
    let mut user = app.signed_up().await;
    let second = app.sign_in_with_totp(&mut user).await;
    let end = format!("/v1/admin/users/{}/sessions/end", user.email);
    let done: Value = app
        .admin_post(&end, "laptop stolen")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["sessions_ended"], 2);
    for token in [&user.session_token, &second] {
        assert_eq!(active(&app, token).await["active"], false);
    }
    let none_left: Value = app.admin_post(&end, "again").await.json().await.unwrap();
    assert_eq!(none_left["sessions_ended"], 0);
    let user_id = app.user_id(&user.email).await;
    let history = app.audit_events(user_id).await;
    let recorded: Vec<&Value> = history
        .iter()
        .filter(|e| e["type"] == "SessionsEndedByAdmin")
        .collect();
    assert_eq!(recorded.len(), 1, "nothing recorded when nothing ended");
    assert_eq!(recorded[0]["payload"]["reason"], "laptop stolen");

    let resend = format!("/v1/admin/users/{}/verification/resend", user.email);
    let refused = app.admin_post(&resend, "asked").await;
    assert_problem(refused, StatusCode::CONFLICT, "already-verified").await;
    let unconfirmed = unique_email();
    app.register_unverified(&unconfirmed, PASSWORD).await;
    let resend = format!("/v1/admin/users/{unconfirmed}/verification/resend");
    assert_eq!(
        app.admin_post(&resend, "mail went to spam").await.status(),
        StatusCode::OK
    );
    let id = app.user_id(&unconfirmed).await;
    assert_eq!(
        app.references(id, "EmailVerificationRequested").await.len(),
        2
    );
    // The limit of verification mails holds for administrators too.
    assert_eq!(
        app.admin_post(&resend, "again").await.status(),
        StatusCode::OK
    );
    let over = app.admin_post(&resend, "and again").await;
    assert_problem(
        over,
        StatusCode::TOO_MANY_REQUESTS,
        "verification-mails-exhausted",
    )
    .await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn auditors_read_the_operators_pages_but_cannot_act(pool: PgPool) {
    let app = spawn_app_with(pool, configured).await;
    let user = app.signed_up().await;
    let page = app
        .get_with(&format!("/v1/admin/users/{}", user.email), AUDITOR_TOKEN)
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let page: Value = page.json().await.unwrap();
    assert_eq!(page["email"], user.email.to_lowercase());
    assert_eq!(page["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(page["sessions"][0]["ip"], "127.0.0.1");
    let recent = page["recent_events"].as_array().unwrap();
    let sequences: Vec<i64> = recent
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] > w[1]),
        "newest first: {sequences:?}"
    );
    assert!(recent.iter().any(|e| e["type"] == "SessionStarted"));

    for action in [
        "suspend",
        "reactivate",
        "sessions/end",
        "verification/resend",
        "unlock",
        "mfa/reset",
        "erase",
    ] {
        let refused = app
            .client
            .post(app.url(&format!("/v1/admin/users/{}/{action}", user.email)))
            .bearer_auth(AUDITOR_TOKEN)
            .json(&json!({"reason": "curious"}))
            .send()
            .await
            .unwrap();
        assert_problem(refused, StatusCode::FORBIDDEN, "forbidden").await;
        let no_reason = app
            .client
            .post(app.url(&format!("/v1/admin/users/{}/{action}", user.email)))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"reason": ""}))
            .send()
            .await
            .unwrap();
        assert_problem(
            no_reason,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-reason",
        )
        .await;
    }
    assert_eq!(active(&app, &user.session_token).await["active"], true);
    let unknown = app
        .get_with(&format!("/v1/admin/users/{}", Uuid::new_v4()), ADMIN_TOKEN)
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "unknown-user").await;
}
