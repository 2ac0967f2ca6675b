//! Workload 2, enqueue: a client enqueues no-op tasks over gRPC into a master with no
//! workers, unary (one task per call, many calls in flight) and batched (`EnqueueBatch`).
//! Every call returns only once the store has made it durable.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use cloudai_proto::pb;
use futures::{stream, StreamExt};
use tokio::sync::Mutex;

use crate::master::{MasterOpts, MasterProc};
use crate::workers::noop_spec;

/// How to run one enqueue measurement.
#[derive(Clone, Debug)]
pub struct EnqueueOpts {
    /// Store URI of a fresh store.
    pub store: String,
    /// Tasks to enqueue.
    pub n: usize,
    /// Tasks per call: 1 for unary `Enqueue`, more for `EnqueueBatch`.
    pub batch: usize,
    /// Calls in flight at once.
    pub in_flight: usize,
    /// HTTP/2 connections the calls are spread over.
    pub connections: usize,
}

/// One run; returns tasks enqueued per second.
pub async fn run_once(opts: &EnqueueOpts) -> Result<f64> {
    let master = MasterProc::start(&MasterOpts {
        count_commands: false,
        store: opts.store.clone(),
        heartbeat: std::time::Duration::from_secs(5),
        listen: None,
    })?;
    let mut clients = Vec::new();
    for _ in 0..opts.connections.max(1) {
        clients.push(master.client().await?);
    }
    let spec: pb::TaskSpec = noop_spec(false).into();
    let calls = opts.n.div_ceil(opts.batch.max(1));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let start = Instant::now();
    stream::iter(0..calls)
        .map(|i| {
            let mut c = clients[i % clients.len()].clone();
            let spec = spec.clone();
            let batch = opts.batch.min(opts.n - i * opts.batch).max(1);
            let failures = failures.clone();
            async move {
                let res = if opts.batch <= 1 {
                    c.enqueue(pb::EnqueueRequest {
                        spec: Some(spec),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                } else {
                    c.enqueue_batch(pb::EnqueueBatchRequest {
                        specs: vec![spec; batch],
                    })
                    .await
                    .map(|_| ())
                };
                if let Err(e) = res {
                    failures.lock().await.push(e.to_string());
                }
            }
        })
        .buffer_unordered(opts.in_flight.max(1))
        .collect::<Vec<()>>()
        .await;
    let secs = start.elapsed().as_secs_f64();
    let failures = failures.lock().await;
    if let Some(first) = failures.first() {
        anyhow::bail!("{} enqueue calls failed, first: {first}", failures.len());
    }
    Ok(opts.n as f64 / secs.max(1e-9))
}
