//! `WorkerService.Connect`: one stream per worker (PROTOCOL.md, "WorkerService.Connect").
//! Register → `Registered` (+ `Revoke` of attempts no longer the worker's); then
//! heartbeats and task events are applied in order, with stale tokens rejected.

use std::pin::Pin;
use std::sync::Arc;

use chrono::Utc;
use cloudai_proto::pb::{self, worker_message::Msg};
use cloudai_proto::{convert, pb::task_event::Event};
use cloudai_queue::{NewLogChunk, QueueError, TaskId, WorkerHealth};
use futures::{FutureExt, Stream, StreamExt};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::{Conn, Outbound};
use crate::logs::LogBatch;
use crate::registry;
use crate::shared::Shared;
use crate::wire;

/// The worker-facing service.
pub struct WorkerSvc {
    shared: Arc<Shared>,
}

impl WorkerSvc {
    /// A service over the master's shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        WorkerSvc { shared }
    }
}

type MasterStream = Pin<Box<dyn Stream<Item = Result<pb::MasterMessage, Status>> + Send>>;

#[tonic::async_trait]
impl pb::worker_service_server::WorkerService for WorkerSvc {
    type ConnectStream = MasterStream;

    async fn connect(
        &self,
        request: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<MasterStream>, Status> {
        let shared = &self.shared;
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("stream ended before Register"))?;
        let Some(Msg::Register(reg)) = first.msg else {
            return Err(Status::invalid_argument(
                "the first message must be Register",
            ));
        };
        let wire::Registration {
            record,
            version,
            running,
        } = wire::register(reg)?;
        let worker_id = record.id.clone();

        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let conn = Conn {
            id: shared.next_conn_id(),
            tx,
        };
        // Registered goes first on the stream, before anything the dispatcher sends.
        let _ = conn.tx.send(Outbound::Registered {
            worker_id: worker_id.clone(),
            heartbeat_interval: shared.config.heartbeat_interval,
        });
        let conn_id = conn.id;
        let stored = {
            let mut c = shared.cluster();
            c.connect(record, version, conn, tokio::time::Instant::now())
                .map_err(|_| {
                    Status::already_exists(format!("worker {worker_id} is already connected"))
                })?;
            c.worker(&worker_id).map(|w| w.record.clone())
        };
        if let Some(rec) = stored {
            if let Err(e) = shared.store.upsert_worker(&rec).await {
                shared.cluster().disconnect(&worker_id, conn_id);
                return Err(crate::error::status(e));
            }
        }
        tracing::info!(worker_id = %worker_id, running = running.len(), "worker connected");

        let revoke = registry::reconcile(shared, &worker_id, &running).await;
        registry::send_revoke(
            shared,
            &worker_id,
            revoke,
            "attempt is no longer this worker's",
        );
        registry::resend_cancels(shared, &worker_id);
        registry::expire_unreported(shared.clone(), worker_id.clone(), running);
        shared.wake_dispatcher();

        tokio::spawn(read_loop(shared.clone(), worker_id, conn_id, inbound));

        let mut stop = shared.shutdown.clone();
        let out = UnboundedReceiverStream::new(rx)
            .map(|m| Ok(wire::outbound(m)))
            .take_until(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
        Ok(Response::new(Box::pin(out)))
    }
}

/// Applies a worker's messages in order until its stream ends. Log events are batched:
/// the batch is flushed when full, when no further message is ready, and before any
/// `Finished` (so a result is durable only after the output before it).
async fn read_loop(
    shared: Arc<Shared>,
    worker_id: String,
    conn_id: u64,
    mut inbound: Streaming<pb::WorkerMessage>,
) {
    let mut batch = LogBatch::default();
    loop {
        let next = if batch.is_empty() {
            tokio::select! {
                m = inbound.next() => m,
                _ = shared.until_shutdown() => break,
            }
        } else {
            match inbound.next().now_or_never() {
                Some(m) => m,
                None => {
                    batch.flush(shared.store.as_ref(), &shared.logs).await;
                    continue;
                }
            }
        };
        let msg = match next {
            None => break,
            Some(Err(status)) => {
                tracing::debug!(worker_id = %worker_id, error = %status, "worker stream failed");
                break;
            }
            Some(Ok(m)) => m,
        };
        match msg.msg {
            Some(Msg::Heartbeat(hb)) => heartbeat(&shared, &worker_id, conn_id, hb).await,
            Some(Msg::Event(ev)) => event(&shared, &worker_id, &mut batch, ev).await,
            Some(Msg::Register(_)) | None => {
                tracing::warn!(worker_id = %worker_id, "ignored an unexpected worker message")
            }
        }
    }
    batch.flush(shared.store.as_ref(), &shared.logs).await;
    shared.cluster().disconnect(&worker_id, conn_id);
    tracing::info!(worker_id = %worker_id, "worker stream closed");
}

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

/// True when `token` is the live attempt of `task` on this worker (the fencing check,
/// done in memory before any store call; the store checks the token again).
fn current(shared: &Shared, worker_id: &str, task: TaskId, token: u64) -> bool {
    shared
        .cluster()
        .reservation(&task)
        .is_some_and(|r| r.worker_id == worker_id && r.token == Some(token))
}

async fn event(shared: &Arc<Shared>, worker_id: &str, batch: &mut LogBatch, ev: pb::TaskEvent) {
    let Ok(task) = ev.task_id.parse::<TaskId>() else {
        tracing::warn!(worker_id, task_id = %ev.task_id, "event with a malformed task id");
        return;
    };
    let token = ev.token;
    let time = ev
        .time
        .as_ref()
        .and_then(|t| convert::from_timestamp("time", t).ok())
        .unwrap_or_else(Utc::now);
    let live = current(shared, worker_id, task, token);
    match ev.event {
        Some(Event::Finished(f)) => {
            batch.flush(shared.store.as_ref(), &shared.logs).await;
            let ack = if live {
                match shared.finish(task, token, wire::outcome(&f)).await {
                    Ok(t) => {
                        tracing::info!(task_id = %task, token, status = %t.status, "attempt finished");
                        true
                    }
                    Err(
                        e @ (QueueError::StaleToken { .. } | QueueError::IllegalTransition { .. }),
                    ) => {
                        tracing::warn!(task_id = %task, token, error = %e, "rejected a stale result");
                        true
                    }
                    Err(e) => {
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
        _ if !live => {
            tracing::warn!(worker_id, task_id = %task, token, "rejected an event with a stale token")
        }
        Some(Event::Log(log)) => {
            let stream = match convert::log_stream(log.stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(task_id = %task, error = %e, "dropped a log chunk");
                    return;
                }
            };
            let full = batch.push(
                task,
                token,
                NewLogChunk {
                    stream,
                    time,
                    data: log.data,
                },
            );
            if full {
                batch.flush(shared.store.as_ref(), &shared.logs).await;
            }
        }
        Some(Event::Started(s)) => {
            match shared.store.mark_running(task, token, time).await {
                Ok(_) => {
                    tracing::debug!(task_id = %task, container_id = %s.container_id, "attempt started")
                }
                Err(e) => tracing::warn!(task_id = %task, error = %e, "could not mark running"),
            }
            shared.logs.notify(task);
        }
        Some(Event::Pulling(p)) => {
            tracing::debug!(task_id = %task, progress = %p.progress, "pulling image")
        }
        None => tracing::warn!(worker_id, task_id = %task, "event without a body"),
    }
}
