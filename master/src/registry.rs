//! The worker registry around [`crate::cluster`]: rebuilding the view from the store when
//! the master starts, the health monitor, and reconciling what a (re)connecting worker
//! says it runs with what the store says it owns.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use cloudai_queue::store::live_attempt;
use cloudai_queue::{
    QueueError, Resources, Task, TaskId, TaskQuery, TaskStatus, WorkerHealth, WorkerRecord,
};
use tokio::time::Instant;

use crate::cluster::{Cluster, Outbound};
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
                worker_id: None,
                limit: 1000,
                before,
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
            c.restore_reservation(task.id, &a.worker_id, task.spec.reservation(), a.token);
            live += 1;
        }
    }
    let horizon = Utc::now() + chrono::Duration::hours(1);
    let mut retries = 0usize;
    for task in shared.store.queued(horizon, 10_000).await? {
        if task.not_before > Utc::now() {
            shared.schedule_retry(task.not_before);
            retries += 1;
        }
    }
    tracing::info!(
        live_attempts = live,
        retries,
        "recovered master state from the store"
    );
    shared.wake_dispatcher();
    Ok(())
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
    }
}

/// Applies the health rules every quarter interval until shutdown.
pub async fn monitor(shared: Arc<Shared>) {
    let interval = shared.config.heartbeat_interval;
    let period = (interval / 4).max(std::time::Duration::from_millis(5));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.until_shutdown() => return,
        }
        let changes = shared
            .cluster()
            .tick(Instant::now(), interval, shared.config.dead_after);
        if !changes.is_empty() {
            shared.apply_health(changes).await;
        }
    }
}

/// Whether `task`'s current attempt is `token` on `worker_id` and still live.
fn owns(task: &Task, worker_id: &str, token: u64) -> bool {
    live_attempt(task).is_some_and(|a| a.token == token && a.worker_id == worker_id)
}

/// Sorts the attempts a worker reports into those it still owns and those to revoke.
/// Owned ones get their reservation back if memory lacks it; a cancel requested
/// meanwhile is sent again.
pub async fn reconcile(
    shared: &Shared,
    worker_id: &str,
    reported: &[(TaskId, u64)],
) -> Vec<(TaskId, u64)> {
    let mut revoke = Vec::new();
    for &(id, token) in reported {
        let held = shared
            .cluster()
            .reservation(&id)
            .is_some_and(|r| r.worker_id == worker_id && r.token == Some(token));
        if held {
            continue;
        }
        match shared.store.get(id).await {
            Ok(task) if owns(&task, worker_id, token) => {
                let mut c = shared.cluster();
                if c.reservation(&id).is_none() {
                    c.restore_reservation(id, worker_id, task.spec.reservation(), token);
                }
                drop(c);
                if task.cancel_requested {
                    shared.send_cancel(id);
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

/// Attempts the master holds on a worker that the worker did not report. Call it under
/// the same lock as `Cluster::connect`, before the dispatcher can assign anything new.
pub fn unreported(c: &Cluster, worker_id: &str, reported: &[(TaskId, u64)]) -> Vec<(TaskId, u64)> {
    let reported: HashSet<(TaskId, u64)> = reported.iter().copied().collect();
    let Some(w) = c.worker(worker_id) else {
        return Vec::new();
    };
    w.tasks
        .iter()
        .filter_map(|t| Some((*t, c.reservation(t)?.token?)))
        .filter(|a| !reported.contains(a))
        .collect()
}

/// After a (re)registration: the `missing` attempts (see [`unreported`]) are lost unless
/// their `Finished` arrives within one heartbeat interval (a worker re-sends
/// unacknowledged results right after registering).
pub fn expire_unreported(shared: Arc<Shared>, worker_id: String, missing: Vec<(TaskId, u64)>) {
    if missing.is_empty() {
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(shared.config.heartbeat_interval).await;
        for (task, token) in missing {
            let still = shared
                .cluster()
                .reservation(&task)
                .is_some_and(|r| r.token == Some(token) && r.worker_id == worker_id);
            if still {
                shared
                    .lose(
                        task,
                        token,
                        &format!("worker {worker_id} reconnected without it"),
                    )
                    .await;
            }
        }
    });
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
    use crate::cluster::Conn;
    use crate::placement::TaskAsk;

    #[test]
    fn unreported_lists_confirmed_attempts_the_worker_did_not_mention() {
        let now = Instant::now();
        let mut c = Cluster::new();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        c.connect(placeholder("w"), String::new(), Conn { id: 1, tx }, now)
            .unwrap();
        let ask = TaskAsk {
            request: Resources::default(),
            pinned: None,
        };
        let (kept, missing, pending) = (TaskId::new(), TaskId::new(), TaskId::new());
        for t in [kept, missing, pending] {
            c.try_reserve(t, "w", &ask).unwrap();
        }
        c.confirm(kept, 1);
        c.confirm(missing, 2);
        assert_eq!(unreported(&c, "w", &[(kept, 1)]), vec![(missing, 2)]);
        // A report with another token does not cover the attempt.
        let mut got = unreported(&c, "w", &[(kept, 9)]);
        got.sort();
        let mut want = vec![(kept, 1), (missing, 2)];
        want.sort();
        assert_eq!(got, want);
        assert!(unreported(&c, "nobody", &[]).is_empty());
    }
}
