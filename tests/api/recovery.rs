//! Account recovery that never bypasses MFA, told as the stories of the
//! people who try it: the owner, and attackers who hold part of what the
//! owner holds.
use chrono::Duration;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

const NEW_PASSWORD: &str = "saffron-lighthouse-meadow-77";

async fn mfa_state(app: &TestApp, token: &str) -> Value {
    let me = app.me(token).await;
    assert_eq!(me.status(), StatusCode::OK);
    me.json::<Value>().await.unwrap()["mfa"].clone()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn password_and_inbox_cannot_reset_mfa_before_the_wait_and_the_owner_cancels_it(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let mut owner = app.signed_up().await;

    // The attacker knows the password and reads the inbox: an aal1 session.
    let attacker = app.sign_in_with_email_link(&owner.email).await;
    let reset = app
        .post_with_session("/v1/me/mfa/reset", &attacker, None)
        .await;
    assert_eq!(reset.status(), StatusCode::ACCEPTED);
    let pending: Value = reset.json().await.unwrap();
    assert!(pending["effective_at"].is_string(), "{pending}");
    let mfa = mfa_state(&app, &attacker).await;
    assert_eq!(mfa["enrolled"], true, "nothing happens at once");
    assert_eq!(mfa["pending_reset_at"], pending["effective_at"]);
    let audited: Value = app
        .get_with(
            &format!("/v1/audit/users/{}/state", owner.email),
            AUDITOR_TOKEN,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audited["pending_mfa_reset_at"], pending["effective_at"]);
    assert_eq!(audited["email_verified"], true);
    assert_eq!(app.sweep_resets().await, 0, "not due yet");

    // The owner signs in with the authenticator: the reset is cancelled.
    let session = app.sign_in_with_totp(&mut owner).await;
    let mfa = mfa_state(&app, &session).await;
    assert_eq!(mfa["pending_reset_at"], Value::Null);
    app.clock.advance(Duration::hours(25));
    assert_eq!(app.sweep_resets().await, 0);
    app.sign_in_with_totp(&mut owner).await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_pending_reset_takes_effect_when_due_and_the_next_sign_in_enrolls(pool: PgPool) {
    let app = spawn_app(pool).await;
    let owner = app.signed_up().await;
    let session = app.sign_in_with_email_link(&owner.email).await;
    let reset = app
        .post_with_session("/v1/me/mfa/reset", &session, None)
        .await;
    assert_eq!(reset.status(), StatusCode::ACCEPTED);

    app.clock
        .advance(Duration::hours(24) + Duration::seconds(1));
    assert_eq!(app.sweep_resets().await, 1);
    assert_eq!(app.sweep_resets().await, 0, "a reset is carried out once");
    assert_problem(
        app.me(&session).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    let login = app.password_step(&owner.email).await;
    assert_eq!(login["next"], "enroll");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_link_in_the_notice_stops_a_pending_reset_and_signs_everyone_out(pool: PgPool) {
    let app = spawn_app(pool).await;
    let owner = app.signed_up().await;
    let attacker = app.sign_in_with_email_link(&owner.email).await;
    app.post_with_session("/v1/me/mfa/reset", &attacker, None)
        .await;
    let deny = app
        .newest_link(&owner.email, "MfaResetRequested", TokenKind::ResetDenial)
        .await;

    // Opening the page spends nothing; the button does.
    let page = app
        .client
        .get(app.url("/v1/mfa-reset/deny"))
        .query(&[("token", &deny)])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains(&owner.email));
    let denied = app
        .post_ok("/v1/mfa-reset/deny", json!({"token": deny}))
        .await;
    assert_eq!(denied["sessions_ended"], 2, "{denied}");
    for token in [&attacker, &owner.session_token] {
        assert_problem(
            app.me(token).await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        )
        .await;
    }
    let again = app.post("/v1/mfa-reset/deny", json!({"token": deny})).await;
    assert_problem(again, StatusCode::GONE, "mfa-reset-denial-invalid").await;
    // Whoever asked still has the password and the inbox: signing in by
    // email is off until a sign-in with a second factor.
    let login = app.password_step(&owner.email).await;
    assert_eq!(login["alternatives"], json!(["recovery_code"]));
    let forged = app
        .post(
            "/v1/mfa-reset/deny",
            json!({"token": deny.replace("al_deny_", "al_link_")}),
        )
        .await;
    assert_problem(forged, StatusCode::UNAUTHORIZED, "invalid-token").await;
    app.clock.advance(Duration::hours(25));
    assert_eq!(app.sweep_resets().await, 0);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_owner_cancels_a_pending_reset_from_the_profile(pool: PgPool) {
    let app = spawn_app(pool).await;
    let owner = app.signed_up().await;
    let session = app.sign_in_with_email_link(&owner.email).await;
    app.post_with_session("/v1/me/mfa/reset", &session, None)
        .await;
    let cancelled = app
        .post_with_session("/v1/me/mfa/reset/cancel", &session, None)
        .await;
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
    // Every session won by email link ends with it, so whoever asked from
    // one must sign in again to ask again; the owner's stays.
    assert_problem(
        app.me(&session).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    let mfa = mfa_state(&app, &owner.session_token).await;
    assert_eq!(mfa["pending_reset_at"], Value::Null);
    let again = app
        .post_with_session("/v1/me/mfa/reset/cancel", &owner.session_token, None)
        .await;
    assert_problem(again, StatusCode::CONFLICT, "no-pending-mfa-reset").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_inbox_alone_resets_the_password_but_reaches_no_session(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut owner = app.signed_up().await;

    let forgot = app
        .post("/v1/password/forgot", json!({"email": owner.email}))
        .await;
    assert_eq!(forgot.status(), StatusCode::ACCEPTED);
    let link = app
        .newest_link(
            &owner.email,
            "PasswordResetRequested",
            TokenKind::PasswordReset,
        )
        .await;
    let reset = app
        .post_ok(
            "/v1/password/reset",
            json!({"token": link, "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(reset["sessions_ended"], 1);
    assert!(
        reset.get("session_token").is_none(),
        "no session is granted"
    );
    assert_problem(
        app.me(&owner.session_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    let again = app
        .post(
            "/v1/password/reset",
            json!({"token": link, "password": NEW_PASSWORD}),
        )
        .await;
    assert_problem(again, StatusCode::GONE, "password-reset-invalid").await;

    // With the new password the attacker still needs a second factor, and
    // the inbox is no longer one.
    let login = app
        .post_ok(
            "/v1/login/password",
            json!({"email": owner.email, "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(login["alternatives"], json!(["recovery_code"]));
    let email = app
        .post(
            "/v1/login/email-link",
            json!({"login_token": login["login_token"]}),
        )
        .await;
    assert_problem(email, StatusCode::CONFLICT, "email-link-unavailable").await;

    // The owner signs in with the authenticator: email works again.
    let code = owner.device.next_code().await;
    app.post_ok(
        "/v1/login/totp",
        json!({"login_token": login["login_token"], "code": code}),
    )
    .await;
    let login = app
        .post_ok(
            "/v1/login/password",
            json!({"email": owner.email, "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(
        login["alternatives"],
        json!(["email_link", "recovery_code"])
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_squatted_address_is_taken_back_by_its_owner(pool: PgPool) {
    let app = spawn_app(pool).await;
    let email = unique_email();
    app.register_unverified(&email, "squatters-own-password-1")
        .await;
    let squatters_link = app
        .newest_link(
            &email,
            "EmailVerificationRequested",
            TokenKind::EmailVerification,
        )
        .await;
    // Without the inbox the squatter cannot sign in.
    let squatter = app
        .post(
            "/v1/login/password",
            json!({"email": email, "password": "squatters-own-password-1"}),
        )
        .await;
    assert_problem(squatter, StatusCode::UNAUTHORIZED, "invalid-credentials").await;

    // The owner, finding the squatter's link in the inbox, cannot confirm
    // it: it needs the password chosen with it.
    let mistaken = app
        .post(
            "/v1/users/verify",
            json!({"token": squatters_link, "password": PASSWORD}),
        )
        .await;
    assert_problem(mistaken, StatusCode::UNAUTHORIZED, "invalid-credentials").await;

    // The owner registers anyway and confirms from the inbox.
    app.register(&email).await;
    let stale = app
        .post(
            "/v1/users/verify",
            json!({"token": squatters_link, "password": "squatters-own-password-1"}),
        )
        .await;
    assert_problem(stale, StatusCode::GONE, "email-verification-invalid").await;
    let squatter = app
        .post(
            "/v1/login/password",
            json!({"email": email, "password": "squatters-own-password-1"}),
        )
        .await;
    assert_problem(squatter, StatusCode::UNAUTHORIZED, "invalid-credentials").await;
    let login = app.password_step(&email).await;
    assert_eq!(login["next"], "enroll");
}

/// Status and body of a request, for byte-by-byte comparison.
async fn answer(app: &TestApp, path: &str, body: Value) -> (StatusCode, String, f64) {
    let started = std::time::Instant::now();
    let response = app.post(path, body).await;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    (response.status(), response.text().await.unwrap(), elapsed)
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn known_and_unknown_addresses_get_the_same_answers(pool: PgPool) {
    let app = spawn_app(pool).await;
    let known = app.signed_up().await.email;
    let mut timings: Vec<(&str, &str, f64)> = Vec::new();
    for (name, path, body_for) in [
        (
            "register",
            "/v1/users",
            (|email: &str| json!({"email": email, "password": "another-fine-password-9"}))
                as fn(&str) -> Value,
        ),
        (
            "forgot",
            "/v1/password/forgot",
            |email: &str| json!({"email": email}),
        ),
        (
            "sign-in",
            "/v1/login/password",
            |email: &str| json!({"email": email, "password": "not-the-password-at-all"}),
        ),
    ] {
        let mut answers = Vec::new();
        for email in [known.clone(), unique_email(), known.clone(), unique_email()] {
            let (status, body, ms) = answer(&app, path, body_for(&email)).await;
            timings.push((name, if email == known { "known" } else { "unknown" }, ms));
            answers.push((status, body));
        }
        assert!(
            answers.windows(2).all(|pair| pair[0] == pair[1]),
            "{name}: {answers:?}"
        );
    }
    // Timing is measured, not asserted: every answer waits for the same
    // floor. The figures go to the test's output.
    for (name, who, ms) in timings {
        eprintln!("timing {name} {who} {ms:.1} ms");
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_password_change_needs_a_second_factor_session_or_the_password(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut owner = app.signed_up().await;
    let other = app.sign_in_with_totp(&mut owner).await;

    // Fresh from enrollment (aal2): no current password needed; the other
    // session ends, this one stays.
    let changed: Value = app
        .post_with_session(
            "/v1/me/password",
            &owner.session_token,
            Some(json!({"new_password": NEW_PASSWORD})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed["sessions_ended"], 1, "{changed}");
    assert_eq!(app.me(&owner.session_token).await.status(), StatusCode::OK);
    assert_problem(
        app.me(&other).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    // A session won by email link cannot change it at all: whoever holds
    // the password and the inbox could otherwise end the owner's sessions.
    let aal1 = app
        .sign_in_with_email_link_using(&owner.email, NEW_PASSWORD)
        .await;
    let refused = app
        .post_with_session(
            "/v1/me/password",
            &aal1,
            Some(json!({"current_password": NEW_PASSWORD, "new_password": "yet-another-password-33"})),
        )
        .await;
    assert_problem(refused, StatusCode::FORBIDDEN, "second-factor-required").await;

    // A second-factor session older than the window gives the password.
    let old = app.sign_in_with_totp_using(&mut owner, NEW_PASSWORD).await;
    app.clock
        .advance(Duration::minutes(15) + Duration::seconds(1));
    let bare = app
        .post_with_session(
            "/v1/me/password",
            &old,
            Some(json!({"new_password": "yet-another-password-33"})),
        )
        .await;
    assert_problem(bare, StatusCode::FORBIDDEN, "reauthentication-required").await;
    let wrong = app
        .post_with_session(
            "/v1/me/password",
            &old,
            Some(json!({"current_password": "not-it-at-all-1", "new_password": "yet-another-password-33"})),
        )
        .await;
    assert_problem(wrong, StatusCode::FORBIDDEN, "reauthentication-failed").await;
    let right = app
        .post_with_session(
            "/v1/me/password",
            &old,
            Some(json!({"current_password": NEW_PASSWORD, "new_password": "yet-another-password-33"})),
        )
        .await;
    assert_eq!(right.status(), StatusCode::OK);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_new_recovery_code_replaces_the_old_one(pool: PgPool) {
    let app = spawn_app(pool).await;
    let owner = app.signed_up().await;
    let fresh = app
        .post_with_session("/v1/me/recovery-code", &owner.session_token, None)
        .await;
    assert_eq!(fresh.status(), StatusCode::OK);
    let code = fresh.json::<Value>().await.unwrap()["recovery_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(code, owner.recovery_code);

    let login = app.password_step(&owner.email).await;
    let old = app
        .post(
            "/v1/login/recovery-code",
            json!({"login_token": login["login_token"], "code": owner.recovery_code}),
        )
        .await;
    assert_problem(old, StatusCode::UNAUTHORIZED, "invalid-code").await;
    app.post_ok(
        "/v1/login/recovery-code",
        json!({"login_token": login["login_token"], "code": code}),
    )
    .await;

    // A session won by email link cannot make one.
    let aal1 = app.sign_in_with_email_link(&owner.email).await;
    let refused = app
        .post_with_session("/v1/me/recovery-code", &aal1, None)
        .await;
    assert_problem(refused, StatusCode::FORBIDDEN, "second-factor-required").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn two_redemptions_of_one_reset_link_set_the_password_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let owner = app.signed_up().await;
    app.post("/v1/password/forgot", json!({"email": owner.email}))
        .await;
    let link = app
        .newest_link(
            &owner.email,
            "PasswordResetRequested",
            TokenKind::PasswordReset,
        )
        .await;
    let statuses: Vec<StatusCode> = join_all((0..2).map(|i| {
        app.post(
            "/v1/password/reset",
            json!({"token": link, "password": format!("{NEW_PASSWORD}-{i}")}),
        )
    }))
    .await
    .into_iter()
    .map(|r| r.status())
    .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::GONE), "{statuses:?}");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_reset_link_racing_a_password_change_loses_or_wins_cleanly(pool: PgPool) {
    let app = spawn_app(pool).await;
    let owner = app.signed_up().await;
    app.post("/v1/password/forgot", json!({"email": owner.email}))
        .await;
    let link = app
        .newest_link(
            &owner.email,
            "PasswordResetRequested",
            TokenKind::PasswordReset,
        )
        .await;
    let reset = app.post(
        "/v1/password/reset",
        json!({"token": link, "password": NEW_PASSWORD}),
    );
    let change = app.post_with_session(
        "/v1/me/password",
        &owner.session_token,
        Some(json!({"new_password": "a-changed-password-55"})),
    );
    let (reset, change) = tokio::join!(reset, change);
    let (reset, change) = (reset.status(), change.status());
    // Either the reset ended the session the change came from, or the
    // change killed the reset link.
    assert!(
        (reset == StatusCode::OK && change == StatusCode::UNAUTHORIZED)
            || (change == StatusCode::OK && reset == StatusCode::GONE),
        "reset {reset}, change {change}"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn each_mailed_link_expires_and_a_forged_one_is_refused(pool: PgPool) {
    let app = spawn_app(pool).await;

    // A confirmation link lives 24 hours.
    let email = unique_email();
    app.register_unverified(&email, PASSWORD).await;
    let confirm = app
        .newest_link(
            &email,
            "EmailVerificationRequested",
            TokenKind::EmailVerification,
        )
        .await;
    // A token of one kind never passes for another: the same reference
    // and user under the reset link's kind is refused as forged.
    let forged = confirm.replace("al_verify_", "al_reset_");
    let refused = app
        .post(
            "/v1/password/reset",
            json!({"token": forged, "password": NEW_PASSWORD}),
        )
        .await;
    assert_problem(refused, StatusCode::UNAUTHORIZED, "invalid-token").await;
    app.clock
        .advance(Duration::hours(24) + Duration::seconds(1));
    let late = app
        .post(
            "/v1/users/verify",
            json!({"token": confirm, "password": PASSWORD}),
        )
        .await;
    assert_problem(late, StatusCode::GONE, "email-verification-invalid").await;

    // A reset link lives 30 minutes.
    let owner = app.signed_up().await;
    app.post("/v1/password/forgot", json!({"email": owner.email}))
        .await;
    let reset = app
        .newest_link(
            &owner.email,
            "PasswordResetRequested",
            TokenKind::PasswordReset,
        )
        .await;
    let last = if reset.ends_with('A') { 'B' } else { 'A' };
    let tampered = format!("{}{last}", &reset[..reset.len() - 1]);
    let refused = app
        .post(
            "/v1/password/reset",
            json!({"token": tampered, "password": NEW_PASSWORD}),
        )
        .await;
    assert_problem(refused, StatusCode::UNAUTHORIZED, "invalid-token").await;
    app.clock
        .advance(Duration::minutes(30) + Duration::seconds(1));
    let late = app
        .post(
            "/v1/password/reset",
            json!({"token": reset, "password": NEW_PASSWORD}),
        )
        .await;
    assert_problem(late, StatusCode::GONE, "password-reset-invalid").await;

    // The denial link lives while its reset waits.
    let session = app.sign_in_with_email_link(&owner.email).await;
    app.post_with_session("/v1/me/mfa/reset", &session, None)
        .await;
    let deny = app
        .newest_link(&owner.email, "MfaResetRequested", TokenKind::ResetDenial)
        .await;
    app.clock
        .advance(Duration::hours(24) + Duration::seconds(1));
    assert_eq!(app.sweep_resets().await, 1);
    let late = app.post("/v1/mfa-reset/deny", json!({"token": deny})).await;
    assert_problem(late, StatusCode::GONE, "mfa-reset-denial-invalid").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn neither_a_mailed_password_reset_nor_failed_sign_ins_let_a_waiting_reset_through(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let owner = app.signed_up().await;

    // The requester resets the password by mail so the owner cannot sign
    // in to cancel: the reset is called off.
    let session = app.sign_in_with_email_link(&owner.email).await;
    app.post_with_session("/v1/me/mfa/reset", &session, None)
        .await;
    app.post("/v1/password/forgot", json!({"email": owner.email}))
        .await;
    let link = app
        .newest_link(
            &owner.email,
            "PasswordResetRequested",
            TokenKind::PasswordReset,
        )
        .await;
    app.post_ok(
        "/v1/password/reset",
        json!({"token": link, "password": NEW_PASSWORD}),
    )
    .await;
    app.clock.advance(Duration::hours(25));
    assert_eq!(app.sweep_resets().await, 0);
    let login = app.password_step_with(&owner.email, NEW_PASSWORD).await;
    assert_eq!(login["next"], "totp", "the authenticator stays");

    // Wrong passwords meant to keep the owner throttled call it off too.
    let other = app.signed_up().await;
    let session = app.sign_in_with_email_link(&other.email).await;
    app.post_with_session("/v1/me/mfa/reset", &session, None)
        .await;
    app.post(
        "/v1/login/password",
        json!({"email": other.email, "password": "a-wrong-password-here"}),
    )
    .await;
    app.clock.advance(Duration::hours(25));
    assert_eq!(app.sweep_resets().await, 0);
    assert_eq!(app.password_step(&other.email).await["next"], "totp");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_account_without_an_authenticator_gets_no_reset_link(pool: PgPool) {
    // Otherwise the inbox alone would set a password, sign in and enroll
    // an authenticator of its own.
    let app = spawn_app(pool).await;
    let email = unique_email();
    app.register(&email).await;
    let forgot = app
        .post("/v1/password/forgot", json!({"email": email}))
        .await;
    assert_eq!(forgot.status(), StatusCode::ACCEPTED);
    assert!(app
        .references(app.user_id(&email).await, "PasswordResetRequested")
        .await
        .is_empty());
}
