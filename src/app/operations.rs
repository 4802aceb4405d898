//! What operators and orchestrators ask: is the process ready, and the
//! numbers behind `/metrics`.
use lapin::{Connection, ConnectionProperties};

use super::{App, AppError, AppResult};

impl App {
    /// Postgres answers, and RabbitMQ too when the pipeline is in use.
    pub async fn readiness(&self) -> AppResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| AppError::Unavailable {
                what: "Postgres",
                cause: e.into(),
            })?;
        if let Some(url) = &self.amqp_url {
            let connection = Connection::connect(url.expose(), ConnectionProperties::default())
                .await
                .map_err(|e| AppError::Unavailable {
                    what: "RabbitMQ",
                    cause: e.into(),
                })?;
            let _ = connection.close(200, "readiness checked".into()).await;
        }
        Ok(())
    }

    /// The Prometheus text: each projection's lag, the mail this process
    /// sent, retried and dead-lettered, the requests it refused to protect
    /// itself, and the password hashes waiting now.
    pub async fn metrics(&self) -> AppResult<String> {
        let projections = authledger_projections::status(&self.pool)
            .await
            .map_err(|e| AppError::Unavailable {
                what: "Postgres",
                cause: e,
            })?;
        Ok(crate::metrics::render(
            &projections,
            &self.mail_metrics,
            &self.load_metrics,
            self.hashing.waiting(),
        ))
    }
}
