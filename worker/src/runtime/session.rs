//! One connected `Connect` stream: register, then heartbeats, assignments, cancels, acks
//! and revokes until the stream breaks. Attempts outlive sessions; results the master has
//! not acknowledged are re-sent on the next one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudai_proto::pb;
use cloudai_proto::pb::worker_message::Msg as Out;
use cloudai_proto::pb::worker_service_client::WorkerServiceClient;
use cloudai_queue::TaskSpec;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;

use super::state::{AttemptKey, Running, State, Unacked};
use super::{lock, wire, Worker};
use crate::attempt::{run_attempt, stop_signal, AttemptOptions, Finish, StopSignal};
use crate::capacity::Telemetry;
use crate::config::DEFAULT_HEARTBEAT_INTERVAL;
use crate::error::{Result, WorkerError};
use crate::executor::{Executor, StartRequest};

/// How long the master may take to answer `Register`.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long dialling may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings that notice a dead master or a partition even when nothing is sent.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// Messages queued for the gRPC stream of one session.
const STREAM_CAPACITY: usize = 64;
/// Largest gRPC message sent to or accepted from the master: 16 MiB, the master's default
/// limit (log chunks are at most 64 KiB, so only a broken peer comes near it).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Events queued per attempt before its log reader waits.
const ATTEMPT_EVENTS: usize = 16;

/// What attempt tasks hand to the session, in order.
pub(crate) enum Outbound {
    /// A pulling/started/log event.
    Event(pb::TaskEvent),
    /// This attempt's result is in the unacked table: send it now (after its logs).
    FinishedReady(AttemptKey),
}

/// Serves one connection until it breaks. `registered` is set once the master accepted
/// the registration, so the caller can reset its backoff.
pub(crate) async fn serve(
    worker: &mut Worker,
    outbox: &mut mpsc::Receiver<Outbound>,
    attempts: &mut JoinSet<()>,
    registered: &mut bool,
) -> Result<()> {
    let endpoint = tonic::transport::Endpoint::from_shared(worker.config.master.clone())
        .map_err(|e| WorkerError::config("master", e.to_string()))?;
    let endpoint = crate::tls::apply(endpoint, &worker.config)?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true);
    let channel = endpoint.connect().await?;
    let mut client = WorkerServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
    let running = worker.lock().reported_running();
    let register = pb::Register {
        worker_id: worker.id.clone(),
        labels: worker.config.label_map().into_iter().collect(),
        capacity: Some(worker.capacity.into()),
        gpu: Some(pb::GpuInfo {
            count: worker.gpu.count,
            model: worker.gpu.model.clone(),
        }),
        hostname: worker.hostname.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        running: running.iter().map(wire::attempt_ref).collect(),
        token: worker.config.join_token.clone().unwrap_or_default(),
    };
    send(&tx, Out::Register(register)).await?;
    let mut inbound = client.connect(ReceiverStream::new(rx)).await?.into_inner();
    let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
        .await
        .map_err(|_| WorkerError::Connection("master did not answer register".into()))??;
    let interval_ms = match first.and_then(|m| m.msg) {
        Some(pb::master_message::Msg::Registered(r)) => r.heartbeat_interval_ms,
        other => {
            return Err(WorkerError::Protocol(format!(
                "expected registered, got {other:?}"
            )))
        }
    };
    *registered = true;
    worker.epoch += 1;
    let epoch = worker.epoch;
    let interval = worker
        .config
        .heartbeat_interval
        .unwrap_or(if interval_ms == 0 {
            DEFAULT_HEARTBEAT_INTERVAL
        } else {
            Duration::from_millis(u64::from(interval_ms))
        });
    tracing::info!(
        worker_id = %worker.id,
        running = running.len(),
        heartbeat_ms = interval.as_millis() as u64,
        "registered with master"
    );

    let resend = worker.lock().all_to_send(epoch);
    for event in resend {
        send(&tx, Out::Event(event)).await?;
    }
    let mut telemetry = Telemetry::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let heartbeat = pb::Heartbeat {
                    usage: Some(wire::usage(telemetry.sample())),
                    running: worker.lock().reported_running().iter().map(wire::attempt_ref).collect(),
                    sent_at: Some(cloudai_proto::convert::timestamp(chrono::Utc::now())),
                };
                send(&tx, Out::Heartbeat(heartbeat)).await?;
            }
            msg = inbound.message() => match msg? {
                Some(m) => {
                    for event in handle(worker, m, attempts) {
                        send(&tx, Out::Event(event)).await?;
                    }
                }
                None => return Err(WorkerError::Connection("master ended the stream".into())),
            },
            Some(out) = outbox.recv() => {
                let event = match out {
                    Outbound::Event(e) => Some(e),
                    Outbound::FinishedReady(key) => worker.lock().take_to_send(&key, epoch),
                };
                if let Some(event) = event {
                    send(&tx, Out::Event(event)).await?;
                }
            }
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

/// Acts on one master message; returns events to send right away (results decided
/// without running anything).
fn handle(
    worker: &Worker,
    msg: pb::MasterMessage,
    attempts: &mut JoinSet<()>,
) -> Vec<pb::TaskEvent> {
    use pb::master_message::Msg;
    match msg.msg {
        Some(Msg::Assign(a)) => assign(worker, a, attempts).into_iter().collect(),
        Some(Msg::Cancel(c)) => cancel(worker, (c.task_id, c.token)).into_iter().collect(),
        Some(Msg::Ack(a)) => {
            worker.lock().unacked.remove(&(a.task_id, a.token));
            Vec::new()
        }
        Some(Msg::Revoke(r)) => {
            let mut state = worker.lock();
            for a in r.attempts {
                let key = (a.task_id, a.token);
                tracing::info!(task_id = %key.0, token = key.1, reason = %r.reason, "attempt revoked");
                state.unacked.remove(&key);
                if let Some(running) = state.running.get_mut(&key) {
                    running.report = false;
                    running.stopper.stop();
                }
            }
            Vec::new()
        }
        Some(Msg::Registered(_)) | None => Vec::new(),
    }
}

/// Records a result decided without running anything as unacked; returns it to send now.
fn settle(state: &mut State, key: AttemptKey, finish: &Finish, epoch: u64) -> pb::TaskEvent {
    let event = wire::finished(&key, finish);
    state.unacked.insert(
        key,
        Unacked {
            event: event.clone(),
            sent_epoch: epoch,
        },
    );
    event
}

fn assign(worker: &Worker, a: pb::Assign, attempts: &mut JoinSet<()>) -> Option<pb::TaskEvent> {
    let key: AttemptKey = (a.task_id.clone(), a.token);
    let mut state = worker.lock();
    if state.knows(&key) {
        tracing::debug!(task_id = %key.0, token = key.1, "duplicate assign ignored");
        return None;
    }
    let spec = match a.spec.map(TaskSpec::try_from) {
        Some(Ok(spec)) => spec,
        Some(Err(e)) => {
            let finish = Finish::Error(format!("invalid spec: {e}"));
            return Some(settle(&mut state, key, &finish, worker.epoch));
        }
        None => {
            let finish = Finish::Error("invalid spec: missing".into());
            return Some(settle(&mut state, key, &finish, worker.epoch));
        }
    };
    tracing::info!(task_id = %key.0, token = key.1, attempt = a.attempt, image = %spec.image, "assigned");
    let (stopper, signal) = stop_signal();
    state.running.insert(
        key.clone(),
        Running {
            stopper,
            report: true,
        },
    );
    let req = StartRequest {
        task_id: a.task_id,
        attempt: a.attempt,
        token: a.token,
        worker_id: worker.id.clone(),
        spec,
    };
    attempts.spawn(attempt_task(
        worker.executor.clone(),
        req,
        worker.attempt_options.clone(),
        signal,
        worker.outbox.clone(),
        worker.state.clone(),
    ));
    None
}

fn cancel(worker: &Worker, key: AttemptKey) -> Option<pb::TaskEvent> {
    let mut state = worker.lock();
    if let Some(running) = state.running.get(&key) {
        tracing::info!(task_id = %key.0, token = key.1, "cancel requested");
        running.stopper.stop();
        return None;
    }
    if state.unacked.contains_key(&key) {
        return None;
    }
    // Not running here (never was, or forgotten): it is certainly not running, so the
    // cancel has succeeded; say so rather than leave the master waiting.
    Some(settle(&mut state, key, &Finish::Cancelled, worker.epoch))
}

/// Runs one attempt, forwarding its events in order, then records its result as unacked
/// and asks the session to send it (after the events already queued).
async fn attempt_task(
    executor: Arc<dyn Executor>,
    req: StartRequest,
    options: AttemptOptions,
    signal: StopSignal,
    outbox: mpsc::Sender<Outbound>,
    state: Arc<Mutex<State>>,
) {
    let key: AttemptKey = (req.task_id.clone(), req.token);
    let (events_tx, mut events_rx) = mpsc::channel(ATTEMPT_EVENTS);
    let run = run_attempt(executor.as_ref(), req, &options, signal, events_tx);
    let forward = async {
        while let Some(e) = events_rx.recv().await {
            if outbox
                .send(Outbound::Event(wire::event(&key, e)))
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let (finish, ()) = tokio::join!(run, forward);
    tracing::info!(task_id = %key.0, token = key.1, finish = ?finish, "attempt ended");
    let report = {
        let mut state = lock(&state);
        let report = state.running.remove(&key).is_some_and(|r| r.report);
        if report {
            state.unacked.insert(
                key.clone(),
                Unacked {
                    event: wire::finished(&key, &finish),
                    sent_epoch: 0,
                },
            );
        }
        report
    };
    if report {
        let _ = outbox.send(Outbound::FinishedReady(key)).await;
    }
}
