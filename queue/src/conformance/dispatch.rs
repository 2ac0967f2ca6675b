//! Cases about dispatch order and eligibility, listing, and concurrent claimers.

use std::collections::HashMap;

use chrono::Duration;

use super::{add, all, claim_at, ended, now, passed, prio, spec, Harness};
use crate::error::QueueError;
use crate::model::{ClaimRequest, NewTask, Resources, Task, TaskSpec, TaskStatus};
use crate::query::TaskQuery;
use crate::report::AttemptEnd;
use crate::store::{QueueStore, StoreOptions};

/// Enqueues tasks with priorities 0, 5, 0, 5, -1, 10 and returns them in the order
/// dispatch must take them: 10, then both 5s oldest first, both 0s, then -1.
async fn mixed_priorities(store: &dyn QueueStore) -> Vec<Task> {
    let mut tasks = Vec::new();
    for p in [0, 5, 0, 5, -1, 10] {
        tasks.push(add(store, prio(p)).await);
    }
    vec![
        tasks[5].clone(),
        tasks[1].clone(),
        tasks[3].clone(),
        tasks[0].clone(),
        tasks[2].clone(),
        tasks[4].clone(),
    ]
}

fn ids(tasks: &[Task]) -> Vec<String> {
    tasks.iter().map(|t| t.id.to_string()).collect()
}

/// `queued()` lists higher priority first, then oldest first, and honours `limit`.
pub async fn queued_lists_priority_then_fifo(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let want = mixed_priorities(&*store).await;
    let at = chrono::Utc::now();
    assert_eq!(ids(&store.queued(at, 100).await.unwrap()), ids(&want));
    assert_eq!(ids(&store.queued(at, 2).await.unwrap()), ids(&want[..2]));
    // Assigned tasks leave the queue; the rest keep their order.
    store.assign(want[1].id, "w1", at).await.unwrap();
    let rest: Vec<Task> = want
        .iter()
        .filter(|t| t.id != want[1].id)
        .cloned()
        .collect();
    assert_eq!(ids(&store.queued(at, 100).await.unwrap()), ids(&rest));
    passed(&*store, "queued_lists_priority_then_fifo");
}

/// Successive claims take tasks in dispatch order, then find none.
pub async fn claim_takes_priority_then_fifo(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let want = mixed_priorities(&*store).await;
    let at = chrono::Utc::now();
    let mut got = Vec::new();
    while let Some(t) = store.claim(&claim_at("w1", at)).await.unwrap() {
        assert_eq!(t.status, TaskStatus::Assigned);
        assert_eq!(t.worker_id(), Some("w1"));
        got.push(t);
    }
    assert_eq!(ids(&got), ids(&want));
    passed(&*store, "claim_takes_priority_then_fifo");
}

/// Nothing is dispatched before its `not_before`, including retries in backoff.
pub async fn not_before_is_respected(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t = add(
        &*store,
        TaskSpec {
            max_attempts: 2,
            ..spec()
        },
    )
    .await;
    let past = t.created_at - Duration::seconds(10);
    assert!(store.queued(past, 10).await.unwrap().is_empty());
    assert!(store.claim(&claim_at("w1", past)).await.unwrap().is_none());

    let at = now();
    let a = store.claim(&claim_at("w1", at)).await.unwrap().unwrap();
    let back = ended(&*store, a.id, a.token(), AttemptEnd::Exited(1), at)
        .await
        .unwrap();
    assert_eq!(back.status, TaskStatus::Queued);
    assert!(back.not_before > at);
    assert!(store.queued(at, 10).await.unwrap().is_empty());
    assert!(store.claim(&claim_at("w1", at)).await.unwrap().is_none());
    assert_eq!(
        ids(&store.queued(back.not_before, 10).await.unwrap()),
        ids(std::slice::from_ref(&back))
    );
    let again = store
        .claim(&claim_at("w2", back.not_before))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, t.id);
    assert_eq!(again.attempts.len(), 2);
    passed(&*store, "not_before_is_respected");
}

/// A pinned task goes only to its worker, even when it is first in line.
pub async fn pinned_tasks_go_only_to_their_worker(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let pinned = add(
        &*store,
        TaskSpec {
            priority: 10,
            pinned_worker: Some("w-a".into()),
            ..spec()
        },
    )
    .await;
    let free = add(&*store, spec()).await;
    let at = chrono::Utc::now();
    let b = store.claim(&claim_at("w-b", at)).await.unwrap().unwrap();
    assert_eq!(b.id, free.id);
    assert!(store.claim(&claim_at("w-b", at)).await.unwrap().is_none());
    let a = store.claim(&claim_at("w-a", at)).await.unwrap().unwrap();
    assert_eq!(a.id, pinned.id);
    assert_eq!(a.worker_id(), Some("w-a"));
    passed(&*store, "pinned_tasks_go_only_to_their_worker");
}

/// A claim skips tasks that do not fit the worker's free resources.
pub async fn claim_respects_resource_fit(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let need = |cpu_millis, memory_bytes, gpus| TaskSpec {
        resources: Resources {
            cpu_millis,
            memory_bytes,
            gpus,
            disk_bytes: 0,
        },
        ..spec()
    };
    let big = add(
        &*store,
        TaskSpec {
            priority: 10,
            ..need(4000, 1 << 30, 0)
        },
    )
    .await;
    let gpu = add(
        &*store,
        TaskSpec {
            priority: 5,
            ..need(100, 1 << 20, 1)
        },
    )
    .await;
    let small = add(&*store, need(500, 1 << 20, 0)).await;
    let at = chrono::Utc::now();
    let req = |cpu_millis, gpus| ClaimRequest {
        worker_id: "w1".into(),
        free: Resources {
            cpu_millis,
            memory_bytes: 2 << 30,
            gpus,
            disk_bytes: 1 << 30,
        },
        now: at,
    };
    assert_eq!(
        store.claim(&req(1000, 0)).await.unwrap().unwrap().id,
        small.id
    );
    assert!(store.claim(&req(1000, 0)).await.unwrap().is_none());
    assert_eq!(
        store.claim(&req(1000, 1)).await.unwrap().unwrap().id,
        gpu.id
    );
    assert_eq!(
        store.claim(&req(4000, 0)).await.unwrap().unwrap().id,
        big.id
    );
    passed(&*store, "claim_respects_resource_fit");
}

/// 8 claimers race over 60 tasks: every task is claimed exactly once.
pub async fn concurrent_claimers_take_each_task_once(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let batch: Vec<NewTask> = (0..60).map(|i| prio(i % 3).into()).collect();
    store.enqueue_batch(batch).await.unwrap();
    let at = chrono::Utc::now();
    let mut handles = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let worker = format!("claimer-{i}");
            let mut got = Vec::new();
            while let Some(t) = store.claim(&claim_at(&worker, at)).await.unwrap() {
                got.push((t.id, worker.clone()));
            }
            got
        }));
    }
    let mut claimed = HashMap::new();
    for handle in handles {
        for (id, worker) in handle.await.unwrap() {
            assert!(
                claimed.insert(id, worker).is_none(),
                "task {id} claimed twice"
            );
        }
    }
    assert_eq!(claimed.len(), 60);
    for t in all(&*store).await {
        assert_eq!(t.status, TaskStatus::Assigned);
        assert_eq!(t.attempts.len(), 1);
        assert_eq!(t.worker_id(), claimed.get(&t.id).map(String::as_str));
    }
    passed(&*store, "concurrent_claimers_take_each_task_once");
}

/// 8 concurrent `assign`s of one task: exactly one wins, the rest are illegal.
pub async fn concurrent_assigns_have_one_winner(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t = add(&*store, spec()).await;
    let at = chrono::Utc::now();
    let mut handles = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let worker = format!("w{i}");
            (worker.clone(), store.assign(t.id, &worker, at).await)
        }));
    }
    let mut winners = Vec::new();
    for handle in handles {
        match handle.await.unwrap() {
            (worker, Ok(task)) => {
                assert_eq!(task.worker_id(), Some(worker.as_str()));
                winners.push(worker);
            }
            (_, Err(QueueError::IllegalTransition { from, to, .. })) => {
                assert_eq!((from, to), (TaskStatus::Assigned, TaskStatus::Assigned));
            }
            (_, Err(e)) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let stored = store.get(t.id).await.unwrap();
    assert_eq!(stored.attempts.len(), 1);
    assert_eq!(stored.worker_id(), Some(winners[0].as_str()));
    passed(&*store, "concurrent_assigns_have_one_winner");
}

/// `list` filters by status and worker, newest first, and pages with `before`.
pub async fn list_filters_and_pages(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let mut made = Vec::new();
    for _ in 0..7 {
        made.push(add(&*store, spec()).await);
    }
    let at = chrono::Utc::now();
    let x1 = store.claim(&claim_at("w-x", at)).await.unwrap().unwrap();
    let x2 = store.claim(&claim_at("w-x", at)).await.unwrap().unwrap();
    let y = store.claim(&claim_at("w-y", at)).await.unwrap().unwrap();
    assert_eq!([x1.id, x2.id, y.id], [made[0].id, made[1].id, made[2].id]);

    let everything = all(&*store).await;
    let newest_first: Vec<_> = made.iter().rev().map(|t| t.id).collect();
    assert_eq!(
        everything.iter().map(|t| t.id).collect::<Vec<_>>(),
        newest_first
    );

    let q = |statuses: Vec<TaskStatus>, worker: Option<&str>| TaskQuery {
        statuses,
        worker_id: worker.map(str::to_string),
        ..Default::default()
    };
    let queued = store
        .list(&q(vec![TaskStatus::Queued], None))
        .await
        .unwrap();
    assert_eq!(queued.len(), 4);
    assert!(queued.iter().all(|t| t.status == TaskStatus::Queued));
    let assigned = store
        .list(&q(vec![TaskStatus::Assigned], None))
        .await
        .unwrap();
    assert_eq!(ids(&assigned), ids(&[y.clone(), x2.clone(), x1.clone()]));
    let both = store
        .list(&q(vec![TaskStatus::Queued, TaskStatus::Assigned], None))
        .await
        .unwrap();
    assert_eq!(both.len(), 7);
    let on_x = store.list(&q(vec![], Some("w-x"))).await.unwrap();
    assert_eq!(ids(&on_x), ids(&[x2, x1]));
    let y_running = store
        .list(&q(vec![TaskStatus::Running], Some("w-y")))
        .await
        .unwrap();
    assert!(y_running.is_empty());

    let mut sizes = Vec::new();
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list(&TaskQuery {
                limit: 3,
                before,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(sizes.len() < 3, "paging must end");
        before = page.last().map(|t| t.id);
        sizes.push(page.len());
        paged.extend(page.into_iter().map(|t| t.id));
    }
    assert_eq!(sizes, vec![3, 3, 1]);
    assert_eq!(paged, newest_first);
    passed(&*store, "list_filters_and_pages");
}

/// `list` filters by who submitted a task, with the other filters and across pages; a task
/// with no submitter (local-dev mode) matches no name.
pub async fn list_filters_by_submitter(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let mut made = Vec::new();
    for who in [
        Some("alice"),
        Some("bob"),
        None,
        Some("alice"),
        Some("alice"),
    ] {
        let e = store
            .enqueue(NewTask {
                spec: spec(),
                submitted_by: who.map(str::to_string),
            })
            .await
            .expect("enqueue");
        made.push(e.task);
    }
    let alice_newest_first = ids(&[made[4].clone(), made[3].clone(), made[0].clone()]);
    let by = |who: &str| TaskQuery {
        submitted_by: Some(who.to_string()),
        ..Default::default()
    };
    let alice = store.list(&by("alice")).await.unwrap();
    assert_eq!(ids(&alice), alice_newest_first);
    assert!(alice
        .iter()
        .all(|t| t.submitted_by.as_deref() == Some("alice")));
    assert_eq!(
        ids(&store.list(&by("bob")).await.unwrap()),
        ids(&made[1..2])
    );
    assert!(store.list(&by("carol")).await.unwrap().is_empty());
    assert!(store.list(&by("ALICE")).await.unwrap().is_empty(), "exact");
    assert_eq!(all(&*store).await.len(), 5, "no filter: everyone's");

    // With a status filter: alice's running task only.
    let at = chrono::Utc::now();
    let claimed = store.assign(made[3].id, "w-1", at).await.unwrap();
    let assigned = store
        .list(&TaskQuery {
            statuses: vec![TaskStatus::Assigned],
            ..by("alice")
        })
        .await
        .unwrap();
    assert_eq!(ids(&assigned), ids(&[claimed]));
    let bob_assigned = store
        .list(&TaskQuery {
            statuses: vec![TaskStatus::Assigned],
            ..by("bob")
        })
        .await
        .unwrap();
    assert!(bob_assigned.is_empty());
    let on_w1 = store
        .list(&TaskQuery {
            worker_id: Some("w-1".into()),
            ..by("bob")
        })
        .await
        .unwrap();
    assert!(on_w1.is_empty(), "both filters apply");

    // Pages of one hold only alice's tasks and end.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list(&TaskQuery {
                limit: 1,
                before,
                ..by("alice")
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        assert!(paged.len() < 3, "paging must end");
        before = Some(last.id);
        paged.push(last.id.to_string());
    }
    assert_eq!(paged, alice_newest_first);
    passed(&*store, "list_filters_by_submitter");
}
