//! The dispatcher: one loop, woken by events (enqueue, a finished attempt, a worker that
//! connects or recovers, a cancel) and by a timer only for the earliest retry backoff.
//! Each pass reads the eligible queued tasks in dispatch order, places them with the pure
//! [`placement::plan`] over a snapshot of the cluster, and assigns each placed task:
//! reserve in memory (re-checked under the lock) → `store.assign` (conditional) →
//! `Assign` on the worker's stream. The agent service uses [`assign`] the same way.
//!
//! Assignments are pipelined: a pass takes its reservations at once and leaves the store
//! writes and sends to their own tasks, so the next pass need not wait for a commit
//! (steps within one pass still do, so a pass never re-reads its own pending tasks). A
//! task with a reservation is skipped by later passes until its assignment is settled;
//! one that fails releases its reservation and wakes the dispatcher.

use std::sync::Arc;

use chrono::Utc;
use cloudai_queue::{LostCause, QueueError, QueuedTask, Task, TaskId, TaskStatus};

use crate::cluster::Confirmed;
use crate::conn::Outbound;
use crate::ledger;
use crate::placement::{self, Reject, TaskAsk, WorkerSlot};
use crate::reasons::PassReasons;
use crate::shared::Shared;

/// Most queued tasks read per pass step: how deep a pass looks past tasks that do not
/// fit (backfill).
pub const BATCH: usize = 1024;
/// Fewest queued tasks read per pass step (see [`pass`] for how the read size adapts).
pub const MIN_READ: usize = 32;

/// Placement's view of a task.
pub fn ask(task: &QueuedTask) -> TaskAsk<'_> {
    TaskAsk {
        request: task.reservation(),
        pinned: task.pinned_worker.as_deref(),
        constraints: &task.constraints,
        prefer: &task.prefer,
        waited: std::time::Duration::ZERO,
    }
}

/// How long the task has waited since its enqueue (its id's time), as of `now`.
pub fn waited(id: TaskId, now: chrono::DateTime<Utc>) -> std::time::Duration {
    id.created_at()
        .and_then(|t| (now - t).to_std().ok())
        .unwrap_or_default()
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
        let t0 = std::time::Instant::now();
        pass(&shared).await;
        shared
            .metrics
            .dispatch_pass
            .observe(t0.elapsed().as_secs_f64());
    }
}

/// Dispatches until nothing more can be placed. Returns how many tasks were assigned.
///
/// Each step reads only as many queued tasks as are likely to be placed: it starts at
/// [`MIN_READ`], doubles while everything read was placed, and looks deeper (up to
/// [`BATCH`], the backfill depth) only when nothing read fitted. A pass reads nothing
/// while no schedulable worker has room at all (every task reserves some CPU and memory),
/// so a wake-up by an enqueue or a heartbeat on a full cluster costs no store read.
///
/// Each task read and not placed gets its wait reason on `shared.reasons`.
pub async fn pass(shared: &Arc<Shared>) -> usize {
    let mut why = PassReasons::default();
    let (total, read_any, full) = steps(shared, &mut why).await;
    if read_any {
        shared.reasons.record(why.into_reasons());
    }
    if full {
        shared.reasons.cluster_full();
    }
    total
}

/// The steps of [`pass`]: how many were assigned, whether anything was read, and whether
/// it stopped because no worker had room left.
async fn steps(shared: &Arc<Shared>, why: &mut PassReasons) -> (usize, bool, bool) {
    let mut read_any = false;
    let mut total = 0;
    let mut limit = MIN_READ;
    let mut room = has_room(&shared.cluster().slots());
    let mut settling = Vec::new();
    loop {
        // A step reads after the previous step's assignments settled, so it does not
        // read them again; the last step's settle after the pass has returned.
        for s in settling.drain(..) {
            let _ = s.await;
        }
        if !room {
            return (total, read_any, true);
        }
        let step = match crate::fairness::read(shared, Utc::now(), limit).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "dispatcher could not read the queue");
                // Try again shortly rather than waiting for the next event.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                shared.wake_dispatcher();
                return (total, read_any, false);
            }
        };
        read_any = true;
        if step.tasks.is_empty() {
            return (total, read_any, false);
        }
        let (read, saw_all) = (step.tasks.len(), step.saw_all);
        // Tasks still settling an earlier pass's assignment are not placed again.
        let tasks: Vec<QueuedTask> = {
            let c = shared.cluster();
            step.tasks
                .into_iter()
                .filter(|t| c.reservation(&t.id).is_none())
                .collect()
        };
        let pending = read - tasks.len();
        let mut slots = shared.cluster().slots();
        // Fair share's order among submitters; what is over a quota waits.
        let (tasks, over_quota) = crate::fairness::arrange(shared, &step.quotas, tasks, &slots);
        for (id, over) in &over_quota {
            why.over_quota(*id, over);
        }
        if !over_quota.is_empty() {
            // A quota changed through another master wakes nothing here: look again.
            crate::fairness::recheck_later(shared);
        }
        let now = Utc::now();
        let asks: Vec<TaskAsk<'_>> = tasks
            .iter()
            .map(|t| TaskAsk {
                waited: waited(t.id, now),
                ..ask(t)
            })
            .collect();
        let starve = Some(shared.config.starvation_after).filter(|d| !d.is_zero());
        let plan = placement::plan(shared.config.placement, &mut slots, &asks, starve);
        // `slots` now holds what is free once this plan's reservations are taken.
        room = has_room(&slots);
        let mut placed = vec![false; tasks.len()];
        for (t, _) in &plan {
            placed[*t] = true;
        }
        for (t, a) in asks.iter().enumerate().filter(|(t, _)| !placed[*t]) {
            why.unplaced(tasks[t].id, &slots, a);
        }
        let mut assigned = 0;
        for (t, w) in plan {
            let task = &tasks[t];
            if reserve(shared, task, &slots[w].id).is_err() {
                continue;
            }
            assigned += 1;
            let (shared, id, worker) = (shared.clone(), task.id, slots[w].id.clone());
            settling.push(tokio::spawn(async move {
                if settle(&shared, id, &worker).await.is_err() {
                    // Its reservation is free again: place something there.
                    shared.wake_dispatcher();
                }
            }));
        }
        total += assigned;
        match next_read(limit, saw_all, read, assigned + pending) {
            Some(next) => limit = next,
            None => return (total, read_any, false),
        }
    }
}

/// True when some schedulable worker has any CPU and memory free. Every task reserves
/// at least one millicore and one byte (see `TaskSpec::reservation`), so without such a
/// worker nothing can be placed and the queue need not be read.
pub fn has_room(slots: &[WorkerSlot]) -> bool {
    slots
        .iter()
        .any(|s| s.schedulable && s.free.cpu_millis > 0 && s.free.memory_bytes > 0)
}

/// After a step that asked for `limit` queued tasks (per submitter, with fair share),
/// got `read` and assigned `assigned`, and `saw_all` (every read came back short): the
/// next step's read size, or `None` when the pass is done.
pub fn next_read(limit: usize, saw_all: bool, read: usize, assigned: usize) -> Option<usize> {
    if saw_all {
        // The step saw every eligible queued task.
        None
    } else if assigned == 0 {
        // Nothing read fitted: look deeper for a task that does (backfill), up to BATCH.
        (limit < BATCH).then(|| (limit * 4).min(BATCH))
    } else if assigned >= read {
        // Everything fitted: there may be room for more than we read.
        Some((limit * 2).min(BATCH))
    } else {
        // Some fitted: read again; the unplaced head comes back with newer tasks.
        Some(limit)
    }
}

/// Why [`assign`] did not assign.
#[derive(Debug)]
pub enum AssignError {
    /// Placement rules refuse it.
    Rejected(Reject),
    /// The store refused it (for example the task is no longer queued).
    Store(QueueError),
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
    reserve(shared, &QueuedTask::of(task), worker_id)?;
    settle(shared, task.id, worker_id).await
}

/// The first step of [`assign`]: the reservation, taken under the cluster lock.
fn reserve(shared: &Shared, task: &QueuedTask, worker_id: &str) -> Result<(), AssignError> {
    shared
        .cluster()
        .try_reserve_for(task.id, worker_id, &ask(task), task.submitter.as_deref())
        .map_err(AssignError::Rejected)
}

/// The rest of [`assign`] once reserved: the store (retried while it fails), then the
/// worker's stream. A retried write that reports the task already assigned to this worker
/// is this write's own earlier try that landed; anything else releases the reservation.
async fn settle(shared: &Shared, id: TaskId, worker_id: &str) -> Result<(), AssignError> {
    let (result, retried) = ledger::persist(shared, "assign", Some(id), || {
        shared.store.assign(id, worker_id, Utc::now())
    })
    .await;
    let assigned = match result {
        Ok(t) => t,
        Err(
            e @ QueueError::IllegalTransition {
                from: TaskStatus::Assigned,
                ..
            },
        ) if retried => {
            match ledger::persist(shared, "read", Some(id), || shared.store.get(id))
                .await
                .0
            {
                Ok(t) if t.status == TaskStatus::Assigned && t.worker_id() == Some(worker_id) => t,
                _ => return Err(failed(shared, id, worker_id, e)),
            }
        }
        Err(e) => return Err(failed(shared, id, worker_id, e)),
    };
    let token = assigned.token();
    let attempt = assigned.attempts.len() as u32;
    // The container's memory limit is the memory placement reserved: one number, so a
    // task that gives none cannot use more than its reservation.
    let mut spec = Box::new(assigned.spec.clone());
    spec.resources.memory_bytes = spec.reservation().memory_bytes;
    let confirmed = shared.cluster().confirm(id, token);
    let sent = match confirmed {
        Confirmed::Send {
            conn,
            cancel,
            devices,
        } => {
            let ok = conn
                .tx
                .send(Outbound::Assign {
                    task_id: id,
                    token,
                    attempt,
                    spec,
                    devices,
                })
                .is_ok();
            if ok && (cancel || assigned.cancel_requested) {
                let _ = conn.tx.send(Outbound::Cancel { task_id: id, token });
            }
            ok
        }
        Confirmed::WorkerGone => false,
    };
    shared.logs.notify(id);
    if !sent {
        let why = format!("worker {worker_id} went away before the assignment reached it");
        ledger::lose(shared, id, token, LostCause::Gone(why)).await;
    } else {
        tracing::debug!(task_id = %id, worker_id, token, "assigned");
    }
    Ok(())
}

/// An assign the store refused: its reservation is released.
fn failed(shared: &Shared, id: TaskId, worker_id: &str, e: QueueError) -> AssignError {
    shared.cluster().release(id, None);
    tracing::debug!(task_id = %id, worker_id, error = %e, "assign lost a race");
    AssignError::Store(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudai_queue::Resources;

    fn slot(schedulable: bool, cpu: u64, mem: u64) -> WorkerSlot {
        WorkerSlot {
            id: "w".into(),
            capacity: Resources {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                gpus: 0,
                disk_bytes: 0,
            },
            free: Resources {
                cpu_millis: cpu,
                memory_bytes: mem,
                gpus: 0,
                disk_bytes: 0,
            },
            schedulable,
            attributes: Default::default(),
        }
    }

    #[test]
    fn room_needs_a_schedulable_worker_with_cpu_and_memory_free() {
        assert!(!has_room(&[]));
        assert!(!has_room(&[slot(false, 4000, 1 << 30)]));
        assert!(!has_room(&[slot(true, 0, 1 << 30), slot(true, 4000, 0)]));
        assert!(has_room(&[slot(true, 0, 1 << 30), slot(true, 1, 1)]));
    }

    #[test]
    fn a_step_that_saw_the_whole_queue_ends_the_pass() {
        assert_eq!(next_read(MIN_READ, true, MIN_READ - 1, 0), None);
        assert_eq!(next_read(MIN_READ, true, 3, 3), None);
        assert_eq!(next_read(BATCH, true, BATCH - 1, 10), None);
        // Several submitters' reads: all short ends the pass, however many in all.
        assert_eq!(next_read(MIN_READ, true, 3 * MIN_READ - 3, 0), None);
    }

    #[test]
    fn nothing_placed_looks_deeper_up_to_the_backfill_depth() {
        let mut limit = MIN_READ;
        let mut steps = 0;
        while let Some(next) = next_read(limit, false, limit, 0) {
            assert!(next > limit && next <= BATCH);
            limit = next;
            steps += 1;
        }
        assert_eq!(
            limit, BATCH,
            "a pass that places nothing still looks BATCH deep"
        );
        assert!(steps <= 4);
    }

    #[test]
    fn reads_grow_while_everything_fits_and_hold_when_some_do() {
        assert_eq!(
            next_read(MIN_READ, false, MIN_READ, MIN_READ),
            Some(2 * MIN_READ)
        );
        assert_eq!(next_read(BATCH, false, BATCH, BATCH), Some(BATCH));
        assert_eq!(next_read(64, false, 64, 10), Some(64));
        // One submitter's read came back full: there may be more of its tasks.
        assert_eq!(next_read(64, false, 70, 70), Some(128));
    }
}
