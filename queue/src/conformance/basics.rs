//! Cases about storing and finding tasks: round trip, lookups, idempotency, validation,
//! batches.

use std::time::Duration;

use super::{add, all, passed, spec, Harness};
use crate::error::QueueError;
use crate::model::{NewTask, Resources, TaskId, TaskStatus};
use crate::store::StoreOptions;

/// What `enqueue` returns is what `get` reads back, field for field.
pub async fn enqueue_get_round_trip(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let mut s = spec();
    s.command = vec!["-c".into(), "echo hi".into()];
    s.entrypoint = vec!["/bin/sh".into()];
    s.env.insert("MODE".into(), "fast".into());
    s.resources = Resources {
        cpu_millis: 1500,
        memory_bytes: 256 << 20,
        gpus: 1,
        disk_bytes: 1 << 30,
    };
    s.priority = 7;
    s.max_attempts = 3;
    s.max_lost_retries = 2;
    s.timeout = Some(Duration::from_secs(90));
    s.pinned_worker = Some("gpu-1".into());
    s.labels.insert("team".into(), "ml".into());
    s.idempotency_key = Some("round-trip".into());
    let e = store
        .enqueue(NewTask {
            spec: s.clone(),
            submitted_by: Some("alice".into()),
        })
        .await
        .unwrap();
    assert!(e.created);
    let t = &e.task;
    assert_eq!(t.spec, s);
    assert_eq!(t.status, TaskStatus::Queued);
    assert!(t.attempts.is_empty());
    assert_eq!(t.token(), 0);
    assert!(!t.cancel_requested);
    assert_eq!(t.finished_at, None);
    assert_eq!(t.submitted_by.as_deref(), Some("alice"));
    assert!(t.not_before <= chrono::Utc::now());
    assert_eq!(store.get(t.id).await.unwrap(), e.task);
    let second = add(&*store, spec()).await;
    assert!(second.id > t.id, "ids are time-ordered");
    passed(&*store, "enqueue_get_round_trip");
}

/// Unknown ids are `NotFound` for every call that takes one.
pub async fn get_unknown_is_not_found(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    add(&*store, spec()).await;
    let id = TaskId::new();
    let now = chrono::Utc::now();
    assert!(matches!(store.get(id).await, Err(QueueError::NotFound(x)) if x == id));
    assert!(matches!(store.assign(id, "w", now).await, Err(QueueError::NotFound(x)) if x == id));
    assert!(matches!(
        store.request_cancel(id, now).await,
        Err(QueueError::NotFound(x)) if x == id
    ));
    assert!(matches!(
        store.read_logs(id, None, 10).await,
        Err(QueueError::NotFound(x)) if x == id
    ));
    assert!(matches!(
        super::started(&*store, id, 1, now).await,
        Err(QueueError::NotFound(x)) if x == id
    ));
    assert!(matches!(
        super::lost(&*store, id, 1, now).await,
        Err(QueueError::NotFound(x)) if x == id
    ));
    passed(&*store, "get_unknown_is_not_found");
}

/// A prefix resolves when unique, is ambiguous when shared, and may be the full id.
pub async fn resolve_prefix_unique_ambiguous_none_full(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(add(&*store, spec()).await.id.to_string());
        }
        v
    };
    for id in &ids {
        assert_eq!(store.resolve_prefix(id).await.unwrap().to_string(), *id);
        let unique = (1..=id.len())
            .map(|n| &id[..n])
            .find(|p| ids.iter().filter(|o| o.starts_with(p)).count() == 1)
            .unwrap();
        assert_eq!(store.resolve_prefix(unique).await.unwrap().to_string(), *id);
    }
    // Ids made within the same second share their leading timestamp digits.
    let shared: String = ids[0]
        .chars()
        .zip(ids[1].chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    assert!(shared.len() >= 4, "v7 ids made together share a prefix");
    match store.resolve_prefix(&shared[..4]).await {
        Err(QueueError::AmbiguousPrefix { count, .. }) => assert!(count >= 2),
        other => panic!("expected AmbiguousPrefix, got {other:?}"),
    }
    assert!(matches!(
        store.resolve_prefix("ffffffff").await,
        Err(QueueError::NoMatch(_))
    ));
    passed(&*store, "resolve_prefix_unique_ambiguous_none_full");
}

/// Enqueueing an equal spec with a used key returns the first task, not a new one.
pub async fn idempotent_enqueue_returns_existing(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let s = crate::model::TaskSpec {
        idempotency_key: Some("job-42".into()),
        ..spec()
    };
    let first = store.enqueue(s.clone().into()).await.unwrap();
    assert!(first.created);
    let again = store.enqueue(s.clone().into()).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.task.id, first.task.id);
    assert_eq!(again.task, store.get(first.task.id).await.unwrap());
    // Still the same task after it moved on.
    store
        .assign(first.task.id, "w1", chrono::Utc::now())
        .await
        .unwrap();
    let third = store.enqueue(s.into()).await.unwrap();
    assert!(!third.created);
    assert_eq!(third.task.status, TaskStatus::Assigned);
    assert_eq!(all(&*store).await.len(), 1);
    passed(&*store, "idempotent_enqueue_returns_existing");
}

/// A used key with a different spec is `IdempotencyConflict` naming the holder.
pub async fn idempotency_conflict_is_rejected(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let s = crate::model::TaskSpec {
        idempotency_key: Some("nightly".into()),
        ..spec()
    };
    let first = add(&*store, s.clone()).await;
    let mut other = s.clone();
    other.command = vec!["false".into()];
    match store.enqueue(other.into()).await {
        Err(QueueError::IdempotencyConflict { key, existing }) => {
            assert_eq!(key, "nightly");
            assert_eq!(existing, first.id);
        }
        r => panic!("expected IdempotencyConflict, got {r:?}"),
    }
    let tasks = all(&*store).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0], first);
    passed(&*store, "idempotency_conflict_is_rejected");
}

/// Bad specs are `Invalid` naming the field, and nothing is stored.
pub async fn invalid_spec_is_rejected_and_not_stored(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let cases: Vec<(crate::model::TaskSpec, &str)> = vec![
        (crate::model::TaskSpec::new(""), "image"),
        (crate::model::TaskSpec::new("Not An Image"), "image"),
        (
            crate::model::TaskSpec {
                max_attempts: 0,
                ..spec()
            },
            "max_attempts",
        ),
        (
            crate::model::TaskSpec {
                pinned_worker: Some("no spaces allowed".into()),
                ..spec()
            },
            "worker id",
        ),
        (
            crate::model::TaskSpec {
                timeout: Some(Duration::ZERO),
                ..spec()
            },
            "timeout",
        ),
    ];
    for (s, want) in cases {
        match store.enqueue(s.into()).await {
            Err(QueueError::Invalid { field, .. }) => assert_eq!(field, want),
            r => panic!("expected Invalid {{ field: {want} }}, got {r:?}"),
        }
    }
    assert!(all(&*store).await.is_empty());
    let stats = store.stats(chrono::Utc::now()).await.unwrap();
    assert_eq!(stats.counts.values().sum::<u64>(), 0);
    passed(&*store, "invalid_spec_is_rejected_and_not_stored");
}

/// A batch with one bad task stores none; a good batch stores all, in order.
pub async fn enqueue_batch_is_all_or_nothing(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let bad = vec![
        spec().into(),
        spec().into(),
        crate::model::TaskSpec::new("").into(),
    ];
    assert!(matches!(
        store.enqueue_batch(bad).await,
        Err(QueueError::Invalid { field: "image", .. })
    ));
    assert!(all(&*store).await.is_empty());

    let keyed = crate::model::TaskSpec {
        idempotency_key: Some("k".into()),
        ..spec()
    };
    let holder = add(&*store, keyed.clone()).await;
    let conflicting = crate::model::TaskSpec {
        priority: 9,
        ..keyed.clone()
    };
    let batch = vec![prio_task(1), prio_task(2), conflicting.into()];
    assert!(matches!(
        store.enqueue_batch(batch).await,
        Err(QueueError::IdempotencyConflict { existing, .. }) if existing == holder.id
    ));
    assert_eq!(all(&*store).await, vec![holder.clone()]);

    let good = vec![prio_task(1), keyed.into(), prio_task(3)];
    let out = store.enqueue_batch(good).await.unwrap();
    assert_eq!(out.len(), 3);
    assert!(out[0].created && !out[1].created && out[2].created);
    assert_eq!(out[1].task.id, holder.id);
    assert_eq!(out[0].task.spec.priority, 1);
    assert_eq!(out[2].task.spec.priority, 3);
    for e in &out {
        assert_eq!(store.get(e.task.id).await.unwrap(), e.task);
    }
    assert_eq!(all(&*store).await.len(), 3);
    let stats = store.stats(chrono::Utc::now()).await.unwrap();
    assert_eq!(
        stats.counts.get(&crate::model::TaskStatus::Queued),
        Some(&3),
        "each new task counted once, the refused batches' not at all"
    );
    passed(&*store, "enqueue_batch_is_all_or_nothing");
}

fn prio_task(p: i32) -> NewTask {
    super::prio(p).into()
}
