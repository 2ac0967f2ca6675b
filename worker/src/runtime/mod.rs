//! The worker runtime: [`run`] dials the master, keeps one `Connect` stream, and
//! reconnects with exponential backoff and jitter whenever it breaks. See
//! `proto/PROTOCOL.md` for the message contract it follows.
//!
//! - `session`: one connected stream (register, heartbeats, assignments, events).
//! - `state`: running attempts and unacknowledged results, kept across reconnects.
//! - `wire`: worker values → protocol messages.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoffBuilder;
use cloudai_queue::Resources;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::attempt::AttemptOptions;
use crate::capacity::{self, GpuInfo};
use crate::config::WorkerConfig;
use crate::error::{Result, WorkerError};
use crate::executor::Executor;

mod session;
mod state;
mod wire;

use session::Outbound;
use state::State;

/// First reconnect delay.
const RECONNECT_INITIAL: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const RECONNECT_MAX: Duration = Duration::from_secs(10);
/// Events waiting for the stream, across all attempts. When full, attempts wait, which
/// slows their log readers: the backpressure that bounds memory under flooding output.
const OUTBOX_CAPACITY: usize = 256;
/// Extra time, beyond the stop grace, that shutdown waits for attempts to clean up.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(30);

/// Everything a session needs that does not change between reconnects.
pub(crate) struct Worker {
    pub(crate) config: WorkerConfig,
    pub(crate) id: String,
    pub(crate) hostname: String,
    pub(crate) capacity: Resources,
    pub(crate) gpu: GpuInfo,
    pub(crate) executor: Arc<dyn Executor>,
    pub(crate) attempt_options: AttemptOptions,
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) outbox: mpsc::Sender<Outbound>,
    /// Connection epoch: increases with every successful registration.
    pub(crate) epoch: u64,
}

impl Worker {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }
}

pub(crate) fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // The state stays consistent even if a holder panicked: every update is one statement.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a worker until `shutdown` resolves: registers with the master, heartbeats, runs
/// what it is assigned on `executor`, and reconnects (with backoff and jitter) for as long
/// as it takes. On shutdown it stops and removes its running containers without reporting
/// them, so the master treats them as lost and retries them elsewhere.
///
/// Returns an error only for what retrying cannot fix: invalid config, or a master that
/// rejects this worker's registration.
pub async fn run(
    config: WorkerConfig,
    executor: Arc<dyn Executor>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let hostname = sysinfo::System::host_name().unwrap_or_else(|| "localhost".to_string());
    let id = config.id.clone().unwrap_or_else(|| hostname.clone());
    cloudai_queue::validate::validate_worker_id(&id)
        .map_err(|e| WorkerError::config("id", e.to_string()))?;
    tonic::transport::Endpoint::from_shared(config.master.clone())
        .map_err(|e| WorkerError::config("master", e.to_string()))?;
    crate::tls::client_tls(&config)?;
    let (capacity, gpu) = capacity::capacity(&config).await;
    tracing::info!(
        worker_id = %id,
        master = %config.master,
        cpu_millis = capacity.cpu_millis,
        memory_bytes = capacity.memory_bytes,
        gpus = gpu.count,
        "worker starting"
    );
    match executor.remove_leftovers(&id).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(worker_id = %id, removed = n, "removed containers of a previous run")
        }
        Err(e) => {
            tracing::warn!(worker_id = %id, error = %e, "could not look for leftover containers")
        }
    }

    let (outbox, mut outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
    let mut worker = Worker {
        attempt_options: AttemptOptions {
            stop_grace: config.stop_grace,
            ..AttemptOptions::default()
        },
        config,
        id,
        hostname,
        capacity,
        gpu,
        executor,
        state: Arc::default(),
        outbox,
        epoch: 0,
    };
    let mut attempts = JoinSet::new();
    let mut backoff = ExponentialBackoffBuilder::new()
        .with_initial_interval(RECONNECT_INITIAL)
        .with_max_interval(RECONNECT_MAX)
        .with_randomization_factor(0.5)
        .with_multiplier(2.0)
        .with_max_elapsed_time(None)
        .build();
    tokio::pin!(shutdown);
    // When the master was last reachable (or when we started trying).
    let mut connected_at = Instant::now();

    let outcome = loop {
        let mut registered = false;
        let ended = tokio::select! {
            _ = &mut shutdown => break Ok(()),
            r = session::serve(&mut worker, &mut outbox_rx, &mut attempts, &mut registered) => r,
        };
        if registered {
            backoff.reset();
            connected_at = Instant::now();
        }
        if let Some(grace) = worker.config.disconnect_grace {
            if connected_at.elapsed() >= grace {
                stop_unreported(&worker, "master unreachable past the disconnect grace");
            }
        }
        let err = match ended {
            Ok(()) => WorkerError::Connection("master closed the stream".into()),
            Err(e) => e,
        };
        if !err.is_retryable() {
            tracing::error!(worker_id = %worker.id, error = %err, "giving up");
            break Err(err);
        }
        let delay = backoff.next_backoff().unwrap_or(RECONNECT_MAX);
        tracing::warn!(
            worker_id = %worker.id,
            error = %err,
            retry_in_ms = delay.as_millis() as u64,
            "master connection lost, reconnecting"
        );
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    };

    stop_all(&worker, &mut outbox_rx, &mut attempts).await;
    tracing::info!(worker_id = %worker.id, "worker stopped");
    outcome
}

/// Stops every running attempt without reporting it: the master no longer counts on them.
fn stop_unreported(worker: &Worker, why: &str) {
    for (key, running) in worker.lock().running.iter_mut() {
        if running.report {
            tracing::warn!(task_id = %key.0, token = key.1, reason = why, "stopping attempt");
        }
        running.report = false;
        running.stopper.stop();
    }
}

/// Stops every attempt without reporting it and waits (bounded) for their containers to
/// be removed, discarding their remaining events.
async fn stop_all(
    worker: &Worker,
    outbox_rx: &mut mpsc::Receiver<Outbound>,
    attempts: &mut JoinSet<()>,
) {
    stop_unreported(worker, "worker shutting down");
    let drain = async {
        loop {
            tokio::select! {
                Some(_) = outbox_rx.recv() => {}
                joined = attempts.join_next() => if joined.is_none() { break },
            }
        }
    };
    let limit = worker.config.stop_grace + SHUTDOWN_SLACK;
    if tokio::time::timeout(limit, drain).await.is_err() {
        tracing::warn!(worker_id = %worker.id, "attempts did not stop in time, abandoning them");
        attempts.abort_all();
    }
}
