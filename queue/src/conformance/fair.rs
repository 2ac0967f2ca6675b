//! Cases about the fair-share reads: who has queued work, and each submitter's head.

use std::collections::BTreeSet;

use chrono::Duration;

use super::{now, passed, Harness};
use crate::model::{NewTask, TaskSpec};
use crate::store::{QueueStore, QueuedTask, StoreOptions};

async fn add_by(store: &dyn QueueStore, who: Option<&str>, priority: i32) -> crate::model::Task {
    let spec = TaskSpec {
        priority,
        ..TaskSpec::new("busybox")
    };
    store
        .enqueue(NewTask {
            spec,
            submitted_by: who.map(str::to_string),
        })
        .await
        .expect("enqueue")
        .task
}

/// Who the store says has queued work, as a set.
async fn submitters(store: &dyn QueueStore) -> BTreeSet<Option<String>> {
    store
        .queued_submitters()
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// `queued_submitters` names each submitter with queued work once (`None` for tasks
/// without one), whatever their `not_before`, and forgets one whose tasks all left the
/// queue; `queued_asks_of` is `queued_asks` filtered to one submitter: same order, same
/// filter, same limit, with the priority and submitter in each.
pub async fn queued_reads_per_submitter(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    assert!(store.queued_submitters().await.unwrap().is_empty());
    for (who, priority) in [
        (Some("alice"), 0),
        (Some("bob"), 0),
        (Some("alice"), 5),
        (None, 0),
        (Some("alice"), 0),
        (Some("bob"), 9),
        (None, 1),
    ] {
        add_by(&*store, who, priority).await;
    }
    // Carol's only task waits for its `--at`: she has queued work all the same.
    let later = TaskSpec {
        not_before: Some(now() + Duration::hours(1)),
        ..TaskSpec::new("busybox")
    };
    store
        .enqueue(NewTask {
            spec: later,
            submitted_by: Some("carol".into()),
        })
        .await
        .unwrap();
    // Dave's only task is assigned: he has none queued.
    let dave = add_by(&*store, Some("dave"), 0).await;
    let at = now() + Duration::milliseconds(10);
    store.assign(dave.id, "w1", at).await.unwrap();

    let who = submitters(&*store).await;
    let want: BTreeSet<Option<String>> = [None, Some("alice"), Some("bob"), Some("carol")]
        .into_iter()
        .map(|s| s.map(str::to_string))
        .collect();
    assert_eq!(who, want);
    assert_eq!(
        store.queued_submitters().await.unwrap().len(),
        4,
        "each once"
    );

    let all = store.queued_asks(at, 100).await.unwrap();
    assert_eq!(
        all,
        store
            .queued(at, 100)
            .await
            .unwrap()
            .iter()
            .map(QueuedTask::of)
            .collect::<Vec<_>>()
    );
    for s in [None, Some("alice"), Some("bob"), Some("carol")] {
        let mine: Vec<QueuedTask> = all
            .iter()
            .filter(|t| t.submitter.as_deref() == s)
            .cloned()
            .collect();
        assert_eq!(
            store.queued_asks_of(at, s, 100).await.unwrap(),
            mine,
            "{s:?}"
        );
        assert_eq!(
            store.queued_asks_of(at, s, 1).await.unwrap(),
            mine[..mine.len().min(1)]
        );
    }
    let alice = store.queued_asks_of(at, Some("alice"), 100).await.unwrap();
    assert_eq!(
        alice.iter().map(|t| t.priority).collect::<Vec<_>>(),
        [5, 0, 0],
        "priority first, then oldest"
    );
    assert!(store
        .queued_asks_of(at, Some("carol"), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .queued_asks_of(at, Some("nobody"), 10)
        .await
        .unwrap()
        .is_empty());

    for t in &alice {
        store.assign(t.id, "w1", at).await.unwrap();
    }
    let who = submitters(&*store).await;
    assert!(!who.contains(&Some("alice".to_string())), "{who:?}");
    assert_eq!(who.len(), 3);
    passed(&*store, "queued_reads_per_submitter");
}
