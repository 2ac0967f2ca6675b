//! `WorkerService.Connect`: one stream per worker (PROTOCOL.md, "WorkerService.Connect").
//! Register → `Registered` with the lease (+ `Revoke` of attempts no longer the worker's);
//! then the worker's messages are read in groups of whatever is ready: heartbeats answered
//! here, reports applied by [`crate::reports`].

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cloudai_proto::convert::report::WorkerEvent;
use cloudai_proto::pb::{self, worker_message::Msg};
use cloudai_queue::TaskId;
use futures::{FutureExt, Stream, StreamExt};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::rotation::{until_rotated, JoinWatch, Rotated};
use crate::cluster::Beat;
use crate::conn::{Conn, Outbound};
use crate::registry;
use crate::shared::Shared;
use crate::wire;

/// The worker-facing service.
pub struct WorkerSvc {
    shared: Arc<Shared>,
    /// The join token each connected worker registered with, to end its stream when a
    /// rotation's grace is over.
    joins: Arc<JoinWatch>,
}

impl WorkerSvc {
    /// A service over the master's shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        let joins = JoinWatch::new(shared.store.clone(), shared.shutdown.clone());
        WorkerSvc { shared, joins }
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
        if !shared.leading() {
            return Err(crate::error::not_leader(&shared.role()));
        }
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
        let joined = match &join {
            Some(check) => check.verify(&reg.worker_id, &reg.token).await?,
            None => None,
        };
        let wire::Registration {
            record,
            version,
            running,
            finished,
            devices,
            held,
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
            lease: shared.config.worker_lease(),
            stop_within: shared.config.worker_stop_within(),
        });
        let conn_id = conn.id;
        let missing = {
            let mut c = shared.cluster();
            c.connect(record, version, conn, tokio::time::Instant::now())
                .map_err(|_| {
                    Status::already_exists(format!("worker {worker_id} is already connected"))
                })?;
            c.report_gpus(&worker_id, Some(devices), held);
            let unknown = running
                .iter()
                .any(|&(t, token)| !c.holds(t, &worker_id, token));
            c.set_reconciling(&worker_id, unknown);
            registry::unreported(&c, &worker_id, &running, &finished)
        };
        let rotated = self.joins.watch(conn_id, &worker_id, joined);
        shared.persist_worker(&worker_id);
        tracing::info!(worker_id = %worker_id, running = running.len(), finished = finished.len(), "worker connected");
        tokio::spawn(registry::after_register(
            shared.clone(),
            worker_id.clone(),
            running,
            missing,
        ));
        shared.wake_dispatcher();

        tokio::spawn(read_loop(
            shared.clone(),
            worker_id,
            conn_id,
            inbound,
            (self.joins.clone(), rotated.clone()),
        ));

        // The stream ends at shutdown or when this master stops leading: the worker then
        // goes to the next leader (a standby's refusal names it). It ends with
        // UNAUTHENTICATED once the worker's join token was rotated out.
        let ender = shared.clone();
        let messages = UnboundedReceiverStream::new(rx).map(|m| Ok(wire::outbound(m)));
        let out =
            until_rotated(messages, rotated).take_until(async move { ender.until_deposed().await });
        Ok(Response::new(Box::pin(out)))
    }
}

/// Reads a worker's messages until its stream ends: each group is what is ready now (up
/// to [`GROUP_MAX`]). Heartbeats are answered here at once, from memory; report events go
/// to this stream's applier ([`crate::reports`]), so a slow or unavailable store never
/// holds up a heartbeat. Any message counts as a sign of life. It also ends when the
/// worker's join token was rotated out (`rotated`).
async fn read_loop(
    shared: Arc<Shared>,
    worker_id: String,
    conn_id: u64,
    mut inbound: Streaming<pb::WorkerMessage>,
    (joins, mut rotated): (Arc<JoinWatch>, Rotated),
) {
    let (reports, rx) = tokio::sync::mpsc::unbounded_channel();
    let pending = Arc::new(AtomicUsize::new(0));
    tokio::spawn(crate::reports::apply(
        shared.clone(),
        worker_id.clone(),
        conn_id,
        rx,
        pending.clone(),
    ));
    let mut open = true;
    while open {
        let first = tokio::select! {
            m = inbound.next() => m,
            _ = shared.until_deposed() => break,
            _ = rotated.fired() => {
                // The outbound stream ends with the reason; reading on until the worker
                // hangs up (briefly) lets the reason reach it before the stream is reset.
                let drained = async { while inbound.next().await.is_some() {} };
                let _ = tokio::time::timeout(ROTATED_HANGUP, drained).await;
                break;
            }
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
        let mut batch = Vec::new();
        for msg in group {
            match msg.msg {
                Some(Msg::Heartbeat(hb)) => heartbeat(&shared, &worker_id, conn_id, hb),
                Some(Msg::Event(ev)) => match WorkerEvent::try_from(ev) {
                    Ok(WorkerEvent::Report { task, token, event }) => {
                        pending.fetch_add(event.weight(), Ordering::Relaxed);
                        batch.push((task, token, event));
                    }
                    Ok(WorkerEvent::Pulling { task, progress, .. }) => {
                        tracing::debug!(task_id = %task, progress = %progress, "pulling image")
                    }
                    Err(e) => {
                        tracing::warn!(worker_id = %worker_id, error = %e, "ignored a malformed event")
                    }
                },
                Some(Msg::Register(_)) | None => {
                    tracing::warn!(worker_id = %worker_id, "ignored an unexpected worker message")
                }
            }
        }
        if !batch.is_empty() && reports.send(batch).is_err() {
            break;
        }
        if pending.load(Ordering::Relaxed) > crate::reports::MAX_PENDING_BYTES {
            tracing::warn!(worker_id = %worker_id, "worker sent far past its report window; ending its stream");
            break;
        }
    }
    // The applier settles what it was given, then ends.
    drop(reports);
    joins.forget(conn_id);
    shared.cluster().disconnect(&worker_id, conn_id);
    tracing::info!(worker_id = %worker_id, "worker stream closed");
}

/// How long a rotated-out worker's stream is read on, for its hang-up.
const ROTATED_HANGUP: std::time::Duration = std::time::Duration::from_secs(2);

/// Most worker messages applied as one group.
pub const GROUP_MAX: usize = 512;

/// A heartbeat: liveness and usage from memory, acknowledged at once (which renews the
/// worker's lease); a revived worker's record is written in the background, and attempts
/// it reports that memory does not hold are checked against the store in the background.
fn heartbeat(shared: &Arc<Shared>, worker_id: &str, conn_id: u64, hb: pb::Heartbeat) {
    // Only a leader whose own lease holds renews the workers' leases.
    if !shared.leading() {
        return;
    }
    let beat = shared.cluster().heartbeat(
        worker_id,
        conn_id,
        wire::usage(hb.usage),
        tokio::time::Instant::now(),
        chrono::Utc::now(),
    );
    let Beat::Accepted { revived } = beat else {
        return;
    };
    if let Some(conn) = shared.cluster().conn(worker_id) {
        let _ = conn.tx.send(Outbound::HeartbeatAck { seq: hb.seq });
    }
    if revived {
        tracing::info!(worker_id, "worker healthy again");
        shared.persist_worker(worker_id);
        shared.wake_dispatcher();
    }
    let refs = match wire::attempt_refs(&hb.running) {
        Ok(refs) => refs,
        Err(e) => {
            tracing::warn!(worker_id, error = %e, "bad attempt list in heartbeat");
            return;
        }
    };
    let unknown: Vec<(TaskId, u64)> = {
        let mut c = shared.cluster();
        c.report_gpus(worker_id, None, wire::held_devices(&hb.running));
        refs.into_iter()
            .filter(|&(t, token)| !c.holds(t, worker_id, token))
            .collect()
    };
    if unknown.is_empty() || !shared.begin_reconcile(worker_id) {
        return;
    }
    let (shared, worker_id) = (shared.clone(), worker_id.to_string());
    tokio::spawn(async move {
        let revoke = registry::reconcile(&shared, &worker_id, &unknown).await;
        registry::send_revoke(
            &shared,
            &worker_id,
            revoke,
            "attempt is no longer this worker's",
        );
        shared.end_reconcile(&worker_id);
    });
}
