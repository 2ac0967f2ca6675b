//! The worker registry around [`crate::cluster`]: rebuilding the view from the store when
//! the master starts, the health monitor, writing worker records, and reconciling what a
//! (re)connecting worker says it runs with what the store says it owns.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use cloudai_queue::store::live_attempt;
use cloudai_queue::{
    LostCause, QueueError, Resources, Task, TaskId, TaskQuery, TaskStatus, WorkerHealth,
    WorkerRecord,
};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::conn::Outbound;
use crate::ledger;
use crate::shared::Shared;

/// Rebuilds workers and reservations from the store. Workers get the reconnect window
/// before they can be declared dead; tasks waiting for a retry are scheduled.
pub async fn recover(shared: &Shared) -> Result<(), QueueError> {
    let now = Instant::now();
    let window_end = now + shared.config.reconnect_window;
    let workers = shared.store.list_workers().await?;
    let mut known: HashSet<String> = HashSet::new();
    {
        let mut c = shared.cluster();
        for w in workers {
            known.insert(w.id.clone());
            c.restore_worker(w, now, window_end);
        }
    }
    let mut live = 0usize;
    let mut before: Option<TaskId> = None;
    loop {
        let page = shared
            .store
            .list(&TaskQuery {
                statuses: vec![TaskStatus::Assigned, TaskStatus::Running],
                limit: 1000,
                before,
                ..TaskQuery::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        let mut c = shared.cluster();
        for task in &page {
            let Some(a) = live_attempt(task) else {
                continue;
            };
            if known.insert(a.worker_id.clone()) {
                c.restore_worker(placeholder(&a.worker_id), now, window_end);
            }
            c.restore_reservation(
                task.id,
                &a.worker_id,
                task.spec.reservation(),
                a.token,
                task.submitted_by.as_deref(),
            );
            live += 1;
        }
    }
    let retries = schedule_due_within_the_hour(shared).await?;
    tracing::info!(
        live_attempts = live,
        retries,
        "recovered master state from the store"
    );
    shared.wake_dispatcher();
    Ok(())
}

/// Arms the dispatcher's timers for queued tasks that become due within the hour (a
/// retry's backoff, a delayed start); how many.
async fn schedule_due_within_the_hour(shared: &Shared) -> Result<usize, QueueError> {
    let now = Utc::now();
    let horizon = now + chrono::Duration::hours(1);
    let times = shared.store.delayed_times(now, horizon, 10_000).await?;
    for &t in &times {
        shared.schedule_retry(t);
    }
    Ok(times.len())
}

/// Re-arms the timers (`workflow` calls it every minute, so a start delayed by hours is
/// armed an hour ahead, across restarts too).
pub async fn schedule_due(shared: &Shared) {
    if let Err(e) = schedule_due_within_the_hour(shared).await {
        tracing::warn!(error = %e, "could not read the delayed tasks; trying again in a minute");
    }
}

/// A registry record for a worker that holds attempts but has no record of its own.
fn placeholder(id: &str) -> WorkerRecord {
    WorkerRecord {
        id: id.to_string(),
        labels: Default::default(),
        capacity: Resources::default(),
        gpu_model: None,
        hostname: String::new(),
        health: WorkerHealth::Suspect,
        registered_at: Utc::now(),
        last_heartbeat: Utc::now(),
        cordoned: false,
        drain_deadline: None,
        attributes: Default::default(),
    }
}

/// Applies the health rules every quarter interval until shutdown: health changes are
/// written to the store (in the background), and a dead worker's attempts are recorded
/// lost, each released once that is stored.
pub async fn monitor(shared: Arc<Shared>) {
    let interval = shared.config.heartbeat_interval;
    let period = (interval / 4).max(std::time::Duration::from_millis(5));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let draining = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.until_shutdown() => return,
        }
        stop_overdue_drains(&shared, &draining);
        let changes = shared
            .cluster()
            .tick(Instant::now(), interval, shared.config.dead_after);
        for change in changes {
            tracing::info!(worker_id = %change.worker_id, health = change.health.as_str(), "worker health changed");
            shared.persist_worker(&change.worker_id);
            for (task, token) in change.lost {
                let shared = shared.clone();
                let worker_id = change.worker_id.clone();
                tokio::spawn(async move {
                    ledger::lose(&shared, task, token, LostCause::Silence { worker_id }).await
                });
            }
        }
    }
}

/// Attempts still running on a drained worker at its deadline: each is recorded lost
/// (so its task is retried elsewhere, within its lost retries), then its container is
/// stopped. `draining` holds those in flight, so a tick does not start one twice.
fn stop_overdue_drains(
    shared: &Arc<Shared>,
    draining: &Arc<std::sync::Mutex<std::collections::HashSet<(TaskId, u64)>>>,
) {
    let overdue = shared.cluster().drain_overdue(chrono::Utc::now());
    for (worker_id, task, token) in overdue {
        if !draining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((task, token))
        {
            continue;
        }
        let (shared, draining) = (shared.clone(), draining.clone());
        tokio::spawn(async move {
            let conn = shared.cluster().conn(&worker_id);
            let cause = LostCause::Gone(format!(
                "worker {worker_id} was drained: the attempt still ran at the drain deadline"
            ));
            tracing::info!(task_id = %task, token, worker_id = %worker_id, "drain deadline: stopping the attempt to retry it elsewhere");
            ledger::lose(&shared, task, token, cause).await;
            // The attempt is over in the store, so the worker's report of the stop is
            // refused and cannot end the task.
            if let Some(conn) = conn {
                let _ = conn.tx.send(crate::conn::Outbound::Cancel {
                    task_id: task,
                    token,
                });
            }
            draining
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(task, token));
        });
    }
}

/// Writes the records of workers marked with [`Shared::persist_worker`] (registration,
/// health, last heartbeat), each as memory has it now, retrying until stored. The store's
/// copy is what a restarted master starts from; nothing else waits for it.
pub async fn persist_workers(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.workers_dirty.notified() => {}
            _ = shared.until_shutdown() => return,
        }
        for id in shared.take_dirty_workers() {
            let Some(record) = shared.cluster().worker(&id).map(|w| w.record.clone()) else {
                continue;
            };
            let (r, _) = ledger::persist(&shared, "upsert worker", None, || {
                shared.store.upsert_worker(&record)
            })
            .await;
            if let Err(e) = r {
                tracing::warn!(worker_id = %id, error = %e, "could not write the worker record");
            }
        }
    }
}

/// Whether `task`'s current attempt is `token` on `worker_id` and still live.
fn owns(task: &Task, worker_id: &str, token: u64) -> bool {
    live_attempt(task).is_some_and(|a| a.token == token && a.worker_id == worker_id)
}

/// Sorts the attempts a worker reports running into those it still owns and those to
/// revoke, by the store. Memory holds most of them already; for the others the store is
/// read (retried), an owned one gets its reservation back, and the store is read once
/// more after that, so a `lost` written in between cannot leave a phantom reservation.
/// A cancel requested meanwhile is sent again.
pub async fn reconcile(
    shared: &Shared,
    worker_id: &str,
    reported: &[(TaskId, u64)],
) -> Vec<(TaskId, u64)> {
    let mut revoke = Vec::new();
    for &(id, token) in reported {
        if shared.cluster().holds(id, worker_id, token) {
            continue;
        }
        let read = || async {
            ledger::persist(shared, "read", Some(id), || shared.store.get(id))
                .await
                .0
        };
        match read().await {
            Ok(task) if owns(&task, worker_id, token) => {
                {
                    let mut c = shared.cluster();
                    if c.reservation(&id).is_none() {
                        c.restore_reservation(
                            id,
                            worker_id,
                            task.spec.reservation(),
                            token,
                            task.submitted_by.as_deref(),
                        );
                    }
                }
                // Re-checked after the restore: memory follows the store either way.
                match read().await {
                    Ok(again) if owns(&again, worker_id, token) => {
                        if again.cancel_requested {
                            shared.send_cancel(id);
                        }
                    }
                    Ok(again) => {
                        ledger::sync(shared, &again);
                        revoke.push((id, token));
                    }
                    Err(e) => {
                        tracing::warn!(task_id = %id, error = %e, "could not check a reported attempt")
                    }
                }
            }
            Ok(_) | Err(QueueError::NotFound(_)) => revoke.push((id, token)),
            Err(e) => {
                tracing::warn!(task_id = %id, error = %e, "could not check a reported attempt")
            }
        }
    }
    revoke
}

/// Attempts the master holds on a worker that the worker reported neither running nor
/// finished (with a report on its way). Call it under the same lock as
/// `Cluster::connect`, before the dispatcher can assign anything new.
pub fn unreported(
    c: &Cluster,
    worker_id: &str,
    running: &[(TaskId, u64)],
    finished: &[(TaskId, u64)],
) -> Vec<(TaskId, u64)> {
    let known: HashSet<(TaskId, u64)> = running.iter().chain(finished).copied().collect();
    c.attempts_on(worker_id)
        .into_iter()
        .filter(|a| !known.contains(a))
        .collect()
}

/// After a (re)registration: attempts the worker no longer has are lost at once, those it
/// runs are reconciled with the store (and revoked when no longer its own), and cancels
/// requested meanwhile are sent again. Then the worker may get new work.
pub async fn after_register(
    shared: Arc<Shared>,
    worker_id: String,
    running: Vec<(TaskId, u64)>,
    missing: Vec<(TaskId, u64)>,
) {
    for (task, token) in missing {
        let why = format!("worker {worker_id} came back without it");
        ledger::lose(&shared, task, token, LostCause::Gone(why)).await;
    }
    let revoke = reconcile(&shared, &worker_id, &running).await;
    send_revoke(
        &shared,
        &worker_id,
        revoke,
        "attempt is no longer this worker's",
    );
    resend_cancels(&shared, &worker_id);
    shared.cluster().set_reconciling(&worker_id, false);
    shared.wake_dispatcher();
}

/// How often the leader looks at what other masters wrote to a shared store.
pub const WATCH_PERIOD: std::time::Duration = std::time::Duration::from_millis(250);

/// The leader's watch on writes other masters make to a shared store: their enqueues wake
/// the dispatcher, their cancels are sent to the workers running those tasks. A short poll
/// (every [`WATCH_PERIOD`]); a SQLite store has no other master, so nothing to watch.
pub async fn watch_store(shared: Arc<Shared>) {
    if shared.store.backend_name() == "sqlite" {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(WATCH_PERIOD) => {}
            _ = shared.until_shutdown() => return,
        }
        shared.wake_dispatcher();
        match shared.store.cancel_requests().await {
            Ok(ids) => {
                for id in ids {
                    shared.send_cancel_once(id);
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not read cancel requests"),
        }
    }
}

/// Sends the cancels requested while a worker was away (after it reconnects).
pub fn resend_cancels(shared: &Shared, worker_id: &str) {
    let c = shared.cluster();
    let Some(conn) = c.conn(worker_id) else {
        return;
    };
    for (task_id, token) in c.pending_cancels(worker_id) {
        let _ = conn.tx.send(Outbound::Cancel { task_id, token });
    }
}

/// Revokes attempts on a worker's stream.
pub fn send_revoke(shared: &Shared, worker_id: &str, attempts: Vec<(TaskId, u64)>, reason: &str) {
    if attempts.is_empty() {
        return;
    }
    tracing::info!(
        worker_id,
        count = attempts.len(),
        reason,
        "revoking attempts"
    );
    if let Some(conn) = shared.cluster().conn(worker_id) {
        let _ = conn.tx.send(Outbound::Revoke {
            attempts,
            reason: reason.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Conn;
    use crate::placement::TaskAsk;

    #[test]
    fn unreported_lists_confirmed_attempts_the_worker_did_not_mention() {
        let now = Instant::now();
        let mut c = Cluster::new();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        c.connect(placeholder("w"), String::new(), Conn { id: 1, tx }, now)
            .unwrap();
        let ask = TaskAsk::sized(Resources::default());
        let (kept, missing, pending) = (TaskId::new(), TaskId::new(), TaskId::new());
        for t in [kept, missing, pending] {
            c.try_reserve(t, "w", &ask).unwrap();
        }
        c.confirm(kept, 1);
        c.confirm(missing, 2);
        assert_eq!(unreported(&c, "w", &[(kept, 1)], &[]), vec![(missing, 2)]);
        assert!(
            unreported(&c, "w", &[(kept, 1)], &[(missing, 2)]).is_empty(),
            "a finished attempt whose report is on its way is not missing"
        );
        // A report with another token does not cover the attempt.
        let mut got = unreported(&c, "w", &[(kept, 9)], &[]);
        got.sort();
        let mut want = vec![(kept, 1), (missing, 2)];
        want.sort();
        assert_eq!(got, want);
        assert!(unreported(&c, "nobody", &[], &[]).is_empty());
    }
}
