//! Each user's security timeline, "this wasn't me" from it and from the
//! link of a new-device notice, and the notice itself: against the real
//! server, Postgres, RabbitMQ and MailDev.
use authledger::app::Caller;
use authledger::tokens::TokenKind;
use authledger_aggregates::Reference;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

const NEW_DEVICE: &str = "New sign-in to your account";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

fn no_rate_limits(config: &mut authledger::config::Config) {
    config.limits.rate_password_per_minute = 0;
    config.limits.rate_session_per_minute = 0;
    config.limits.rate_second_factor_per_minute = 0;
}

async fn activity(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app
        .get_with(&format!("/v1/me/activity{query}"), token)
        .await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn entries(app: &TestApp, token: &str) -> Vec<Value> {
    activity(app, token, "?limit=100").await["entries"]
        .as_array()
        .unwrap()
        .clone()
}

/// The newest entry of `kind`.
fn newest<'a>(entries: &'a [Value], kind: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {entries:#?}"))
}

async fn report(app: &TestApp, token: &str, sequence: &Value) -> reqwest::Response {
    app.post_with_session(&format!("/v1/me/activity/{sequence}/report"), token, None)
        .await
}

/// The report links the user's new-device notices carry, oldest first.
async fn report_links(app: &TestApp, user: Uuid) -> Vec<Reference> {
    let payloads: Vec<(sqlx::types::Json<Value>,)> = sqlx::query_as(
        "SELECT payload FROM events WHERE aggregate_id = $1
            AND event_type = 'SignedInFromNewDevice' ORDER BY sequence",
    )
    .bind(user.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    payloads
        .into_iter()
        .map(|(p,)| serde_json::from_value(p.0["SignedInFromNewDevice"]["report"].clone()).unwrap())
        .collect()
}

async fn count_events(app: &TestApp, user: Uuid, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = $2")
        .bind(user.to_string())
        .bind(event_type)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

fn browser(user_agent: &str) -> Caller {
    Caller {
        request_id: Uuid::new_v4().to_string(),
        client_request_id: None,
        client_ip: "10.0.0.1".into(),
        user_agent: user_agent.into(),
    }
}

/// Signs in as a browser holding the device cookie `device` would, through
/// the use cases the console runs; returns the session token.
async fn sign_in_from(app: &TestApp, user: &mut SignedIn, device: &str) -> String {
    let caller = browser(FIREFOX);
    let opened = app
        .app
        .submit_password(&caller, &user.email, PASSWORD, Some(device))
        .await
        .unwrap();
    let code = user.device.next_code().await;
    app.app
        .submit_totp(&caller, &opened.login_token, &code)
        .await
        .unwrap()
        .session_token
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_timeline_tells_the_accounts_own_events_newest_first_in_words_and_no_secret(
    pool: sqlx::PgPool,
) {
    let app = spawn_app_with(pool, no_rate_limits).await;
    let mut user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    let wrong = app
        .post(
            "/v1/login/totp",
            json!({"login_token": login["login_token"], "code": "000000"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let requested = app
        .post(
            "/v1/login/email-link",
            json!({"login_token": login["login_token"]}),
        )
        .await;
    assert_eq!(requested.status(), StatusCode::ACCEPTED);
    let session = app.sign_in_with_totp(&mut user).await;

    let page = activity(&app, &session, "").await;
    let text = page.to_string();
    let listed = page["entries"].as_array().unwrap();
    let kinds: Vec<&str> = listed.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "signed_in",
            "email_link_requested",
            "code_rejected",
            "signed_in",
            "recovery_code_issued",
            "authenticator_enrolled",
            "email_verified",
            "verification_requested",
            "registered",
        ],
        "{listed:#?}"
    );
    let sequences: Vec<i64> = listed
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] > w[1]), "{sequences:?}");
    let newest = &listed[0];
    assert_eq!(
        newest["summary"],
        "Signed in with a code from the authenticator app"
    );
    assert_eq!(newest["ip"], "127.0.0.1");
    assert!(newest["browser"].is_string());
    // The API keeps no device cookie: every sign-in but the first is new.
    assert_eq!(newest["new_device"], true);
    assert_eq!(
        listed[3]["new_device"], false,
        "the account's first sign-in"
    );
    assert_eq!(newest["reportable"], true);
    assert_eq!(listed[2]["summary"], "A wrong code was entered");
    assert_eq!(listed[2]["reportable"], false);
    // Nothing secret: no token, hash, sealed value or recovery code.
    for secret in [
        "al_",
        "sealed",
        "ciphertext",
        "argon2",
        "nonce",
        user.recovery_code.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(page.get("next_before").is_none());
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_timeline_pages_from_the_newest_with_a_cursor(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, no_rate_limits).await;
    let mut user = app.signed_up().await;
    for _ in 0..3 {
        app.sign_in_with_totp(&mut user).await;
    }
    let session = app.sign_in_with_totp(&mut user).await;
    let whole = entries(&app, &session).await;
    let mut paged = Vec::new();
    let mut query = "?limit=3".to_owned();
    loop {
        let page = activity(&app, &session, &query).await;
        let got = page["entries"].as_array().unwrap();
        assert!(got.len() <= 3);
        paged.extend(got.iter().map(|e| e["sequence"].clone()));
        match page["next_before"].as_i64() {
            Some(before) => query = format!("?limit=3&before={before}"),
            None => break,
        }
    }
    let expected: Vec<Value> = whole.iter().map(|e| e["sequence"].clone()).collect();
    assert_eq!(paged, expected);
    for bad in ["?limit=0", "?limit=101", "?before=0", "?after=3"] {
        let response = app
            .get_with(&format!("/v1/me/activity{bad}"), &session)
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid-query").await;
    }
    let response = app
        .client
        .get(app.url("/v1/me/activity"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn this_wasnt_me_ends_every_session_cancels_a_waiting_reset_and_flags_the_account(
    pool: sqlx::PgPool,
) {
    let app = spawn_app_with(pool, no_rate_limits).await;
    let mut user = app.signed_up().await;
    let mine = app.sign_in_with_totp(&mut user).await;
    // Someone with the password and the inbox asks for a reset.
    let theirs = app.sign_in_with_email_link(&user.email).await;
    let asked = app
        .post_session_json("/v1/me/mfa/reset", &theirs, json!({}))
        .await;
    assert_eq!(
        asked.status(),
        StatusCode::ACCEPTED,
        "{}",
        asked.text().await.unwrap()
    );

    // And they have a change of address on its way to their mailbox.
    let moved = app
        .post_session_json(
            "/v1/me/email",
            &mine,
            json!({"email": unique_email(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(moved.status(), StatusCode::ACCEPTED);
    let change = app
        .newest_link(&user.email, "EmailChangeRequested", TokenKind::EmailChange)
        .await;

    let listed = entries(&app, &mine).await;
    let their_sign_in = listed
        .iter()
        .find(|e| e["summary"] == "Signed in with an email link")
        .unwrap();
    // Not from their session: a mailbox alone does not sign the owner out.
    let refused = report(&app, &theirs, &their_sign_in["sequence"]).await;
    assert_problem(refused, StatusCode::FORBIDDEN, "second-factor-required").await;
    let done = report(&app, &mine, &their_sign_in["sequence"]).await;
    assert_eq!(done.status(), StatusCode::OK);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["sessions_ended"], 3, "enrollment, mine and theirs");
    assert_eq!(done["reset_cancelled"], true);
    for token in [&mine, &theirs, &user.session_token] {
        assert_eq!(app.me(token).await.status(), StatusCode::UNAUTHORIZED);
    }
    // What was on its way to them is void.
    let confirmed = app
        .post("/v1/me/email/confirm", json!({"token": change}))
        .await;
    assert_problem(confirmed, StatusCode::GONE, "email-change-invalid").await;

    let user_id = app.user_id(&user.email).await;
    let state: Value = app
        .client
        .get(app.url(&format!("/v1/audit/users/{user_id}/state")))
        .bearer_auth(AUDITOR_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(state["pending_mfa_reset_at"].is_null(), "{state}");

    // The timeline says so and marks what was reported.
    let again = app.sign_in_with_totp(&mut user).await;
    let listed = entries(&app, &again).await;
    assert_eq!(
        newest(&listed, "reported")["summary"],
        "Activity was reported as not yours"
    );
    let reported = listed
        .iter()
        .find(|e| e["sequence"] == their_sign_in["sequence"])
        .unwrap();
    assert_eq!(reported["reported"], true);
    assert_eq!(reported["reportable"], false);

    // Operators see the flag, in the list's filter and on the account.
    app.project_users().await;
    let flagged: Value = app
        .client
        .get(app.url("/v1/admin/users?filter=reported"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users = flagged["users"].as_array().unwrap();
    assert_eq!(users.len(), 1, "{flagged}");
    assert_eq!(users[0]["user_id"], user_id.to_string());
    assert!(users[0]["reported_at"].is_string());
    let detail: Value = app
        .client
        .get(app.url(&format!("/v1/admin/users/{user_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(detail["reported_at"].is_string(), "{detail}");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn only_a_sign_in_or_a_change_of_the_account_is_reported_and_only_once(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, no_rate_limits).await;
    let mut user = app.signed_up().await;
    let other = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    app.post(
        "/v1/login/totp",
        json!({"login_token": login["login_token"], "code": "000000"}),
    )
    .await;
    let session = app.sign_in_with_totp(&mut user).await;
    let listed = entries(&app, &session).await;

    let wrong_code = &newest(&listed, "code_rejected")["sequence"];
    let refused = report(&app, &session, wrong_code).await;
    assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY, "not-reportable").await;
    for unknown in [json!(9999), json!(0), json!(-1)] {
        let refused = report(&app, &session, &unknown).await;
        assert_problem(refused, StatusCode::NOT_FOUND, "unknown-activity").await;
    }
    let refused = app
        .post_with_session("/v1/me/activity/nope/report", &session, None)
        .await;
    assert_problem(refused, StatusCode::NOT_FOUND, "unknown-activity").await;
    // Another account's sequence names this account's own event, if any:
    // a report never reaches across accounts.
    let enrolled = &newest(&listed, "authenticator_enrolled")["sequence"];
    assert_eq!(
        report(&app, &other.session_token, enrolled).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.me(&session).await.status(), StatusCode::OK);

    assert_eq!(
        report(&app, &session, enrolled).await.status(),
        StatusCode::OK
    );
    let again = app.sign_in_with_totp(&mut user).await;
    let refused = report(&app, &again, enrolled).await;
    assert_problem(refused, StatusCode::CONFLICT, "already-reported").await;
    let user_id = app.user_id(&user.email).await;
    assert_eq!(count_events(&app, user_id, "ReportedByUser").await, 1);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_sign_in_from_a_new_browser_is_mailed_with_a_link_that_reports_it_once(
    pool: sqlx::PgPool,
) {
    let app = spawn_app_with(pool, no_rate_limits).await;
    let mut user = app.signed_up().await;
    let theirs = sign_in_from(&app, &mut user, "a-browser-never-seen-here").await;
    app.deliver_mail().await;
    let mails = wait_for_mails(&user.email, 1).await;
    let notices: Vec<&Value> = mails
        .iter()
        .filter(|m| m["subject"] == NEW_DEVICE)
        .collect();
    assert_eq!(notices.len(), 1, "{mails:#?}");
    let text = notices[0]["text"].as_str().unwrap();
    assert!(
        text.contains("from IP address 10.0.0.1 (Firefox on Linux)"),
        "{text}"
    );
    let token = token_in(notices[0], "/v1/report?token=");
    assert!(token.starts_with("al_report_"));

    // Opening the link spends nothing; its page names the account.
    let page = app
        .client
        .get(app.url(&format!("/v1/report?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains(&user.email));
    assert_eq!(app.me(&theirs).await.status(), StatusCode::OK);

    let done = app.post_ok("/v1/report", json!({"token": token})).await;
    assert_eq!(done["sessions_ended"], 2);
    assert_eq!(app.me(&theirs).await.status(), StatusCode::UNAUTHORIZED);
    let replayed = app.post("/v1/report", json!({"token": token})).await;
    assert_problem(replayed, StatusCode::CONFLICT, "already-reported").await;
    let user_id = app.user_id(&user.email).await;
    assert_eq!(count_events(&app, user_id, "ReportedByUser").await, 1);
    // The timeline names the reported sign-in, which came from 10.0.0.1.
    let session = app.sign_in_with_totp(&mut user).await;
    let listed = entries(&app, &session).await;
    assert_eq!(
        newest(&listed, "reported")["summary"],
        "A sign-in was reported as not yours, with the link in its mail"
    );
    let reported = listed.iter().find(|e| e["reported"] == true).unwrap();
    assert_eq!(reported["ip"], "10.0.0.1");
    assert_eq!(reported["browser"], "Firefox on Linux");
    assert_eq!(reported["new_device"], true);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_known_browser_signs_in_without_a_notice(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, no_rate_limits).await;
    let mut user = app.signed_up().await;
    sign_in_from(&app, &mut user, "my-laptop").await;
    sign_in_from(&app, &mut user, "my-laptop").await;
    sign_in_from(&app, &mut user, "my-laptop").await;
    let user_id = app.user_id(&user.email).await;
    assert_eq!(
        count_events(&app, user_id, "SignedInFromNewDevice").await,
        1,
        "only the first sign-in from it"
    );
    app.deliver_mail().await;
    let mails = wait_for_mails(&user.email, 2).await;
    let notices = mails.iter().filter(|m| m["subject"] == NEW_DEVICE).count();
    assert_eq!(notices, 1, "{mails:#?}");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_api_client_that_keeps_its_device_token_signs_in_without_a_notice(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, no_rate_limits).await;
    let mut user = app.signed_up().await;
    let user_id = app.user_id(&user.email).await;
    let mut device = None;
    for _ in 0..3 {
        let mut body = json!({"email": user.email, "password": PASSWORD});
        if let Some(token) = &device {
            body["device_token"] = json!(token);
        }
        let login: Value = app.post_ok("/v1/login/password", body).await;
        let token = login["device_token"].as_str().unwrap().to_owned();
        if let Some(kept) = &device {
            assert_eq!(&token, kept, "the token sent is the one answered");
        }
        device = Some(token);
        let code = user.device.next_code().await;
        let signed = app
            .post(
                "/v1/login/totp",
                json!({"login_token": login["login_token"], "code": code}),
            )
            .await;
        assert_eq!(signed.status(), StatusCode::OK);
    }
    assert_eq!(
        count_events(&app, user_id, "SignedInFromNewDevice").await,
        1,
        "only the first sign-in with that token"
    );
    // A token this service did not make is refused, not ignored.
    for bad in ["short", &"x".repeat(43).replace('x', "!"), &"a".repeat(44)] {
        let refused = app
            .post(
                "/v1/login/password",
                json!({"email": user.email, "password": PASSWORD, "device_token": bad}),
            )
            .await;
        assert_problem(
            refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-device-token",
        )
        .await;
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn of_many_uses_of_one_report_link_at_once_exactly_one_takes_effect(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, no_rate_limits).await;
    let mut user = app.signed_up().await;
    app.sign_in_with_totp(&mut user).await;
    let user_id = app.user_id(&user.email).await;
    let link = *report_links(&app, user_id).await.last().unwrap();
    let token = app.tokens.encode(TokenKind::Report, user_id, &link);

    let answers = join_all((0..15).map(|_| app.post("/v1/report", json!({"token": token})))).await;
    let mut ok = 0;
    for answer in answers {
        match answer.status() {
            StatusCode::OK => ok += 1,
            _ => {
                // A loser finds it reported, or gives up after its retries.
                let problem: Value = answer.json().await.unwrap();
                assert!(
                    problem["type"]
                        .as_str()
                        .unwrap()
                        .ends_with("already-reported")
                        || problem["type"].as_str().unwrap().ends_with("contended"),
                    "{problem}"
                );
            }
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(count_events(&app, user_id, "ReportedByUser").await, 1);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_forged_tampered_or_foreign_report_token_is_refused(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, no_rate_limits).await;
    let mut user = app.signed_up().await;
    let other = app.signed_up().await;
    let session = app.sign_in_with_totp(&mut user).await;
    let user_id = app.user_id(&user.email).await;
    let other_id = app.user_id(&other.email).await;
    let link = *report_links(&app, user_id).await.last().unwrap();
    let good = app.tokens.encode(TokenKind::Report, user_id, &link);

    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let other_kind = app.tokens.encode(TokenKind::ResetDenial, user_id, &link);
    let renamed = good.replacen("al_report_", "al_deny_", 1);
    let unknown_reference =
        app.tokens
            .encode(TokenKind::Report, user_id, &Reference::from_bytes([7; 16]));
    for (token, status, slug) in [
        (tampered.as_str(), StatusCode::UNAUTHORIZED, "invalid-token"),
        (
            other_kind.as_str(),
            StatusCode::UNAUTHORIZED,
            "invalid-token",
        ),
        (renamed.as_str(), StatusCode::UNAUTHORIZED, "invalid-token"),
        ("al_report_", StatusCode::UNAUTHORIZED, "invalid-token"),
        (
            unknown_reference.as_str(),
            StatusCode::GONE,
            "report-link-invalid",
        ),
    ] {
        let refused = app.post("/v1/report", json!({"token": token})).await;
        assert_problem(refused, status, slug).await;
    }
    // The user's link, put in another user's name, names nothing of theirs.
    let foreign = app.tokens.encode(TokenKind::Report, other_id, &link);
    let refused = app.post("/v1/report", json!({"token": foreign})).await;
    assert_problem(refused, StatusCode::GONE, "report-link-invalid").await;
    assert_eq!(app.me(&other.session_token).await.status(), StatusCode::OK);
    assert_eq!(app.me(&session).await.status(), StatusCode::OK);
    assert_eq!(count_events(&app, user_id, "ReportedByUser").await, 0);
    assert_eq!(
        app.post_ok("/v1/report", json!({"token": good})).await["sessions_ended"],
        2
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_report_link_works_until_its_time_is_up(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, no_rate_limits).await;
    let mut user = app.signed_up().await;
    app.sign_in_with_totp(&mut user).await;
    let user_id = app.user_id(&user.email).await;
    let link = *report_links(&app, user_id).await.last().unwrap();
    let token = app.tokens.encode(TokenKind::Report, user_id, &link);
    let ttl = chrono::Duration::seconds(app.config.policy.report_link_ttl_secs);

    app.clock.advance(ttl - chrono::Duration::seconds(1));
    let page = app
        .client
        .get(app.url(&format!("/v1/report?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    app.clock.advance(chrono::Duration::seconds(1));
    let refused = app.post("/v1/report", json!({"token": token})).await;
    assert_problem(refused, StatusCode::GONE, "report-link-invalid").await;
    assert_eq!(count_events(&app, user_id, "ReportedByUser").await, 0);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_report_is_published_for_operators_without_anything_personal(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, no_rate_limits).await;
    let queue = app.subscribe_to_events("user.activity_reported").await;
    let mut user = app.signed_up().await;
    let session = app.sign_in_with_totp(&mut user).await;
    let listed = entries(&app, &session).await;
    let sign_in = &newest(&listed, "signed_in")["sequence"];
    assert_eq!(
        report(&app, &session, sign_in).await.status(),
        StatusCode::OK
    );
    app.publish_events().await;
    let published = app.take_events(&queue).await;
    assert_eq!(published.len(), 1);
    let body = &published[0].body;
    assert_eq!(body["type"], "user.activity_reported");
    assert_eq!(
        body["data"],
        json!({"reported_sequence": sign_in, "by_link": false})
    );
    assert!(!published[0].raw.contains("127.0.0.1"));
    app.delete_queue(&queue).await;
}
