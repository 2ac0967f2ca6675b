//! Cases where the two backends must agree to the byte or to the order: output past the
//! per-task cap, the dispatch order of a mixed queue, and the queue cap under concurrency.

use chrono::Duration;

use super::{add, claim_at, ended, now, output, passed, prio, Harness};
use crate::error::QueueError;
use crate::model::{LogStream, NewLogChunk, NewTask, TaskSpec, TaskStatus};
use crate::report::AttemptEnd;
use crate::store::StoreOptions;

fn bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7) ^ salt).collect()
}

/// A chunk larger than the whole cap keeps exactly its last `cap` bytes, and later output
/// pushes out the oldest bytes first; both stores keep the same bytes and say the same.
pub async fn a_chunk_larger_than_the_cap_keeps_its_tail(h: &dyn Harness) {
    const CAP: u64 = 100;
    let store = h
        .open(StoreOptions {
            max_log_bytes_per_task: CAP,
            ..StoreOptions::default()
        })
        .await;
    let t = add(&*store, super::spec()).await;
    let a = store.assign(t.id, "w1", now()).await.unwrap();
    let chunk = |data: Vec<u8>| NewLogChunk {
        stream: LogStream::Stdout,
        time: now(),
        data,
    };
    let (small, big, tail) = (bytes(30, 1), bytes(250, 2), bytes(10, 3));
    output(&*store, t.id, a.token(), vec![chunk(small)])
        .await
        .unwrap();
    output(&*store, t.id, a.token(), vec![chunk(big.clone())])
        .await
        .unwrap();
    let logs = store.read_logs(t.id, None, 10).await.unwrap();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!((logs[0].seq, logs[0].stream), (0, LogStream::System));
    assert_eq!(logs[0].data, crate::dropped_marker(180).into_bytes());
    assert_eq!((logs[1].seq, &logs[1].data), (2, &big[150..].to_vec()));

    output(&*store, t.id, a.token(), vec![chunk(tail.clone())])
        .await
        .unwrap();
    let logs = store.read_logs(t.id, None, 10).await.unwrap();
    let kept: Vec<u8> = logs[1..].iter().flat_map(|c| c.data.clone()).collect();
    let mut want = big[160..].to_vec();
    want.extend_from_slice(&tail);
    assert_eq!(kept, want, "the newest {CAP} bytes, in order");
    assert_eq!(logs[0].data, crate::dropped_marker(190).into_bytes());
    assert_eq!(logs.iter().map(|c| c.seq).collect::<Vec<_>>(), [0, 2, 3]);
    passed(&*store, "a_chunk_larger_than_the_cap_keeps_its_tail");
}

/// The queue is dispatched by priority, high first, then by id (creation order), retried
/// tasks included; `queued`, `queued_asks` and successive claims agree.
pub async fn dispatch_order_is_priority_then_id(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    // The oldest task, of priority 0, fails once and comes back from its backoff: it
    // keeps its place by id among the later ones.
    let retried = add(
        &*store,
        TaskSpec {
            max_attempts: 2,
            ..prio(0)
        },
    )
    .await;
    let at = now();
    let a = store.assign(retried.id, "w1", at).await.unwrap();
    let mut tasks = Vec::new();
    for p in [3, -2, 3, 0, 7, 0, 3, -2, 7, 0, 1, 3] {
        tasks.push(add(&*store, prio(p)).await);
    }
    let back = ended(&*store, retried.id, a.token(), AttemptEnd::Exited(1), now())
        .await
        .unwrap();
    assert_eq!(back.status, TaskStatus::Queued);
    tasks.push(back.clone());
    let when = back.not_before + Duration::milliseconds(1);
    let mut want: Vec<_> = tasks.iter().map(|t| (-t.spec.priority, t.id)).collect();
    want.sort();
    let want: Vec<_> = want.into_iter().map(|(_, id)| id).collect();

    let queued: Vec<_> = store
        .queued(when, 100)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(queued, want);
    let asks: Vec<_> = store
        .queued_asks(when, 100)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(asks, want);
    let mut claimed = Vec::new();
    while let Some(t) = store.claim(&claim_at("w1", when)).await.unwrap() {
        claimed.push(t.id);
    }
    assert_eq!(claimed, want);
    passed(&*store, "dispatch_order_is_priority_then_id");
}

/// With a cap on queued tasks, concurrent enqueues never take the queue past it; a batch
/// that would is refused whole; a reused idempotency key still answers; room comes back
/// as tasks leave the queue.
pub async fn queue_cap_is_atomic(h: &dyn Harness) {
    const MAX: u64 = 10;
    let store = h
        .open(StoreOptions {
            max_queued: Some(MAX),
            ..StoreOptions::default()
        })
        .await;
    let keyed = TaskSpec {
        idempotency_key: Some("cap-key".into()),
        ..super::spec()
    };
    add(&*store, keyed.clone()).await;
    for _ in 1..7 {
        add(&*store, super::spec()).await;
    }
    let racers: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.enqueue(super::spec().into()).await })
        })
        .collect();
    let (mut ok, mut full) = (0, 0);
    for r in racers {
        match r.await.unwrap() {
            Ok(e) => {
                assert!(e.created);
                ok += 1;
            }
            Err(QueueError::QueueFull { max, .. }) => {
                assert_eq!(max, MAX);
                full += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, full), (3, 17));
    let queued = |s: crate::model::QueueStats| s.counts.get(&TaskStatus::Queued).copied();
    assert_eq!(queued(store.stats(now()).await.unwrap()), Some(MAX));

    let again = store.enqueue(keyed.into()).await.unwrap();
    assert!(!again.created, "a reused key is not a new task");
    store.claim(&claim_at("w1", now())).await.unwrap().unwrap();
    let pair: Vec<NewTask> = vec![super::spec().into(), super::spec().into()];
    let r = store.enqueue_batch(pair).await;
    assert!(
        matches!(
            r,
            Err(QueueError::QueueFull {
                queued: 9,
                max: MAX
            })
        ),
        "{r:?}"
    );
    assert_eq!(queued(store.stats(now()).await.unwrap()), Some(9));
    store.enqueue(super::spec().into()).await.unwrap();
    assert_eq!(queued(store.stats(now()).await.unwrap()), Some(MAX));
    passed(&*store, "queue_cap_is_atomic");
}
