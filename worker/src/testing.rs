//! An in-process worker for tests (this crate's and the master's end-to-end tests):
//! [`TestWorker::spawn`] runs [`crate::run`] on a [`FakeExecutor`] with a short heartbeat
//! and a fixed capacity, and gives back handles to stop it gracefully or "crash" it.

use std::sync::Arc;
use std::time::Duration;

use cloudai_queue::Resources;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::WorkerConfig;
use crate::error::{Result, WorkerError};
use crate::executor::{FakeBehavior, FakeExecutor};

/// Capacity a test worker reports unless told otherwise: 4 cores, 8 GiB, no GPU, 100 GiB.
pub const TEST_CAPACITY: Resources = Resources {
    cpu_millis: 4000,
    memory_bytes: 8 << 30,
    gpus: 0,
    disk_bytes: 100 << 30,
};

/// A config for an in-process test worker: 100 ms heartbeats, 1 s stop grace,
/// [`TEST_CAPACITY`].
pub fn test_config(master: impl Into<String>, id: &str) -> WorkerConfig {
    let mut config = WorkerConfig::new(master);
    config.id = Some(id.to_string());
    config.heartbeat_interval = Some(Duration::from_millis(100));
    config.stop_grace = Duration::from_secs(1);
    config.capacity_override = Some(TEST_CAPACITY);
    config
}

/// A worker running as a tokio task.
pub struct TestWorker {
    /// The fake executor it runs on; inspect it to see what ran.
    pub executor: FakeExecutor,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<()>>,
}

impl TestWorker {
    /// Starts a worker with `config` on a fake executor with `behavior`.
    pub fn spawn(config: WorkerConfig, behavior: FakeBehavior) -> TestWorker {
        let executor = FakeExecutor::new(behavior);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(crate::run(config, Arc::new(executor.clone()), async move {
            let _ = rx.await;
        }));
        TestWorker {
            executor,
            shutdown: Some(tx),
            task,
        }
    }

    /// Shorthand: [`test_config`] for `id` dialling `master`, default fake behaviour.
    pub fn start(master: impl Into<String>, id: &str) -> TestWorker {
        TestWorker::spawn(test_config(master, id), FakeBehavior::default())
    }

    /// Graceful shutdown: stops its attempts (unreported) and waits for `run` to return.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task)
            .await
            .map_err(|e| WorkerError::Connection(format!("worker task failed: {e}")))?
    }

    /// Waits for `run` to return by itself (without asking it to stop).
    pub async fn join(mut self) -> Result<()> {
        (&mut self.task)
            .await
            .map_err(|e| WorkerError::Connection(format!("worker task failed: {e}")))?
    }

    /// Simulates a crash: the worker vanishes mid-flight, its stream drops and nothing is
    /// reported or cleaned up.
    pub fn kill(self) {
        self.task.abort();
    }

    /// True once `run` has returned (e.g. the master rejected the worker).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}
