//! Simulated workers that are the real worker runtime ([`cloudai_worker::run`]) on the
//! [`FakeExecutor`] (no-op containers that exit at once), with a [`Probe`] around the
//! executor that timestamps every container start and exit, so latency is measured on
//! one monotonic clock inside this process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cloudai_queue::{Resources, TaskSpec};
use cloudai_worker::executor::{Exit, Handle, OutputStream, ProgressSink, StartRequest};
use cloudai_worker::{ExecError, Executor, FakeBehavior, FakeExecutor, WorkerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// CPU a benchmark task requests, so a worker's capacity is a number of slots.
pub const SLOT_CPU_MILLIS: u64 = 1000;

/// Start and exit times of containers, by task id.
#[derive(Default)]
pub struct Probe {
    starts: Mutex<HashMap<String, Instant>>,
    count: AtomicU64,
    first: Mutex<Option<Instant>>,
    ends: Mutex<HashMap<String, Instant>>,
    ended: AtomicU64,
    last_end: Mutex<Option<Instant>>,
}

impl Probe {
    /// How many containers started so far.
    pub fn started(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// When the first container started.
    pub fn first_start(&self) -> Option<Instant> {
        *self.first.lock().expect("probe lock")
    }

    /// When the task's (first) container started.
    pub fn start_of(&self, task_id: &str) -> Option<Instant> {
        self.starts
            .lock()
            .expect("probe lock")
            .get(task_id)
            .copied()
    }

    /// How many containers exited so far (as the executor's `wait` returned).
    pub fn ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }

    /// When the last container exited.
    pub fn last_end(&self) -> Option<Instant> {
        *self.last_end.lock().expect("probe lock")
    }

    /// When the task's (first) container exited.
    pub fn end_of(&self, task_id: &str) -> Option<Instant> {
        self.ends.lock().expect("probe lock").get(task_id).copied()
    }

    /// Every recorded task's start and exit (`None` while it runs), by start time.
    pub fn spans(&self) -> Vec<(Instant, Option<Instant>)> {
        let starts = self.starts.lock().expect("probe lock");
        let ends = self.ends.lock().expect("probe lock");
        let mut v: Vec<_> = starts
            .iter()
            .map(|(id, s)| (*s, ends.get(id).copied()))
            .collect();
        v.sort_by_key(|(s, _)| *s);
        v
    }

    fn record_end(&self, task_id: Option<String>) {
        let now = Instant::now();
        self.ended.fetch_add(1, Ordering::Relaxed);
        *self.last_end.lock().expect("probe lock") = Some(now);
        if let Some(id) = task_id {
            self.ends
                .lock()
                .expect("probe lock")
                .entry(id)
                .or_insert(now);
        }
    }

    fn record(&self, task_id: &str, record_each: bool) {
        let now = Instant::now();
        self.count.fetch_add(1, Ordering::Relaxed);
        self.first.lock().expect("probe lock").get_or_insert(now);
        if record_each {
            self.starts
                .lock()
                .expect("probe lock")
                .entry(task_id.to_string())
                .or_insert(now);
        }
    }
}

/// The fake executor, with every start and exit reported to a [`Probe`].
pub struct ProbeExecutor {
    inner: FakeExecutor,
    probe: Arc<Probe>,
    /// Record per-task times (latency runs) or only count (throughput runs).
    record_each: bool,
    /// Task id by container id, while it runs (only when `record_each`).
    running: Mutex<HashMap<String, String>>,
}

#[async_trait]
impl Executor for ProbeExecutor {
    async fn prepare(&self, spec: &TaskSpec, progress: &ProgressSink) -> Result<(), ExecError> {
        self.inner.prepare(spec, progress).await
    }
    async fn start(&self, req: &StartRequest) -> Result<Handle, ExecError> {
        let h = self.inner.start(req).await?;
        self.probe.record(&req.task_id, self.record_each);
        if self.record_each {
            self.running
                .lock()
                .expect("probe lock")
                .insert(h.id.clone(), req.task_id.clone());
        }
        Ok(h)
    }
    fn logs(&self, handle: &Handle) -> OutputStream {
        self.inner.logs(handle)
    }
    async fn wait(&self, handle: &Handle) -> Result<Exit, ExecError> {
        let exit = self.inner.wait(handle).await?;
        let task_id = if self.record_each {
            self.running.lock().expect("probe lock").remove(&handle.id)
        } else {
            None
        };
        // A second wait on the same container (after a stop) is not a second exit.
        if task_id.is_some() || !self.record_each {
            self.probe.record_end(task_id);
        }
        Ok(exit)
    }
    async fn stop(&self, handle: &Handle, grace: Duration) -> Result<(), ExecError> {
        self.inner.stop(handle, grace).await
    }
    async fn kill(&self, handle: &Handle) -> Result<(), ExecError> {
        self.inner.kill(handle).await
    }
    async fn remove(&self, handle: &Handle) -> Result<(), ExecError> {
        self.inner.remove(handle).await
    }
}

/// In-process workers on the fake executor.
pub struct FakeFleet {
    /// Every container start, across the fleet.
    pub probe: Arc<Probe>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<cloudai_worker::Result<()>>>,
}

impl FakeFleet {
    /// Starts `workers` workers dialling `master`, each with `slots` slots of
    /// [`SLOT_CPU_MILLIS`] (0 slots: unlimited capacity for zero-request tasks).
    pub fn start(master: &str, workers: usize, slots: u64, record_each: bool) -> FakeFleet {
        let probe = Arc::new(Probe::default());
        let behavior = FakeBehavior {
            run_for: Duration::ZERO,
            ..FakeBehavior::default()
        };
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..workers {
            let mut config = WorkerConfig::new(master);
            config.id = Some(format!("bench-w{i}"));
            config.stop_grace = Duration::from_millis(100);
            config.capacity_override = Some(Resources {
                cpu_millis: if slots == 0 {
                    1_000_000
                } else {
                    slots * SLOT_CPU_MILLIS
                },
                memory_bytes: 1 << 40,
                gpus: 0,
                disk_bytes: 1 << 40,
            });
            let exec = ProbeExecutor {
                inner: FakeExecutor::new(behavior.clone()),
                probe: probe.clone(),
                record_each,
                running: Mutex::default(),
            };
            let (tx, rx) = oneshot::channel();
            stops.push(tx);
            tasks.push(tokio::spawn(cloudai_worker::run(
                config,
                Arc::new(exec),
                async move {
                    let _ = rx.await;
                },
            )));
        }
        FakeFleet {
            probe,
            stops,
            tasks,
        }
    }

    /// Stops every worker and waits for them.
    pub async fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// A no-op task spec: the bench image, one slot of CPU when `slotted`.
pub fn noop_spec(slotted: bool) -> TaskSpec {
    let mut spec = TaskSpec::new("cloudai/bench-noop:latest");
    if slotted {
        spec.resources.cpu_millis = SLOT_CPU_MILLIS;
    }
    spec
}
