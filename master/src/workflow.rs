//! The leader's side of dependencies and delayed starts (`cloudai_queue::deps` holds
//! the rule and the passes): a duty that settles what it is told about at once (a task
//! that ended, so its dependents; a task enqueued waiting, whose parents may have ended
//! already) and sweeps every waiting task every [`SWEEP`], which catches up what a crash
//! or another master left undecided. Released tasks wake the dispatcher (at their
//! `not_before` when that is later); cancelled ones wake their log followers.
//!
//! Services report through [`Shared::task_ended`] and [`Shared::task_waiting`]; on a
//! standby nothing drains them, and the new leader's first sweep decides instead. While
//! no task waits (the last sweep found none and none was enqueued since), a task's end
//! costs no store read: the common case of a queue without dependencies pays nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cloudai_proto::pb;
use cloudai_queue::{deps, Task, TaskStatus};
use tonic::Status;

use crate::client_service::ClientSvc;
use crate::shared::{DepsWork, Shared};

/// How often every waiting task is decided again.
pub const SWEEP: Duration = Duration::from_secs(2);
/// Waiting tasks one sweep round reads at most (each round goes on where the last
/// stopped).
const SWEEP_LIMIT: usize = 10_000;
/// How often the dispatcher's timers are re-armed from the store (delayed tasks due
/// within the next hour).
const RESCHEDULE: Duration = Duration::from_secs(60);

/// The wire spec's parents with prefixes resolved to whole ids: each must name one task.
pub async fn resolve_parents(svc: &ClientSvc, spec: &mut pb::TaskSpec) -> Result<(), Status> {
    for d in &mut spec.after {
        let id = svc.resolve(d.task_id.trim()).await.map_err(|s| {
            if s.code() == tonic::Code::NotFound || s.code() == tonic::Code::InvalidArgument {
                Status::invalid_argument(format!("after: {}", s.message()))
            } else {
                s
            }
        })?;
        d.task_id = id.to_string();
    }
    Ok(())
}

/// What a new task needs from the leader: a decision if it waits, a timer if delayed.
pub fn enqueued(shared: &Shared, task: &Task) {
    if task.status == TaskStatus::Waiting {
        shared.task_waiting(task);
    } else if task.not_before > Utc::now() {
        shared.schedule_retry(task.not_before);
    }
}

/// Waiting tasks one step of a sweep decides: what it reports is settled between steps.
const SWEEP_PAGE: usize = 256;

/// Where a sweep is.
#[derive(Default)]
struct Sweep {
    /// Tasks the running round may still read; 0 when no round runs.
    left: usize,
    /// Where the next step starts (`None`: the oldest waiting task).
    cursor: Option<cloudai_queue::TaskId>,
    /// The round began at the oldest waiting task.
    from_start: bool,
    /// Waiting tasks the round found.
    found: usize,
}

/// The leader's duty: settles what it is told, sweeps, re-arms timers, until shutdown.
///
/// A sweep round reads at most [`SWEEP_LIMIT`] waiting tasks, in steps of [`SWEEP_PAGE`],
/// and the next round goes on where it stopped (from the oldest again after the newest),
/// so every waiting task is reached however many wait. What services report is settled
/// between steps, so a long sweep never holds up a parent's end.
pub async fn run(shared: Arc<Shared>) {
    let mut sweep_tick = tokio::time::interval(SWEEP);
    // A round that ran long does not start the next at once.
    sweep_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reschedule = tokio::time::interval(RESCHEDULE);
    let mut sweep = Sweep::default();
    loop {
        tokio::select! {
            biased;
            _ = shared.until_shutdown() => return,
            _ = shared.deps_wake.notified() => {
                for work in shared.take_deps_work() {
                    settle(&shared, work).await;
                }
            }
            _ = sweep_tick.tick(), if sweep.left == 0 => {
                sweep.left = SWEEP_LIMIT;
                sweep.from_start = sweep.cursor.is_none();
                sweep.found = 0;
            }
            _ = std::future::ready(()), if sweep.left > 0 => step(&shared, &mut sweep).await,
            _ = reschedule.tick() => crate::registry::schedule_due(&shared).await,
        }
    }
}

/// One step of the sweep round.
async fn step(shared: &Shared, sweep: &mut Sweep) {
    let limit = SWEEP_PAGE.min(sweep.left);
    match deps::sweep(shared.store.as_ref(), Utc::now(), sweep.cursor, limit).await {
        Ok(swept) => {
            apply(shared, &swept.changed);
            sweep.found += swept.waiting;
            sweep.left = sweep.left.saturating_sub(swept.waiting.max(1));
            sweep.cursor = swept.next;
            if swept.next.is_none() {
                // The newest reached: the round ends here. From the oldest to the newest
                // with none waiting, ends need no look until one is enqueued (one that
                // another master enqueues meanwhile is found by the next round, which
                // makes ends looked at again).
                let none = sweep.from_start && sweep.found == 0;
                shared
                    .waiting_seen
                    .store(!none, std::sync::atomic::Ordering::Relaxed);
                sweep.left = 0;
            } else if sweep.found > 0 {
                shared
                    .waiting_seen
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "dependency sweep failed; the next one tries again");
            sweep.left = 0;
        }
    }
}

async fn settle(shared: &Shared, work: DepsWork) {
    let now = Utc::now();
    let store = shared.store.as_ref();
    let result = match work {
        DepsWork::Ended(parent) => deps::resolve(store, parent, now).await,
        DepsWork::Waiting(id) => match deps::settle(store, id, now).await {
            // Still waiting: ends must be looked at (a sweep that ran since the enqueue
            // may have read the store before it and said none waits). A task cancelled at
            // enqueue (a parent that had ended otherwise) has no dependents yet.
            Ok(changed) => {
                if changed.is_empty() {
                    shared
                        .waiting_seen
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(changed)
            }
            Err(e) => Err(e),
        },
        DepsWork::Array(id) => {
            // Elements wait (on the cap at least): ends must be looked at.
            shared
                .waiting_seen
                .store(true, std::sync::atomic::Ordering::Relaxed);
            deps::fill_array(store, &id, now).await
        }
    };
    match result {
        Ok(changed) => apply(shared, &changed),
        // The sweep decides it within `SWEEP`.
        Err(e) => tracing::warn!(error = %e, "could not settle dependencies; the sweep will"),
    }
}

/// Memory follows what the store changed.
fn apply(shared: &Shared, changed: &[Task]) {
    for t in changed {
        match t.status {
            TaskStatus::Queued => {
                tracing::info!(task_id = %t.id, "dependencies met: queued");
                if t.not_before > Utc::now() {
                    shared.schedule_retry(t.not_before);
                } else {
                    shared.wake_dispatcher();
                }
            }
            _ => tracing::info!(task_id = %t.id, status = %t.status,
                reason = t.error.as_deref().unwrap_or(""), "a dependency cannot be met"),
        }
        shared.logs.notify(t.id);
    }
}
