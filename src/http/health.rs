use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use lapin::{Connection, ConnectionProperties};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiContext, ApiError, Problem, Result};
use crate::metrics::MailMetrics;

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process can serve: Postgres and RabbitMQ answer.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "`unavailable`: Postgres or RabbitMQ does not answer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(ctx): State<ApiContext>) -> Result<Json<Health>> {
    sqlx::query("SELECT 1")
        .execute(&ctx.pool)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "readiness: Postgres does not answer");
            ApiError::unavailable().with_detail("Postgres does not answer")
        })?;
    if let Some(url) = &ctx.amqp_url {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "readiness: RabbitMQ does not answer");
                ApiError::unavailable().with_detail("RabbitMQ does not answer")
            })?;
        let _ = connection.close(200, "readiness checked".into()).await;
    }
    Ok(Json(Health { status: "ready" }))
}

/// Prometheus metrics: each projection's lag, and the mail this process sent,
/// retried and dead-lettered.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn metrics(
    State(ctx): State<ApiContext>,
    Extension(mail): Extension<MailMetrics>,
) -> Result<impl IntoResponse> {
    let projections = authledger_projections::status(&ctx.pool)
        .await
        .map_err(|e| {
            tracing::warn!(
                error = format!("{e:#}"),
                "metrics: projection status unavailable"
            );
            ApiError::unavailable()
        })?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&projections, &mail),
    ))
}
