//! How an attempt's container is run: the [`Executor`] trait, its request and output
//! types, and the log chunking every executor shares.
//!
//! An executor does single steps (prepare, start, logs, wait, stop, remove). The policy
//! around them (timeouts, cancel, always-remove, event order) lives once, in
//! [`crate::attempt`], so the fake and the Docker executor behave alike.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cloudai_queue::{LogStream, TaskSpec};
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use crate::error::ExecError;
use crate::metrics::PullMetrics;

mod container;
pub mod docker;
pub mod fake;
pub mod policy;
pub mod pull_limit;

pub use docker::DockerExecutor;
pub use fake::{FakeBehavior, FakeExecutor};
pub use policy::ContainerPolicy;
pub use pull_limit::PullLimiter;

/// Largest log chunk an executor yields (and the protocol allows): 64 KiB.
pub const MAX_CHUNK_BYTES: usize = 64 * 1024;

/// Label keys put on every container, so leftovers can be found and cleaned up.
pub mod labels {
    /// The task id.
    pub const TASK_ID: &str = "cloudai.task_id";
    /// The attempt number (1-based).
    pub const ATTEMPT: &str = "cloudai.attempt";
    /// The attempt's fencing token.
    pub const TOKEN: &str = "cloudai.token";
    /// The worker id that created it.
    pub const WORKER: &str = "cloudai.worker";
}

/// Everything an executor needs to start one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRequest {
    /// The task id (a string: executors only label with it).
    pub task_id: String,
    /// Attempt number, 1-based.
    pub attempt: u32,
    /// Fencing token of the attempt.
    pub token: u64,
    /// The worker running it.
    pub worker_id: String,
    /// What to run.
    pub spec: TaskSpec,
    /// The GPU devices (UUIDs) the master gave it; empty for a task without GPUs, or on a
    /// worker that listed none (Docker then picks `spec.resources.gpus` of them).
    pub devices: Vec<String>,
}

impl StartRequest {
    /// The labels the container carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::TASK_ID.to_string(), self.task_id.clone()),
            (labels::ATTEMPT.to_string(), self.attempt.to_string()),
            (labels::TOKEN.to_string(), self.token.to_string()),
            (labels::WORKER.to_string(), self.worker_id.clone()),
        ])
    }

    /// Attempt 1 (token 1) of task `t` on worker `w`: the request unit tests start.
    #[cfg(test)]
    pub(crate) fn for_test(spec: TaskSpec) -> Self {
        StartRequest {
            task_id: "t".into(),
            attempt: 1,
            token: 1,
            worker_id: "w".into(),
            spec,
            devices: Vec::new(),
        }
    }

    /// A container name unique per attempt, so a retried create never collides.
    pub fn container_name(&self) -> String {
        format!("cloudai-{}-{}", self.task_id, self.token)
    }
}

/// A started container, as the executor that started it knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Handle {
    /// Container id (Docker's id, or the fake's synthetic one).
    pub id: String,
}

/// How a container ended, as its runtime saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The exit code.
    pub code: i64,
    /// How long the container ran by the runtime's own clock (Docker's `State.StartedAt`
    /// to `FinishedAt`), when it says. The worker may learn of the exit much later (it was
    /// frozen, or busy), and the attempt must show the container's true run time, not that
    /// delay. A duration, not a time: a daemon whose clock is off from ours is still right.
    pub ran: Option<Duration>,
}

impl Exit {
    /// An exit the runtime gave no run time for: it ends when the worker learned of it.
    pub fn now(code: i64) -> Self {
        Exit { code, ran: None }
    }

    /// When the attempt ended, for one that started at `started` (the worker's clock) and
    /// whose exit the worker learned of at `observed`: `started` plus the runtime's run
    /// time, never later than `observed`.
    pub fn ended_at(&self, started: DateTime<Utc>, observed: DateTime<Utc>) -> DateTime<Utc> {
        let observed = observed.max(started);
        match self.ran.and_then(|r| chrono::Duration::from_std(r).ok()) {
            Some(ran) => started
                .checked_add_signed(ran)
                .map_or(observed, |end| end.min(observed)),
            None => observed,
        }
    }
}

/// A piece of a container's output, at most [`MAX_CHUNK_BYTES`] long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    /// Stdout or stderr.
    pub stream: LogStream,
    /// When the worker read it.
    pub time: DateTime<Utc>,
    /// The bytes as written; no TTY framing.
    pub data: Vec<u8>,
}

/// A pull-based stream of output: the executor reads from its source only when the
/// consumer polls, so a slow consumer slows the reader instead of growing a buffer.
pub type OutputStream = BoxStream<'static, Result<OutputChunk, ExecError>>;

/// Where pull progress goes. Executors use `try_send`: progress is informational and is
/// dropped rather than ever blocking a pull.
pub type ProgressSink = mpsc::Sender<String>;

/// One way of running containers. Implementations do single steps; see [`crate::attempt`]
/// for the policy that combines them.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Makes `spec.image` available locally, pulling it when missing. A failure carries the
    /// registry's message. Dropping the future abandons the pull.
    async fn prepare(&self, spec: &TaskSpec, progress: &ProgressSink) -> Result<(), ExecError>;

    /// Creates and starts the container. On error nothing is left behind.
    async fn start(&self, req: &StartRequest) -> Result<Handle, ExecError>;

    /// The container's stdout and stderr from its very start, demultiplexed, ending when
    /// the container's output ends. Call once per container, right after `start`: an
    /// executor may hold the container's output back until this stream is read.
    fn logs(&self, handle: &Handle) -> OutputStream;

    /// Waits until the container exits and returns its exit code and, when the runtime
    /// recorded it, the time it exited.
    async fn wait(&self, handle: &Handle) -> Result<Exit, ExecError>;

    /// Asks the container to stop, killing it once `grace` has passed.
    async fn stop(&self, handle: &Handle, grace: Duration) -> Result<(), ExecError>;

    /// Kills the container at once.
    async fn kill(&self, handle: &Handle) -> Result<(), ExecError>;

    /// Removes the container (killing it if it still runs). Removing one that is already
    /// gone succeeds.
    async fn remove(&self, handle: &Handle) -> Result<(), ExecError>;

    /// Removes containers that an earlier run of worker `worker_id` left behind (it
    /// crashed or was killed); returns how many. Called once when a worker starts.
    async fn remove_leftovers(&self, _worker_id: &str) -> Result<usize, ExecError> {
        Ok(0)
    }

    /// The container runtime's version, for the worker's `docker.version` attribute; None
    /// when the executor has no such runtime (the fake) or it did not answer.
    async fn runtime_version(&self) -> Option<String> {
        None
    }

    /// Where this executor times the image pulls it makes (`prepare` of a missing image),
    /// so that the worker's `/metrics` shows them: the worker registers this family. The
    /// default is none, for an executor that never pulls (the fake): its worker shows no
    /// pulls.
    fn pull_metrics(&self) -> Option<PullMetrics> {
        None
    }
}

/// Splits `data` into chunks of at most `max` bytes, keeping order. Empty input gives no
/// chunk.
pub fn split_chunks(data: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    data.chunks(max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_ends_after_the_runtime_run_time_never_after_it_was_seen() {
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let ran = |s| Exit {
            code: 0,
            ran: Some(Duration::from_secs(s)),
        };
        // Learned of 60 s late: the runtime's run time.
        assert_eq!(ran(10).ended_at(t(100), t(170)), t(110));
        // A runtime that claims more than we saw: what we saw.
        assert_eq!(ran(100).ended_at(t(100), t(170)), t(170));
        assert_eq!(ran(u64::MAX / 2).ended_at(t(100), t(170)), t(170));
        // No runtime time: when the worker learned of it.
        assert_eq!(Exit::now(0).ended_at(t(100), t(170)), t(170));
        // A clock that stepped back between start and sight: never before the start.
        assert_eq!(Exit::now(0).ended_at(t(100), t(90)), t(100));
    }

    #[test]
    fn chunks_are_bounded_and_lossless() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let chunks: Vec<&[u8]> = split_chunks(&data, MAX_CHUNK_BYTES).collect();
        assert_eq!(chunks.len(), 4);
        assert!(chunks.iter().all(|c| c.len() <= MAX_CHUNK_BYTES));
        assert_eq!(chunks.concat(), data);
        assert_eq!(split_chunks(&[], MAX_CHUNK_BYTES).count(), 0);
        assert_eq!(split_chunks(b"abc", 0).count(), 3);
    }

    #[test]
    fn labels_name_the_attempt() {
        let req = StartRequest {
            task_id: "t1".into(),
            attempt: 2,
            token: 7,
            worker_id: "w".into(),
            spec: TaskSpec::new("img"),
            devices: Vec::new(),
        };
        let l = req.labels();
        assert_eq!(l[labels::TASK_ID], "t1");
        assert_eq!(l[labels::ATTEMPT], "2");
        assert_eq!(l[labels::TOKEN], "7");
        assert_eq!(l[labels::WORKER], "w");
        assert_eq!(req.container_name(), "cloudai-t1-7");
    }
}
