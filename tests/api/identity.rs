//! Identity over time against the real services: one account per address
//! whatever the timing, a change of address confirmed from the new inbox
//! and undone from the old one, erasure that leaves nothing personal
//! anywhere, and server keys rotated without anyone noticing.
use std::collections::HashSet;

use authledger::keys::MasterKey;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

fn without_rate_limits(config: &mut authledger::config::Config) {
    config.limits.rate_password_per_minute = 0;
    config.limits.rate_session_per_minute = 0;
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn twenty_registrations_of_one_address_at_once_make_one_account_and_one_claim(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), without_rate_limits).await;
    let email = unique_email();
    let answers = join_all(
        (0..20).map(|_| app.post("/v1/users", json!({"email": email, "password": PASSWORD}))),
    )
    .await;
    let accepted = answers
        .iter()
        .filter(|r| r.status() == StatusCode::ACCEPTED)
        .count();
    // A full hashing queue may shed some; the rest race for the address.
    assert!(accepted >= 2, "only {accepted} registrations ran");
    assert_eq!(
        count(
            &pool,
            "SELECT count(DISTINCT aggregate_id) FROM events WHERE event_type = 'UserRegistered'"
        )
        .await,
        1
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM email_claims").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM user_keys").await, 1);
    let claimed: uuid::Uuid = sqlx::query_scalar("SELECT user_id FROM email_claims")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(app.user_id(&email).await, claimed);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn twenty_confirmations_of_two_accounts_moving_to_one_address_leave_it_with_one(
    pool: PgPool,
) {
    let app = spawn_app_with(pool.clone(), without_rate_limits).await;
    let (a, b) = (app.signed_up().await, app.signed_up().await);
    let wanted = unique_email();
    let mut tokens = Vec::new();
    for user in [&a, &b] {
        let response = app
            .post_session_json(
                "/v1/me/email",
                &user.session_token,
                json!({"email": wanted}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        tokens.push(
            app.newest_link(&user.email, "EmailChangeRequested", TokenKind::EmailChange)
                .await,
        );
    }
    let answers = join_all(
        (0..20).map(|i| app.post("/v1/me/email/confirm", json!({"token": tokens[i % 2]}))),
    )
    .await;
    let statuses: Vec<StatusCode> = answers.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::NO_CONTENT)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses.iter().all(|s| [
        StatusCode::NO_CONTENT,
        StatusCode::CONFLICT,
        StatusCode::GONE
    ]
    .contains(s)));
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM events WHERE event_type = 'EmailChanged'"
        )
        .await,
        1
    );
    let owner = app.user_id(&wanted).await;
    // The winner's old address is held for it; the loser keeps its own.
    match (app.resolve(&a.email).await, app.resolve(&b.email).await) {
        (None, Some(loser)) | (Some(loser), None) => assert_ne!(owner, loser),
        other => panic!("exactly one account should have moved: {other:?}"),
    }
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM email_claims WHERE held_until IS NULL"
        )
        .await,
        2
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_new_address_is_confirmed_from_its_inbox_and_the_old_one_can_take_it_back(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let mut user = app.signed_up().await;
    let old = user.email.clone();
    let new = unique_email();
    let id = app.user_id(&old).await;

    // A reset link mailed to the old address before the change.
    let forgot = app.post("/v1/password/forgot", json!({"email": old})).await;
    assert_eq!(forgot.status(), StatusCode::ACCEPTED);
    let old_reset = app
        .newest_link(&old, "PasswordResetRequested", TokenKind::PasswordReset)
        .await;

    let requested = app
        .post_session_json("/v1/me/email", &user.session_token, json!({"email": new}))
        .await;
    assert_eq!(requested.status(), StatusCode::ACCEPTED);
    app.deliver_mail().await;
    let confirm_mail = wait_for_mails(&new, 1).await;
    assert_eq!(confirm_mail.len(), 1, "one mail to the new address");
    let confirm = token_in(&confirm_mail[0], "/v1/me/email/confirm?token=");
    // Nothing changed yet.
    assert_eq!(app.user_id(&old).await, id);
    assert!(!app.resolves(&new).await);

    let confirmed = app
        .post("/v1/me/email/confirm", json!({"token": confirm}))
        .await;
    assert_eq!(confirmed.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.user_id(&new).await, id);
    assert!(!app.resolves(&old).await);
    let me: Value = app.me(&user.session_token).await.json().await.unwrap();
    assert_eq!(me["email"], new.as_str());
    // The link works once.
    assert_problem(
        app.post("/v1/me/email/confirm", json!({"token": confirm}))
            .await,
        StatusCode::GONE,
        "email-change-invalid",
    )
    .await;
    // What was mailed to the old address before is dead.
    assert_problem(
        app.post(
            "/v1/password/reset",
            json!({"token": old_reset, "password": "a-brand-new-passphrase-77"}),
        )
        .await,
        StatusCode::GONE,
        "password-reset-invalid",
    )
    .await;
    // Sign-in takes the new address; the old one answers like any unknown.
    user.email = new.clone();
    app.sign_in_with_totp(&mut user).await;
    let old_login = app
        .post(
            "/v1/login/password",
            json!({"email": old, "password": PASSWORD}),
        )
        .await;
    assert_problem(old_login, StatusCode::UNAUTHORIZED, "invalid-credentials").await;
    // Nobody else can register the old address while it is held.
    app.register_unverified(&old, PASSWORD).await;
    assert_eq!(
        count(&pool, "SELECT count(DISTINCT aggregate_id) FROM events").await,
        1
    );

    // The old address is told, with a way back.
    app.deliver_mail().await;
    let notices = wait_for_mails(&old, 2).await;
    let notice = notices
        .iter()
        .find(|m| {
            m["text"]
                .as_str()
                .unwrap()
                .contains("/v1/me/email/revert?token=")
        })
        .expect("a notice with a link back");
    let revert = token_in(notice, "/v1/me/email/revert?token=");
    let reverted: Value = app
        .post_ok("/v1/me/email/revert", json!({"token": revert}))
        .await;
    assert!(reverted["sessions_ended"].as_u64().unwrap() >= 2);
    assert_eq!(
        app.me(&user.session_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.user_id(&old).await, id);
    assert!(!app.resolves(&new).await);
    assert_problem(
        app.post("/v1/me/email/revert", json!({"token": revert}))
            .await,
        StatusCode::GONE,
        "email-change-revert-invalid",
    )
    .await;
    // The address taken away is told, in case its owner had moved away
    // from a mailbox someone else reads.
    app.deliver_mail().await;
    let to_new = wait_for_mails(&new, 2).await;
    assert!(
        to_new
            .iter()
            .any(|m| m["subject"] == "Your account no longer uses this email address"),
        "{to_new:?}"
    );
    user.email = old.clone();
    app.sign_in_with_totp(&mut user).await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_change_of_address_needs_a_recent_second_factor_and_a_real_address(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    assert_problem(
        app.post_session_json(
            "/v1/me/email",
            &user.session_token,
            json!({"email": "nope"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-email",
    )
    .await;
    assert_problem(
        app.post_session_json(
            "/v1/me/email",
            &user.session_token,
            json!({"email": user.email.to_uppercase()}),
        )
        .await,
        StatusCode::CONFLICT,
        "same-email",
    )
    .await;
    let by_link = app.sign_in_with_email_link(&user.email).await;
    assert_problem(
        app.post_session_json("/v1/me/email", &by_link, json!({"email": unique_email()}))
            .await,
        StatusCode::FORBIDDEN,
        "second-factor-required",
    )
    .await;
    app.clock.advance(chrono::Duration::minutes(20));
    assert_problem(
        app.post_session_json(
            "/v1/me/email",
            &user.session_token,
            json!({"email": unique_email()}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "reauthentication-required",
    )
    .await;
    let with_password = app
        .post_session_json(
            "/v1/me/email",
            &user.session_token,
            json!({"email": unique_email(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(with_password.status(), StatusCode::ACCEPTED);
    // Forged and foreign tokens.
    assert_problem(
        app.post("/v1/me/email/confirm", json!({"token": "al_newaddr_AAAA"}))
            .await,
        StatusCode::GONE,
        "email-change-invalid",
    )
    .await;
    let session_as_link = user.session_token.replace("al_sess_", "al_newaddr_");
    assert_problem(
        app.post("/v1/me/email/confirm", json!({"token": session_as_link}))
            .await,
        StatusCode::GONE,
        "email-change-invalid",
    )
    .await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_expired_or_superseded_confirmation_link_is_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let change = |email: String| {
        let app = &app;
        let token = user.session_token.clone();
        async move {
            let response = app
                .post_session_json("/v1/me/email", &token, json!({"email": email}))
                .await;
            assert_eq!(response.status(), StatusCode::ACCEPTED);
        }
    };
    change(unique_email()).await;
    let first = app
        .newest_link(&user.email, "EmailChangeRequested", TokenKind::EmailChange)
        .await;
    change(unique_email()).await;
    assert_problem(
        app.post("/v1/me/email/confirm", json!({"token": first}))
            .await,
        StatusCode::GONE,
        "email-change-invalid",
    )
    .await;
    let second = app
        .newest_link(&user.email, "EmailChangeRequested", TokenKind::EmailChange)
        .await;
    app.clock.advance(chrono::Duration::hours(25));
    assert_problem(
        app.post("/v1/me/email/confirm", json!({"token": second}))
            .await,
        StatusCode::GONE,
        "email-change-invalid",
    )
    .await;
}

/// Every row of every table of the test's database, as text.
async fn database_dump(pool: &PgPool) -> String {
    let output = std::process::Command::new("pg_dump")
        .args(["--data-only", "--no-owner", &database_url(pool).await])
        .output()
        .expect("pg_dump");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_erased_account_leaves_no_address_ip_or_browser_anywhere_and_its_history_holds(
    pool: PgPool,
) {
    const BROWSER: &str = "ErasureProbe/7.1 (X11; Plan 9; rv:99) Gecko/20100101";
    let app = spawn_app(pool.clone()).await;
    let user = app.signed_up().await;
    let id = app.user_id(&user.email).await;
    let probe = reqwest::Client::builder()
        .user_agent(BROWSER)
        .build()
        .unwrap();
    let response = probe
        .post(app.url("/v1/login/password"))
        .json(&json!({"email": user.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.deliver_mail().await;
    // Auditors read the browser and the address while the account exists.
    let history = Value::from(app.audit_events(id).await);
    assert!(history.to_string().contains(BROWSER));
    assert!(history.to_string().contains(&user.email));
    // A mail asked for, still queued when the account goes.
    let forgot = app
        .post("/v1/password/forgot", json!({"email": user.email}))
        .await;
    assert_eq!(forgot.status(), StatusCode::ACCEPTED);
    let before = mails_to(&user.email).await.len();

    assert_problem(
        app.delete_with_session(
            "/v1/me",
            &user.session_token,
            json!({"confirm_email": "someone-else@example.com"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "erasure-not-confirmed",
    )
    .await;
    let erased: Value = app
        .delete_with_session(
            "/v1/me",
            &user.session_token,
            json!({"confirm_email": user.email}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(erased["sessions_ended"].as_u64().unwrap() >= 1);
    assert_eq!(
        app.me(&user.session_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.deliver_mail().await;
    app.project_users().await;
    assert_eq!(
        mails_to(&user.email).await.len(),
        before,
        "the queued mail was dropped"
    );

    let dump = database_dump(&pool).await;
    for personal in [user.email.as_str(), BROWSER, "127.0.0.1"] {
        assert!(
            !dump.contains(personal),
            "the database still holds {personal:?}"
        );
    }
    // The log is every test's: only what is this test's own can be sought.
    for personal in [user.email.as_str(), BROWSER] {
        assert!(
            !captured_logs().contains(personal),
            "a log line holds {personal:?}"
        );
    }
    let events = app.audit_events(id).await;
    assert!(events.iter().any(|e| e["type"] == "AccountErased"));
    assert!(events
        .iter()
        .all(|e| e["client_ip"] == "erased" || e["client_ip"] == ""));
    let registered = events
        .iter()
        .find(|e| e["type"] == "UserRegistered")
        .unwrap();
    assert_eq!(registered["payload"]["email"], "erased");
    let verified = app.verify_log().await;
    assert!(verified.findings.is_empty(), "{:?}", verified.findings);
    // The address is free again, for a new account.
    assert!(!app.resolves(&user.email).await);
    app.register(&user.email).await;
    assert_ne!(app.user_id(&user.email).await, id);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_administrator_erases_an_account_with_a_reason(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let user = app.signed_up().await;
    let id = app.user_id(&user.email).await;
    let response = app
        .client
        .post(app.url(&format!("/v1/admin/users/{}/erase", user.email)))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"reason": "retention period over, ticket 4411"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.me(&user.session_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let erasure = app
        .audit_events(id)
        .await
        .into_iter()
        .find(|e| e["type"] == "AccountErased")
        .unwrap();
    assert!(erasure["actor"].as_str().unwrap().starts_with("admin"));
    // The administrator's own origin outlives the account; the address in
    // the route's path reached no log line.
    assert_eq!(erasure["client_ip"], "127.0.0.1");
    assert!(!captured_logs().contains(&user.email));
    // Again: the account is gone, as any unknown one.
    let again = app
        .client
        .post(app.url(&format!("/v1/admin/users/{id}/erase")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"reason": "twice"}))
        .send()
        .await
        .unwrap();
    assert_problem(again, StatusCode::NOT_FOUND, "unknown-user").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn keys_rotate_without_anyone_noticing_and_the_old_one_can_go(pool: PgPool) {
    let (one, two) = (MasterKey::generate(), MasterKey::generate());
    let first = {
        let one = one.clone();
        spawn_app_with(pool.clone(), move |c| c.secret_key = Some(one)).await
    };
    let mut user = first.signed_up().await;
    let id = first.user_id(&user.email).await;
    // A sign-in link mailed under key 1.
    let login = first.password_step(&user.email).await;
    let response = first
        .post(
            "/v1/login/email-link",
            json!({"login_token": login["login_token"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let old_link = first
        .newest_link(&user.email, "EmailLinkRequested", TokenKind::EmailLink)
        .await;

    let rotated = {
        let keys = vec![two.clone(), one.clone()];
        spawn_app_with(pool.clone(), move |c| {
            c.secret_key = None;
            c.secret_keys = keys;
        })
        .await
    };
    user.device.sync_with(&rotated.clock);
    let redeemed = rotated
        .post("/v1/login/email-link/redeem", json!({"token": old_link}))
        .await;
    assert_eq!(redeemed.status(), StatusCode::OK);
    rotated.sign_in_with_totp(&mut user).await;
    let report = rotated.app.rotate_keys().await.unwrap();
    assert_eq!(report.data_keys_rewrapped, 1);
    assert!(report.secrets_resealed >= 3, "{report:?}");
    assert_eq!(report.addresses_reindexed, 1);
    assert!(report.remaining.is_empty(), "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    let verified = rotated.verify_log().await;
    assert!(verified.findings.is_empty(), "{:?}", verified.findings);

    let only_new = {
        let two = two.clone();
        spawn_app_with(pool.clone(), move |c| c.secret_key = Some(two)).await
    };
    user.device.sync_with(&only_new.clock);
    assert_eq!(only_new.user_id(&user.email).await, id);
    let session = only_new.sign_in_with_totp(&mut user).await;
    let me: Value = only_new.me(&session).await.json().await.unwrap();
    assert_eq!(me["email"], user.email.as_str());
    let login = only_new.password_step(&user.email).await;
    let recovered = only_new
        .post(
            "/v1/login/recovery-code",
            json!({"login_token": login["login_token"], "code": user.recovery_code}),
        )
        .await;
    assert_eq!(recovered.status(), StatusCode::OK);
    // Tokens signed with the removed key are refused.
    assert_eq!(
        only_new.me(&user.session_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn every_account_gets_an_id_of_its_own(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let email = unique_email();
        app.register(&email).await;
        assert!(ids.insert(app.user_id(&email).await));
    }
    assert!(ids.iter().all(|id| id.get_version_num() == 7));
}

/// Changes `user`'s address to a new one and answers the "this wasn't me"
/// token mailed to the old one (made from the event's reference, as the
/// worker would).
async fn changed_away(app: &TestApp, user: &SignedIn) -> (String, String) {
    let new = unique_email();
    let requested = app
        .post_session_json("/v1/me/email", &user.session_token, json!({"email": new}))
        .await;
    assert_eq!(requested.status(), StatusCode::ACCEPTED);
    let confirm = app
        .newest_link(&user.email, "EmailChangeRequested", TokenKind::EmailChange)
        .await;
    let confirmed = app
        .post("/v1/me/email/confirm", json!({"token": confirm}))
        .await;
    assert_eq!(confirmed.status(), StatusCode::NO_CONTENT);
    let id = app.user_id(&new).await;
    let payload: sqlx::types::Json<Value> = sqlx::query_scalar(
        "SELECT payload FROM events WHERE aggregate_id = $1 AND event_type = 'EmailChanged'
          ORDER BY sequence DESC LIMIT 1",
    )
    .bind(id.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let revert = serde_json::from_value(payload.0["EmailChanged"]["revert"].clone()).unwrap();
    (
        new,
        app.tokens.encode(TokenKind::EmailChangeRevert, id, &revert),
    )
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_undo_link_works_once_under_a_race_and_not_forged_or_late(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), without_rate_limits).await;
    let user = app.signed_up().await;
    let (_, undo) = changed_away(&app, &user).await;
    for forged in [
        "al_undo_AAAA".to_owned(),
        undo.replace("al_undo_", "al_newaddr_"),
        user.session_token.replace("al_sess_", "al_undo_"),
    ] {
        assert_problem(
            app.post("/v1/me/email/revert", json!({"token": forged}))
                .await,
            StatusCode::GONE,
            "email-change-revert-invalid",
        )
        .await;
    }
    let answers =
        join_all((0..10).map(|_| app.post("/v1/me/email/revert", json!({"token": undo})))).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM events WHERE event_type = 'EmailChangeReverted'"
        )
        .await,
        1
    );
    assert!(app.resolves(&user.email).await);

    // A second account's undo link, opened after its window.
    let other = app.signed_up().await;
    let (new, late) = changed_away(&app, &other).await;
    app.clock.advance(chrono::Duration::hours(73));
    assert_problem(
        app.post("/v1/me/email/revert", json!({"token": late}))
            .await,
        StatusCode::GONE,
        "email-change-revert-invalid",
    )
    .await;
    assert!(app.resolves(&new).await && !app.resolves(&other.email).await);
    // Its old address, no longer held, is free for anyone.
    app.register(&other.email).await;
    assert_ne!(app.user_id(&other.email).await, app.user_id(&new).await);
}
