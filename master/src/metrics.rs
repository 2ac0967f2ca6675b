//! The master's Prometheus metrics (`/metrics` on `--http-listen`), through the official
//! `prometheus-client` crate, never hand-formatted.
//!
//! Two kinds: counters and histograms moved where things happen (an enqueue, a stored
//! start or end, a dispatch pass, a store call, a refusal), and gauges set at scrape time
//! from the store's counts and the cluster view ([`Metrics::render`]), so a gauge is
//! never stale and a restart loses none of what the store knows. Counters start at zero
//! with each master process, as Prometheus expects (`rate()` handles the resets).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudai_queue::{QueueStats, Task, TaskId, TaskStatus, WorkerHealth};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::cluster::WorkerEntry;

/// Label of the store operation a latency or an error is counted under.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// `assign`, `report`, `lose`, `read`, `enqueue`, `client` ...
    pub op: String,
}

/// A task status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// `queued`, `running`, `succeeded` ...
    pub status: String,
}

/// How an attempt ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `succeeded`, `failed`, `timed_out`, `cancelled`, `lost`.
    pub outcome: String,
}

/// A worker's health.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthLabel {
    /// `healthy`, `suspect`, `dead`.
    pub health: String,
}

/// One worker, and which quantity of its resources.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerResourceLabel {
    /// The worker id.
    pub worker: String,
    /// `capacity`, `free` or `used` (reserved by tasks).
    pub kind: String,
}

/// One worker.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    /// The worker id.
    pub worker: String,
}

/// A command a remote store was sent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    /// The command's name: `find`, `update`, `commitTransaction` ...
    pub command: String,
}

/// Why a call was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A short reason: `missing_token`, `invalid_token`, `role`, `rate`, `queue_full` ...
    pub reason: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric family of the master, registered once.
pub struct Metrics {
    registry: Registry,
    /// Tasks accepted by enqueue (each task of a batch counts).
    pub enqueued: Counter,
    /// Attempts whose container started (as stored).
    pub started: Counter,
    /// Attempts that ended, by outcome (as stored).
    pub finished: Family<OutcomeLabel, Counter>,
    /// Enqueue to the start of a task's first container, in seconds.
    pub queue_wait: Histogram,
    /// An attempt's run, start to end, in seconds (the worker's times).
    pub run_time: Histogram,
    /// One dispatch pass, in seconds.
    pub dispatch_pass: Histogram,
    /// Store calls' latency by operation, in seconds (each try of a retried write).
    pub store_op: Family<OpLabel, Histogram>,
    /// Store calls that failed, by operation.
    pub store_errors: Family<OpLabel, Counter>,
    /// Output bytes stored from workers' reports.
    pub log_bytes_stored: Counter,
    /// Output bytes dropped past the per-task cap (`--max-log-bytes-per-task`), as the
    /// store counts them.
    pub log_bytes_dropped: Counter,
    /// Calls refused by authentication or roles, by reason.
    pub auth_refusals: Family<ReasonLabel, Counter>,
    /// Enqueues refused by backpressure, by reason.
    pub enqueue_refusals: Family<ReasonLabel, Counter>,
    /// Lease renewals by this master, by result (`ok`, `lost`, `error`).
    pub lease_renewals: Family<ReasonLabel, Counter>,
    tasks: Family<StatusLabel, Gauge>,
    oldest_queued_age: FloatGauge,
    workers: Family<HealthLabel, Gauge>,
    worker_cpu: Family<WorkerResourceLabel, FloatGauge>,
    worker_memory: Family<WorkerResourceLabel, Gauge>,
    worker_gpus: Family<WorkerResourceLabel, Gauge>,
    heartbeat_age: Family<WorkerLabel, FloatGauge>,
    leader: Gauge,
    epoch: Gauge,
    store_up: Gauge,
    store_commands: Family<CommandLabel, Counter>,
    /// What was counted of each attempt (a repeat of a stored report counts nothing).
    seen: Mutex<HashMap<(TaskId, u64), Counted>>,
}

#[derive(Default)]
struct Counted {
    started: bool,
    ended: bool,
}

/// Attempts tracked for counting exactly once; past it the sets start over.
const MAX_TRACKED: usize = 200_000;

/// Buckets of a store call: 50 µs .. ~6.5 s.
fn store_op_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, registered under the `cloudai` prefix.
    pub fn new() -> Self {
        let mut root = Registry::with_prefix("cloudai");
        let m = Metrics {
            registry: Registry::default(),
            enqueued: Counter::default(),
            started: Counter::default(),
            finished: Family::default(),
            // 1 ms .. ~9 h
            queue_wait: Histogram::new(exponential_buckets(0.001, 2.0, 25)),
            // 100 ms .. ~12 days
            run_time: Histogram::new(exponential_buckets(0.1, 2.0, 24)),
            // 50 µs .. ~3 s
            dispatch_pass: Histogram::new(exponential_buckets(0.000_05, 2.0, 17)),
            store_op: Family::new_with_constructor(store_op_histogram),
            store_errors: Family::default(),
            log_bytes_stored: Counter::default(),
            log_bytes_dropped: Counter::default(),
            auth_refusals: Family::default(),
            enqueue_refusals: Family::default(),
            lease_renewals: Family::default(),
            tasks: Family::default(),
            oldest_queued_age: FloatGauge::default(),
            workers: Family::default(),
            worker_cpu: Family::default(),
            worker_memory: Family::default(),
            worker_gpus: Family::default(),
            heartbeat_age: Family::default(),
            leader: Gauge::default(),
            epoch: Gauge::default(),
            store_up: Gauge::default(),
            store_commands: Family::default(),
            seen: Mutex::default(),
        };
        let r = &mut root;
        r.register(
            "tasks_enqueued",
            "Tasks accepted by enqueue",
            m.enqueued.clone(),
        );
        r.register(
            "attempts_started",
            "Attempts whose container started",
            m.started.clone(),
        );
        r.register(
            "attempts_finished",
            "Attempts that ended, by outcome",
            m.finished.clone(),
        );
        r.register_with_unit(
            "task_queue_wait",
            "Time from enqueue to the start of the task's container",
            Unit::Seconds,
            m.queue_wait.clone(),
        );
        r.register_with_unit(
            "attempt_run",
            "Time an attempt's container ran, as the worker measured it",
            Unit::Seconds,
            m.run_time.clone(),
        );
        r.register_with_unit(
            "dispatch_pass",
            "Duration of one dispatch pass",
            Unit::Seconds,
            m.dispatch_pass.clone(),
        );
        r.register_with_unit(
            "store_operation",
            "Latency of store calls, by operation",
            Unit::Seconds,
            m.store_op.clone(),
        );
        r.register(
            "store_errors",
            "Store calls that failed, by operation",
            m.store_errors.clone(),
        );
        r.register_with_unit(
            "log_stored",
            "Output bytes stored from workers' reports",
            Unit::Bytes,
            m.log_bytes_stored.clone(),
        );
        r.register_with_unit(
            "log_dropped",
            "Output bytes dropped past the per-task cap",
            Unit::Bytes,
            m.log_bytes_dropped.clone(),
        );
        r.register(
            "auth_refusals",
            "Calls refused by authentication or roles",
            m.auth_refusals.clone(),
        );
        r.register(
            "enqueue_refusals",
            "Enqueues refused by backpressure",
            m.enqueue_refusals.clone(),
        );
        r.register(
            "lease_renewals",
            "Leader lease renewals by this master, by result",
            m.lease_renewals.clone(),
        );
        r.register("tasks", "Tasks in the store, by status", m.tasks.clone());
        r.register_with_unit(
            "oldest_queued_age",
            "Age of the oldest queued task (0 when none)",
            Unit::Seconds,
            m.oldest_queued_age.clone(),
        );
        r.register(
            "workers",
            "Workers known to the leader, by health",
            m.workers.clone(),
        );
        r.register(
            "worker_cpu_cores",
            "Worker CPU in cores: capacity, free, used",
            m.worker_cpu.clone(),
        );
        r.register_with_unit(
            "worker_memory",
            "Worker memory: capacity, free, used",
            Unit::Bytes,
            m.worker_memory.clone(),
        );
        r.register(
            "worker_gpus",
            "Worker GPUs: capacity, free, used",
            m.worker_gpus.clone(),
        );
        r.register_with_unit(
            "worker_heartbeat_age",
            "Time since each worker's last heartbeat",
            Unit::Seconds,
            m.heartbeat_age.clone(),
        );
        r.register(
            "leader",
            "1 while this master leads its group",
            m.leader.clone(),
        );
        r.register(
            "leader_epoch",
            "The lease epoch this master leads under (0: none)",
            m.epoch.clone(),
        );
        r.register(
            "store_up",
            "1 when the last scrape's store read succeeded",
            m.store_up.clone(),
        );
        r.register(
            "store_commands",
            "Commands sent to a remote store (MongoDB), by name, as the driver's command monitoring counts them",
            m.store_commands.clone(),
        );
        Metrics {
            registry: root,
            ..m
        }
    }

    /// Records a store call of `op` that took `took`, and its failure.
    pub fn store_call(&self, op: &str, took: Duration, failed: bool) {
        let label = OpLabel { op: op.to_string() };
        self.store_op
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        if failed {
            self.store_errors.get_or_create(&label).inc();
        }
    }

    /// Records what a stored write shows of attempt `token` of `after`: its start (and,
    /// for a first attempt, the task's queue wait) and its end (outcome, run time), each
    /// once however often the same report is stored again (a re-send after a lost ack).
    pub fn attempt_stored(&self, after: &Task, token: u64) {
        let Some(a) = after.attempts.iter().find(|a| a.token == token) else {
            return;
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > MAX_TRACKED {
            // Forget them all rather than grow; at worst a repeat is counted again.
            seen.clear();
        }
        let counted = seen.entry((after.id, token)).or_default();
        if let (Some(start), false) = (a.started_at, counted.started) {
            counted.started = true;
            self.started.inc();
            if a.number == 1 {
                self.queue_wait.observe(secs(after.created_at, start));
            }
        }
        if let (Some(outcome), false) = (a.outcome, counted.ended) {
            counted.ended = true;
            self.finished
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.as_str().to_string(),
                })
                .inc();
            if let (Some(s), Some(f)) = (a.started_at, a.finished_at) {
                self.run_time.observe(secs(s, f));
            }
        }
    }

    /// Sets the scrape-time gauges and encodes every family as OpenMetrics text.
    pub fn render(&self, view: &ScrapeView<'_>) -> String {
        self.store_up.set(i64::from(view.stats.is_some()));
        for (command, n) in view.commands {
            let label = CommandLabel {
                command: command.clone(),
            };
            // The store keeps the count; the counter shows it.
            self.store_commands
                .get_or_create(&label)
                .inner()
                .store(*n, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(stats) = view.stats {
            for s in TaskStatus::ALL {
                let n = stats.counts.get(&s).copied().unwrap_or(0);
                self.tasks
                    .get_or_create(&StatusLabel {
                        status: s.as_str().to_string(),
                    })
                    .set(n as i64);
            }
            let age = stats
                .oldest_queued_at
                .map(|t| secs(t, view.now))
                .unwrap_or(0.0);
            self.oldest_queued_age.set(age);
        }
        self.leader.set(i64::from(view.epoch.is_some()));
        self.epoch.set(view.epoch.unwrap_or(0) as i64);
        // Workers come and go: families are rebuilt so that a removed worker's series end.
        for f in [&self.worker_memory, &self.worker_gpus] {
            f.clear();
        }
        self.worker_cpu.clear();
        self.heartbeat_age.clear();
        self.workers.clear();
        for h in [
            WorkerHealth::Healthy,
            WorkerHealth::Suspect,
            WorkerHealth::Dead,
        ] {
            let n = view.workers.iter().filter(|w| w.record.health == h).count();
            self.workers
                .get_or_create(&HealthLabel {
                    health: h.as_str().to_string(),
                })
                .set(n as i64);
        }
        for w in view.workers {
            let id = &w.record.id;
            let (cap, free, used) = (w.record.capacity, w.free(), w.reserved);
            for (kind, r) in [("capacity", cap), ("free", free), ("used", used)] {
                let l = WorkerResourceLabel {
                    worker: id.clone(),
                    kind: kind.to_string(),
                };
                self.worker_cpu
                    .get_or_create(&l)
                    .set(r.cpu_millis as f64 / 1000.0);
                self.worker_memory
                    .get_or_create(&l)
                    .set(r.memory_bytes as i64);
                self.worker_gpus.get_or_create(&l).set(i64::from(r.gpus));
            }
            self.heartbeat_age
                .get_or_create(&WorkerLabel { worker: id.clone() })
                .set(view.seen.get(id).copied().unwrap_or(0.0));
        }
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// What a scrape reads: the store's counts (`None` when the store did not answer), the
/// leader's epoch (`None` on a standby), and the workers with their heartbeat ages.
pub struct ScrapeView<'a> {
    /// Task counts by status and the oldest queued task.
    pub stats: Option<&'a QueueStats>,
    /// The epoch this master leads under.
    pub epoch: Option<u64>,
    /// Workers in the leader's view.
    pub workers: &'a [WorkerEntry],
    /// Seconds since each worker's last heartbeat, by id.
    pub seen: &'a HashMap<String, f64>,
    /// The scrape's time.
    pub now: DateTime<Utc>,
    /// Commands sent to a remote store, by name (empty for SQLite).
    pub commands: &'a [(String, u64)],
}

fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_microseconds().unwrap_or(0).max(0)) as f64 / 1e6
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
