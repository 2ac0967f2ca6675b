//! One connected `Connect` stream: register, then heartbeats, assignments, cancels, acks
//! and revokes until the stream breaks. Attempts outlive sessions; their unacknowledged
//! events are sent again, in order, on the next one.

use std::time::Duration;

use cloudai_proto::convert::report::task_event;
use cloudai_proto::pb;
use cloudai_proto::pb::worker_message::Msg as Out;
use cloudai_proto::pb::worker_service_client::WorkerServiceClient;
use cloudai_queue::{ReportBody, TaskSpec};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::attempt_task::{attempt_task, Parts};
use super::state::{AttemptKey, Running};
use super::{wire, Worker};
use crate::attempt::{stop_signal, Finish};
use crate::capacity::Telemetry;
use crate::config::DEFAULT_HEARTBEAT_INTERVAL;
use crate::error::{Result, WorkerError};
use crate::executor::StartRequest;

/// How long the master may take to answer `Register`.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// The same with several masters: a frozen one must not hold the worker from the others.
const REGISTER_TIMEOUT_GROUP: Duration = Duration::from_secs(2);
/// How long dialling may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings that notice a dead master or a partition even when nothing is sent.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// Messages queued for the gRPC stream of one session.
const STREAM_CAPACITY: usize = 64;
/// Largest gRPC message sent to or accepted from the master: 16 MiB, the master's default
/// limit (log chunks are at most 64 KiB, so only a broken peer comes near it).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Serves one connection until it breaks. `registered` is set once the master accepted
/// the registration, so the caller can reset its backoff.
pub(crate) async fn serve(
    worker: &mut Worker,
    url: &str,
    pulls: &mut mpsc::Receiver<pb::TaskEvent>,
    attempts: &mut JoinSet<()>,
    registered: &mut bool,
) -> Result<()> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| WorkerError::config("master", e.to_string()))?;
    let endpoint = crate::tls::apply(endpoint, url, &worker.config)?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true);
    let channel = endpoint.connect().await?;
    let mut client = WorkerServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
    let (running, finished) = {
        let s = worker.lock();
        (s.running_refs(), s.journal.finished())
    };
    let running_count = running.len();
    let register = pb::Register {
        worker_id: worker.id.clone(),
        labels: worker.config.label_map().into_iter().collect(),
        capacity: Some(worker.capacity.into()),
        gpu: Some(wire::gpu_info(&worker.gpu)),
        hostname: worker.hostname.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        running,
        token: worker.config.join_token.clone().unwrap_or_default(),
        finished: finished.iter().map(wire::attempt_ref).collect(),
        attributes: worker.attributes.clone().into_iter().collect(),
    };
    let group = worker.config.master_urls().len() > 1;
    let register_sent = Instant::now();
    send(&tx, Out::Register(register)).await?;
    // Bounded as a whole: a master that accepts the connection and then never answers (a
    // frozen process) must not keep the worker from the next one.
    let limit = if group {
        REGISTER_TIMEOUT_GROUP
    } else {
        REGISTER_TIMEOUT
    };
    let answered = tokio::time::timeout(limit, async {
        let mut inbound = client.connect(ReceiverStream::new(rx)).await?.into_inner();
        let first = inbound.message().await?;
        Ok::<_, WorkerError>((inbound, first))
    })
    .await
    .map_err(|_| WorkerError::Connection("master did not answer register".into()))?;
    let (mut inbound, first) = answered?;
    let granted = match first.and_then(|m| m.msg) {
        Some(pb::master_message::Msg::Registered(r)) => r,
        other => {
            return Err(WorkerError::Protocol(format!(
                "expected registered, got {other:?}"
            )))
        }
    };
    *registered = true;
    worker.metrics.set_master_connected(true);
    worker.epoch += 1;
    let epoch = worker.epoch;
    {
        let mut s = worker.lock();
        s.lease
            .granted(register_sent, granted.lease_ms, granted.stop_within_ms);
        s.journal.new_epoch(epoch);
    }
    worker.lease_changed.notify_one();
    let interval =
        worker
            .config
            .heartbeat_interval
            .unwrap_or(if granted.heartbeat_interval_ms == 0 {
                DEFAULT_HEARTBEAT_INTERVAL
            } else {
                Duration::from_millis(u64::from(granted.heartbeat_interval_ms))
            });
    tracing::info!(
        worker_id = %worker.id,
        master = url,
        running = running_count,
        finished = finished.len(),
        heartbeat_ms = interval.as_millis() as u64,
        lease_ms = granted.lease_ms,
        "registered with master"
    );

    send_due(worker, &tx, epoch).await?;
    let mut telemetry = Telemetry::default();
    // With several masters a worker beats twice per interval, so that its lease (renewed
    // by each ack) outlasts the time a failover takes, and it leaves a master that stops
    // acknowledging after one missed beat, for one that leads.
    let beat_every = if group { interval / 2 } else { interval };
    let mut ticker = tokio::time::interval(beat_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beat = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if group && beat > 0 && worker.lock().lease.unacked_before(beat) {
                    return Err(WorkerError::Connection(
                        "the master stopped acknowledging heartbeats".into(),
                    ));
                }
                beat += 1;
                let heartbeat = pb::Heartbeat {
                    usage: Some(wire::usage(telemetry.sample())),
                    running: worker.lock().running_refs(),
                    sent_at: Some(cloudai_proto::convert::timestamp(chrono::Utc::now())),
                    seq: beat,
                };
                worker.lock().lease.sent(beat, Instant::now());
                send(&tx, Out::Heartbeat(heartbeat)).await?;
            }
            msg = inbound.message() => match msg? {
                Some(m) => {
                    handle(worker, m, attempts);
                    send_due(worker, &tx, epoch).await?;
                }
                None => return Err(WorkerError::Connection("master ended the stream".into())),
            },
            _ = worker.events_ready.notified() => send_due(worker, &tx, epoch).await?,
            // The lease ended on this stream: its attempts were stopped; registering
            // again tells the master at once (a stale wake-up from before is ignored).
            _ = worker.lease_ended.notified() => {
                if worker.lock().lease.expired(Instant::now()) {
                    return Err(WorkerError::Connection(
                        "the master's lease ended (no heartbeat acknowledged in time)".into(),
                    ));
                }
            }
            Some(p) = pulls.recv() => send(&tx, Out::Event(p)).await?,
            Some(joined) = attempts.join_next(), if !attempts.is_empty() => {
                if let Err(e) = joined {
                    if e.is_panic() {
                        tracing::error!(worker_id = %worker.id, error = %e, "attempt task panicked");
                    }
                }
            }
        }
    }
}

async fn send(tx: &mpsc::Sender<pb::WorkerMessage>, msg: Out) -> Result<()> {
    tx.send(wire::message(msg))
        .await
        .map_err(|_| WorkerError::Connection("stream to master closed".into()))
}

/// Sends the journal's due events (in order, within the window), counting those sent
/// again after a reconnect.
async fn send_due(worker: &Worker, tx: &mpsc::Sender<pb::WorkerMessage>, epoch: u64) -> Result<()> {
    let (due, resent) = {
        let mut s = worker.lock();
        let due = s.journal.due(epoch);
        (due, s.journal.take_resent())
    };
    worker.metrics.events_resent(resent);
    for (key, event) in due {
        send(tx, Out::Event(task_event(&key.0, key.1, &event))).await?;
    }
    Ok(())
}

/// Acts on one master message.
fn handle(worker: &Worker, msg: pb::MasterMessage, attempts: &mut JoinSet<()>) {
    use pb::master_message::Msg;
    match msg.msg {
        Some(Msg::Assign(a)) => assign(worker, a, attempts),
        Some(Msg::Cancel(c)) => cancel(worker, (c.task_id, c.token)),
        Some(Msg::Ack(a)) => {
            worker.lock().journal.ack(&(a.task_id, a.token), a.seq);
            worker.room.notify_waiters();
        }
        Some(Msg::HeartbeatAck(h)) => {
            worker.lock().lease.acked(h.seq);
            worker.lease_changed.notify_one();
        }
        Some(Msg::Revoke(r)) => {
            let mut state = worker.lock();
            for a in r.attempts {
                let key = (a.task_id, a.token);
                tracing::info!(task_id = %key.0, token = key.1, reason = %r.reason, "attempt revoked");
                state.journal.forget(&key);
                if let Some(running) = state.running.get_mut(&key) {
                    running.report = false;
                    running.stopper.stop();
                }
            }
            drop(state);
            worker.room.notify_waiters();
        }
        Some(Msg::Registered(_)) | None => {}
    }
}

/// Records the end of an attempt that never ran (a bad spec, a cancel of something not
/// here), to be reported like any other.
fn settle(worker: &Worker, key: AttemptKey, finish: Finish) {
    let mut state = worker.lock();
    state.journal.open(&key);
    let _ = state
        .journal
        .record(&key, chrono::Utc::now(), ReportBody::Finished(finish));
    drop(state);
    worker.events_ready.notify_one();
}

fn assign(worker: &Worker, a: pb::Assign, attempts: &mut JoinSet<()>) {
    let key: AttemptKey = (a.task_id.clone(), a.token);
    if worker.lock().knows(&key) {
        tracing::debug!(task_id = %key.0, token = key.1, "duplicate assign ignored");
        return;
    }
    let spec = match a.spec.map(TaskSpec::try_from) {
        Some(Ok(spec)) => spec,
        Some(Err(e)) => return settle(worker, key, Finish::Error(format!("invalid spec: {e}"))),
        None => return settle(worker, key, Finish::Error("invalid spec: missing".into())),
    };
    tracing::info!(task_id = %key.0, token = key.1, attempt = a.attempt, image = %spec.image, "assigned");
    let (stopper, signal) = stop_signal();
    {
        let mut state = worker.lock();
        state.journal.open(&key);
        state.running.insert(
            key.clone(),
            Running {
                stopper,
                report: true,
                devices: a.devices.clone(),
            },
        );
    }
    let req = StartRequest {
        task_id: a.task_id,
        attempt: a.attempt,
        token: a.token,
        worker_id: worker.id.clone(),
        spec,
        devices: a.devices,
    };
    attempts.spawn(attempt_task(Parts::of(worker), req, signal));
}

fn cancel(worker: &Worker, key: AttemptKey) {
    let state = worker.lock();
    if let Some(running) = state.running.get(&key) {
        tracing::info!(task_id = %key.0, token = key.1, "cancel requested");
        running.stopper.stop();
        return;
    }
    if state.journal.knows(&key) {
        return;
    }
    drop(state);
    // Not running here (never was, or forgotten): it is certainly not running, so the
    // cancel has succeeded; say so rather than leave the master waiting.
    settle(worker, key, Finish::Cancelled);
}
