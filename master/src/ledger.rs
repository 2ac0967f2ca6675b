//! The attempt ledger on the master: every change to an attempt (assign, a worker's
//! report, `lost`) is one conditional store write, retried with backoff while the master
//! lives, and memory is updated only from what the write returned ([`sync`]). So the
//! store is the one source of truth; a restart rebuilds memory from it.

use std::future::Future;
use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoffBuilder;
use chrono::Utc;
use cloudai_queue::{LostCause, QueueError, ReportBody, ReportEvent, Task, TaskId, TaskStatus};

use crate::conn::Outbound;
use crate::shared::Shared;

/// First retry of a failed store write.
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest wait between retries of a store write.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs the store write `f` until it is stored, fails for a reason a retry cannot cure,
/// or the master shuts down (then the last error is returned: the write is redone from
/// the store's state after a restart). Returns the result and whether it was retried
/// (after a retry, an error may be the answer to the write's own earlier try).
pub async fn persist<T, F, Fut>(
    shared: &Shared,
    op: &'static str,
    task: Option<TaskId>,
    mut f: F,
) -> (Result<T, QueueError>, bool)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, QueueError>>,
{
    let mut backoff = ExponentialBackoffBuilder::new()
        .with_initial_interval(RETRY_FIRST)
        .with_max_interval(RETRY_MAX)
        .with_randomization_factor(0.3)
        .with_max_elapsed_time(None)
        .build();
    let mut tries = 0u32;
    loop {
        let t0 = std::time::Instant::now();
        let r = f().await;
        shared.metrics.store_call(op, t0.elapsed(), r.is_err());
        match r {
            // A master that no longer leads gives its writes up: the next leader redoes
            // them from the store.
            Err(e) if e.is_retryable() && !shared.shutting_down() && shared.leading() => {
                tries += 1;
                let delay = backoff.next_backoff().unwrap_or(RETRY_MAX);
                if tries == 1 || tries.is_power_of_two() {
                    tracing::warn!(op, task_id = ?task, error = %e, tries, retry_in_ms = delay.as_millis() as u64,
                        "store write failed, retrying until it is stored");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shared.until_shutdown() => return (Err(e), true),
                }
            }
            r => {
                if tries > 0 && r.is_ok() {
                    tracing::info!(op, task_id = ?task, tries, "store write succeeded after retries");
                }
                return (r, tries > 0);
            }
        }
    }
}

/// Makes memory agree with `task` as a store write returned it: releases a reservation
/// whose attempt is over, schedules a retry backoff, wakes the dispatcher and followers.
pub fn sync(shared: &Shared, task: &Task) {
    if shared.cluster().settle(task) {
        shared.wake_dispatcher();
    }
    if task.status.is_terminal() {
        shared.task_ended(task);
    }
    if task.status == TaskStatus::Queued {
        shared.schedule_retry(task.not_before);
    }
    shared.logs.notify(task.id);
}

/// What became of a worker's report.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// Stored, or refused for good (a stale attempt): acknowledge up to this seq.
    Ack(u64),
    /// The store lacks earlier events of the attempt: the worker must send again from
    /// what was acknowledged (its stream is closed so that it reconnects).
    Gap,
    /// Not stored (the store failed for good, or the master is stopping): not acked; the
    /// worker sends it again after a reconnect.
    Unsettled,
}

/// Applies `worker_id`'s report of attempt `token` of `task`: one store write (start,
/// output and end together), retried until stored.
pub async fn report(
    shared: &Shared,
    worker_id: &str,
    task: TaskId,
    token: u64,
    events: Vec<ReportEvent>,
) -> Settled {
    let Some(last) = events.last().map(|e| e.seq) else {
        return Settled::Unsettled;
    };
    let (result, _) = persist(shared, "report", Some(task), || {
        shared
            .store
            .report(task, token, worker_id, events.clone(), Utc::now())
    })
    .await;
    match result {
        Ok(applied) => {
            if applied.late {
                tracing::info!(task_id = %task, token, status = %applied.task.status,
                    "accepted the late result of an attempt lost to silence");
            } else if applied.task.status.is_terminal() || applied.task.status == TaskStatus::Queued
            {
                if let Some(a) = applied.task.attempts.iter().find(|a| a.token == token) {
                    if a.outcome.is_some() && applied.changed {
                        tracing::info!(task_id = %task, token, status = %applied.task.status, "attempt finished");
                    }
                }
            }
            if applied.changed {
                shared.metrics.attempt_stored(&applied.task, token);
                let bytes: usize = events
                    .iter()
                    .map(|e| match &e.body {
                        ReportBody::Output { data, .. } => data.len(),
                        _ => 0,
                    })
                    .sum();
                shared.metrics.log_bytes_stored.inc_by(bytes as u64);
            }
            sync(shared, &applied.task);
            Settled::Ack(applied.through)
        }
        Err(e @ (QueueError::StaleToken { .. } | QueueError::AttemptOver { .. })) => {
            tracing::warn!(worker_id, task_id = %task, token, error = %e, "rejected a stale report");
            if shared.cluster().release_over(task, token) {
                shared.wake_dispatcher();
            }
            Settled::Ack(last)
        }
        Err(e @ QueueError::ReportGap { .. }) => {
            tracing::warn!(worker_id, task_id = %task, token, error = %e, "report has a gap; asking the worker to send it again");
            Settled::Gap
        }
        Err(e @ (QueueError::NotFound(_) | QueueError::Invalid { .. })) => {
            tracing::warn!(worker_id, task_id = %task, token, error = %e, "rejected a report");
            Settled::Ack(last)
        }
        Err(e @ QueueError::Fenced { .. }) => {
            tracing::warn!(worker_id, task_id = %task, token, error = %e,
                "not stored: this master no longer leads; the worker sends it to the leader");
            Settled::Unsettled
        }
        Err(e) => {
            tracing::error!(worker_id, task_id = %task, token, error = %e,
                "could not store a report; the worker sends it again after a reconnect");
            Settled::Unsettled
        }
    }
}

/// Records attempt `token` of `task` as lost for `cause`, retried until stored; then its
/// reservation is released. An attempt already over (a report won the race) just brings
/// memory up to date.
pub async fn lose(shared: &Shared, task: TaskId, token: u64, cause: LostCause) {
    let (result, _) = persist(shared, "lose", Some(task), || {
        shared.store.lose(task, token, cause.clone(), Utc::now())
    })
    .await;
    match result {
        Ok(t) => {
            tracing::info!(task_id = %task, token, status = %t.status, reason = %cause.describe(), "attempt lost");
            shared.metrics.attempt_stored(&t, token);
            sync(shared, &t);
        }
        Err(QueueError::StaleToken { .. } | QueueError::IllegalTransition { .. }) => {
            tracing::debug!(task_id = %task, token, "attempt was already over");
            if let (Ok(t), _) = persist(shared, "read", Some(task), || shared.store.get(task)).await
            {
                sync(shared, &t);
            }
        }
        Err(e @ QueueError::Fenced { .. }) => {
            tracing::warn!(task_id = %task, token, error = %e, "not recorded lost: this master no longer leads")
        }
        Err(e) => {
            tracing::error!(task_id = %task, token, error = %e,
                "could not record a lost attempt; it is retried from the store after a restart")
        }
    }
}

/// Acknowledges a worker's events up to `seq` on its current stream.
pub fn ack(shared: &Shared, worker_id: &str, task: TaskId, token: u64, seq: u64) {
    if let Some(conn) = shared.cluster().conn(worker_id) {
        let _ = conn.tx.send(Outbound::Ack {
            task_id: task,
            token,
            seq,
        });
    }
}
