//! Cases about the status state machine, fencing tokens, retries and cancels.

use chrono::{DateTime, Duration, Utc};

use super::{add, claim_at, ended, failed_once, lost, now, output, passed, spec, started, Harness};
use crate::error::QueueError;
use crate::model::{LogStream, NewLogChunk, Task, TaskSpec, TaskStatus};
use crate::report::AttemptEnd;
use crate::store::{QueueStore, StoreOptions};

fn is_illegal(r: &crate::Result<Task>, from: TaskStatus, to: TaskStatus) -> bool {
    matches!(r, Err(QueueError::IllegalTransition { from: f, to: t, .. }) if (*f, *t) == (from, to))
}

/// Claims the task (which must be next in line) at `at` and marks it running.
async fn start(store: &dyn QueueStore, worker: &str, at: DateTime<Utc>) -> Task {
    let t = store.claim(&claim_at(worker, at)).await.unwrap().unwrap();
    started(store, t.id, t.token(), at).await.unwrap()
}

/// `assign` of a task that is not queued is `IllegalTransition` and changes nothing.
pub async fn assign_non_queued_is_illegal(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let at = now();
    let t = add(&*store, spec()).await;
    let assigned = store.assign(t.id, "w1", at).await.unwrap();
    let r = store.assign(t.id, "w2", at).await;
    assert!(
        is_illegal(&r, TaskStatus::Assigned, TaskStatus::Assigned),
        "{r:?}"
    );
    assert_eq!(store.get(t.id).await.unwrap(), assigned);

    let c = add(&*store, spec()).await;
    let cancelled = store.request_cancel(c.id, at).await.unwrap();
    let r = store.assign(c.id, "w1", at).await;
    assert!(
        is_illegal(&r, TaskStatus::Cancelled, TaskStatus::Assigned),
        "{r:?}"
    );
    assert_eq!(store.get(c.id).await.unwrap(), cancelled);
    passed(&*store, "assign_non_queued_is_illegal");
}

/// assign -> running -> succeeded records the attempt's worker, times and exit code.
pub async fn lifecycle_assign_running_succeeded(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t = add(&*store, spec()).await;
    let t0 = now();
    let (t1, t2) = (t0 + Duration::seconds(1), t0 + Duration::seconds(5));
    let a = store.assign(t.id, "w1", t0).await.unwrap();
    assert_eq!(a.status, TaskStatus::Assigned);
    assert_eq!(a.attempts.len(), 1);
    let at = &a.attempts[0];
    assert_eq!((at.number, at.worker_id.as_str()), (1, "w1"));
    assert!(at.token > 0);
    assert_eq!(at.assigned_at, t0);
    assert_eq!(
        (at.started_at, at.finished_at, at.outcome),
        (None, None, None)
    );
    assert_eq!(store.get(t.id).await.unwrap(), a);

    let r = started(&*store, t.id, a.token(), t1).await.unwrap();
    assert_eq!(r.status, TaskStatus::Running);
    assert_eq!(r.attempts[0].started_at, Some(t1));
    assert_eq!(store.get(t.id).await.unwrap(), r);

    let done = ended(&*store, t.id, a.token(), AttemptEnd::Exited(0), t2)
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.finished_at, Some(t2));
    assert_eq!(done.exit_code, Some(0));
    let at = &done.attempts[0];
    assert_eq!(at.outcome, Some(TaskStatus::Succeeded));
    assert_eq!(at.exit_code, Some(0));
    assert_eq!(at.finished_at, Some(t2));
    assert_eq!(at.started_at, Some(t1));
    assert_eq!(store.get(t.id).await.unwrap(), done);
    passed(&*store, "lifecycle_assign_running_succeeded");
}

/// Moves the table forbids are errors that leave the task as it was: a report about a
/// task that has no attempt, about an attempt that is over, the verdict `lost` on an
/// ended attempt.
pub async fn illegal_transitions_change_nothing(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let at = now();
    let fresh = add(&*store, spec()).await;
    let r = started(&*store, fresh.id, 0, at).await;
    assert!(matches!(r, Err(QueueError::StaleToken { .. })), "{r:?}");
    assert_eq!(store.get(fresh.id).await.unwrap(), fresh);

    // A retried task is queued again: its last attempt is over.
    let a = failed_once(&*store, at).await;
    let over = |r: &crate::Result<Task>| {
        matches!(
            r,
            Err(QueueError::AttemptOver {
                outcome: TaskStatus::Failed,
                ..
            })
        )
    };
    let r = started(&*store, a.id, a.token(), at).await;
    assert!(over(&r), "{r:?}");
    let r = ended(&*store, a.id, a.token(), AttemptEnd::Exited(0), at).await;
    assert!(over(&r), "{r:?}");
    let r = lost(&*store, a.id, a.token(), at).await;
    assert!(
        is_illegal(&r, TaskStatus::Queued, TaskStatus::Lost),
        "{r:?}"
    );
    assert_eq!(store.get(a.id).await.unwrap(), a);

    // Anything after the end.
    let b = add(&*store, spec()).await;
    let b = store.assign(b.id, "w1", at).await.unwrap();
    let b = started(&*store, b.id, b.token(), at).await.unwrap();
    let done = ended(&*store, b.id, b.token(), AttemptEnd::Exited(0), at)
        .await
        .unwrap();
    let r = ended(&*store, b.id, b.token(), AttemptEnd::Exited(1), at).await;
    assert!(
        matches!(
            r,
            Err(QueueError::AttemptOver {
                outcome: TaskStatus::Succeeded,
                ..
            })
        ),
        "{r:?}"
    );
    let r = lost(&*store, b.id, b.token(), at).await;
    assert!(
        is_illegal(&r, TaskStatus::Succeeded, TaskStatus::Lost),
        "{r:?}"
    );
    assert_eq!(store.get(b.id).await.unwrap(), done);
    passed(&*store, "illegal_transitions_change_nothing");
}

/// Reports carrying an old attempt's token are `StaleToken` and change nothing.
pub async fn stale_token_is_rejected(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t = add(
        &*store,
        TaskSpec {
            max_attempts: 2,
            ..spec()
        },
    )
    .await;
    let at = now();
    let first = start(&*store, "w1", at).await;
    let old = first.token();
    let back = lost(&*store, t.id, old, at).await.unwrap();
    assert_eq!(back.status, TaskStatus::Queued);
    let second = store
        .claim(&claim_at("w2", back.not_before))
        .await
        .unwrap()
        .unwrap();
    let new = second.token();
    assert!(new > old, "tokens increase: {old} then {new}");
    let stale = |r: &crate::Result<Task>| matches!(r, Err(QueueError::StaleToken { got, current, .. }) if *got == old && *current == new);
    let r = started(&*store, t.id, old, at).await;
    assert!(stale(&r), "{r:?}");
    let r = ended(&*store, t.id, old, AttemptEnd::Exited(0), at).await;
    assert!(stale(&r), "{r:?}");
    let r = lost(&*store, t.id, old, at).await;
    assert!(stale(&r), "{r:?}");
    let chunk = NewLogChunk {
        stream: LogStream::Stdout,
        time: at,
        data: b"late output\n".to_vec(),
    };
    let r = output(&*store, t.id, old, vec![chunk.clone()]).await;
    assert!(
        matches!(r, Err(QueueError::StaleToken { got, current, .. }) if got == old && current == new),
        "{r:?}"
    );
    let r = started(&*store, t.id, new + 100, at).await;
    assert!(matches!(r, Err(QueueError::StaleToken { .. })), "{r:?}");
    assert_eq!(store.get(t.id).await.unwrap(), second);
    assert!(store.read_logs(t.id, None, 100).await.unwrap().is_empty());
    // The current token still works.
    let applied = output(&*store, t.id, new, vec![chunk]).await.unwrap();
    assert_eq!(applied.through, 1);
    assert_eq!(store.read_logs(t.id, None, 100).await.unwrap().len(), 1);
    let running = started(&*store, t.id, new, at).await.unwrap();
    assert_eq!(running.status, TaskStatus::Running);
    passed(&*store, "stale_token_is_rejected");
}

/// Failed attempts go back to the queue with a backoff until `max_attempts`, then fail.
pub async fn failed_attempts_retry_then_fail(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t = add(
        &*store,
        TaskSpec {
            max_attempts: 3,
            ..spec()
        },
    )
    .await;
    let mut clock = now();
    let mut tokens = Vec::new();
    for n in 1..=3u32 {
        let r = start(&*store, "w1", clock).await;
        assert_eq!(r.attempts.len() as u32, n);
        tokens.push(r.token());
        let err = format!("exited with code {n}");
        let after = ended(
            &*store,
            t.id,
            r.token(),
            AttemptEnd::Exited(n as i32),
            clock,
        )
        .await
        .unwrap();
        assert_eq!(after.attempts.len() as u32, n);
        let last = after.attempts.last().unwrap();
        assert_eq!(last.outcome, Some(TaskStatus::Failed));
        assert_eq!(last.exit_code, Some(n as i32));
        assert_eq!(last.error.as_deref(), Some(err.as_str()));
        if n < 3 {
            assert_eq!(after.status, TaskStatus::Queued);
            assert!(after.not_before > clock, "retry waits for a backoff");
            assert_eq!(after.finished_at, None);
            clock = after.not_before;
        } else {
            assert_eq!(after.status, TaskStatus::Failed);
            assert_eq!(after.finished_at, Some(clock));
            assert_eq!(after.exit_code, Some(3));
            assert_eq!(after.error.as_deref(), Some("exited with code 3"));
            assert_eq!(store.get(t.id).await.unwrap(), after);
        }
    }
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    let far = clock + Duration::hours(1);
    assert!(store.claim(&claim_at("w1", far)).await.unwrap().is_none());
    passed(&*store, "failed_attempts_retry_then_fail");
}

/// Lost attempts spend `max_lost_retries`, not `max_attempts`.
pub async fn lost_attempts_use_their_own_budget(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t = add(
        &*store,
        TaskSpec {
            max_attempts: 1,
            max_lost_retries: 2,
            ..spec()
        },
    )
    .await;
    let mut clock = now();
    for n in 1..=3 {
        let r = start(&*store, &format!("w{n}"), clock).await;
        let after = lost(&*store, t.id, r.token(), clock).await.unwrap();
        if n < 3 {
            assert_eq!(after.status, TaskStatus::Queued, "lost attempt {n} retries");
            clock = after.not_before;
        } else {
            assert_eq!(after.status, TaskStatus::Lost);
            assert_eq!(after.attempts.len(), 3);
        }
    }
    // One lost retry does not spend the single failure attempt, and vice versa.
    let u = add(
        &*store,
        TaskSpec {
            max_attempts: 1,
            max_lost_retries: 1,
            ..spec()
        },
    )
    .await;
    let clock = now();
    let r = start(&*store, "w1", clock).await;
    assert_eq!(r.id, u.id);
    let after = lost(&*store, u.id, r.token(), clock).await.unwrap();
    assert_eq!(after.status, TaskStatus::Queued);
    let r = start(&*store, "w2", after.not_before).await;
    let end = ended(
        &*store,
        u.id,
        r.token(),
        AttemptEnd::Exited(2),
        after.not_before,
    )
    .await
    .unwrap();
    assert_eq!(end.status, TaskStatus::Failed);
    assert_eq!(end.attempts.len(), 2);
    passed(&*store, "lost_attempts_use_their_own_budget");
}

/// Cancelling a queued task ends it at once; it is never dispatched.
pub async fn cancel_queued_ends_at_once(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t = add(&*store, spec()).await;
    let at = now();
    let c = store.request_cancel(t.id, at).await.unwrap();
    assert_eq!(c.status, TaskStatus::Cancelled);
    assert_eq!(c.finished_at, Some(at));
    assert!(c.attempts.is_empty());
    assert_eq!(store.get(t.id).await.unwrap(), c);
    assert!(store.queued(at, 10).await.unwrap().is_empty());
    assert!(store.claim(&claim_at("w1", at)).await.unwrap().is_none());
    passed(&*store, "cancel_queued_ends_at_once");
}

/// Cancelling a running task only flags it; the worker's report ends it, with no retry.
pub async fn cancel_running_is_requested_then_reported(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let retrying = TaskSpec {
        max_attempts: 3,
        ..spec()
    };
    let t = add(&*store, retrying.clone()).await;
    let at = now();
    let r = start(&*store, "w1", at).await;
    let c = store.request_cancel(t.id, at).await.unwrap();
    assert_eq!(c.status, TaskStatus::Running);
    assert!(c.cancel_requested);
    assert_eq!(c.finished_at, None);
    assert_eq!(store.get(t.id).await.unwrap(), c);
    let later = at + Duration::seconds(2);
    let done = ended(&*store, t.id, r.token(), AttemptEnd::Cancelled, later)
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Cancelled);
    assert_eq!(done.finished_at, Some(later));
    assert_eq!(done.attempts[0].outcome, Some(TaskStatus::Cancelled));

    // A cancelled task whose container then fails does not retry.
    let u = add(&*store, retrying).await;
    let a = store.assign(u.id, "w2", at).await.unwrap();
    let c = store.request_cancel(u.id, at).await.unwrap();
    assert_eq!((c.status, c.cancel_requested), (TaskStatus::Assigned, true));
    let end = ended(
        &*store,
        u.id,
        a.token(),
        AttemptEnd::Error("killed".into()),
        at,
    )
    .await
    .unwrap();
    assert_eq!(end.status, TaskStatus::Failed);
    assert!(store
        .claim(&claim_at("w1", at + Duration::hours(1)))
        .await
        .unwrap()
        .is_none());
    passed(&*store, "cancel_running_is_requested_then_reported");
}

/// Cancelling a finished task is `IllegalTransition` and changes nothing.
pub async fn cancel_terminal_is_illegal(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t = add(&*store, spec()).await;
    let at = now();
    let r = start(&*store, "w1", at).await;
    let done = ended(&*store, t.id, r.token(), AttemptEnd::Exited(0), at)
        .await
        .unwrap();
    let later = at + Duration::seconds(1);
    let c = store.request_cancel(t.id, later).await;
    assert!(
        is_illegal(&c, TaskStatus::Succeeded, TaskStatus::Cancelled),
        "{c:?}"
    );
    assert_eq!(store.get(t.id).await.unwrap(), done);

    let q = add(&*store, spec()).await;
    let cancelled = store.request_cancel(q.id, at).await.unwrap();
    let again = store.request_cancel(q.id, later).await;
    assert!(
        is_illegal(&again, TaskStatus::Cancelled, TaskStatus::Cancelled),
        "{again:?}"
    );
    assert_eq!(store.get(q.id).await.unwrap(), cancelled);
    passed(&*store, "cancel_terminal_is_illegal");
}
