//! [`Shared`]: what every service and background loop of one master holds: the store, the
//! in-memory [`Cluster`], the dispatcher's wake-ups and the log hub. Operations that touch
//! both the store and memory live here so each rule is written once (finish an attempt →
//! release its reservation once → wake the dispatcher and followers).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use cloudai_queue::{AttemptOutcome, QueueError, QueueStore, Task, TaskId, TaskStatus};
use tokio::sync::{watch, Notify};

use crate::cluster::{Cluster, HealthChange, Outbound};
use crate::config::MasterConfig;
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
    /// Becomes true when the master shuts down.
    pub shutdown: watch::Receiver<bool>,
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
            shutdown,
        }
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

    /// Ends the attempt `token` of `id` with `outcome`: store first, then the reservation
    /// is released (exactly once, by token), followers and the dispatcher are woken, and a
    /// retry is scheduled when the task went back to the queue.
    ///
    /// A stale token or a task already past this attempt still releases the reservation
    /// held with that token; a backend failure or an illegal move of a live attempt keeps
    /// it. An `assigned` attempt reported as exited is marked running first (a container
    /// that exited before its start was reported still ran).
    pub async fn finish(
        &self,
        id: TaskId,
        token: u64,
        outcome: AttemptOutcome,
    ) -> Result<Task, QueueError> {
        self.finish_started(id, token, None, outcome).await
    }

    /// [`Shared::finish`] with the attempt's start reported in the same group of
    /// messages: the start (at `started`) and the end are stored in one write.
    pub async fn finish_started(
        &self,
        id: TaskId,
        token: u64,
        started: Option<DateTime<Utc>>,
        outcome: AttemptOutcome,
    ) -> Result<Task, QueueError> {
        let now = Utc::now();
        let mut res = match started {
            Some(at) => {
                self.store
                    .start_and_finish(id, token, at, outcome.clone(), now)
                    .await
            }
            None => {
                self.store
                    .finish_attempt(id, token, outcome.clone(), now)
                    .await
            }
        };
        if let Err(QueueError::IllegalTransition {
            from: TaskStatus::Assigned,
            ..
        }) = res
        {
            if outcome.exit_code.is_some() || outcome.status == TaskStatus::Succeeded {
                res = self
                    .store
                    .start_and_finish(id, token, now, outcome, now)
                    .await;
            }
        }
        match &res {
            Ok(task) => {
                self.cluster().release(id, Some(token));
                if task.status == TaskStatus::Queued {
                    self.schedule_retry(task.not_before);
                }
                self.wake_dispatcher();
            }
            // The attempt is over already (another report or the master ended it).
            Err(QueueError::StaleToken { .. }) => self.release_over(id, token),
            Err(QueueError::IllegalTransition { from, .. }) if !from.is_active() => {
                self.release_over(id, token)
            }
            // A live attempt that cannot move this way (assigned -> succeeded): the caller
            // decides; the reservation stays.
            Err(_) => {}
        }
        self.logs.notify(id);
        res
    }

    fn release_over(&self, id: TaskId, token: u64) {
        if self.cluster().release(id, Some(token)) {
            self.wake_dispatcher();
        }
    }

    /// Finishes an attempt as `lost` because of its worker; logs the outcome.
    pub async fn lose(&self, id: TaskId, token: u64, why: &str) {
        let outcome = AttemptOutcome {
            status: TaskStatus::Lost,
            exit_code: None,
            error: Some(why.to_string()),
        };
        match self.finish(id, token, outcome).await {
            Ok(task) => {
                tracing::info!(task_id = %id, token, status = %task.status, reason = why, "attempt lost")
            }
            Err(e) => {
                tracing::debug!(task_id = %id, token, error = %e, "lost attempt was already over")
            }
        }
    }

    /// Persists health changes and finishes a dead worker's attempts as lost.
    pub async fn apply_health(&self, changes: Vec<HealthChange>) {
        for change in changes {
            tracing::info!(worker_id = %change.worker_id, health = change.health.as_str(), "worker health changed");
            if let Err(e) = self
                .store
                .set_worker_health(&change.worker_id, change.health, None)
                .await
            {
                tracing::warn!(worker_id = %change.worker_id, error = %e, "could not persist worker health");
            }
            for (task, token) in change.lost {
                self.lose(task, token, &format!("worker {} is dead", change.worker_id))
                    .await;
            }
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
