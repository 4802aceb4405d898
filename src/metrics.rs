//! What this process counts for `/metrics`, held by a handle the
//! application owns and hands to the worker.
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use authledger_projections::ProjectionStatus;

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
}

/// The mail this process's workers sent, retried and dead-lettered.
#[derive(Debug, Clone, Default)]
pub struct MailMetrics(Arc<Counters>);

impl MailMetrics {
    pub fn sent(&self) -> u64 {
        self.0.sent.load(Ordering::Relaxed)
    }
    pub fn retried(&self) -> u64 {
        self.0.retried.load(Ordering::Relaxed)
    }
    pub fn dead_lettered(&self) -> u64 {
        self.0.dead_lettered.load(Ordering::Relaxed)
    }
    pub(crate) fn count_sent(&self) {
        self.0.sent.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_retried(&self) {
        self.0.retried.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_dead_lettered(&self) {
        self.0.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }
}

/// The Prometheus text format of the projections' lag and the mail counts.
pub fn render(projections: &[ProjectionStatus], mail: &MailMetrics) -> String {
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
    for (name, help, value) in [
        (
            "authledger_mail_sent_total",
            "Mails the SMTP server accepted.",
            mail.sent(),
        ),
        (
            "authledger_mail_retried_total",
            "Mails sent to the retry queue after a failed send.",
            mail.retried(),
        ),
        (
            "authledger_mail_dead_lettered_total",
            "Mails moved to the dead-letter queue after their last attempt.",
            mail.dead_lettered(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}
