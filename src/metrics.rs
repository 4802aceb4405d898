//! What `/metrics` reports: each projection's lag, the mail this
//! process's workers sent, retried, dead-lettered and dropped, and the
//! requests it refused to protect itself.
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use authledger_projections::ProjectionStatus;

use crate::config::RouteClass;

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
    dropped: [AtomicU64; DropReason::ALL.len()],
}

/// Why a mail was acked without being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its account was erased while it waited: its address no longer opens.
    Erased,
    /// Its link expired while it waited.
    Expired,
}

impl DropReason {
    pub const ALL: [Self; 2] = [Self::Erased, Self::Expired];

    pub fn label(self) -> &'static str {
        match self {
            Self::Erased => "erased",
            Self::Expired => "expired",
        }
    }
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

    /// Mails acked without being sent, for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.0.dropped[reason as usize].load(Ordering::Relaxed)
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

    pub(crate) fn count_dropped(&self, reason: DropReason) {
        self.0.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters of the requests this process refused to protect itself, per
/// route class: over a client's rate limit, and shed because too many
/// password hashes were waiting. Clones share their counts, as with
/// `MailMetrics`.
#[derive(Debug, Clone, Default)]
pub struct LoadMetrics(Arc<LoadCounters>);

#[derive(Debug, Default)]
struct LoadCounters {
    rate_limited: [AtomicU64; RouteClass::ALL.len()],
    shed: [AtomicU64; RouteClass::ALL.len()],
}

impl LoadMetrics {
    /// Requests answered `429 rate-limited`.
    pub fn rate_limited(&self, class: RouteClass) -> u64 {
        self.0.rate_limited[class as usize].load(Ordering::Relaxed)
    }

    /// Requests answered `503 overloaded`.
    pub fn shed(&self, class: RouteClass) -> u64 {
        self.0.shed[class as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn count_rate_limited(&self, class: RouteClass) {
        self.0.rate_limited[class as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_shed(&self, class: RouteClass) {
        self.0.shed[class as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Stored events or snapshots that failed their MAC when a user was
/// loaded: each one is evidence that someone without the key wrote to the
/// database.
#[derive(Debug, Clone, Default)]
pub struct IntegrityAlarms(Arc<AtomicU64>);

impl IntegrityAlarms {
    pub fn raise(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn raised(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The Prometheus text format of `projections`, `mail`, `load`, and how
/// many password hashes wait for a thread.
pub fn render(
    projections: &[ProjectionStatus],
    mail: &MailMetrics,
    load: &LoadMetrics,
    hashes_waiting: usize,
    integrity: &IntegrityAlarms,
) -> String {
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
    let name = "authledger_mail_dropped_total";
    let _ = writeln!(
        out,
        "# HELP {name} Mails acked without being sent, by reason: the account was erased, or the link expired, while they waited."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for reason in DropReason::ALL {
        let _ = writeln!(
            out,
            "{name}{{reason=\"{}\"}} {}",
            reason.label(),
            mail.dropped(reason)
        );
    }
    for (name, help, count) in [
        (
            "authledger_rate_limited_total",
            "Requests refused for a client over its rate limit, by route class.",
            LoadMetrics::rate_limited as fn(&LoadMetrics, RouteClass) -> u64,
        ),
        (
            "authledger_shed_total",
            "Requests refused because too many password hashes were waiting, by route class.",
            LoadMetrics::shed,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for class in RouteClass::ALL {
            let _ = writeln!(
                out,
                "{name}{{class=\"{}\"}} {}",
                class.label(),
                count(load, class)
            );
        }
    }
    let name = "authledger_hashing_queue_depth";
    let _ = writeln!(
        out,
        "# HELP {name} Password hashes waiting for a hashing thread."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {hashes_waiting}");
    let name = "authledger_integrity_failures_total";
    let _ = writeln!(
        out,
        "# HELP {name} Stored events or snapshots refused at load because their MAC does not hold: someone without the key wrote to the database."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {}", integrity.raised());
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
        worker.count_dropped(DropReason::Erased);
        assert_eq!(
            (metrics.sent(), metrics.retried(), metrics.dead_lettered()),
            (2, 1, 1)
        );
        assert_eq!(
            (
                metrics.dropped(DropReason::Erased),
                metrics.dropped(DropReason::Expired)
            ),
            (1, 0)
        );
        assert_eq!(MailMetrics::default().sent(), 0, "a new handle starts at 0");
    }

    #[test]
    fn load_counts_are_kept_per_class_and_shared_by_clones() {
        let metrics = LoadMetrics::default();
        let edge = metrics.clone();
        edge.count_rate_limited(RouteClass::Password);
        edge.count_rate_limited(RouteClass::Password);
        edge.count_shed(RouteClass::Session);
        assert_eq!(metrics.rate_limited(RouteClass::Password), 2);
        assert_eq!(metrics.rate_limited(RouteClass::SecondFactor), 0);
        assert_eq!(metrics.shed(RouteClass::Session), 1);
        assert_eq!(metrics.shed(RouteClass::Password), 0);
    }

    #[test]
    fn the_text_format_has_each_projection_and_each_mail_counter() {
        let mail = MailMetrics::default();
        mail.count_sent();
        mail.count_dead_lettered();
        mail.count_dropped(DropReason::Erased);
        mail.count_dropped(DropReason::Erased);
        let load = LoadMetrics::default();
        load.count_rate_limited(RouteClass::SecondFactor);
        load.count_shed(RouteClass::Password);
        load.count_shed(RouteClass::Password);
        let users = ProjectionStatus {
            name: "users".into(),
            position: 9,
            updated_at: Utc.timestamp_opt(1_772_366_400, 0).unwrap(),
            lag_events: 3,
            lag_seconds: 1.5,
        };
        assert_eq!(
            render(&[users], &mail, &load, 7, &IntegrityAlarms::default()),
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
             authledger_mail_dead_lettered_total 1\n\
             # HELP authledger_mail_dropped_total Mails acked without being sent, by reason: the account was erased, or the link expired, while they waited.\n\
             # TYPE authledger_mail_dropped_total counter\n\
             authledger_mail_dropped_total{reason=\"erased\"} 2\n\
             authledger_mail_dropped_total{reason=\"expired\"} 0\n\
             # HELP authledger_rate_limited_total Requests refused for a client over its rate limit, by route class.\n\
             # TYPE authledger_rate_limited_total counter\n\
             authledger_rate_limited_total{class=\"password\"} 0\n\
             authledger_rate_limited_total{class=\"second_factor\"} 1\n\
             authledger_rate_limited_total{class=\"session\"} 0\n\
             authledger_rate_limited_total{class=\"staff\"} 0\n\
             # HELP authledger_shed_total Requests refused because too many password hashes were waiting, by route class.\n\
             # TYPE authledger_shed_total counter\n\
             authledger_shed_total{class=\"password\"} 2\n\
             authledger_shed_total{class=\"second_factor\"} 0\n\
             authledger_shed_total{class=\"session\"} 0\n\
             authledger_shed_total{class=\"staff\"} 0\n\
             # HELP authledger_hashing_queue_depth Password hashes waiting for a hashing thread.\n\
             # TYPE authledger_hashing_queue_depth gauge\n\
             authledger_hashing_queue_depth 7\n\
             # HELP authledger_integrity_failures_total Stored events or snapshots refused at load because their MAC does not hold: someone without the key wrote to the database.\n\
             # TYPE authledger_integrity_failures_total counter\n\
             authledger_integrity_failures_total 0\n"
        );
    }
}
