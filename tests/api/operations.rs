//! What operators reach: `/metrics` behind a token or on an address of its
//! own, and `/readyz`.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;
use sqlx::PgPool;

use crate::helpers::*;

const METRICS_TOKEN: &str = "test-metrics-credential-5d1e";

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn metrics_behind_a_token_answer_only_its_holder(pool: PgPool) {
    let app = spawn_app_with(pool, |c| c.metrics_token = Some(METRICS_TOKEN.into())).await;
    let bare = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_problem(bare, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    for wrong in ["test-metrics-credential-5d1f", AUDITOR_TOKEN, ADMIN_TOKEN] {
        let refused = app.get_with("/metrics", wrong).await;
        assert_problem(refused, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    let scraped = app.get_with("/metrics", METRICS_TOKEN).await;
    assert_eq!(scraped.status(), StatusCode::OK);
    let text = scraped.text().await.unwrap();
    assert!(text.contains("authledger_projection_lag_events"), "{text}");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn metrics_on_their_own_address_are_not_served_with_the_api(pool: PgPool) {
    let app = spawn_app_with(pool, |c| {
        c.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
        c.metrics_token = Some(METRICS_TOKEN.into());
    })
    .await;
    let on_the_api = app.get_with("/metrics", METRICS_TOKEN).await;
    assert_problem(on_the_api, StatusCode::NOT_FOUND, "not-found").await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "the probes stay on the API");

    let metrics = app.metrics_base.clone().expect("a metrics address");
    let get = |path: &str, token: Option<&str>| {
        let mut request = app.client.get(format!("{metrics}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let scraped = get("/metrics", Some(METRICS_TOKEN)).await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(scraped
        .text()
        .await
        .unwrap()
        .contains("authledger_projection_lag_events"));
    let bare = get("/metrics", None).await.unwrap();
    assert_eq!(
        bare.status(),
        StatusCode::UNAUTHORIZED,
        "the token still counts"
    );
    let api = get("/v1/me", None).await.unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND, "nothing else there");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_burst_of_readiness_probes_is_answered_from_one_broker_check(pool: PgPool) {
    // A "broker" that takes connections and hangs up: each readiness
    // check that reaches it is counted, and fails.
    let broker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = broker.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = broker.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let app = spawn_app_with(pool, |c| {
        c.mail.amqp_url = format!("amqp://guest:guest@{addr}/%2f").as_str().into();
    })
    .await;
    let probes = (0..20).map(|_| app.client.get(app.url("/readyz")).send());
    for answer in futures::future::join_all(probes).await {
        assert_problem(
            answer.unwrap(),
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        )
        .await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection for 20 probes"
    );
}
