//! Cases about dependencies and delayed starts: a task that runs after others waits out
//! of the dispatcher's reads, is released or cancelled by its parents' final outcomes
//! down a chain in one pass, waits through a parent's retries, and a `not_before` in the
//! spec holds a task back until its time.

use chrono::Duration;

use super::{add, claim_at, ended, failed_once, now, passed, spec, started, Harness};
use crate::deps::{self, Dependency, DependencyCondition as C};
use crate::model::{Task, TaskId, TaskSpec, TaskStatus};
use crate::report::AttemptEnd;
use crate::store::{QueueStore, StoreOptions};

fn after(parents: &[(TaskId, C)]) -> TaskSpec {
    TaskSpec {
        after: parents
            .iter()
            .map(|&(task, condition)| Dependency { task, condition })
            .collect(),
        ..spec()
    }
}

/// Claims `id` (the only queued task) and ends its attempt as `end`.
async fn run(store: &dyn QueueStore, id: TaskId, end: AttemptEnd) -> Task {
    let at = now();
    let t = store.claim(&claim_at("w1", at)).await.unwrap().unwrap();
    assert_eq!(t.id, id, "the one queued task is claimed");
    started(store, id, t.token(), at).await.unwrap();
    ended(store, id, t.token(), end, at).await.unwrap()
}

async fn status(store: &dyn QueueStore, id: TaskId) -> (TaskStatus, Option<String>) {
    let t = store.get(id).await.unwrap();
    (t.status, t.error)
}

/// Waiting tasks are not dispatched; a parent's end releases or cancels each dependent by
/// its condition, and a cancellation runs down the chain in the same pass.
pub async fn dependents_are_released_or_cancelled_down_the_chain(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let a = add(&*store, spec()).await;
    let b = add(&*store, after(&[(a.id, C::Ok)])).await;
    let c = add(&*store, after(&[(b.id, C::Ok)])).await;
    let d = add(&*store, after(&[(c.id, C::Ok)])).await;
    let on_fail = add(&*store, after(&[(a.id, C::NotOk)])).await;
    let any = add(&*store, after(&[(a.id, C::Any), (b.id, C::Any)])).await;
    for t in [&b, &c, &d, &on_fail, &any] {
        assert_eq!(t.status, TaskStatus::Waiting, "enqueued waiting");
    }
    let queued = store.queued(now(), 100).await.unwrap();
    assert_eq!(queued.iter().map(|t| t.id).collect::<Vec<_>>(), vec![a.id]);

    // Nothing is decided before the parent ends.
    assert!(deps::resolve(&*store, a.id, now())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        run(&*store, a.id, AttemptEnd::Exited(0)).await.status,
        TaskStatus::Succeeded
    );
    let changed = deps::resolve(&*store, a.id, now()).await.unwrap();
    let mut ids: Vec<TaskId> = changed.iter().map(|t| t.id).collect();
    ids.sort();
    assert_eq!(ids, vec![b.id, on_fail.id], "b released, on_fail cancelled");
    assert_eq!(status(&*store, b.id).await, (TaskStatus::Queued, None));
    assert_eq!(
        status(&*store, on_fail.id).await,
        (
            TaskStatus::Cancelled,
            Some(format!("dependency {} ended succeeded", a.id))
        )
    );
    assert_eq!(
        status(&*store, any.id).await.0,
        TaskStatus::Waiting,
        "b not ended yet"
    );

    // b fails for good: c and d (after c) are cancelled in one pass, `any` is released.
    assert_eq!(
        run(&*store, b.id, AttemptEnd::Exited(3)).await.status,
        TaskStatus::Failed
    );
    let changed = deps::resolve(&*store, b.id, now()).await.unwrap();
    assert_eq!(changed.len(), 3, "{changed:?}");
    assert_eq!(
        status(&*store, c.id).await,
        (
            TaskStatus::Cancelled,
            Some(format!("dependency {} ended failed", b.id))
        )
    );
    assert_eq!(
        status(&*store, d.id).await,
        (
            TaskStatus::Cancelled,
            Some(format!("dependency {} ended cancelled", c.id))
        )
    );
    assert_eq!(status(&*store, any.id).await, (TaskStatus::Queued, None));
    // Settled once: a second pass changes nothing.
    assert!(deps::resolve(&*store, b.id, now())
        .await
        .unwrap()
        .is_empty());
    passed(
        &*store,
        "dependents_are_released_or_cancelled_down_the_chain",
    );
}

/// A parent's failed attempt that will be retried is not its outcome; a user may cancel
/// a waiting task; the sweep catches up what no pass decided, unknown parents included.
pub async fn dependents_wait_through_retries_and_the_sweep_catches_up(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let parent = add(
        &*store,
        TaskSpec {
            max_attempts: 2,
            ..spec()
        },
    )
    .await;
    let child = add(&*store, after(&[(parent.id, C::Ok)])).await;
    let cancelled = add(&*store, after(&[(parent.id, C::Ok)])).await;
    let orphan = add(&*store, after(&[(TaskId::new(), C::Any)])).await;

    let first = run(&*store, parent.id, AttemptEnd::Exited(1)).await;
    assert_eq!(first.status, TaskStatus::Queued, "to be retried");
    assert!(deps::resolve(&*store, parent.id, now())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(status(&*store, child.id).await.0, TaskStatus::Waiting);

    let c = store.request_cancel(cancelled.id, now()).await.unwrap();
    assert_eq!(
        (c.status, c.finished_at.is_some()),
        (TaskStatus::Cancelled, true)
    );

    // The retry succeeds; no resolve runs (as after a crash): the sweep releases the child
    // and cancels the orphan, and leaves the user's cancel as it was.
    let t = store.get(parent.id).await.unwrap();
    let at = t.not_before + Duration::seconds(1);
    let claimed = store.claim(&claim_at("w1", at)).await.unwrap().unwrap();
    started(&*store, parent.id, claimed.token(), at)
        .await
        .unwrap();
    ended(
        &*store,
        parent.id,
        claimed.token(),
        AttemptEnd::Exited(0),
        at,
    )
    .await
    .unwrap();
    let swept = deps::sweep(&*store, now(), None, 100).await.unwrap();
    assert_eq!(swept.waiting, 2, "the child and the orphan");
    let mut ids: Vec<TaskId> = swept.changed.iter().map(|t| t.id).collect();
    ids.sort();
    let mut want = vec![child.id, orphan.id];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(status(&*store, child.id).await, (TaskStatus::Queued, None));
    let (s, reason) = status(&*store, orphan.id).await;
    assert_eq!(s, TaskStatus::Cancelled);
    assert!(reason.unwrap().ends_with("does not exist"));
    assert_eq!(
        status(&*store, cancelled.id).await.1,
        None,
        "the user's cancel stands"
    );
    // No longer waiting: settling again is refused and changes nothing.
    let again = store
        .settle_waiting(child.id, deps::Resolution::Release, now())
        .await;
    assert!(again.is_err(), "{again:?}");
    passed(
        &*store,
        "dependents_wait_through_retries_and_the_sweep_catches_up",
    );
}

/// A spec's `not_before` keeps the task out of `queued` reads and claims until then.
pub async fn not_before_in_the_spec_delays_the_task(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let at = now();
    let later = at + Duration::minutes(10);
    let delayed = add(
        &*store,
        TaskSpec {
            not_before: Some(later),
            ..spec()
        },
    )
    .await;
    assert_eq!(delayed.not_before, later);
    assert_eq!(
        store.get(delayed.id).await.unwrap().spec.not_before,
        Some(later)
    );
    let soon = add(&*store, spec()).await;
    // A moment later: `soon` is due, `delayed` is not.
    let at = now() + Duration::seconds(1);
    let ids = |v: Vec<Task>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(store.queued(at, 10).await.unwrap()), vec![soon.id]);
    let first = store.claim(&claim_at("w1", at)).await.unwrap().unwrap();
    assert_eq!(first.id, soon.id);
    assert!(store.claim(&claim_at("w1", at)).await.unwrap().is_none());
    let then = later + Duration::seconds(1);
    assert_eq!(ids(store.queued(then, 10).await.unwrap()), vec![delayed.id]);
    assert_eq!(
        store
            .claim(&claim_at("w1", then))
            .await
            .unwrap()
            .unwrap()
            .id,
        delayed.id
    );
    passed(&*store, "not_before_in_the_spec_delays_the_task");
}

/// `delayed_times` lists when queued tasks not yet due become due, each time once and
/// soonest first, within the horizon: delayed starts and a retry's backoff, not a task
/// due now, not a waiting one, not one past the horizon.
pub async fn delayed_times_are_the_queued_tasks_not_yet_due(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let at = now();
    let delayed = |t| TaskSpec {
        not_before: Some(t),
        ..spec()
    };
    let (ten, twenty) = (at + Duration::minutes(10), at + Duration::minutes(20));
    let back = failed_once(&*store, at).await;
    assert!(back.not_before > at, "the retry waits out a backoff");
    add(&*store, spec()).await;
    add(&*store, delayed(twenty)).await;
    add(&*store, delayed(ten)).await;
    add(&*store, delayed(ten)).await;
    add(&*store, delayed(at + Duration::hours(2))).await;
    let parent = add(&*store, spec()).await;
    let child = add(&*store, after(&[(parent.id, C::Ok)])).await;
    assert_eq!(child.status, TaskStatus::Waiting);

    let horizon = at + Duration::hours(1);
    let times = store.delayed_times(at, horizon, 100).await.unwrap();
    assert_eq!(times, vec![back.not_before, ten, twenty]);
    assert_eq!(
        store.delayed_times(at, horizon, 1).await.unwrap(),
        vec![back.not_before],
        "the limit keeps the soonest"
    );
    // Once a time has passed it is not listed: it is due, the dispatcher's read finds it.
    assert_eq!(
        store.delayed_times(ten, horizon, 100).await.unwrap(),
        vec![twenty]
    );
    passed(&*store, "delayed_times_are_the_queued_tasks_not_yet_due");
}
