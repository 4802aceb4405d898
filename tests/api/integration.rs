//! The integration events as a subscribing service reads them: its own
//! queue bound to `<prefix>.events`, a journey through the API, and what
//! arrived.
use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

const NEW_PASSWORD: &str = "a-new-strong-passphrase-for-events-58";

/// The keys of every message, and the only ones.
const ENVELOPE: [&str; 9] = [
    "data",
    "id",
    "occurred_at",
    "position",
    "sequence",
    "specversion",
    "type",
    "user",
    "version",
];

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_journey_is_published_in_order_with_nothing_personal_and_no_secret(pool: PgPool) {
    let app = spawn_app(pool).await;
    let queue = app.subscribe_to_events("user.#").await;

    // Sign-up through enrollment: session A.
    let mut user = app.signed_up().await;
    let user_id = app.user_id(&user.email).await;
    let mut secrets = vec![
        PASSWORD.to_owned(),
        NEW_PASSWORD.to_owned(),
        user.email.clone(),
        user.session_token.clone(),
        user.recovery_code.clone(),
        user.device.totp.secret().to_base32(),
    ];
    // Password and TOTP: session B, then signed out.
    let b = app.sign_in_with_totp(&mut user).await;
    // A wrong code, then the right one in the same attempt: session C.
    let login = app.password_step(&user.email).await;
    let wrong = app
        .post(
            "/v1/login/totp",
            json!({"login_token": login["login_token"], "code": "000000"}),
        )
        .await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED, "invalid-code").await;
    let code = user.device.next_code().await;
    let c = app
        .post_ok(
            "/v1/login/totp",
            json!({"login_token": login["login_token"], "code": code}),
        )
        .await["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.extend([
        b.clone(),
        c.clone(),
        login["login_token"].as_str().unwrap().to_owned(),
    ]);
    let logout = app.post_with_session("/v1/logout", &b, None).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    // A new password from session A ends session C.
    let changed = app
        .post_with_session(
            "/v1/me/password",
            &user.session_token,
            Some(json!({"new_password": NEW_PASSWORD})),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    // And the account goes, ending session A.
    let erased = app
        .delete_with_session(
            "/v1/me",
            &user.session_token,
            json!({"confirm_email": user.email}),
        )
        .await;
    assert_eq!(erased.status(), StatusCode::OK);

    app.publish_events().await;
    let events = app.take_events(&queue).await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "user.registered",
            "user.verified",
            "user.mfa_enrolled",
            "user.signed_in",
            "user.signed_in",
            "user.sign_in_failed",
            "user.signed_in",
            "user.session_ended",
            "user.password_changed",
            "user.session_ended",
            "user.session_ended",
            "user.erased",
        ]
    );
    let mut sequences = Vec::new();
    for event in &events {
        let body = &event.body;
        assert_eq!(event.routing_key, body["type"], "routed by its type");
        assert_eq!(event.message_id.as_deref(), body["id"].as_str());
        assert_eq!(
            body["id"],
            format!("{user_id}:{}", body["sequence"]),
            "the id is the stream and sequence"
        );
        assert_eq!(event.content_type.as_deref(), Some("application/json"));
        assert!(event.persistent, "{}", event.raw);
        assert_eq!(body["user"], user_id.to_string());
        assert_eq!(
            (body["specversion"].clone(), body["version"].clone()),
            (json!("1"), json!(1))
        );
        let keys: BTreeSet<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ENVELOPE.into_iter().collect(), "{}", event.raw);
        for secret in &secrets {
            assert!(
                !event.raw.contains(secret.as_str()),
                "{} holds a secret",
                event.raw
            );
        }
        assert!(!event.raw.contains("al_"), "{} holds a token", event.raw);
        assert!(
            !event.raw.contains("127.0.0.1"),
            "{} holds an IP",
            event.raw
        );
        sequences.push(body["sequence"].as_i64().unwrap());
    }
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "in the order of the user's history: {sequences:?}"
    );

    let data: Vec<&Value> = events.iter().map(|e| &e.body["data"]).collect();
    // The first authenticator's id, as a later removal would name it.
    let enrolled = data[2]["authenticator"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(enrolled).is_ok(), "{enrolled}");
    assert_eq!(data[3]["method"], "enrollment");
    assert_eq!(
        (data[4]["method"].clone(), data[4]["aal"].clone()),
        (json!("totp"), json!("aal2"))
    );
    assert_eq!(*data[5], json!({"factor": "totp"}));
    // Each ended session is one that started, with why it ended.
    let (a, b, c) = (
        &data[3]["session"],
        &data[4]["session"],
        &data[6]["session"],
    );
    assert_eq!(*data[7], json!({"session": b, "reason": "logout"}));
    assert_eq!(
        *data[9],
        json!({"session": c, "reason": "password_changed"})
    );
    assert_eq!(*data[10], json!({"session": a, "reason": "account_erased"}));
    assert_eq!(
        *data[11],
        json!({}),
        "an erasure says nothing but ids and time"
    );

    app.delete_queue(&queue).await;
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_subscriber_gets_only_the_types_it_bound_and_the_rest_holds_nothing_up(pool: PgPool) {
    let app = spawn_app(pool).await;
    let queue = app.subscribe_to_events("user.session_ended").await;
    let mut user = app.signed_up().await;
    let session = app.sign_in_with_totp(&mut user).await;
    app.post_with_session("/v1/logout", &session, None).await;

    // Most events reach no queue; the broker drops them and the stream
    // moves on.
    app.publish_events().await;
    let events = app.take_events(&queue).await;
    let types: Vec<&Value> = events.iter().map(|e| &e.body["type"]).collect();
    assert_eq!(types, [&json!("user.session_ended")]);
    assert_eq!(events[0].body["data"]["reason"], "logout");
    app.delete_queue(&queue).await;
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_suspension_and_reactivation_are_published_without_the_administrators_reason(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    // A subscriber that binds late gets what follows, not what went before.
    app.publish_events().await;
    let queue = app.subscribe_to_events("user.#").await;
    const REASON: &str = "fraud inquiry opened by the risk team";
    for action in ["suspend", "reactivate"] {
        let done = app
            .client
            .post(app.url(&format!("/v1/admin/users/{}/{action}", user.email)))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"reason": REASON}))
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), StatusCode::OK, "{action}");
    }

    app.publish_events().await;
    let events = app.take_events(&queue).await;
    let types: Vec<&Value> = events.iter().map(|e| &e.body["type"]).collect();
    assert_eq!(
        types,
        [
            &json!("user.session_ended"),
            &json!("user.suspended"),
            &json!("user.reactivated")
        ]
    );
    assert_eq!(events[0].body["data"]["reason"], "account_suspended");
    for event in &events {
        assert!(!event.raw.contains(REASON), "{}", event.raw);
        assert!(!event.raw.contains("fraud"), "{}", event.raw);
        assert!(!event.raw.contains(&user.email), "{}", event.raw);
    }
    assert_eq!(
        (&events[1].body["data"], &events[2].body["data"]),
        (&json!({}), &json!({}))
    );
    app.delete_queue(&queue).await;
    app.remove_topology().await;
}
