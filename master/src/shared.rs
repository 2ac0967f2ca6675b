//! [`Shared`]: what every service and background loop of one master holds: the store, the
//! in-memory [`Cluster`], the dispatcher's wake-ups, the log hub, and the worker records
//! waiting to be written. Changes to attempts go through [`crate::ledger`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use cloudai_queue::{QueueStore, Task, TaskId};
use tokio::sync::{watch, Notify};

use crate::cluster::Cluster;
use crate::config::MasterConfig;
use crate::conn::Outbound;
use crate::leadership::Role;
use crate::logs::LogHub;

/// State shared by one master's services and loops.
pub struct Shared {
    /// Durable state.
    pub store: Arc<dyn QueueStore>,
    /// Configuration.
    pub config: MasterConfig,
    /// Workers and reservations.
    cluster: Mutex<Cluster>,
    /// Wakes the dispatcher.
    pub wake: Notify,
    /// Earliest dispatch times of tasks waiting for a retry backoff.
    retries: Mutex<BTreeSet<DateTime<Utc>>>,
    /// Wakes `StreamLogs` followers.
    pub logs: LogHub,
    /// Ids for worker streams.
    next_conn: AtomicU64,
    /// Workers whose record (health, heartbeat, registration) must be written.
    dirty_workers: Mutex<BTreeSet<String>>,
    /// Workers with a heartbeat reconcile in flight (one at a time each).
    reconciling: Mutex<BTreeSet<String>>,
    /// Wakes `registry::persist_workers`.
    pub workers_dirty: Notify,
    /// Becomes true when the master shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// What this master is to the group (leader or standby); see `leadership`.
    role: watch::Sender<Role>,
    /// Prometheus metrics (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Dependencies to decide (`workflow`), in the order they were reported.
    deps_work: Mutex<Vec<DepsWork>>,
    /// Wakes `workflow::run`.
    pub deps_wake: Notify,
    /// A waiting task may exist (one was enqueued, or the last sweep found one): until
    /// then a task's end needs no look for dependents, and costs the store nothing.
    pub waiting_seen: std::sync::atomic::AtomicBool,
    /// Why queued tasks wait, as the last dispatch pass saw it.
    pub reasons: crate::reasons::Board,
    /// Who has queued work and users' quotas, as fair share reads them.
    pub fair: crate::fairness::Book,
}

/// Something `workflow::run` must decide.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DepsWork {
    /// This task ended: decide what waits on it.
    Ended(TaskId),
    /// This task was enqueued waiting: decide it (its parents may have ended already).
    Waiting(TaskId),
    /// This array has waiting elements that a slot may have freed, or that were enqueued.
    Array(String),
}

impl Shared {
    /// A master's shared state with an empty cluster.
    pub fn new(
        store: Arc<dyn QueueStore>,
        config: MasterConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Shared {
            store,
            config,
            cluster: Mutex::new(Cluster::new()),
            wake: Notify::new(),
            retries: Mutex::new(BTreeSet::new()),
            logs: LogHub::default(),
            next_conn: AtomicU64::new(1),
            dirty_workers: Mutex::new(BTreeSet::new()),
            reconciling: Mutex::new(BTreeSet::new()),
            workers_dirty: Notify::new(),
            shutdown,
            role: watch::Sender::new(Role::Starting),
            metrics: crate::metrics::Metrics::new(),
            deps_work: Mutex::new(Vec::new()),
            deps_wake: Notify::new(),
            waiting_seen: std::sync::atomic::AtomicBool::new(true),
            reasons: Default::default(),
            fair: Default::default(),
        }
    }

    /// Reports that `task` ended (its dependents are decided next, when any may wait; an
    /// element of a capped array frees a slot for the next).
    pub fn task_ended(&self, task: &Task) {
        if let Some(a) = task.spec.array.as_ref().filter(|a| a.max_running > 0) {
            self.push_deps(DepsWork::Array(a.id.clone()));
        }
        if self.waiting_seen.load(Ordering::Relaxed) {
            self.push_deps(DepsWork::Ended(task.id));
        }
    }

    /// Reports that `task` was enqueued waiting (an array's element: that its array has
    /// waiting elements).
    pub fn task_waiting(&self, task: &Task) {
        self.waiting_seen.store(true, Ordering::Relaxed);
        self.push_deps(match &task.spec.array {
            Some(a) => DepsWork::Array(a.id.clone()),
            None => DepsWork::Waiting(task.id),
        });
    }

    fn push_deps(&self, work: DepsWork) {
        {
            let mut w = self.deps_work.lock().expect("deps lock");
            // An array's elements are reported one by one: its work once is enough.
            if w.last() != Some(&work) {
                w.push(work);
            }
        }
        self.deps_wake.notify_one();
    }

    /// What was reported since the last call, in order, each once.
    pub fn take_deps_work(&self) -> Vec<DepsWork> {
        let all = std::mem::take(&mut *self.deps_work.lock().expect("deps lock"));
        let mut seen = std::collections::HashSet::new();
        all.into_iter().filter(|w| seen.insert(w.clone())).collect()
    }

    /// What this master is to the group now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Records what this master became (by `leadership` only).
    pub fn set_role(&self, role: Role) {
        self.role.send_if_modified(|r| {
            let changed = *r != role;
            *r = role;
            changed
        });
    }

    /// True while this master leads and its lease holds by its own clock: the condition
    /// of every act only the leader may do (acks that renew workers' leases, dispatch).
    pub fn leading(&self) -> bool {
        self.role.borrow().leads_at(tokio::time::Instant::now())
    }

    /// Resolves once this master no longer leads (or shutdown begins): ends what only a
    /// leader serves, such as worker streams. A lease that runs out by the clock while
    /// the role still says leader is caught by the deadline.
    pub async fn until_deposed(&self) {
        let mut rx = self.role.subscribe();
        loop {
            let until = match &*rx.borrow_and_update() {
                Role::Leader { until, .. } => *until,
                _ => return,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                changed = rx.changed() => if changed.is_err() { return },
                _ = self.until_shutdown() => return,
            }
        }
    }

    /// This master as a candidate for the lead.
    pub fn candidate(&self) -> cloudai_queue::Candidate {
        cloudai_queue::Candidate {
            id: self.config.master_id(),
            url: self.config.advertised_url(),
        }
    }

    /// Drops the view of workers and reservations (a deposed leader): the new leader
    /// builds its own from the store and from the workers as they reconnect to it.
    pub fn forget_cluster(&self) {
        *self.cluster() = Cluster::new();
        self.retries.lock().expect("retries lock").clear();
        self.dirty_workers
            .lock()
            .expect("dirty workers lock")
            .clear();
    }

    /// The cluster, locked. Never hold the guard across an `.await`.
    pub fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().expect("cluster lock poisoned")
    }

    /// A fresh stream id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Asks the dispatcher for a pass (coalesced: many calls, one pass).
    pub fn wake_dispatcher(&self) {
        self.wake.notify_one();
    }

    /// Remembers that a task becomes eligible at `at`, so the dispatcher wakes then.
    pub fn schedule_retry(&self, at: DateTime<Utc>) {
        self.retries.lock().expect("retries lock").insert(at);
        self.wake_dispatcher();
    }

    /// The earliest pending retry time, after forgetting those not after `now`.
    pub fn next_retry(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut r = self.retries.lock().expect("retries lock");
        let later = r.split_off(&(now + chrono::Duration::nanoseconds(1)));
        *r = later;
        r.first().copied()
    }

    /// Asks for the current record of `worker_id` to be written to the store (by
    /// `registry::persist_workers`, which retries; the latest state wins).
    pub fn persist_worker(&self, worker_id: &str) {
        self.dirty_workers
            .lock()
            .expect("dirty workers lock")
            .insert(worker_id.to_string());
        self.workers_dirty.notify_one();
    }

    /// The workers whose record must be written, taken.
    pub fn take_dirty_workers(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.dirty_workers.lock().expect("dirty workers lock"))
    }

    /// Claims the heartbeat reconcile of `worker_id`; false when one is running already.
    pub fn begin_reconcile(&self, worker_id: &str) -> bool {
        self.reconciling
            .lock()
            .expect("reconciling lock")
            .insert(worker_id.to_string())
    }

    /// Ends the claim of [`Shared::begin_reconcile`].
    pub fn end_reconcile(&self, worker_id: &str) {
        self.reconciling
            .lock()
            .expect("reconciling lock")
            .remove(worker_id);
    }

    /// Sends a cancel for a task's live attempt unless one was already asked for (the
    /// store watch sees a cancel request until the attempt ends).
    pub fn send_cancel_once(&self, id: TaskId) {
        let target = {
            let mut c = self.cluster();
            match c.reservation(&id) {
                Some(r) if !r.cancel_pending => c.cancel_target(id),
                _ => None,
            }
        };
        if let Some((conn, token)) = target {
            let _ = conn.tx.send(Outbound::Cancel { task_id: id, token });
        }
    }

    /// Sends a cancel for a task's live attempt, now or right after its `Assign`.
    pub fn send_cancel(&self, id: TaskId) {
        if let Some((conn, token)) = self.cluster().cancel_target(id) {
            let _ = conn.tx.send(Outbound::Cancel { task_id: id, token });
        }
    }

    /// True once shutdown began.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves when shutdown begins.
    pub async fn until_shutdown(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}
