//! Raw simulated workers for the scale workload: each is one `WorkerService.Connect`
//! stream speaking the protocol directly (register, heartbeat, and on `Assign` at once
//! `Started` then `Finished{EXITED, 0}`), so one process can host a thousand of them.
//! They count the `Ack`s they get: an ack means the result is durable in the master.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use cloudai_proto::pb::{self, master_message::Msg as In, worker_message::Msg as Out};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Counters shared by all simulated workers.
#[derive(Default)]
pub struct SimCounters {
    /// `Assign`s received.
    pub assigned: AtomicU64,
    /// `Ack`s received (results durable).
    pub acked: AtomicU64,
    /// Heartbeats sent.
    pub heartbeats: AtomicU64,
    /// Streams that registered.
    pub registered: AtomicU64,
}

/// A fleet of raw simulated workers.
pub struct SimFleet {
    /// What the fleet saw.
    pub counters: Arc<SimCounters>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimFleet {
    /// Connects `workers` simulated workers over `connections` HTTP/2 connections;
    /// each heartbeats every `heartbeat` (staggered).
    pub async fn start(
        url: &str,
        workers: usize,
        connections: usize,
        heartbeat: Duration,
    ) -> Result<SimFleet> {
        SimFleet::start_labelled(url, workers, connections, heartbeat, |_| Vec::new()).await
    }

    /// [`SimFleet::start`], worker `i` registering with the labels `labels(i)`.
    pub async fn start_labelled(
        url: &str,
        workers: usize,
        connections: usize,
        heartbeat: Duration,
        labels: impl Fn(usize) -> Vec<(String, String)>,
    ) -> Result<SimFleet> {
        let mut channels = Vec::new();
        for _ in 0..connections.max(1) {
            channels.push(
                tonic::transport::Endpoint::from_shared(url.to_string())?
                    .tcp_nodelay(true)
                    .connect()
                    .await?,
            );
        }
        let counters = Arc::new(SimCounters::default());
        let (stop, stopped) = watch::channel(false);
        let tasks = (0..workers)
            .map(|i| {
                let channel = channels[i % channels.len()].clone();
                let stagger = heartbeat.mul_f64(i as f64 / workers.max(1) as f64);
                tokio::spawn(sim_worker(
                    channel,
                    format!("sim-{i:05}"),
                    labels(i),
                    heartbeat,
                    stagger,
                    counters.clone(),
                    stopped.clone(),
                ))
            })
            .collect();
        Ok(SimFleet {
            counters,
            stop,
            tasks,
        })
    }

    /// Ends every stream.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

fn msg(m: Out) -> pb::WorkerMessage {
    pb::WorkerMessage { msg: Some(m) }
}

fn event(task_id: String, token: u64, seq: u64, e: pb::task_event::Event) -> pb::WorkerMessage {
    msg(Out::Event(pb::TaskEvent {
        task_id,
        token,
        time: Some(cloudai_proto::convert::timestamp(chrono::Utc::now())),
        seq,
        event: Some(e),
    }))
}

async fn sim_worker(
    channel: Channel,
    id: String,
    labels: Vec<(String, String)>,
    heartbeat: Duration,
    stagger: Duration,
    counters: Arc<SimCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let (tx, rx) = mpsc::channel::<pb::WorkerMessage>(1024);
    let register = pb::Register {
        worker_id: id.clone(),
        capacity: Some(pb::Resources {
            cpu_millis: 1_000_000,
            memory_bytes: 1 << 40,
            gpus: 0,
            disk_bytes: 1 << 40,
        }),
        hostname: "bench".into(),
        version: "bench".into(),
        labels: labels.into_iter().collect(),
        ..Default::default()
    };
    if tx.send(msg(Out::Register(register))).await.is_err() {
        return;
    }
    let mut client = pb::worker_service_client::WorkerServiceClient::new(channel);
    let mut inbound = match client.connect(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            tracing::warn!(worker_id = %id, error = %e, "simulated worker could not connect");
            return;
        }
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + stagger, heartbeat);
    let mut beat = 0;
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticker.tick() => {
                beat += 1;
                let hb = pb::Heartbeat {
                    usage: Some(pb::Usage::default()),
                    running: Vec::new(),
                    sent_at: Some(cloudai_proto::convert::timestamp(chrono::Utc::now())),
                    seq: beat,
                };
                if tx.send(msg(Out::Heartbeat(hb))).await.is_err() { return; }
                counters.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            m = inbound.message() => match m {
                Ok(Some(pb::MasterMessage { msg: Some(In::Assign(a)) })) => {
                    counters.assigned.fetch_add(1, Ordering::Relaxed);
                    let started = pb::task_event::Event::Started(pb::Started { container_id: format!("sim-{}", a.token) });
                    let finished = pb::task_event::Event::Finished(pb::Finished {
                        kind: pb::FinishKind::Exited as i32,
                        exit_code: Some(0),
                        error: String::new(),
                    });
                    if tx.send(event(a.task_id.clone(), a.token, 1, started)).await.is_err()
                        || tx.send(event(a.task_id, a.token, 2, finished)).await.is_err()
                    {
                        return;
                    }
                }
                // The ack that covers the end (seq 2): the result is durable.
                Ok(Some(pb::MasterMessage { msg: Some(In::Ack(a)) })) if a.seq >= 2 => {
                    counters.acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(pb::MasterMessage { msg: Some(In::Registered(_)) })) => {
                    counters.registered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            },
        }
    }
}
