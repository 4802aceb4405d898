use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_openapi_document_describes_every_route(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let expected = [
        (
            "/v1/users",
            "post",
            vec!["202", "400", "403", "413", "415", "422", "500", "503"],
        ),
        ("/v1/users/verify", "get", vec!["200", "400", "410"]),
        ("/v1/users/verify", "post", vec!["200", "401", "410", "422"]),
        ("/v1/password/forgot", "post", vec!["202", "422"]),
        ("/v1/password/reset", "get", vec!["200", "400", "410"]),
        (
            "/v1/password/reset",
            "post",
            vec!["200", "401", "410", "422"],
        ),
        ("/v1/mfa-reset/deny", "get", vec!["200", "400", "410"]),
        ("/v1/mfa-reset/deny", "post", vec!["200", "401", "410"]),
        ("/v1/report", "get", vec!["200", "400", "410"]),
        (
            "/v1/report",
            "post",
            vec!["200", "401", "409", "410", "422"],
        ),
        ("/v1/me/activity", "get", vec!["200", "400", "401"]),
        (
            "/v1/me/activity/{sequence}/report",
            "post",
            vec!["200", "401", "404", "409", "422"],
        ),
        ("/v1/me/mfa/reset/cancel", "post", vec!["204", "401", "409"]),
        (
            "/v1/me/password",
            "post",
            vec!["200", "401", "403", "422", "429"],
        ),
        (
            "/v1/me/recovery-code",
            "post",
            vec!["200", "401", "403", "409"],
        ),
        ("/v1/login/password", "post", vec!["200", "401", "422"]),
        ("/v1/login/totp", "post", vec!["200", "401", "429"]),
        ("/v1/login/enrollment", "post", vec!["200", "401", "409"]),
        (
            "/v1/login/enrollment/confirm",
            "post",
            vec!["200", "401", "409"],
        ),
        ("/v1/login/recovery-code", "post", vec!["200", "401", "429"]),
        ("/v1/login/email-link", "post", vec!["202", "401"]),
        ("/v1/login/email-link", "get", vec!["200", "400", "410"]),
        ("/v1/login/email-link/redeem", "post", vec!["200", "410"]),
        ("/v1/me", "get", vec!["200", "401"]),
        ("/v1/me/mfa/reset", "post", vec!["200", "202", "401", "403"]),
        ("/v1/logout", "post", vec!["204", "401", "500"]),
        (
            "/v1/audit/users/{user}/events",
            "get",
            vec!["200", "400", "401", "403", "404"],
        ),
        (
            "/v1/audit/users/{user}/state",
            "get",
            vec!["200", "400", "401", "403", "404"],
        ),
        ("/v1/audit/events", "get", vec!["200", "400", "401", "403"]),
        (
            "/v1/admin/users/{user}/mfa/reset",
            "post",
            vec!["200", "401", "403", "404", "422"],
        ),
        (
            "/v1/admin/users/{user}/unlock",
            "post",
            vec!["200", "401", "403", "404", "409", "422"],
        ),
        ("/metrics", "get", vec!["200", "401"]),
        ("/healthz", "get", vec!["200"]),
        ("/readyz", "get", vec!["200", "503"]),
    ];
    for (path, method, statuses) in expected {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        for status in statuses {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    let problem = &doc["paths"]["/v1/login/totp"]["post"]["responses"]["429"]["content"]
        ["application/problem+json"];
    assert!(
        problem.is_object(),
        "problems are documented as application/problem+json"
    );
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}
