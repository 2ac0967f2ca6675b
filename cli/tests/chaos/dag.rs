//! The chaos runs' workflow: two diamonds of dependent tasks enqueued while the kills go
//! on. In the first every task succeeds; in the second the top fails (after its retry),
//! so its `:ok` child is cancelled, its `:notok` child runs, and the bottom (after the
//! cancelled one `:any` and the other `:ok`) runs too. From the store at the end: each
//! node exists once and ended as planned, a node that ran has one successful attempt
//! whose first assignment came after every parent's final outcome, and a cancelled node
//! never ran and names the parent that cancelled it.
//!
//! Beside them, a job array of [`ARRAY_SIZE`] elements capped at [`ARRAY_CAP`], enqueued
//! in one call through the same kills: each index ends once, succeeded with its whole
//! output, and no more than the cap ever ran at once (judged from the attempts' times).

// Shared by chaos.rs and chaos_mongo.rs.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudai_proto::pb;
use cloudai_queue::{Task, TaskStatus};

use super::check::{check_task, clients, spec, Kind};

/// One task of the workflow.
pub struct Node {
    /// Its idempotency key, which names it here.
    pub key: String,
    /// What it does.
    pub kind: Kind,
    /// Run time.
    pub run_ms: u64,
    /// Its parents, by key, with the condition.
    pub after: Vec<(String, pb::DependencyCondition)>,
    /// How it must end.
    pub expect: TaskStatus,
}

/// Index offset of the nodes' output lines (`check::line`), past any plan's tasks.
const LINE_BASE: usize = 100_000;

/// The array's indices and cap.
pub const ARRAY: &str = "0-5%2";
/// Its elements.
pub const ARRAY_SIZE: usize = 6;
/// Its cap.
pub const ARRAY_CAP: usize = 2;
/// The array's key in the acknowledged map (its id is the value).
const ARRAY_KEY: &str = "dag-array";
/// Index of the array's output lines (`check::line`): every element prints the same.
const ARRAY_LINE: usize = LINE_BASE + 1000;
/// Run time of an element.
const ARRAY_RUN_MS: u64 = 300;

/// Enqueues the array in one call, retried (same key) through whichever master answers;
/// puts its id in `acked` under [`ARRAY_KEY`].
pub async fn enqueue_array(url: String, acked: Arc<Mutex<BTreeMap<String, String>>>) {
    let cs = clients(&url).await;
    let mut s = spec(ARRAY_LINE, Kind::Succeed, ARRAY_RUN_MS);
    s.idempotency_key = Some(ARRAY_KEY.into());
    let deadline = Instant::now() + Duration::from_secs(120);
    for at in 0.. {
        let mut c = cs[at % cs.len()].clone();
        let req = pb::EnqueueArrayRequest {
            spec: Some(s.clone()),
            indices: ARRAY.into(),
            ..Default::default()
        };
        match c.enqueue_array(req).await {
            Ok(r) => {
                acked
                    .lock()
                    .unwrap()
                    .insert(ARRAY_KEY.into(), r.into_inner().array_id);
                return;
            }
            Err(e) if Instant::now() > deadline => panic!("the array was never enqueued: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Every problem of the array's elements in `tasks`.
pub fn judge_array(acked: &BTreeMap<String, String>, tasks: &[(Task, Vec<String>)]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(id) = acked.get(ARRAY_KEY) else {
        return vec!["the array was not acknowledged".into()];
    };
    let elements: Vec<&(Task, Vec<String>)> = tasks
        .iter()
        .filter(|(t, _)| t.spec.array.as_ref().is_some_and(|a| &a.id == id))
        .collect();
    let mut indices: Vec<u32> = elements
        .iter()
        .map(|(t, _)| t.spec.array.as_ref().unwrap().index)
        .collect();
    indices.sort_unstable();
    if indices != (0..ARRAY_SIZE as u32).collect::<Vec<_>>() {
        problems.push(format!(
            "array {id}: indices {indices:?}, not each of 0..{ARRAY_SIZE} once"
        ));
    }
    let mut spans = Vec::new();
    for (t, output) in &elements {
        check_task(
            ARRAY_LINE,
            t,
            output,
            Kind::Succeed,
            ARRAY_RUN_MS,
            &mut problems,
        );
        if let Some(a) = t.attempts.last() {
            if let (Some(s), Some(e)) = (a.started_at, a.finished_at) {
                spans.push((s, 1));
                spans.push((e, -1));
            }
        }
    }
    // An end and a start at the same instant do not overlap.
    spans.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in spans {
        now += d;
        most = most.max(now);
    }
    if most as usize > ARRAY_CAP {
        problems.push(format!(
            "array {id}: {most} elements ran at once, over its cap of {ARRAY_CAP}"
        ));
    }
    problems
}

/// The two diamonds.
pub fn plan() -> Vec<Node> {
    use pb::DependencyCondition::{Any, NotOk, Ok};
    let node = |key: &str, kind, after: &[(&str, pb::DependencyCondition)], expect| Node {
        key: format!("dag-{key}"),
        kind,
        run_ms: 400,
        after: after
            .iter()
            .map(|(k, c)| (format!("dag-{k}"), *c))
            .collect(),
        expect,
    };
    use TaskStatus::{Cancelled, Failed, Succeeded};
    vec![
        node("a-top", Kind::Succeed, &[], Succeeded),
        node("a-left", Kind::Succeed, &[("a-top", Ok)], Succeeded),
        node("a-right", Kind::Succeed, &[("a-top", Ok)], Succeeded),
        node(
            "a-bottom",
            Kind::Succeed,
            &[("a-left", Ok), ("a-right", Ok)],
            Succeeded,
        ),
        node("b-top", Kind::Fail { max_attempts: 2 }, &[], Failed),
        node("b-left", Kind::Succeed, &[("b-top", Ok)], Cancelled),
        node("b-right", Kind::Succeed, &[("b-top", NotOk)], Succeeded),
        node(
            "b-bottom",
            Kind::Succeed,
            &[("b-left", Any), ("b-right", Ok)],
            Succeeded,
        ),
    ]
}

/// Enqueues the nodes in order, each after its parents' acknowledged ids, retrying each
/// (same key) through whichever master answers; fills key → id.
pub async fn enqueue(url: String, nodes: Vec<Node>, acked: Arc<Mutex<BTreeMap<String, String>>>) {
    let cs = clients(&url).await;
    let mut at = 0;
    for (n, node) in nodes.iter().enumerate() {
        let mut s = spec(LINE_BASE + n, node.kind, node.run_ms);
        s.idempotency_key = Some(node.key.clone());
        for (parent, condition) in &node.after {
            let id = acked.lock().unwrap()[parent].clone();
            s.after.push(pb::Dependency {
                task_id: id,
                condition: *condition as i32,
            });
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut c = cs[at % cs.len()].clone();
            match c
                .enqueue(pb::EnqueueRequest {
                    spec: Some(s.clone()),
                    ..Default::default()
                })
                .await
            {
                Ok(r) => {
                    let id = r.into_inner().task_id;
                    acked.lock().unwrap().insert(node.key.clone(), id);
                    break;
                }
                Err(e) if Instant::now() > deadline => {
                    panic!("enqueue {} never succeeded: {e}", node.key)
                }
                Err(_) => {
                    at += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every problem of the workflow's tasks in `tasks`.
pub fn judge(
    nodes: &[Node],
    acked: &BTreeMap<String, String>,
    tasks: &[(Task, Vec<String>)],
) -> Vec<String> {
    let by_id: HashMap<String, &(Task, Vec<String>)> =
        tasks.iter().map(|p| (p.0.id.to_string(), p)).collect();
    let mut problems = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let Some((t, output)) = acked.get(&node.key).and_then(|id| by_id.get(id)) else {
            problems.push(format!("workflow task {} is not in the store", node.key));
            continue;
        };
        let id = t.id;
        if t.status != node.expect {
            problems.push(format!(
                "workflow task {} ({id}) ended {}, not {} (error {:?})",
                node.key, t.status, node.expect, t.error
            ));
            continue;
        }
        if node.expect == TaskStatus::Cancelled {
            let parent = &acked[&node.after[0].0];
            let want = format!("dependency {parent} ended failed");
            if !t.attempts.is_empty() || t.error.as_deref() != Some(want.as_str()) {
                problems.push(format!(
                    "workflow task {} ({id}) ran {} attempt(s), error {:?}: want none and {want:?}",
                    node.key,
                    t.attempts.len(),
                    t.error
                ));
            }
            continue;
        }
        check_task(
            LINE_BASE + n,
            t,
            output,
            node.kind,
            node.run_ms,
            &mut problems,
        );
        let Some(first) = t.attempts.first() else {
            continue;
        };
        for (parent, _) in &node.after {
            let Some((p, _)) = acked.get(parent).and_then(|pid| by_id.get(pid)) else {
                continue;
            };
            match p.finished_at {
                Some(end) if first.assigned_at >= end => {}
                end => problems.push(format!(
                    "workflow task {} ({id}) was assigned at {} before its parent {parent} \
                     ended ({end:?})",
                    node.key, first.assigned_at
                )),
            }
        }
    }
    problems
}
