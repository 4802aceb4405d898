use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use lapin::{Connection, ConnectionProperties};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiContext, ApiError, Problem, Result};
use crate::worker::{MAIL_DEAD_LETTERED, MAIL_RETRIED, MAIL_SENT};

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
pub async fn metrics(State(ctx): State<ApiContext>) -> Result<impl IntoResponse> {
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
        render_metrics(&projections),
    ))
}

pub fn render_metrics(projections: &[authledger_projections::ProjectionStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP authledger_projection_lag_events Events committed after the projection's checkpoint.");
    let _ = writeln!(out, "# TYPE authledger_projection_lag_events gauge");
    for p in projections {
        let _ = writeln!(
            out,
            "authledger_projection_lag_events{{projection=\"{}\"}} {}",
            p.name, p.lag_events
        );
    }
    let _ = writeln!(out, "# HELP authledger_projection_lag_seconds Age of the oldest event the projection has not applied.");
    let _ = writeln!(out, "# TYPE authledger_projection_lag_seconds gauge");
    for p in projections {
        let _ = writeln!(
            out,
            "authledger_projection_lag_seconds{{projection=\"{}\"}} {}",
            p.name, p.lag_seconds
        );
    }
    for (name, help, counter) in [
        (
            "authledger_mail_sent_total",
            "Mails the SMTP server accepted.",
            &MAIL_SENT,
        ),
        (
            "authledger_mail_retried_total",
            "Mails sent to the retry queue after a failed send.",
            &MAIL_RETRIED,
        ),
        (
            "authledger_mail_dead_lettered_total",
            "Mails moved to the dead-letter queue after their last attempt.",
            &MAIL_DEAD_LETTERED,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
    }
    out
}
