//! One attempt as a task of the runtime: runs it ([`crate::attempt::run_until_exit`]) and
//! records each of its events in the journal as it happens, then its end (or, when it was
//! stopped unreported, that no end will come), and only then removes the container: the
//! result is not held up by the daemon's removal, and the slot is free for the next task
//! meanwhile (a stopped container holds no CPU or memory). Shutdown waits for the removal
//! like for the rest of the task, and a worker that dies first removes the leftover at its
//! next start. Recording waits while the journal is full, which slows the attempt's output
//! reader instead of dropping anything.
//!
//! It also moves the attempt's metrics: `running_attempts` for as long as the task lives,
//! `container_start_seconds` when the container runs (timed from the assignment, which
//! spawns this task), `attempts_finished_total` at the end.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use cloudai_proto::convert::report::pulling;
use cloudai_proto::pb;
use cloudai_queue::ReportBody;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::journal::RecordError;
use super::state::{AttemptKey, State};
use super::{lock, Worker};
use crate::attempt::{run_until_exit, AttemptEvent, AttemptOptions, StopSignal};
use crate::executor::{Executor, StartRequest};
use crate::metrics::{finish_outcome, WorkerMetrics};

/// Events queued per attempt before its log reader waits.
const ATTEMPT_EVENTS: usize = 16;

/// What an attempt task needs of the worker, owned.
pub(crate) struct Parts {
    executor: Arc<dyn Executor>,
    options: AttemptOptions,
    state: Arc<Mutex<State>>,
    events_ready: Arc<Notify>,
    room: Arc<Notify>,
    pulls: mpsc::Sender<pb::TaskEvent>,
    metrics: Arc<WorkerMetrics>,
}

impl Parts {
    pub(crate) fn of(w: &Worker) -> Parts {
        Parts {
            executor: w.executor.clone(),
            options: w.attempt_options.clone(),
            state: w.state.clone(),
            events_ready: w.events_ready.clone(),
            room: w.room.clone(),
            pulls: w.pulls.clone(),
            metrics: w.metrics.clone(),
        }
    }

    /// Records one event of `key`, waiting for room when the journal is full. Gives up when
    /// the attempt is closed (forgotten by a revoke) or the worker is shutting down.
    async fn record(&self, key: &AttemptKey, time: DateTime<Utc>, body: ReportBody) {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let result = {
                let mut s = lock(&self.state);
                if s.closing {
                    return;
                }
                s.journal.record(key, time, body.clone())
            };
            match result {
                Ok(_) => {
                    self.events_ready.notify_one();
                    return;
                }
                Err(RecordError::Closed) => return,
                Err(RecordError::Full) => room.await,
            }
        }
    }
}

/// Runs one attempt, recording its events in order, then its end.
pub(crate) async fn attempt_task(parts: Parts, req: StartRequest, signal: StopSignal) {
    let assigned = Instant::now();
    // Counted until the end is recorded, or this task is aborted (shutdown).
    let running = parts.metrics.attempt_running();
    let key: AttemptKey = (req.task_id.clone(), req.token);
    let (events_tx, mut events_rx) = mpsc::channel(ATTEMPT_EVENTS);
    let run = run_until_exit(
        parts.executor.as_ref(),
        req,
        &parts.options,
        signal,
        events_tx,
    );
    let forward = async {
        while let Some(e) = events_rx.recv().await {
            match e {
                // Progress only: best effort, never journaled.
                AttemptEvent::Pulling(p) => {
                    let _ = parts.pulls.try_send(pulling(&key.0, key.1, p, Utc::now()));
                }
                AttemptEvent::Started { container_id, at } => {
                    parts.metrics.container_started(assigned.elapsed());
                    parts
                        .record(&key, at, ReportBody::Started { container_id })
                        .await
                }
                AttemptEvent::Output(chunk) => {
                    let body = ReportBody::Output {
                        stream: chunk.stream,
                        data: chunk.data,
                    };
                    parts.record(&key, chunk.time, body).await
                }
            }
        }
    };
    let ((ended, leftover), ()) = tokio::join!(run, forward);
    tracing::info!(task_id = %key.0, token = key.1, finish = ?ended.finish, "attempt ended");
    let report = lock(&parts.state)
        .running
        .remove(&key)
        .is_some_and(|r| r.report);
    parts
        .metrics
        .attempt_finished(finish_outcome(&ended.finish, report));
    if report {
        parts
            .record(&key, ended.at, ReportBody::Finished(ended.finish))
            .await;
    } else {
        lock(&parts.state).journal.abandon(&key);
    }
    parts.events_ready.notify_one();
    drop(running);
    leftover.remove(parts.executor.as_ref()).await;
}
