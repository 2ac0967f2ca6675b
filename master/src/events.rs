//! Applying a group of a worker's messages (PROTOCOL.md §2–4): heartbeats at once, log
//! chunks into the stream's [`LogBatch`], and `Started`/`Finished` per task in arrival
//! order, different tasks concurrently. The logs of a group are stored before any result
//! in it, so a result is durable only after the output that came before it.
//!
//! A `Started` that is the last report of its task in a group may be held back for a
//! moment ([`HeldStarts`], [`HOLD_START`]): when the task's `Finished` comes in the next
//! group, start and end are stored in one write, which halves the store work of a short
//! task. The status then reads `assigned` for those few milliseconds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cloudai_proto::convert;
use cloudai_proto::pb::{self, task_event::Event, worker_message::Msg};
use cloudai_queue::{NewLogChunk, QueueError, TaskId, WorkerHealth};

use crate::cluster::Outbound;
use crate::logs::LogBatch;
use crate::registry;
use crate::shared::Shared;
use crate::wire;

/// A status report about one attempt.
enum Op {
    Started {
        token: u64,
        time: DateTime<Utc>,
        container_id: String,
    },
    Finished {
        token: u64,
        finished: pb::Finished,
    },
}

/// Longest a `Started` is held back waiting for its `Finished` (the stream's reader
/// applies held starts when no message came for this long).
pub const HOLD_START: std::time::Duration = std::time::Duration::from_millis(5);

/// Starts of one stream held back from the previous group, in arrival order.
#[derive(Default)]
pub struct HeldStarts(Vec<(TaskId, Op)>);

impl HeldStarts {
    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Applies `group` (messages of one stream, in arrival order) after the starts `held`
/// from earlier groups. With `hold`, a start that is its task's last report in the group
/// goes back into `held` instead of the store; without, everything is applied.
pub async fn apply_group(
    shared: &Arc<Shared>,
    worker_id: &str,
    conn_id: u64,
    batch: &mut LogBatch,
    group: Vec<pb::WorkerMessage>,
    held: &mut HeldStarts,
    hold: bool,
) {
    let mut order: Vec<TaskId> = Vec::new();
    let mut ops: HashMap<TaskId, Vec<Op>> = HashMap::new();
    // Tasks whose held start got no news in this group: applied now, never held twice.
    let mut carried: HashSet<TaskId> = HashSet::new();
    for (task, op) in held.0.drain(..) {
        carried.insert(task);
        push_op(&mut order, &mut ops, task, op);
    }
    for msg in group {
        match msg.msg {
            Some(Msg::Heartbeat(hb)) => heartbeat(shared, worker_id, conn_id, hb).await,
            Some(Msg::Event(ev)) => {
                let Ok(task) = ev.task_id.parse::<TaskId>() else {
                    tracing::warn!(worker_id, task_id = %ev.task_id, "event with a malformed task id");
                    continue;
                };
                let token = ev.token;
                let time = ev
                    .time
                    .as_ref()
                    .and_then(|t| convert::from_timestamp("time", t).ok())
                    .unwrap_or_else(Utc::now);
                let op = match ev.event {
                    Some(Event::Log(log)) => {
                        push_log(shared, worker_id, batch, task, token, time, log).await;
                        continue;
                    }
                    Some(Event::Pulling(p)) => {
                        tracing::debug!(task_id = %task, progress = %p.progress, "pulling image");
                        continue;
                    }
                    Some(Event::Started(s)) => Op::Started {
                        token,
                        time,
                        container_id: s.container_id,
                    },
                    Some(Event::Finished(finished)) => Op::Finished { token, finished },
                    None => {
                        tracing::warn!(worker_id, task_id = %task, "event without a body");
                        continue;
                    }
                };
                carried.remove(&task);
                push_op(&mut order, &mut ops, task, op);
            }
            Some(Msg::Register(_)) | None => {
                tracing::warn!(worker_id, "ignored an unexpected worker message")
            }
        }
    }
    batch.flush(shared.store.as_ref(), &shared.logs).await;
    if hold {
        for task in order.iter().filter(|t| !carried.contains(t)) {
            let list = ops.get_mut(task).expect("every ordered task has ops");
            if matches!(list.last(), Some(Op::Started { .. })) {
                held.0.push((*task, list.pop().expect("checked above")));
            }
        }
    }
    let chains = order.into_iter().map(|task| {
        let list = ops.remove(&task).unwrap_or_default();
        async move {
            let mut ops = list.into_iter().peekable();
            while let Some(op) = ops.next() {
                // A start and the end of the same attempt together (a short task): one
                // store write instead of two.
                if let Op::Started { token, time, .. } = &op {
                    if let Some(Op::Finished { token: t, .. }) = ops.peek() {
                        if t == token {
                            let (token, time) = (*token, *time);
                            if let Some(Op::Finished { finished, .. }) = ops.next() {
                                finish(shared, worker_id, task, token, Some(time), finished).await;
                            }
                            continue;
                        }
                    }
                }
                apply(shared, worker_id, task, op).await;
            }
        }
    });
    futures::future::join_all(chains).await;
}

/// Appends `op` to its task's chain, noting the task's first appearance in `order`.
fn push_op(order: &mut Vec<TaskId>, ops: &mut HashMap<TaskId, Vec<Op>>, task: TaskId, op: Op) {
    ops.entry(task)
        .or_insert_with(|| {
            order.push(task);
            Vec::new()
        })
        .push(op);
}

/// True when `token` is the live attempt of `task` on this worker (the fencing check,
/// done in memory before any store call; the store checks the token again).
fn current(shared: &Shared, worker_id: &str, task: TaskId, token: u64) -> bool {
    shared
        .cluster()
        .reservation(&task)
        .is_some_and(|r| r.worker_id == worker_id && r.token == Some(token))
}

async fn push_log(
    shared: &Shared,
    worker_id: &str,
    batch: &mut LogBatch,
    task: TaskId,
    token: u64,
    time: DateTime<Utc>,
    log: pb::LogData,
) {
    if !current(shared, worker_id, task, token) {
        tracing::warn!(worker_id, task_id = %task, token, "rejected logs with a stale token");
        return;
    }
    let stream = match convert::log_stream(log.stream) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(task_id = %task, error = %e, "dropped a log chunk");
            return;
        }
    };
    let chunk = NewLogChunk {
        stream,
        time,
        data: log.data,
    };
    if batch.push(task, token, chunk) {
        batch.flush(shared.store.as_ref(), &shared.logs).await;
    }
}

async fn apply(shared: &Shared, worker_id: &str, task: TaskId, op: Op) {
    match op {
        Op::Started {
            token,
            time,
            container_id,
        } => {
            if !current(shared, worker_id, task, token) {
                tracing::warn!(worker_id, task_id = %task, token, "rejected a start with a stale token");
                return;
            }
            match shared.store.mark_running(task, token, time).await {
                Ok(_) => {
                    tracing::debug!(task_id = %task, container_id = %container_id, "attempt started")
                }
                Err(e) => tracing::warn!(task_id = %task, error = %e, "could not mark running"),
            }
            shared.logs.notify(task);
        }
        Op::Finished { token, finished } => {
            finish(shared, worker_id, task, token, None, finished).await
        }
    }
}

/// A result (with its attempt's start time when the start came in the same group):
/// stored, then acknowledged unless storing failed for a reason a re-send may cure.
async fn finish(
    shared: &Shared,
    worker_id: &str,
    task: TaskId,
    token: u64,
    started: Option<DateTime<Utc>>,
    finished: pb::Finished,
) {
    let ack = if current(shared, worker_id, task, token) {
        let outcome = wire::outcome(&finished);
        match shared.finish_started(task, token, started, outcome).await {
            Ok(t) => {
                tracing::info!(task_id = %task, token, status = %t.status, "attempt finished");
                true
            }
            Err(e @ (QueueError::StaleToken { .. } | QueueError::IllegalTransition { .. })) => {
                tracing::warn!(task_id = %task, token, error = %e, "rejected a stale result");
                true
            }
            Err(e) => {
                // Not acked: the worker re-sends it after a reconnect.
                tracing::error!(task_id = %task, token, error = %e, "could not store a result");
                false
            }
        }
    } else {
        tracing::warn!(worker_id, task_id = %task, token, "rejected a result with a stale token");
        true
    };
    if ack {
        if let Some(conn) = shared.cluster().conn(worker_id) {
            let _ = conn.tx.send(Outbound::Ack {
                task_id: task,
                token,
            });
        }
    }
}

/// A heartbeat: liveness and usage, a suspect worker becomes healthy, and attempts it
/// reports that are no longer its own are revoked.
async fn heartbeat(shared: &Arc<Shared>, worker_id: &str, conn_id: u64, hb: pb::Heartbeat) {
    let now = Utc::now();
    let revived = shared.cluster().heartbeat(
        worker_id,
        conn_id,
        wire::usage(hb.usage),
        tokio::time::Instant::now(),
        now,
    );
    if revived {
        tracing::info!(worker_id, "worker healthy again");
        if let Err(e) = shared
            .store
            .set_worker_health(worker_id, WorkerHealth::Healthy, Some(now))
            .await
        {
            tracing::warn!(worker_id, error = %e, "could not persist worker health");
        }
        shared.wake_dispatcher();
    }
    match wire::attempt_refs(&hb.running) {
        Ok(refs) => {
            let revoke = registry::reconcile(shared, worker_id, &refs).await;
            registry::send_revoke(
                shared,
                worker_id,
                revoke,
                "attempt is no longer this worker's",
            );
        }
        Err(e) => tracing::warn!(worker_id, error = %e, "bad attempt list in heartbeat"),
    }
}
