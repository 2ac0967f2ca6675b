//! [`WorkerMetrics`]: the worker's own Prometheus metrics, served on `--metrics-listen` by
//! [`crate::http`], through the official `prometheus-client` crate and encoded by its
//! text encoder (OpenMetrics), never hand-formatted.
//!
//! Families, all under the `cloudai_worker_` prefix:
//!
//! | family | type | moved by |
//! | --- | --- | --- |
//! | `running_attempts` | gauge | an attempt task, from its assignment to its end (`runtime::attempt_task`) |
//! | `image_pull_seconds{outcome="ok"\|"error"}` | histogram | the executor, for pulls it actually made ([`PullMetrics`]; the Docker executor's `prepare`) |
//! | `container_start_seconds` | histogram | an attempt task: assignment → its container running (pull included) |
//! | `event_resends_total` | counter | the journal: reports sent again after a reconnect (`runtime::session::send_due`) |
//! | `attempts_finished_total{outcome}` | counter | an attempt task, at its end ([`finish_outcome`]) |
//! | `master_connected` | gauge | the runtime: 1 while registered with a master, else 0 |
//!
//! Counters start at zero with each worker process, as Prometheus expects.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::attempt::Finish;

/// The content type of [`WorkerMetrics::encode`]'s text: what `prometheus-client`'s
/// encoder produces (OpenMetrics 1.0.0), which Prometheus scrapes natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a pull or an attempt ended: the one label of the labelled families (a few fixed
/// values, never an id).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ok`/`error` for pulls; see [`finish_outcome`] for attempts.
    pub outcome: &'static str,
}

/// Buckets for the durations a worker measures: 10 ms doubling up to ~11 min (17 buckets),
/// so a local start (tens of ms) and a slow multi-gigabyte pull (minutes) both resolve.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 17))
}

/// The durations of the image pulls an executor made, by outcome. A cheap handle: clones
/// share one family, so the executor records into the same family the worker's registry
/// exposes (see [`crate::Executor::pull_metrics`]). Images already present are no pull and
/// are not observed; a pull abandoned by a cancel is not either.
#[derive(Clone, Debug)]
pub struct PullMetrics {
    durations: Family<OutcomeLabel, Histogram>,
}

impl Default for PullMetrics {
    fn default() -> Self {
        PullMetrics {
            durations: Family::new_with_constructor(seconds_histogram),
        }
    }
}

impl PullMetrics {
    /// Records one pull that took `took` and succeeded (`ok`) or failed.
    pub fn observe(&self, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.durations
            .get_or_create(&OutcomeLabel { outcome })
            .observe(took.as_secs_f64());
    }
}

/// The `outcome` label of `cloudai_worker_attempts_finished_total` for an attempt that
/// ended with `finish`; `reported` is false when the worker stopped it without reporting
/// it (revoked, the lease ended, the worker shut down).
pub fn finish_outcome(finish: &Finish, reported: bool) -> &'static str {
    match finish {
        _ if !reported => "stopped",
        Finish::Exited(0) => "succeeded",
        Finish::Exited(_) => "failed",
        Finish::TimedOut => "timed_out",
        Finish::Cancelled => "cancelled",
        Finish::Error(_) => "error",
    }
}

/// Every metric family of one worker, registered once; the runtime holds it in an `Arc`
/// and moves the handles where things happen.
#[derive(Debug)]
pub struct WorkerMetrics {
    registry: Registry,
    running: Gauge,
    pulls: PullMetrics,
    container_start: Histogram,
    resends: Counter,
    finished: Family<OutcomeLabel, Counter>,
    master_connected: Gauge,
}

impl Default for WorkerMetrics {
    /// With a pull family of its own, for an executor that reports no pulls.
    fn default() -> Self {
        WorkerMetrics::new(PullMetrics::default())
    }
}

impl WorkerMetrics {
    /// Every family, registered under the `cloudai_worker` prefix; `pulls` is the family
    /// the executor records its pulls in.
    pub fn new(pulls: PullMetrics) -> Self {
        let mut r = Registry::with_prefix("cloudai_worker");
        let running = Gauge::default();
        let container_start = seconds_histogram();
        let resends = Counter::default();
        let finished = Family::default();
        let master_connected = Gauge::default();
        r.register(
            "running_attempts",
            "Attempts running on this worker now, from assignment (pull included) to end",
            running.clone(),
        );
        r.register_with_unit(
            "image_pull",
            "Duration of the image pulls this worker made (not images already present), by outcome",
            Unit::Seconds,
            pulls.durations.clone(),
        );
        r.register_with_unit(
            "container_start",
            "Time from an attempt's assignment to its container running (pull included)",
            Unit::Seconds,
            container_start.clone(),
        );
        r.register(
            "event_resends",
            "Reports (starts, output, ends) sent again after a reconnect, not yet acknowledged before it",
            resends.clone(),
        );
        r.register(
            "attempts_finished",
            "Attempts that ended on this worker, by outcome",
            finished.clone(),
        );
        r.register(
            "master_connected",
            "1 while this worker is registered with a master, else 0",
            master_connected.clone(),
        );
        WorkerMetrics {
            registry: r,
            running,
            pulls,
            container_start,
            resends,
            finished,
            master_connected,
        }
    }

    /// The whole registry in the OpenMetrics text format (ending with `# EOF`), as
    /// [`CONTENT_TYPE`] says.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// The pull family, to hand to an executor.
    pub fn pulls(&self) -> &PullMetrics {
        &self.pulls
    }

    /// Counts one more running attempt until the returned guard is dropped (the attempt's
    /// task ended, or was aborted at shutdown).
    pub fn attempt_running(&self) -> RunningAttempt {
        self.running.inc();
        RunningAttempt(self.running.clone())
    }

    /// An attempt's container runs, `took` after its assignment.
    pub fn container_started(&self, took: Duration) {
        self.container_start.observe(took.as_secs_f64());
    }

    /// `n` reports were sent again after a reconnect.
    pub fn events_resent(&self, n: u64) {
        if n > 0 {
            self.resends.inc_by(n);
        }
    }

    /// An attempt ended with `outcome` (see [`finish_outcome`]).
    pub fn attempt_finished(&self, outcome: &'static str) {
        self.finished.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// The worker registered with a master (`true`) or lost it (`false`).
    pub fn set_master_connected(&self, connected: bool) {
        self.master_connected.set(i64::from(connected));
    }
}

/// One running attempt in `cloudai_worker_running_attempts`; dropping it ends the count.
#[derive(Debug)]
pub struct RunningAttempt(Gauge);

impl Drop for RunningAttempt {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &WorkerMetrics) -> String {
        m.encode().unwrap()
    }

    fn has_line(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn every_family_is_encoded_with_its_type_and_unit() {
        let t = text(&WorkerMetrics::default());
        for (family, kind) in [
            ("cloudai_worker_running_attempts", "gauge"),
            ("cloudai_worker_image_pull_seconds", "histogram"),
            ("cloudai_worker_container_start_seconds", "histogram"),
            ("cloudai_worker_event_resends", "counter"),
            ("cloudai_worker_attempts_finished", "counter"),
            ("cloudai_worker_master_connected", "gauge"),
        ] {
            assert!(
                has_line(&t, &format!("# TYPE {family} {kind}")),
                "{family} {kind}:\n{t}"
            );
            assert!(t.contains(&format!("# HELP {family} ")), "{family}:\n{t}");
        }
        assert!(has_line(
            &t,
            "# UNIT cloudai_worker_image_pull_seconds seconds"
        ));
        assert!(has_line(
            &t,
            "# UNIT cloudai_worker_container_start_seconds seconds"
        ));
        assert!(has_line(&t, "cloudai_worker_running_attempts 0"), "{t}");
        assert!(has_line(&t, "cloudai_worker_event_resends_total 0"), "{t}");
        assert!(has_line(&t, "cloudai_worker_master_connected 0"), "{t}");
        assert!(t.ends_with("# EOF\n"), "{t}");
    }

    #[test]
    fn values_move_as_things_happen() {
        let m = WorkerMetrics::default();
        let a = m.attempt_running();
        let b = m.attempt_running();
        assert!(has_line(&text(&m), "cloudai_worker_running_attempts 2"));
        drop(a);
        assert!(has_line(&text(&m), "cloudai_worker_running_attempts 1"));
        drop(b);
        assert!(has_line(&text(&m), "cloudai_worker_running_attempts 0"));

        m.container_started(Duration::from_millis(1500));
        m.container_started(Duration::from_millis(20));
        m.events_resent(0);
        m.events_resent(3);
        m.attempt_finished("succeeded");
        m.attempt_finished("succeeded");
        m.attempt_finished("error");
        m.set_master_connected(true);
        let t = text(&m);
        assert!(
            has_line(&t, "cloudai_worker_container_start_seconds_count 2"),
            "{t}"
        );
        assert!(
            has_line(&t, "cloudai_worker_container_start_seconds_sum 1.52"),
            "{t}"
        );
        assert!(
            has_line(
                &t,
                "cloudai_worker_container_start_seconds_bucket{le=\"0.02\"} 1"
            ),
            "{t}"
        );
        assert!(
            has_line(
                &t,
                "cloudai_worker_container_start_seconds_bucket{le=\"+Inf\"} 2"
            ),
            "{t}"
        );
        assert!(has_line(&t, "cloudai_worker_event_resends_total 3"), "{t}");
        assert!(
            has_line(
                &t,
                "cloudai_worker_attempts_finished_total{outcome=\"succeeded\"} 2"
            ),
            "{t}"
        );
        assert!(
            has_line(
                &t,
                "cloudai_worker_attempts_finished_total{outcome=\"error\"} 1"
            ),
            "{t}"
        );
        assert!(has_line(&t, "cloudai_worker_master_connected 1"), "{t}");
        m.set_master_connected(false);
        assert!(has_line(&text(&m), "cloudai_worker_master_connected 0"));
    }

    #[test]
    fn pulls_recorded_through_an_executors_handle_show_in_the_registry() {
        let executor_side = PullMetrics::default();
        let m = WorkerMetrics::new(executor_side.clone());
        assert!(
            !text(&m).contains("cloudai_worker_image_pull_seconds_count"),
            "no pull, no series"
        );
        executor_side.observe(true, Duration::from_secs(2));
        executor_side.observe(false, Duration::from_millis(30));
        m.pulls().observe(false, Duration::from_millis(40));
        let t = text(&m);
        assert!(
            has_line(
                &t,
                "cloudai_worker_image_pull_seconds_count{outcome=\"ok\"} 1"
            ),
            "{t}"
        );
        assert!(
            has_line(
                &t,
                "cloudai_worker_image_pull_seconds_sum{outcome=\"ok\"} 2.0"
            ),
            "{t}"
        );
        assert!(
            has_line(
                &t,
                "cloudai_worker_image_pull_seconds_count{outcome=\"error\"} 2"
            ),
            "{t}"
        );
    }

    #[test]
    fn attempt_outcomes_are_few_and_fixed() {
        assert_eq!(finish_outcome(&Finish::Exited(0), true), "succeeded");
        assert_eq!(finish_outcome(&Finish::Exited(3), true), "failed");
        assert_eq!(finish_outcome(&Finish::TimedOut, true), "timed_out");
        assert_eq!(finish_outcome(&Finish::Cancelled, true), "cancelled");
        assert_eq!(finish_outcome(&Finish::Error("x".into()), true), "error");
        assert_eq!(finish_outcome(&Finish::Exited(0), false), "stopped");
        assert_eq!(finish_outcome(&Finish::Cancelled, false), "stopped");
    }
}
