//! What `/metrics` reports, in Prometheus's text format: requests by route
//! and status with their latency, sign-in outcomes, the hashing queue,
//! command conflicts, each projection's lag and batches, the mail this
//! process's workers sent, retried, dead-lettered and dropped, and the
//! requests it refused to protect itself.
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use authledger_projections::{ProjectionMetrics, ProjectionStatus};

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

/// Upper bounds of the latency buckets, in seconds: from a read by key
/// (about a millisecond) to a password hash waiting behind a full queue.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram with the fixed [`BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket, not cumulated (the last one is `+Inf`).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// `_bucket`, `_sum` and `_count` lines of `name` with `labels` (empty,
    /// or `key="value",…` without braces).
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulated = 0;
        for (i, count) in self.buckets.iter().enumerate() {
            cumulated += count.load(Ordering::Relaxed);
            let bound = BUCKETS.get(i).map_or("+Inf".to_owned(), f64::to_string);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulated}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulated}");
    }
}

/// One route's requests by method and status.
#[derive(Debug)]
struct RouteSeries {
    method: String,
    status: u16,
    latency: Histogram,
}

/// What the service itself did: requests by route and status with their
/// latency, sign-in steps by method and result, and commits that met a
/// concurrent one. Clones share their counts.
#[derive(Debug, Clone, Default)]
pub struct ServiceMetrics(Arc<ServiceCounters>);

#[derive(Debug, Default)]
struct ServiceCounters {
    /// By route as declared (never a raw path: the label set stays
    /// bounded and no address or token reaches it), then method and status.
    http: RwLock<HashMap<String, Vec<Arc<RouteSeries>>>>,
    sign_ins: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    conflicts: AtomicU64,
    contended: AtomicU64,
}

impl ServiceMetrics {
    /// A request to `route` (as declared, or `unmatched`) answered `status`
    /// after `elapsed`.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let found = |series: &[Arc<RouteSeries>]| {
            series
                .iter()
                .find(|s| s.status == status && s.method == method)
                .cloned()
        };
        let known = {
            let http = self.0.http.read().unwrap_or_else(PoisonError::into_inner);
            http.get(route).and_then(|series| found(series))
        };
        let series = known.unwrap_or_else(|| {
            let mut http = self.0.http.write().unwrap_or_else(PoisonError::into_inner);
            let series = http.entry(route.to_owned()).or_default();
            found(series).unwrap_or_else(|| {
                let new = Arc::new(RouteSeries {
                    method: method.to_owned(),
                    status,
                    latency: Histogram::default(),
                });
                series.push(new.clone());
                new
            })
        });
        series.latency.observe(elapsed);
    }

    /// A sign-in step's outcome: `method` is `password`, `totp`,
    /// `recovery_code`, `email_link` or `enrollment`.
    pub fn count_sign_in(&self, method: &'static str, result: SignInResult) {
        let mut sign_ins = self
            .0
            .sign_ins
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *sign_ins.entry((method, result.label())).or_default() += 1;
    }

    /// Sign-in steps counted for `method` with `result`.
    pub fn sign_ins(&self, method: &str, result: SignInResult) -> u64 {
        let sign_ins = self
            .0
            .sign_ins
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        sign_ins
            .iter()
            .find(|((m, r), _)| *m == method && *r == result.label())
            .map_or(0, |(_, n)| *n)
    }

    /// A commit found the stream moved on and the command ran again.
    pub fn count_conflict(&self) {
        self.0.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// A command gave up after its last retry.
    pub fn count_contended(&self) {
        self.0.contended.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String) {
        let name = "authledger_http_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests answered, by method, route as declared, and status."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        // The series are taken out first: a request meeting a new series
        // waits for the write lock, and must not wait for the formatting.
        let mut routes: Vec<(String, Vec<Arc<RouteSeries>>)> = {
            let http = self.0.http.read().unwrap_or_else(PoisonError::into_inner);
            http.iter().map(|(r, s)| (r.clone(), s.clone())).collect()
        };
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let labelled = |route: &str, s: &RouteSeries| {
            format!(
                "method=\"{}\",route=\"{}\",status=\"{}\"",
                s.method,
                escape(route),
                s.status
            )
        };
        for (route, series) in &routes {
            for s in series.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{{}}} {}",
                    labelled(route, s),
                    s.latency.count()
                );
            }
        }
        let name = "authledger_http_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Time from a request's arrival to its answer's headers, by method, route and status.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (route, series) in &routes {
            for s in series.iter() {
                s.latency.write(out, name, &labelled(route, s));
            }
        }
        let name = "authledger_sign_ins_total";
        let _ = writeln!(out, "# HELP {name} Sign-in steps by method (password, totp, recovery_code, email_link, enrollment) and result (accepted, rejected, replayed, refused, overloaded).");
        let _ = writeln!(out, "# TYPE {name} counter");
        let sign_ins = self
            .0
            .sign_ins
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for ((method, result), count) in sign_ins.iter() {
            let _ = writeln!(
                out,
                "{name}{{method=\"{method}\",result=\"{result}\"}} {count}"
            );
        }
        drop(sign_ins);
        for (name, help, value) in [
            (
                "authledger_command_conflicts_total",
                "Commits that found the user's history moved on by a concurrent command; the command ran again on the new state.",
                &self.0.conflicts,
            ),
            (
                "authledger_command_contended_total",
                "Commands given up after their last retry against concurrent commits (answered 409 contended).",
                &self.0.contended,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
    }
}

/// What became of a sign-in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInResult {
    /// The step passed: a login attempt opened, or a session started.
    Accepted,
    /// A wrong code or recovery code, recorded; for the password step,
    /// every failure alike (an unknown address, an unconfirmed account, a
    /// wrong password, a throttled or locked account), as the caller's
    /// answer is one.
    Rejected,
    /// A TOTP code already used, recorded.
    Replayed,
    /// A second factor refused before it was judged: an expired or spent
    /// attempt, a throttled or suspended account.
    Refused,
    /// Shed: too many password hashes waiting.
    Overloaded,
}

impl SignInResult {
    pub fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Replayed => "replayed",
            Self::Refused => "refused",
            Self::Overloaded => "overloaded",
        }
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The handles a process shares between its parts: whatever counts holds a
/// clone, and `/metrics` reads them all.
#[derive(Debug, Clone, Default)]
pub struct ProcessMetrics {
    pub service: ServiceMetrics,
    pub projections: ProjectionMetrics,
    pub mail: MailMetrics,
}

/// Everything one process reports, read at each scrape.
pub struct Report<'a> {
    pub projections: &'a [ProjectionStatus],
    pub projection_runs: &'a ProjectionMetrics,
    pub service: &'a ServiceMetrics,
    pub mail: &'a MailMetrics,
    pub load: &'a LoadMetrics,
    pub hashes_waiting: usize,
    pub hashing_wait: &'a Histogram,
    pub integrity: &'a IntegrityAlarms,
}

/// The Prometheus text format of a [`Report`].
pub fn render(report: &Report<'_>) -> String {
    let Report {
        projections,
        projection_runs,
        service,
        mail,
        load,
        hashes_waiting,
        hashing_wait,
        integrity,
    } = report;
    let mut out = String::new();
    service.write(&mut out);
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
    let name = "authledger_hashing_wait_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time a password hash waited for a hashing thread."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    hashing_wait.write(&mut out, name, "");
    let runs = projection_runs.snapshot();
    for (name, help, value) in [
        (
            "authledger_projection_events_applied_total",
            "Events this process applied to the projection (the email relay: events turned into mail and published).",
            (|r| r.applied) as fn(&authledger_projections::ProjectionRuns) -> u64,
        ),
        (
            "authledger_projection_failures_total",
            "Batches of the projection that failed in this process and were retried (the email relay: RabbitMQ refused or did not confirm).",
            |r| r.failures,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (projection, counts) in &runs {
            let _ = writeln!(out, "{name}{{projection=\"{projection}\"}} {}", value(counts));
        }
    }
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
        let (service, runs, hashing_wait) = (
            ServiceMetrics::default(),
            ProjectionMetrics::default(),
            Histogram::default(),
        );
        let text = render(&Report {
            projections: &[users],
            projection_runs: &runs,
            service: &service,
            mail: &mail,
            load: &load,
            hashes_waiting: 7,
            hashing_wait: &hashing_wait,
            integrity: &IntegrityAlarms::default(),
        });
        let start = text
            .find("# HELP authledger_projection_lag_events")
            .expect("the projections' lag");
        let end = text
            .find("# HELP authledger_hashing_wait_seconds")
            .expect("the hashing wait");
        let integrity = text
            .find("# HELP authledger_integrity_failures_total")
            .expect("the integrity alarms");
        assert_eq!(
            format!("{}{}", &text[start..end], &text[integrity..]),
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

    #[test]
    fn a_histogram_counts_each_observation_in_its_bucket_and_cumulates_them() {
        let latency = Histogram::default();
        latency.observe(Duration::from_micros(800));
        latency.observe(Duration::from_millis(30));
        latency.observe(Duration::from_secs(60));
        let mut out = String::new();
        latency.write(&mut out, "t", "route=\"/x\"");
        let line = |le: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("t_bucket{{route=\"/x\",le=\"{le}\"}} ")))
                .unwrap_or_else(|| panic!("no bucket {le} in {out}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(line("0.001"), "1");
        assert_eq!(line("0.025"), "1");
        assert_eq!(line("0.05"), "2");
        assert_eq!(line("10"), "2");
        assert_eq!(line("+Inf"), "3");
        assert!(out.contains("t_count{route=\"/x\"} 3\n"), "{out}");
        let sum: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("t_sum{route=\"/x\"} "))
            .expect("a sum")
            .parse()
            .unwrap();
        assert!((sum - 60.0308).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn requests_are_kept_by_route_method_and_status_and_sign_ins_by_method_and_result() {
        let metrics = ServiceMetrics::default();
        let edge = metrics.clone();
        for status in [200, 200, 401] {
            edge.observe_request(
                "POST",
                "/v1/login/password",
                status,
                Duration::from_millis(7),
            );
        }
        edge.observe_request("GET", "unmatched", 404, Duration::from_micros(90));
        edge.count_sign_in("password", SignInResult::Accepted);
        edge.count_sign_in("totp", SignInResult::Replayed);
        edge.count_conflict();
        let mut out = String::new();
        metrics.write(&mut out);
        for line in [
            "authledger_http_requests_total{method=\"POST\",route=\"/v1/login/password\",status=\"200\"} 2",
            "authledger_http_requests_total{method=\"POST\",route=\"/v1/login/password\",status=\"401\"} 1",
            "authledger_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
            "authledger_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/login/password\",status=\"200\",le=\"0.01\"} 2",
            "authledger_sign_ins_total{method=\"password\",result=\"accepted\"} 1",
            "authledger_sign_ins_total{method=\"totp\",result=\"replayed\"} 1",
            "authledger_command_conflicts_total 1",
            "authledger_command_contended_total 0",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line} in\n{out}");
        }
        assert_eq!(metrics.sign_ins("totp", SignInResult::Replayed), 1);
        assert_eq!(metrics.sign_ins("totp", SignInResult::Accepted), 0);
    }

    #[test]
    fn a_label_value_is_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
