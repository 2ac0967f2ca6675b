//! The dispatcher: one loop, woken by events (enqueue, a finished attempt, a worker that
//! connects or recovers, a cancel) and by a timer only for the earliest retry backoff.
//! Each pass reads the eligible queued tasks in dispatch order, places them with the pure
//! [`placement::plan`] over a snapshot of the cluster, and assigns each placed task:
//! reserve in memory (re-checked under the lock) → `store.assign` (conditional) →
//! `Assign` on the worker's stream. The agent service uses [`assign`] the same way.

use std::sync::Arc;

use chrono::Utc;
use cloudai_queue::{Task, TaskStatus};
use futures::StreamExt;

use crate::cluster::{Confirmed, Outbound};
use crate::placement::{self, Reject, TaskAsk};
use crate::shared::Shared;

/// Most queued tasks read per pass step.
pub const BATCH: usize = 1024;
/// Assignments of one pass in flight at once.
pub const ASSIGN_CONCURRENCY: usize = 64;

/// Placement's view of a task.
pub fn ask(task: &Task) -> TaskAsk<'_> {
    TaskAsk {
        request: task.spec.reservation(),
        pinned: task.spec.pinned_worker.as_deref(),
    }
}

/// Runs until shutdown. With `agent_only`, it only waits for shutdown.
pub async fn run(shared: Arc<Shared>) {
    if shared.config.agent_only {
        shared.until_shutdown().await;
        return;
    }
    loop {
        let sleep = match shared.next_retry(Utc::now()) {
            Some(at) => (at - Utc::now())
                .to_std()
                .unwrap_or_default()
                .saturating_add(std::time::Duration::from_millis(1)),
            None => std::time::Duration::from_secs(3600),
        };
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shared.until_shutdown() => return,
        }
        pass(&shared).await;
    }
}

/// Dispatches until nothing more can be placed. Returns how many tasks were assigned.
pub async fn pass(shared: &Shared) -> usize {
    let mut total = 0;
    loop {
        let tasks = match shared.store.queued(Utc::now(), BATCH).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "dispatcher could not read the queue");
                // Try again shortly rather than waiting for the next event.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                shared.wake_dispatcher();
                return total;
            }
        };
        if tasks.is_empty() {
            return total;
        }
        let mut slots = shared.cluster().slots();
        if !slots.iter().any(|s| s.schedulable) {
            return total;
        }
        let asks: Vec<TaskAsk<'_>> = tasks.iter().map(ask).collect();
        let plan = placement::plan(shared.config.placement, &mut slots, &asks);
        // Reservations are taken under the lock inside `assign`, so assigning many at
        // once is safe; concurrent store writes share the store's group commits.
        let assigned = futures::stream::iter(plan)
            .map(|(t, w)| assign(shared, &tasks[t], &slots[w].id))
            .buffer_unordered(ASSIGN_CONCURRENCY)
            .filter(|r| futures::future::ready(r.is_ok()))
            .count()
            .await;
        total += assigned;
        if assigned == 0 || tasks.len() < BATCH {
            return total;
        }
    }
}

/// Why [`assign`] did not assign.
#[derive(Debug)]
pub enum AssignError {
    /// Placement rules refuse it.
    Rejected(Reject),
    /// The store refused it (for example the task is no longer queued).
    Store(cloudai_queue::QueueError),
}

impl std::fmt::Display for AssignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AssignError::Rejected(r) => r.fmt(f),
            AssignError::Store(e) => e.fmt(f),
        }
    }
}

/// Assigns a queued `task` to `worker_id`: reserves (checking pin, health, connection
/// and free capacity under the lock), records the attempt in the store, then sends
/// `Assign`. On any failure the reservation is released and nothing is sent.
pub async fn assign(shared: &Shared, task: &Task, worker_id: &str) -> Result<(), AssignError> {
    shared
        .cluster()
        .try_reserve(task.id, worker_id, &ask(task))
        .map_err(AssignError::Rejected)?;
    let assigned = match shared.store.assign(task.id, worker_id, Utc::now()).await {
        Ok(t) => t,
        Err(e) => {
            shared.cluster().release(task.id, None);
            tracing::debug!(task_id = %task.id, worker_id, error = %e, "assign lost a race");
            return Err(AssignError::Store(e));
        }
    };
    let token = assigned.token();
    let attempt = assigned.attempts.len() as u32;
    let confirmed = shared.cluster().confirm(task.id, token);
    let sent = match confirmed {
        Confirmed::Send { conn, cancel } => {
            let ok = conn
                .tx
                .send(Outbound::Assign {
                    task_id: task.id,
                    token,
                    attempt,
                    spec: Box::new(assigned.spec.clone()),
                })
                .is_ok();
            if ok && (cancel || assigned.cancel_requested) {
                let _ = conn.tx.send(Outbound::Cancel {
                    task_id: task.id,
                    token,
                });
            }
            ok
        }
        Confirmed::WorkerGone => false,
    };
    shared.logs.notify(task.id);
    if !sent {
        shared
            .lose(
                task.id,
                token,
                &format!("worker {worker_id} went away before the assignment reached it"),
            )
            .await;
    } else {
        tracing::debug!(task_id = %task.id, worker_id, token, "assigned");
    }
    debug_assert_eq!(assigned.status, TaskStatus::Assigned);
    Ok(())
}
