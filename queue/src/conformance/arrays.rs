//! Cases about job arrays: the elements of one enqueue are found by the array's id
//! (listed in index order, counted per status), and a capped array's elements leave
//! `waiting` only while fewer than the cap are queued or running; with parents, they
//! wait for them like any task and are cancelled together when a parent fails.

use std::collections::BTreeMap;

use super::{claim_at, ended, now, passed, spec, started, Harness};
use crate::array::{self, ArraySpec};
use crate::deps::{self, Dependency, DependencyCondition};
use crate::error::QueueError;
use crate::model::{Task, TaskId, TaskSpec, TaskStatus};
use crate::query::TaskQuery;
use crate::report::AttemptEnd;
use crate::store::{QueueStore, StoreOptions};

/// Enqueues an array of `spec` over `expr` (`enqueue_array`, checked against what it
/// stored); its id and elements, as stored, in index order.
async fn enqueue(store: &dyn QueueStore, spec: &TaskSpec, expr: &str) -> (String, Vec<Task>) {
    let indices: ArraySpec = expr.parse().unwrap();
    let els = array::Elements::new(spec.clone(), indices, None).unwrap();
    let made = store.enqueue_array(els).await.unwrap();
    let stored = store.list(&elements_of(&made.id, &[])).await.unwrap();
    assert_answers(&made, &stored);
    (made.id, stored)
}

/// `made` says what `stored` (every element, in index order) holds: the count, the
/// first, one sample per status (each equal to a stored element).
fn assert_answers(made: &array::ArrayEnqueued, stored: &[Task]) {
    assert_eq!(made.created, stored.len());
    assert_eq!(made.first, stored.first().map(|t| t.id));
    let mut statuses: Vec<TaskStatus> = stored.iter().map(|t| t.status).collect();
    statuses.dedup();
    let sampled: Vec<TaskStatus> = made.samples.iter().map(|t| t.status).collect();
    assert_eq!(
        sampled, statuses,
        "one sample per status, in the order made"
    );
    for t in &made.samples {
        assert!(stored.contains(t), "sample {} is not as stored", t.id);
    }
}

/// `enqueue_array` is `enqueue_batch` of the elements: with a key, a repeat returns the
/// stored elements (created 0); past the queue cap, none is stored.
pub async fn an_array_enqueue_answers_what_it_made_and_is_all_or_nothing(h: &dyn Harness) {
    let store = h
        .open(StoreOptions {
            max_queued: Some(7),
            ..StoreOptions::default()
        })
        .await;
    let mut keyed = spec();
    keyed.idempotency_key = Some("nightly".into());
    let (id, made) = enqueue(&*store, &keyed, "0-4").await;
    assert_eq!(indices(&made), vec![0, 1, 2, 3, 4]);
    let els = array::Elements::new(keyed.clone(), "0-4".parse().unwrap(), None).unwrap();
    let again = store.enqueue_array(els).await.unwrap();
    assert_eq!((again.id.as_str(), again.created), (id.as_str(), 0));
    assert_eq!(again.first, Some(made[0].id));
    assert!(again.samples.is_empty());

    // Two of these four would fit under the cap of 7: none is stored.
    let els = array::Elements::new(spec(), "0-3".parse().unwrap(), None).unwrap();
    let other = els.id().to_string();
    let refused = store.enqueue_array(els).await;
    assert!(
        matches!(refused, Err(QueueError::QueueFull { queued: 5, max: 7 })),
        "{refused:?}"
    );
    assert!(store.array_counts(&other).await.unwrap().is_empty());
    assert_eq!(store.list(&TaskQuery::default()).await.unwrap().len(), 5);
    passed(
        &*store,
        "an_array_enqueue_answers_what_it_made_and_is_all_or_nothing",
    );
}

fn elements_of(id: &str, statuses: &[TaskStatus]) -> TaskQuery {
    TaskQuery {
        statuses: statuses.to_vec(),
        array: Some(id.to_string()),
        oldest_first: true,
        limit: 1000,
        ..TaskQuery::default()
    }
}

/// The indices of `tasks`.
fn indices(tasks: &[Task]) -> Vec<u32> {
    tasks
        .iter()
        .map(|t| t.spec.array.as_ref().expect("an element").index)
        .collect()
}

async fn indices_in(store: &dyn QueueStore, id: &str, status: TaskStatus) -> Vec<u32> {
    indices(&store.list(&elements_of(id, &[status])).await.unwrap())
}

/// Claims the next queued task and ends it as `end`.
async fn run_next(store: &dyn QueueStore, end: AttemptEnd) -> Task {
    let at = now();
    let t = store
        .claim(&claim_at("w1", at))
        .await
        .unwrap()
        .expect("a queued task");
    started(store, t.id, t.token(), at).await.unwrap();
    ended(store, t.id, t.token(), end, at).await.unwrap()
}

fn counts(pairs: &[(TaskStatus, u64)]) -> BTreeMap<TaskStatus, u64> {
    pairs.iter().copied().collect()
}

/// An array is found by its id, in index order, and counted; its cap holds all but that
/// many elements `waiting`, and each end frees one slot for the next index.
pub async fn array_elements_are_found_counted_and_capped(h: &dyn Harness) {
    use TaskStatus::*;
    let store = h.open(StoreOptions::default()).await;
    let (id, made) = enqueue(&*store, &spec(), "10-14%2").await;
    assert_eq!(indices(&made), vec![10, 11, 12, 13, 14]);
    assert!(made.iter().all(|t| t.status == Waiting), "capped: all wait");
    assert!(store.queued(now(), 100).await.unwrap().is_empty());
    let (other, plain) = enqueue(&*store, &spec(), "0-2").await;
    assert!(plain.iter().all(|t| t.status == Queued), "no cap: queued");

    let listed = store.list(&elements_of(&id, &[])).await.unwrap();
    assert_eq!(indices(&listed), vec![10, 11, 12, 13, 14]);
    let q = elements_of(&id, &[]);
    for t in made.iter().chain(&plain) {
        assert_eq!(q.matches(t), t.spec.array.as_ref().unwrap().id == id);
    }
    assert_eq!(
        store.array_counts(&id).await.unwrap(),
        counts(&[(Waiting, 5)])
    );
    assert_eq!(
        store.array_counts(&other).await.unwrap(),
        counts(&[(Queued, 3)])
    );
    assert!(store
        .array_counts("no-such-array")
        .await
        .unwrap()
        .is_empty());

    // Clear the uncapped array out of the way.
    for _ in 0..3 {
        run_next(&*store, AttemptEnd::Exited(0)).await;
    }
    // The cap: the two lowest indices go, and a second pass changes nothing.
    let released = deps::fill_array(&*store, &id, now()).await.unwrap();
    assert_eq!(indices(&released), vec![10, 11]);
    assert!(released.iter().all(|t| t.status == Queued));
    assert!(deps::fill_array(&*store, &id, now())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(indices_in(&*store, &id, Waiting).await, vec![12, 13, 14]);

    // A success and a failure each free one slot; a running element holds its slot.
    run_next(&*store, AttemptEnd::Exited(0)).await;
    assert_eq!(
        indices(&deps::fill_array(&*store, &id, now()).await.unwrap()),
        vec![12]
    );
    let t = store.claim(&claim_at("w1", now())).await.unwrap().unwrap();
    started(&*store, t.id, t.token(), now()).await.unwrap();
    assert!(
        deps::fill_array(&*store, &id, now())
            .await
            .unwrap()
            .is_empty(),
        "2 active"
    );
    ended(&*store, t.id, t.token(), AttemptEnd::Exited(3), now())
        .await
        .unwrap();
    assert_eq!(
        indices(&deps::fill_array(&*store, &id, now()).await.unwrap()),
        vec![13]
    );
    assert_eq!(
        store.array_counts(&id).await.unwrap(),
        counts(&[(Queued, 2), (Waiting, 1), (Succeeded, 1), (Failed, 1)])
    );
    // Settling any element decides its array (with the cap), not the element alone.
    let last = made[4].id;
    assert!(deps::settle(&*store, last, now()).await.unwrap().is_empty());
    assert_eq!(store.get(last).await.unwrap().status, Waiting);
    passed(&*store, "array_elements_are_found_counted_and_capped");
}

fn after(parent: TaskId, condition: DependencyCondition) -> TaskSpec {
    TaskSpec {
        after: vec![Dependency {
            task: parent,
            condition,
        }],
        ..spec()
    }
}

/// Elements with parents wait for them; a parent's success releases them under the
/// cap, a failure cancels every waiting element (the cap does not hold a cancel back).
pub async fn array_elements_wait_for_parents_and_are_cancelled_together(h: &dyn Harness) {
    use TaskStatus::*;
    let store = h.open(StoreOptions::default()).await;
    let fails = store.enqueue(spec().into()).await.unwrap().task;
    let (doomed, made) = enqueue(&*store, &after(fails.id, DependencyCondition::Ok), "0-2").await;
    assert!(made.iter().all(|t| t.status == Waiting), "parents first");
    assert!(deps::fill_array(&*store, &doomed, now())
        .await
        .unwrap()
        .is_empty());
    let end = run_next(&*store, AttemptEnd::Exited(1)).await;
    assert_eq!((end.id, end.status), (fails.id, Failed));
    let changed = deps::resolve(&*store, fails.id, now()).await.unwrap();
    assert_eq!(indices(&changed), vec![0, 1, 2]);
    let reason = format!("dependency {} ended failed", fails.id);
    for t in &changed {
        assert_eq!(
            (t.status, t.error.as_deref()),
            (Cancelled, Some(reason.as_str()))
        );
    }

    let ok = store.enqueue(spec().into()).await.unwrap().task;
    let (id, _) = enqueue(&*store, &after(ok.id, DependencyCondition::Ok), "5,7,9%1").await;
    assert_eq!(run_next(&*store, AttemptEnd::Exited(0)).await.id, ok.id);
    let changed = deps::resolve(&*store, ok.id, now()).await.unwrap();
    assert_eq!(indices(&changed), vec![5], "one at a time");
    assert_eq!(indices_in(&*store, &id, Waiting).await, vec![7, 9]);
    passed(
        &*store,
        "array_elements_wait_for_parents_and_are_cancelled_together",
    );
}
