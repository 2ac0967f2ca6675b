//! Workload 3, latency: enqueue → attempt started, at a fixed offered rate (open loop:
//! each enqueue is sent at its scheduled time whether or not earlier ones returned), on
//! an idle fake worker. Both ends are stamped on this process's monotonic clock: the
//! send time before the unary `Enqueue` (acknowledged once durable), and the start time
//! the worker's executor records when it starts the container.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cloudai_proto::pb;

use crate::master::{MasterOpts, MasterProc};
use crate::workers::{noop_spec, FakeFleet};

/// Tasks sent before measuring (connection set-up, caches).
const WARMUP: usize = 20;

/// How to run one latency measurement.
#[derive(Clone, Debug)]
pub struct LatencyOpts {
    /// Store URI of a fresh store.
    pub store: String,
    /// Offered rate, tasks per second.
    pub rate: f64,
    /// Tasks measured (after the warm-up).
    pub n: usize,
}

/// What one run measured, per task, in milliseconds.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    /// Enqueue sent → attempt started.
    pub start: Vec<f64>,
    /// Enqueue sent → enqueue acknowledged (durable), the first part of `start`.
    pub ack: Vec<f64>,
}

/// One run.
pub async fn run_once(opts: &LatencyOpts) -> Result<Latencies> {
    let master = MasterProc::start(&MasterOpts {
        count_commands: false,
        store: opts.store.clone(),
        heartbeat: Duration::from_secs(5),
        listen: None,
    })?;
    let fleet = FakeFleet::start(&master.url(), 1, 0, true);
    let client = master.client().await?;
    master.wait_for_a_worker("the fake worker").await?;

    let total = WARMUP + opts.n;
    type Sent = HashMap<usize, (String, Instant, Instant)>;
    let sent: Arc<Mutex<Sent>> = Arc::default();
    let period = Duration::from_secs_f64(1.0 / opts.rate);
    let start = tokio::time::Instant::now();
    let mut calls = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(start + period.mul_f64(i as f64)).await;
        let mut c = client.clone();
        let sent = sent.clone();
        let spec: pb::TaskSpec = noop_spec(false).into();
        calls.push(tokio::spawn(async move {
            let at = Instant::now();
            let r = c
                .enqueue(pb::EnqueueRequest {
                    spec: Some(spec),
                    ..Default::default()
                })
                .await;
            if let Ok(r) = r {
                sent.lock()
                    .expect("sent lock")
                    .insert(i, (r.into_inner().task_id, at, Instant::now()));
            }
        }));
    }
    for call in calls {
        let _ = call.await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while fleet.probe.started() < total as u64 {
        if Instant::now() > deadline {
            bail!("only {} of {total} tasks started", fleet.probe.started());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = sent.lock().expect("sent lock").clone();
    let mut out = Latencies::default();
    for i in WARMUP..total {
        let Some((id, at, acked)) = sent.get(&i) else {
            bail!("enqueue {i} failed");
        };
        let Some(started) = fleet.probe.start_of(id) else {
            bail!("task {id} never started");
        };
        out.start
            .push(started.saturating_duration_since(*at).as_secs_f64() * 1000.0);
        out.ack
            .push(acked.saturating_duration_since(*at).as_secs_f64() * 1000.0);
    }
    fleet.stop().await;
    drop(master);
    Ok(out)
}
