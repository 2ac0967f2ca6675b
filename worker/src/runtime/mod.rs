//! The worker runtime: [`run`] dials the master, keeps one `Connect` stream, and
//! reconnects with exponential backoff and jitter whenever it breaks. See
//! `proto/PROTOCOL.md` for the message contract it follows.
//!
//! - `session`: one connected stream (register, heartbeats, assignments, acks).
//! - `attempt_task`: one attempt run as a task, its events recorded as they happen.
//! - `journal`: every attempt's events in order until acknowledged, spilled to disk past
//!   a memory limit, re-sent after a reconnect.
//! - `lease`: the master's lease on the worker's attempts; `watchdog` stops them when it
//!   ends.
//! - `state`: running attempts, the journal and the lease, kept across reconnects.
//! - `wire`: worker values → protocol messages.
//!
//! The metrics ([`crate::metrics`]) move here: `master_connected` in this loop and
//! `session`, `running_attempts`, `container_start_seconds` and `attempts_finished_total`
//! in `attempt_task`, `event_resends_total` from the journal in `session`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoffBuilder;
use cloudai_queue::Resources;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use crate::attempt::AttemptOptions;
use crate::capacity::{self, GpuInfo};
use crate::config::WorkerConfig;
use crate::error::{Result, WorkerError};
use crate::executor::Executor;
use crate::metrics::WorkerMetrics;

mod attempt_task;
mod journal;
mod lease;
mod session;
mod state;
mod wire;

use state::State;

/// First reconnect delay.
const RECONNECT_INITIAL: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const RECONNECT_MAX: Duration = Duration::from_secs(10);
/// Longest reconnect delay with several masters: the next one may lead already, and a
/// failover must be done well inside the worker's lease.
const RECONNECT_MAX_GROUP: Duration = Duration::from_secs(1);
/// Pull progress lines waiting for the stream; more are dropped (they are only progress).
const PULLS_CAPACITY: usize = 64;
/// Bytes of reports sent and not yet acknowledged, at most: what one master holds for
/// this worker while its store is slow or down.
const REPORT_WINDOW: usize = 4 << 20;
/// Extra time, beyond the stop grace, that shutdown waits for attempts to clean up.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(30);
/// How long shutdown waits for a scrape in progress before closing the metrics endpoint.
const METRICS_STOP: Duration = Duration::from_secs(1);

/// Everything a session needs that does not change between reconnects.
pub(crate) struct Worker {
    pub(crate) config: WorkerConfig,
    pub(crate) id: String,
    pub(crate) hostname: String,
    pub(crate) capacity: Resources,
    pub(crate) gpu: GpuInfo,
    /// Built-in attributes (`capacity::attributes`), sent at registration.
    pub(crate) attributes: std::collections::BTreeMap<String, String>,
    pub(crate) executor: Arc<dyn Executor>,
    pub(crate) attempt_options: AttemptOptions,
    pub(crate) state: Arc<Mutex<State>>,
    /// The journal has events to send.
    pub(crate) events_ready: Arc<Notify>,
    /// Acks made room in the journal.
    pub(crate) room: Arc<Notify>,
    /// The lease was granted or renewed.
    pub(crate) lease_changed: Arc<Notify>,
    /// The lease ended (and the attempts were stopped): register again.
    pub(crate) lease_ended: Arc<Notify>,
    /// Pull progress for the stream.
    pub(crate) pulls: mpsc::Sender<cloudai_proto::pb::TaskEvent>,
    /// Connection epoch: increases with every successful registration.
    pub(crate) epoch: u64,
    /// This worker's Prometheus metrics (served on `--metrics-listen` when given).
    pub(crate) metrics: Arc<WorkerMetrics>,
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
/// as it takes. Every event of an attempt is kept until the master acknowledges it and is
/// sent again after a reconnect. When the master's lease ends (no heartbeat acknowledged
/// in time) it stops its containers before the master may give them to another worker.
/// On shutdown it stops and removes its running containers without reporting them, so the
/// master treats them as lost and retries them elsewhere. With `--metrics-listen` it
/// serves its metrics ([`crate::metrics`]) there until it returns.
///
/// Returns an error only for what retrying cannot fix: invalid config (a metrics address
/// that cannot be bound included), or a master that rejects this worker's registration.
pub async fn run(
    config: WorkerConfig,
    executor: Arc<dyn Executor>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let config = config.with_join_token_file()?;
    let hostname = sysinfo::System::host_name().unwrap_or_else(|| "localhost".to_string());
    let id = config.id.clone().unwrap_or_else(|| hostname.clone());
    cloudai_queue::validate::validate_worker_id(&id)
        .map_err(|e| WorkerError::config("id", e.to_string()))?;
    let urls = config.master_urls();
    if urls.is_empty() {
        return Err(WorkerError::config("master", "no master URL given"));
    }
    for u in &urls {
        tonic::transport::Endpoint::from_shared(u.clone())
            .map_err(|e| WorkerError::config("master", format!("{u}: {e}")))?;
    }
    crate::tls::client_tls(&config)?;
    let metrics = Arc::new(WorkerMetrics::new(
        executor.pull_metrics().unwrap_or_default(),
    ));
    let metrics_server = match config.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, metrics.clone()).await?),
        None => None,
    };
    if let Some((k, _)) = config
        .labels
        .iter()
        .find(|(k, _)| cloudai_queue::constraint::BUILTIN_ATTRIBUTES.contains(&k.as_str()))
    {
        return Err(WorkerError::config(
            "labels",
            format!(
                "{k:?} is a built-in attribute the worker discovers itself ({}); \
                 choose another label name",
                cloudai_queue::constraint::BUILTIN_ATTRIBUTES.join(", ")
            ),
        ));
    }
    let (capacity, gpu) = capacity::capacity(&config).await;
    let attributes =
        capacity::attributes(&hostname, executor.runtime_version().await.as_deref(), &gpu);
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

    let data_dir = worker_data_dir(&config, &id);
    let limits = journal::Limits {
        memory: config.max_report_memory as usize,
        spill: config.max_report_spill,
        window: REPORT_WINDOW.min((config.max_report_memory as usize / 2).max(1)),
        dir: data_dir.join("reports"),
    };
    let (pulls, mut pulls_rx) = mpsc::channel(PULLS_CAPACITY);
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
        attributes,
        executor,
        state: Arc::new(Mutex::new(State::new(limits))),
        events_ready: Arc::default(),
        room: Arc::default(),
        lease_changed: Arc::default(),
        lease_ended: Arc::default(),
        pulls,
        epoch: 0,
        metrics,
    };
    let watchdog = tokio::spawn(lease::watchdog(
        worker.state.clone(),
        worker.lease_changed.clone(),
        worker.lease_ended.clone(),
    ));
    let mut attempts = JoinSet::new();
    // With several masters, a failover must reach the new leader well inside the lease.
    let max_delay = if urls.len() > 1 {
        RECONNECT_MAX_GROUP
    } else {
        RECONNECT_MAX
    };
    let mut backoff = ExponentialBackoffBuilder::new()
        .with_initial_interval(RECONNECT_INITIAL)
        .with_max_interval(max_delay)
        .with_randomization_factor(0.5)
        .with_multiplier(2.0)
        .with_max_elapsed_time(None)
        .build();
    tokio::pin!(shutdown);

    let mut next = 0usize;
    let mut redirect: Option<String> = None;
    // The master whose session just failed: a standby that still names it as the leader
    // (its lease has not run out yet) is not followed back to it.
    let mut failed: Option<String> = None;
    let outcome = loop {
        let mut registered = false;
        let url = redirect
            .take()
            .unwrap_or_else(|| urls[next % urls.len()].clone());
        let ended = tokio::select! {
            _ = &mut shutdown => break Ok(()),
            r = session::serve(&mut worker, &url, &mut pulls_rx, &mut attempts, &mut registered) => r,
        };
        worker.metrics.set_master_connected(false);
        if registered {
            backoff.reset();
            failed = None;
        }
        let err = match ended {
            Ok(()) => WorkerError::Connection("master closed the stream".into()),
            Err(e) => crate::tls::confirm(e, &url).await,
        };
        if !err.is_retryable() {
            tracing::error!(worker_id = %worker.id, error = %err, "giving up");
            break Err(err);
        }
        if let WorkerError::Redirect(leader) = &err {
            if failed.as_deref() != Some(leader.as_str()) {
                // Straight to the leader the standby named.
                tracing::info!(worker_id = %worker.id, from = %url, leader = %leader, "going to the leader");
                redirect = Some(leader.clone());
            } else {
                next += 1;
            }
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                _ = tokio::time::sleep(RECONNECT_INITIAL) => {}
            }
            continue;
        }
        failed = Some(url.clone());
        next += 1;
        let delay = backoff.next_backoff().unwrap_or(max_delay);
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

    watchdog.abort();
    worker.metrics.set_master_connected(false);
    stop_all(&worker, &mut attempts).await;
    if let Some(server) = metrics_server {
        server.stop().await;
    }
    tracing::info!(worker_id = %worker.id, "worker stopped");
    outcome
}

/// The `/metrics` endpoint while the worker runs; dropped (the worker's future was
/// dropped), it closes at once.
struct MetricsServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds `--metrics-listen` (a failure is a config error naming the flag) and serves
/// [`crate::http`] on it.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: Arc<WorkerMetrics>,
) -> Result<MetricsServer> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        WorkerError::config("metrics-listen", format!("cannot listen on {addr}: {e}"))
    })?;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %addr, "serving metrics at /metrics");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crate::http::serve(listener, metrics, async {
        let _ = stopped.await;
    }));
    Ok(MetricsServer {
        stop: Some(stop),
        task,
    })
}

impl MetricsServer {
    /// Closes the listener; a scrape still being answered gets a moment to finish.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Ok(Ok(Err(e))) = tokio::time::timeout(METRICS_STOP, &mut self.task).await {
            tracing::warn!(error = %e, "metrics endpoint failed");
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where this worker keeps its spill files: `--data-dir`, else a directory of its own
/// under the system's temporary directory.
fn worker_data_dir(config: &WorkerConfig, id: &str) -> std::path::PathBuf {
    config
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("cloudai-worker-{id}")))
}

/// Stops every attempt without reporting it and waits (bounded) for their containers to
/// be removed; their remaining events are not recorded.
async fn stop_all(worker: &Worker, attempts: &mut JoinSet<()>) {
    {
        let mut s = worker.lock();
        s.closing = true;
        s.stop_unreported("worker shutting down", None);
    }
    worker.room.notify_waiters();
    let drain = async { while attempts.join_next().await.is_some() {} };
    let limit = worker.config.stop_grace + SHUTDOWN_SLACK;
    if tokio::time::timeout(limit, drain).await.is_err() {
        tracing::warn!(worker_id = %worker.id, "attempts did not stop in time, abandoning them");
        attempts.abort_all();
    }
}
