//! Liveness, readiness and metrics, for orchestrators and Prometheus.
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::BearerToken;
use super::{ApiContext, Problem, Result};

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
    ctx.app.readiness().await?;
    Ok(Json(Health { status: "ready" }))
}

/// Prometheus metrics: each projection's lag, and the mail this process sent,
/// retried and dead-lettered. Served on `AUTHLEDGER_METRICS_ADDR` instead
/// when that is set; asks for `AUTHLEDGER_METRICS_TOKEN` when that is set.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, description = "`unauthenticated`: a metrics token is configured and was not presented", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("metrics" = [])))]
pub async fn metrics(
    State(ctx): State<ApiContext>,
    token: Option<BearerToken>,
) -> Result<impl IntoResponse> {
    let token = token.as_ref().map(|BearerToken(token)| token.as_str());
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.app.metrics(token).await?,
    ))
}
