//! Cases about the dispatcher's light reads and writes: a worker's start and end of an
//! attempt stored as one write ([`QueueStore::start_and_finish`]), and the queue read
//! reduced to what placement needs ([`QueueStore::queued_asks`]).

use chrono::Duration;

use super::{add, now, passed, spec, Harness};
use crate::error::QueueError;
use crate::model::{AttemptOutcome, Resources, TaskSpec, TaskStatus};
use crate::store::{QueuedTask, StoreOptions};

fn exited(code: i32) -> AttemptOutcome {
    AttemptOutcome {
        status: if code == 0 {
            TaskStatus::Succeeded
        } else {
            TaskStatus::Failed
        },
        exit_code: Some(code),
        error: None,
    }
}

/// An assigned attempt reported started and exited at once is `running` then ended, in
/// one write: both times kept; a running one keeps its start; a retry goes back to the
/// queue; a stale token or an ended task changes nothing.
pub async fn start_and_finish_in_one_write(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t0 = now();
    let (t1, t2) = (t0 + Duration::seconds(1), t0 + Duration::seconds(2));

    let t = add(&*store, spec()).await;
    let a = store.assign(t.id, "w1", t0).await.unwrap();
    let done = store
        .start_and_finish(t.id, a.token(), t1, exited(0), t2)
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(done.finished_at, Some(t2));
    let at = &done.attempts[0];
    assert_eq!((at.started_at, at.finished_at), (Some(t1), Some(t2)));
    assert_eq!(at.outcome, Some(TaskStatus::Succeeded));
    assert_eq!(store.get(t.id).await.unwrap(), done);

    // Ended already: illegal, nothing changes.
    let r = store
        .start_and_finish(t.id, a.token(), t1, exited(0), t2)
        .await;
    assert!(
        matches!(
            r,
            Err(QueueError::IllegalTransition {
                from: TaskStatus::Succeeded,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(store.get(t.id).await.unwrap(), done);

    // Running already: the first start stays.
    let r = add(&*store, spec()).await;
    let ra = store.assign(r.id, "w1", t0).await.unwrap();
    store.mark_running(r.id, ra.token(), t0).await.unwrap();
    let rd = store
        .start_and_finish(r.id, ra.token(), t1, exited(0), t2)
        .await
        .unwrap();
    assert_eq!(rd.attempts[0].started_at, Some(t0));
    assert_eq!(rd.status, TaskStatus::Succeeded);

    // A failure with attempts left: queued again, the attempt keeps its cause.
    let f = add(
        &*store,
        TaskSpec {
            max_attempts: 2,
            ..spec()
        },
    )
    .await;
    let fa = store.assign(f.id, "w1", t0).await.unwrap();
    let fr = store
        .start_and_finish(f.id, fa.token(), t1, exited(3), t2)
        .await
        .unwrap();
    assert_eq!(fr.status, TaskStatus::Queued);
    assert_eq!(fr.attempts[0].exit_code, Some(3));
    assert_eq!(fr.attempts[0].started_at, Some(t1));

    // A stale token: nothing changes.
    let fb = store.assign(f.id, "w2", t2).await.unwrap();
    let r = store
        .start_and_finish(f.id, fa.token(), t2, exited(0), t2)
        .await;
    assert!(matches!(r, Err(QueueError::StaleToken { .. })), "{r:?}");
    assert_eq!(store.get(f.id).await.unwrap(), fb);
    passed(&*store, "start_and_finish_in_one_write");
}

/// `queued_asks` is `queued` reduced to id, request and pin: same order, same filter
/// (not the assigned, not those waiting for a retry), same limit.
pub async fn queued_asks_match_queued(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let sized = Resources {
        cpu_millis: 1500,
        memory_bytes: 3 << 30,
        gpus: 2,
        disk_bytes: 7 << 20,
    };
    for (priority, resources, pin) in [
        (0, Resources::default(), None),
        (5, sized, Some("w9")),
        (0, sized, None),
        (9, Resources::default(), Some("w1")),
    ] {
        add(
            &*store,
            TaskSpec {
                priority,
                resources,
                pinned_worker: pin.map(str::to_string),
                ..spec()
            },
        )
        .await;
    }
    let at = now() + Duration::milliseconds(10);
    // One assigned, one waiting for its retry: neither is in either read.
    let gone = add(&*store, spec()).await;
    store.assign(gone.id, "w1", at).await.unwrap();
    let retry = add(
        &*store,
        TaskSpec {
            max_attempts: 2,
            ..spec()
        },
    )
    .await;
    let r = store.assign(retry.id, "w1", at).await.unwrap();
    store
        .finish_attempt(retry.id, r.token(), exited(1), at)
        .await
        .unwrap();

    let full = store.queued(at, 100).await.unwrap();
    assert_eq!(full.len(), 4, "{full:?}");
    let want: Vec<QueuedTask> = full.iter().map(QueuedTask::of).collect();
    assert_eq!(store.queued_asks(at, 100).await.unwrap(), want);
    assert_eq!(store.queued_asks(at, 2).await.unwrap(), want[..2]);
    assert_eq!(want[0].pinned_worker.as_deref(), Some("w1"));
    assert_eq!(want[1].resources, sized);
    // The minimum reservation applies to an unsized request.
    assert!(want[0].reservation().cpu_millis > 0 && want[0].reservation().memory_bytes > 0);
    passed(&*store, "queued_asks_match_queued");
}
