use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiContext, ApiError, Problem, Result};

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

/// The process can serve: Postgres answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "`unavailable`: Postgres does not answer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(ctx): State<ApiContext>) -> Result<Json<Health>> {
    sqlx::query("SELECT 1")
        .execute(&ctx.pool)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::unavailable()
        })?;
    Ok(Json(Health { status: "ready" }))
}
