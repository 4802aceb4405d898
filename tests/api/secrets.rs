//! No secret or token in the event log or in the server's logs.
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn after_the_journey_no_secret_or_token_is_in_the_events_snapshots_or_logs(pool: PgPool) {
    // Snapshots every few events, so the journey leaves several behind.
    let app = spawn_app_with(pool, |config| config.snapshot_every = 4).await;
    let email = unique_email();
    app.register(&email).await;
    let id = app.user_id(&email).await;
    let mut secrets: Vec<String> = vec![PASSWORD.to_owned()];

    let login = app.password_step(&email).await;
    let login_token = login["login_token"].as_str().unwrap().to_owned();
    secrets.push(login_token.clone());
    let enrollment: Value = app
        .post("/v1/login/enrollment", json!({"login_token": login_token}))
        .await
        .json()
        .await
        .unwrap();
    let base32 = enrollment["secret"].as_str().unwrap().to_owned();
    let mut device = Device::from_uri(enrollment["otpauth_uri"].as_str().unwrap(), &app.clock);
    let raw = device.totp.secret().as_ref().to_vec();
    secrets.extend([
        base32.clone(),
        base32.to_lowercase(),
        raw.iter().map(|b| format!("{b:02x}")).collect(),
        STANDARD.encode(&raw),
        STANDARD_NO_PAD.encode(&raw),
    ]);
    let code = device.next_code().await;
    let confirmed: Value = app
        .post(
            "/v1/login/enrollment/confirm",
            json!({"login_token": login_token, "code": code}),
        )
        .await
        .json()
        .await
        .unwrap();
    let recovery = confirmed["recovery_code"].as_str().unwrap().to_owned();
    secrets.extend([
        recovery.clone(),
        recovery.replace('-', ""),
        confirmed["session_token"].as_str().unwrap().to_owned(),
    ]);

    let login = app.password_step(&email).await;
    secrets.push(login["login_token"].as_str().unwrap().to_owned());
    app.post(
        "/v1/login/email-link",
        json!({"login_token": login["login_token"]}),
    )
    .await;
    let link = app.link_token(id, &app.email_link_references(id).await[0]);
    secrets.push(link.clone());
    app.client
        .get(app.url("/v1/login/email-link"))
        .query(&[("token", &link)])
        .send()
        .await
        .unwrap();
    let session: Value = app
        .post("/v1/login/email-link/redeem", json!({"token": link}))
        .await
        .json()
        .await
        .unwrap();
    let session_token = session["session_token"].as_str().unwrap().to_owned();
    secrets.push(session_token.clone());
    app.me(&session_token).await;

    let login = app.password_step(&email).await;
    let used: Value = app
        .post(
            "/v1/login/recovery-code",
            json!({"login_token": login["login_token"], "code": recovery}),
        )
        .await
        .json()
        .await
        .unwrap();
    let new_recovery = used["recovery_code"].as_str().unwrap().to_owned();
    secrets.extend([new_recovery.clone(), new_recovery.replace('-', "")]);
    app.post_with_session(
        "/v1/me/mfa/reset",
        used["session_token"].as_str().unwrap(),
        None,
    )
    .await;

    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT payload::text, metadata::text FROM events WHERE aggregate_id = $1")
            .bind(id.to_string())
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(rows.len() > 15, "the journey was recorded");
    let snapshots: Vec<String> =
        sqlx::query_scalar("SELECT payload::text FROM snapshots WHERE aggregate_id = $1")
            .bind(id.to_string())
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(!snapshots.is_empty(), "the journey left snapshots");
    let logs = captured_logs();
    assert!(
        logs.contains("/v1/login/email-link"),
        "the server's requests were logged"
    );
    for secret in &secrets {
        for (payload, metadata) in &rows {
            assert!(
                !payload.contains(secret.as_str()),
                "an event payload holds a secret: {payload}"
            );
            assert!(
                !metadata.contains(secret.as_str()),
                "event metadata holds a secret: {metadata}"
            );
        }
        for snapshot in &snapshots {
            assert!(
                !snapshot.contains(secret.as_str()),
                "a snapshot holds a secret"
            );
        }
        assert!(!logs.contains(secret.as_str()), "the logs hold a secret");
    }
}
