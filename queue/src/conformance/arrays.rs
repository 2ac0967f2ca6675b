//! Cases about job arrays: the elements of one enqueue are found by the array's id
//! (listed in index order, counted per status), and a capped array's elements leave
//! `waiting` only while fewer than the cap are queued or running; with parents, they
//! wait for them like any task and are cancelled together when a parent fails.

use std::collections::BTreeMap;

use super::{claim_at, ended, now, passed, spec, started, Harness};
use crate::array::{self, ArraySpec};
use crate::deps::{self, Dependency, DependencyCondition};
use crate::model::{Task, TaskId, TaskSpec, TaskStatus};
use crate::query::TaskQuery;
use crate::report::AttemptEnd;
use crate::store::{QueueStore, StoreOptions};

/// Enqueues an array of `spec` over `expr` in one batch; its id and elements.
async fn enqueue(store: &dyn QueueStore, spec: &TaskSpec, expr: &str) -> (String, Vec<Task>) {
    let indices: ArraySpec = expr.parse().unwrap();
    let (id, news) = array::elements(spec, &indices, None).unwrap();
    let done = store.enqueue_batch(news).await.unwrap();
    (id, done.into_iter().map(|e| e.task).collect())
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
