//! `WorkerService.Connect`: one stream per worker (PROTOCOL.md, "WorkerService.Connect").
//! Register → `Registered` (+ `Revoke` of attempts no longer the worker's); then the
//! worker's messages are read in groups of whatever is ready and applied by
//! [`crate::events`].

use std::pin::Pin;
use std::sync::Arc;

use cloudai_proto::pb::{self, worker_message::Msg};
use futures::{FutureExt, Stream, StreamExt};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::{Conn, Outbound};
use crate::events::{self, HeldStarts};
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
        let join = crate::auth::join_check(&request);
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
        if let Some(check) = &join {
            check.verify(&reg.worker_id, &reg.token).await?;
        }
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
        let (stored, missing) = {
            let mut c = shared.cluster();
            c.connect(record, version, conn, tokio::time::Instant::now())
                .map_err(|_| {
                    Status::already_exists(format!("worker {worker_id} is already connected"))
                })?;
            let missing = registry::unreported(&c, &worker_id, &running);
            (c.worker(&worker_id).map(|w| w.record.clone()), missing)
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
        registry::expire_unreported(shared.clone(), worker_id.clone(), missing);
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

/// Reads a worker's messages until its stream ends: each group is what is ready now (up
/// to [`GROUP_MAX`]), so a busy worker's events are applied together (and share the
/// store's group commits) while a quiet one's are applied one by one at once. Any message
/// counts as a sign of life, so a long backlog never makes a worker look dead.
async fn read_loop(
    shared: Arc<Shared>,
    worker_id: String,
    conn_id: u64,
    mut inbound: Streaming<pb::WorkerMessage>,
) {
    let mut batch = LogBatch::default();
    let mut held = HeldStarts::default();
    let mut open = true;
    while open {
        let first = tokio::select! {
            m = inbound.next() => m,
            _ = tokio::time::sleep(events::HOLD_START), if !held.is_empty() => {
                // No end came soon after these starts: store them now.
                events::apply_group(&shared, &worker_id, conn_id, &mut batch, Vec::new(), &mut held, false).await;
                continue;
            }
            _ = shared.until_shutdown() => break,
        };
        let mut group = match first {
            Some(Ok(m)) => vec![m],
            None => break,
            Some(Err(status)) => {
                tracing::debug!(worker_id = %worker_id, error = %status, "worker stream failed");
                break;
            }
        };
        while group.len() < GROUP_MAX {
            match inbound.next().now_or_never() {
                Some(Some(Ok(m))) => group.push(m),
                Some(_) => {
                    open = false;
                    break;
                }
                None => break,
            }
        }
        shared
            .cluster()
            .touch(&worker_id, conn_id, tokio::time::Instant::now());
        let hold = open;
        events::apply_group(
            &shared, &worker_id, conn_id, &mut batch, group, &mut held, hold,
        )
        .await;
    }
    events::apply_group(
        &shared,
        &worker_id,
        conn_id,
        &mut batch,
        Vec::new(),
        &mut held,
        false,
    )
    .await;
    batch.flush(shared.store.as_ref(), &shared.logs).await;
    shared.cluster().disconnect(&worker_id, conn_id);
    tracing::info!(worker_id = %worker_id, "worker stream closed");
}

/// Most worker messages applied as one group.
pub const GROUP_MAX: usize = 512;
