//! What `/metrics` reports: each projection's lag, and the mail this
//! process's workers sent, retried and dead-lettered.
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use authledger_projections::ProjectionStatus;

/// Counters of the mail the workers holding this handle handled. Clones
/// share their counts: startup makes one and hands it to the worker and to
/// whatever renders `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct MailMetrics(Arc<MailCounters>);

#[derive(Debug, Default)]
struct MailCounters {
    sent: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
}

impl MailMetrics {
    /// Mails the SMTP server accepted.
    pub fn sent(&self) -> u64 {
        self.0.sent.load(Ordering::Relaxed)
    }

    /// Mails sent to the retry queue after a failed send.
    pub fn retried(&self) -> u64 {
        self.0.retried.load(Ordering::Relaxed)
    }

    /// Mails moved to the dead-letter queue.
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

/// The Prometheus text format of `projections` and `mail`.
pub fn render(projections: &[ProjectionStatus], mail: &MailMetrics) -> String {
    let mut out = String::new();
    gauge(
        &mut out,
        "authledger_projection_lag_events",
        "Events committed after the projection's checkpoint.",
        projections
            .iter()
            .map(|p| (p.name.as_str(), p.lag_events.to_string())),
    );
    gauge(
        &mut out,
        "authledger_projection_lag_seconds",
        "Age of the oldest event the projection has not applied.",
        projections
            .iter()
            .map(|p| (p.name.as_str(), p.lag_seconds.to_string())),
    );
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
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

fn gauge<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    per_projection: impl Iterator<Item = (&'a str, String)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (projection, value) in per_projection {
        let _ = writeln!(out, "{name}{{projection=\"{projection}\"}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn clones_of_a_handle_share_their_counts() {
        let metrics = MailMetrics::default();
        let worker = metrics.clone();
        worker.count_sent();
        worker.count_sent();
        worker.count_retried();
        worker.count_dead_lettered();
        assert_eq!(
            (metrics.sent(), metrics.retried(), metrics.dead_lettered()),
            (2, 1, 1)
        );
        assert_eq!(MailMetrics::default().sent(), 0, "a new handle starts at 0");
    }

    #[test]
    fn the_text_format_has_each_projection_and_each_mail_counter() {
        let mail = MailMetrics::default();
        mail.count_sent();
        mail.count_dead_lettered();
        let users = ProjectionStatus {
            name: "users".into(),
            position: 9,
            updated_at: Utc.timestamp_opt(1_772_366_400, 0).unwrap(),
            lag_events: 3,
            lag_seconds: 1.5,
        };
        assert_eq!(
            render(&[users], &mail),
            "# HELP authledger_projection_lag_events Events committed after the projection's checkpoint.\n\
             # TYPE authledger_projection_lag_events gauge\n\
             authledger_projection_lag_events{projection=\"users\"} 3\n\
             # HELP authledger_projection_lag_seconds Age of the oldest event the projection has not applied.\n\
             # TYPE authledger_projection_lag_seconds gauge\n\
             authledger_projection_lag_seconds{projection=\"users\"} 1.5\n\
             # HELP authledger_mail_sent_total Mails the SMTP server accepted.\n\
             # TYPE authledger_mail_sent_total counter\n\
             authledger_mail_sent_total 1\n\
             # HELP authledger_mail_retried_total Mails sent to the retry queue after a failed send.\n\
             # TYPE authledger_mail_retried_total counter\n\
             authledger_mail_retried_total 0\n\
             # HELP authledger_mail_dead_lettered_total Mails moved to the dead-letter queue after their last attempt.\n\
             # TYPE authledger_mail_dead_lettered_total counter\n\
             authledger_mail_dead_lettered_total 1\n"
        );
    }
}
