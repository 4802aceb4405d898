//! A user's own sessions, and session introspection by a relying app:
//! against the real server and Postgres.
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

pub const CLIENT_TOKEN: &str = "client-token-for-tests-0123456789";

fn with_client(config: &mut authledger::config::Config) {
    config.client_tokens = vec![CLIENT_TOKEN.into()];
    config.limits.rate_password_per_minute = 0;
    config.limits.rate_session_per_minute = 0;
}

async fn sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app.get_with("/v1/me/sessions", token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["sessions"].as_array().unwrap().clone()
}

pub async fn introspect(app: &TestApp, client: Option<&str>, token: &str) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/v1/introspect"))
        .form(&[("token", token)]);
    if let Some(client) = client {
        request = request.bearer_auth(client);
    }
    request.send().await.unwrap()
}

pub async fn active(app: &TestApp, token: &str) -> Value {
    let response = introspect(app, Some(CLIENT_TOKEN), token).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_list_shows_exactly_the_live_sessions_and_how_each_was_won(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, with_client).await;
    let mut user = app.signed_up().await;
    let by_totp = app.sign_in_with_totp(&mut user).await;
    let by_link = app.sign_in_with_email_link(&user.email).await;
    // A recovery code signs in too, and is replaced.
    let login = app.password_step(&user.email).await;
    let recovered = app
        .post_ok(
            "/v1/login/recovery-code",
            json!({"login_token": login["login_token"], "code": user.recovery_code}),
        )
        .await;
    let by_code = recovered["session_token"].as_str().unwrap().to_owned();
    let logged_out = app.sign_in_with_totp(&mut user).await;
    let out = app.post_with_session("/v1/logout", &logged_out, None).await;
    assert!(out.status().is_success());

    let listed = sessions(&app, &by_totp).await;
    let methods: Vec<&str> = listed
        .iter()
        .map(|s| s["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        ["enrollment", "totp", "email_link", "recovery_code"],
        "{listed:#?}"
    );
    let current: Vec<&Value> = listed.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["method"], "totp");
    assert_eq!(listed[2]["aal"], "aal1");
    for session in &listed {
        assert_eq!(session["ip"], "127.0.0.1");
        assert!(session["browser"].is_string());
        assert!(session["last_active_at"].is_string());
    }
    // Another session sees itself as the current one.
    let from_code = sessions(&app, &by_code).await;
    let current = from_code.iter().find(|s| s["current"] == true).unwrap();
    assert_eq!(current["method"], "recovery_code");
    let _ = by_link;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn ending_a_session_voids_its_token_at_once_for_the_api_and_introspection(
    pool: sqlx::PgPool,
) {
    let app = spawn_app_with(pool, with_client).await;
    let mut user = app.signed_up().await;
    let other = app.sign_in_with_totp(&mut user).await;
    assert_eq!(active(&app, &other).await["active"], true);
    let listed = sessions(&app, &user.session_token).await;
    let id = listed.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let ended = app
        .client
        .delete(app.url(&format!("/v1/me/sessions/{id}")))
        .bearer_auth(&user.session_token)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.me(&other).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(active(&app, &other).await, json!({"active": false}));
    assert_eq!(sessions(&app, &user.session_token).await.len(), 1);

    // Once is all: the same id again, a made-up one and a malformed one.
    for id in [id.as_str(), "00000000000000000000000000000000", "not-an-id"] {
        let again = app
            .client
            .delete(app.url(&format!("/v1/me/sessions/{id}")))
            .bearer_auth(&user.session_token)
            .send()
            .await
            .unwrap();
        assert_problem(again, StatusCode::NOT_FOUND, "unknown-session").await;
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn signing_out_everywhere_else_keeps_only_the_asking_session(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, with_client).await;
    let mut user = app.signed_up().await;
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(app.sign_in_with_totp(&mut user).await);
    }
    let keep = others.pop().unwrap();
    let ended = app
        .post_with_session("/v1/me/sessions/end-others", &keep, None)
        .await;
    assert_eq!(ended.status(), StatusCode::OK);
    let ended: Value = ended.json().await.unwrap();
    assert_eq!(ended["sessions_ended"], 3);
    assert_eq!(app.me(&keep).await.status(), StatusCode::OK);
    for token in others.iter().chain([&user.session_token]) {
        assert_eq!(app.me(token).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(active(&app, token).await["active"], false);
    }
    let listed = sessions(&app, &keep).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["current"], true);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_session_won_by_mail_alone_cannot_end_the_others(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, with_client).await;
    let user = app.signed_up().await;
    let by_link = app.sign_in_with_email_link(&user.email).await;
    let refused = app
        .post_with_session("/v1/me/sessions/end-others", &by_link, None)
        .await;
    assert_problem(refused, StatusCode::FORBIDDEN, "second-factor-required").await;
    let listed = sessions(&app, &by_link).await;
    let owners = listed.iter().find(|s| s["current"] == false).unwrap();
    let refused = app
        .client
        .delete(app.url(&format!(
            "/v1/me/sessions/{}",
            owners["id"].as_str().unwrap()
        )))
        .bearer_auth(&by_link)
        .send()
        .await
        .unwrap();
    assert_problem(refused, StatusCode::FORBIDDEN, "second-factor-required").await;
    assert_eq!(app.me(&user.session_token).await.status(), StatusCode::OK);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn introspection_answers_only_a_client_credential(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, with_client).await;
    let user = app.signed_up().await;
    // No credential, a wrong one, the user's own token, staff tokens.
    for client in [
        None,
        Some("not-a-client"),
        Some(user.session_token.as_str()),
        Some(ADMIN_TOKEN),
        Some(AUDITOR_TOKEN),
    ] {
        let response = introspect(&app, client, &user.session_token).await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "invalid-client").await;
    }
    let response = app
        .client
        .post(app.url("/v1/introspect"))
        .bearer_auth(CLIENT_TOKEN)
        .form(&[("nothing", "here")])
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;

    let answer = active(&app, &user.session_token).await;
    let user_id = app.user_id(&user.email).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["sub"], user_id.to_string());
    assert_eq!(answer["aal"], "aal2");
    assert_eq!(answer["method"], "enrollment");
    assert_eq!(answer["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(answer["token_type"], "session");
    assert!(answer["exp"].as_i64().unwrap() > answer["iat"].as_i64().unwrap());
    assert_eq!(answer["auth_time"], answer["iat"]);
    // Nothing that is not a live session token is active, and nothing
    // about why.
    for token in [
        "",
        "al_sess_garbage",
        "al_login_x",
        user.recovery_code.as_str(),
    ] {
        assert_eq!(active(&app, token).await, json!({"active": false}));
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn every_way_a_session_ends_makes_its_introspection_inactive(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, with_client).await;
    // Expired: idle past the timeout.
    let idle = app.signed_up().await;
    app.clock.advance(chrono::Duration::seconds(
        app.config.policy.session_idle_secs + 1,
    ));
    assert_eq!(active(&app, &idle.session_token).await["active"], false);

    // Ended by its user.
    let mut user = app.signed_up().await;
    let token = app.sign_in_with_totp(&mut user).await;
    app.post_with_session("/v1/logout", &token, None).await;
    assert_eq!(active(&app, &token).await["active"], false);

    // Reset: the MFA reset ends every session.
    let token = app.sign_in_with_totp(&mut user).await;
    let reset = app
        .post_with_session("/v1/me/mfa/reset", &token, None)
        .await;
    assert!(reset.status().is_success());
    assert_eq!(active(&app, &token).await["active"], false);

    // Suspended by an administrator.
    let suspended = app.signed_up().await;
    assert_eq!(active(&app, &suspended.session_token).await["active"], true);
    let response = app
        .admin_post(
            &format!("/v1/admin/users/{}/suspend", suspended.email),
            "left the company",
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        active(&app, &suspended.session_token).await["active"],
        false
    );

    // Erased.
    let erased = app.signed_up().await;
    let response = app
        .admin_post(
            &format!("/v1/admin/users/{}/erase", erased.email),
            "asked by letter",
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        active(&app, &erased.session_token).await,
        json!({"active": false})
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn twenty_introspections_at_once_all_answer_and_record_one_activity(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool.clone(), with_client).await;
    let user = app.signed_up().await;
    app.clock.advance(chrono::Duration::minutes(10));
    let answers = join_all((0..20).map(|_| active(&app, &user.session_token))).await;
    assert!(answers.iter().all(|a| a["active"] == true));
    let user_id = app.user_id(&user.email).await;
    let activities: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'SessionActive'",
    )
    .bind(user_id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(activities, 1);
}

/// The session ids `live_sessions` holds for `user`, sorted.
async fn rows(pool: &sqlx::PgPool, user: uuid::Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT session FROM live_sessions WHERE user_id = $1 ORDER BY session")
        .bind(user)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The ids of `user`'s live sessions as the account itself says.
async fn from_the_account(app: &TestApp, user: uuid::Uuid) -> Vec<String> {
    let page: Value = app
        .get_with(&format!("/v1/admin/users/{user}"), ADMIN_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    let mut ids: Vec<String> = page["sessions"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| s["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_table_introspection_reads_holds_exactly_the_accounts_live_sessions(
    pool: sqlx::PgPool,
) {
    let app = spawn_app_with(pool.clone(), with_client).await;
    let mut kept = app.signed_up().await;
    let ended = app.sign_in_with_totp(&mut kept).await;
    app.post_with_session("/v1/logout", &ended, None).await;
    app.sign_in_with_email_link(&kept.email).await;
    let mut suspended = app.signed_up().await;
    app.sign_in_with_totp(&mut suspended).await;
    let response = app
        .admin_post(
            &format!("/v1/admin/users/{}/suspend", suspended.email),
            "inquiry",
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let kept_id = app.user_id(&kept.email).await;
    let suspended_id = app.user_id(&suspended.email).await;
    assert_eq!(rows(&pool, kept_id).await.len(), 2);
    assert_eq!(
        rows(&pool, kept_id).await,
        from_the_account(&app, kept_id).await
    );
    assert!(rows(&pool, suspended_id).await.is_empty());

    // What the migration folds from the log for a database that had
    // sessions before the table existed is what the trigger kept.
    let migration = include_str!("../../migrations/0008_live_sessions.sql");
    let backfill = &migration[migration
        .find("INSERT INTO live_sessions (user_id, session, method, aal, started_at, expires_at, last_active_at)\nSELECT")
        .unwrap()..];
    let kept_rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT session, method, aal FROM live_sessions ORDER BY user_id, session")
            .fetch_all(&pool)
            .await
            .unwrap();
    sqlx::query("DELETE FROM live_sessions")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(backfill).execute(&pool).await.unwrap();
    let folded: Vec<(String, String, String)> =
        sqlx::query_as("SELECT session, method, aal FROM live_sessions ORDER BY user_id, session")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(folded, kept_rows);

    // Erased: nothing is left.
    let response = app
        .admin_post(&format!("/v1/admin/users/{}/erase", kept.email), "asked")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(rows(&pool, kept_id).await.is_empty());
}
