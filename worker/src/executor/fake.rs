//! [`FakeExecutor`]: an in-memory executor for tests and benchmarks. Each "container" is a
//! timer and a table entry, so thousands of attempts can run at once on one core.
//!
//! Behaviour comes from a default [`FakeBehavior`], overridable per task through the
//! spec's env (so one fake worker can run tasks that behave differently):
//! `CLOUDAI_FAKE_RUN_MS`, `CLOUDAI_FAKE_EXIT_CODE`, `CLOUDAI_FAKE_START_ERROR`,
//! `CLOUDAI_FAKE_PULL_ERROR`, `CLOUDAI_FAKE_STDOUT`, `CLOUDAI_FAKE_STDERR` (lines
//! separated by `\n`), `CLOUDAI_FAKE_REMOVE_MS`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use cloudai_queue::{LogStream, TaskSpec};
use futures::stream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    split_chunks, Executor, Exit, Handle, OutputChunk, OutputStream, ProgressSink, StartRequest,
    MAX_CHUNK_BYTES,
};
use crate::error::ExecError;

/// Exit code a fake container reports when stopped (128 + SIGTERM).
pub const STOPPED_EXIT_CODE: i64 = 143;
/// Exit code a fake container reports when killed (128 + SIGKILL).
pub const KILLED_EXIT_CODE: i64 = 137;

/// What a fake container does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeBehavior {
    /// How long it runs before exiting by itself.
    pub run_for: Duration,
    /// The exit code when it exits by itself.
    pub exit_code: i64,
    /// When set, `start` fails with this message.
    pub start_error: Option<String>,
    /// When set, `prepare` fails with this message (as a registry would).
    pub pull_error: Option<String>,
    /// How long `prepare` takes (a pull in progress), zero for a local image.
    pub pull_for: Duration,
    /// Lines written to stdout, each followed by `\n`.
    pub stdout: Vec<String>,
    /// Lines written to stderr, each followed by `\n`.
    pub stderr: Vec<String>,
    /// How long `remove` takes (a slow daemon); the container counts as live meanwhile.
    pub remove_for: Duration,
}

impl Default for FakeBehavior {
    /// Runs 10 ms, exits 0, writes nothing.
    fn default() -> Self {
        FakeBehavior {
            run_for: Duration::from_millis(10),
            exit_code: 0,
            start_error: None,
            pull_error: None,
            pull_for: Duration::ZERO,
            stdout: Vec::new(),
            stderr: Vec::new(),
            remove_for: Duration::ZERO,
        }
    }
}

impl FakeBehavior {
    /// This behaviour with the spec's `CLOUDAI_FAKE_*` env overrides applied.
    pub fn for_spec(&self, spec: &TaskSpec) -> FakeBehavior {
        let mut b = self.clone();
        let env = &spec.env;
        if let Some(ms) = env.get("CLOUDAI_FAKE_RUN_MS").and_then(|v| v.parse().ok()) {
            b.run_for = Duration::from_millis(ms);
        }
        if let Some(code) = env
            .get("CLOUDAI_FAKE_EXIT_CODE")
            .and_then(|v| v.parse().ok())
        {
            b.exit_code = code;
        }
        if let Some(e) = env.get("CLOUDAI_FAKE_START_ERROR") {
            b.start_error = Some(e.clone());
        }
        if let Some(e) = env.get("CLOUDAI_FAKE_PULL_ERROR") {
            b.pull_error = Some(e.clone());
        }
        if let Some(ms) = env.get("CLOUDAI_FAKE_PULL_MS").and_then(|v| v.parse().ok()) {
            b.pull_for = Duration::from_millis(ms);
        }
        if let Some(out) = env.get("CLOUDAI_FAKE_STDOUT") {
            b.stdout = out.lines().map(str::to_string).collect();
        }
        if let Some(err) = env.get("CLOUDAI_FAKE_STDERR") {
            b.stderr = err.lines().map(str::to_string).collect();
        }
        if let Some(ms) = env
            .get("CLOUDAI_FAKE_REMOVE_MS")
            .and_then(|v| v.parse().ok())
        {
            b.remove_for = Duration::from_millis(ms);
        }
        b
    }
}

struct FakeContainer {
    behavior: FakeBehavior,
    started: Instant,
    /// `Some(code)` once stopped or killed.
    stopped: watch::Sender<Option<i64>>,
    labels: std::collections::BTreeMap<String, String>,
}

#[derive(Default)]
struct Inner {
    containers: Mutex<HashMap<String, FakeContainer>>,
    next_id: AtomicU64,
    started: AtomicU64,
    pulls: AtomicU64,
}

/// An executor whose containers are timers. Cheap to clone (shared state), so a test can
/// keep a clone to inspect what the worker did.
#[derive(Clone, Default)]
pub struct FakeExecutor {
    behavior: FakeBehavior,
    inner: Arc<Inner>,
}

impl FakeExecutor {
    /// A fake whose containers follow `behavior` (unless a spec overrides it).
    pub fn new(behavior: FakeBehavior) -> Self {
        FakeExecutor {
            behavior,
            inner: Arc::default(),
        }
    }

    /// Containers created and not yet removed.
    pub fn live_containers(&self) -> usize {
        self.lock().len()
    }

    /// Task ids of containers created and not yet removed.
    pub fn live_task_ids(&self) -> Vec<String> {
        self.lock()
            .values()
            .filter_map(|c| c.labels.get(super::labels::TASK_ID).cloned())
            .collect()
    }

    /// Containers started since creation of this executor.
    pub fn started_count(&self) -> u64 {
        self.inner.started.load(Ordering::Relaxed)
    }

    /// Pulls begun since creation (prepare calls that had to "pull").
    pub fn pull_count(&self) -> u64 {
        self.inner.pulls.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, FakeContainer>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.inner
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn signal(&self, handle: &Handle, code: i64) -> Result<(), ExecError> {
        let guard = self.lock();
        let c = guard
            .get(&handle.id)
            .ok_or_else(|| ExecError::UnknownContainer(handle.id.clone()))?;
        c.stopped.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(code);
                true
            } else {
                false
            }
        });
        Ok(())
    }
}

#[async_trait]
impl Executor for FakeExecutor {
    async fn prepare(&self, spec: &TaskSpec, progress: &ProgressSink) -> Result<(), ExecError> {
        let b = self.behavior.for_spec(spec);
        if b.pull_for > Duration::ZERO || b.pull_error.is_some() {
            self.inner.pulls.fetch_add(1, Ordering::Relaxed);
            let _ = progress.try_send(format!("pulling {}", spec.image));
            tokio::time::sleep(b.pull_for).await;
        }
        match b.pull_error {
            Some(message) => Err(ExecError::Pull {
                image: spec.image.clone(),
                message,
            }),
            None => Ok(()),
        }
    }

    async fn start(&self, req: &StartRequest) -> Result<Handle, ExecError> {
        let behavior = self.behavior.for_spec(&req.spec);
        if let Some(e) = behavior.start_error {
            return Err(ExecError::Start(e));
        }
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("fake-{n}");
        let (stopped, _) = watch::channel(None);
        self.lock().insert(
            id.clone(),
            FakeContainer {
                behavior,
                started: Instant::now(),
                stopped,
                labels: req.labels(),
            },
        );
        self.inner.started.fetch_add(1, Ordering::Relaxed);
        Ok(Handle { id })
    }

    fn logs(&self, handle: &Handle) -> OutputStream {
        let lines = match self.lock().get(&handle.id) {
            Some(c) => {
                let b = &c.behavior;
                let out = b.stdout.iter().map(|l| (LogStream::Stdout, l));
                let err = b.stderr.iter().map(|l| (LogStream::Stderr, l));
                let mut chunks = Vec::new();
                for (stream, line) in out.chain(err) {
                    let data = format!("{line}\n").into_bytes();
                    for piece in split_chunks(&data, MAX_CHUNK_BYTES) {
                        chunks.push(Ok(OutputChunk {
                            stream,
                            time: Utc::now(),
                            data: piece.to_vec(),
                        }));
                    }
                }
                chunks
            }
            None => vec![Err(ExecError::UnknownContainer(handle.id.clone()))],
        };
        Box::pin(stream::iter(lines))
    }

    async fn wait(&self, handle: &Handle) -> Result<Exit, ExecError> {
        let (deadline, run_for, exit_code, mut stopped) = {
            let guard = self.lock();
            let c = guard
                .get(&handle.id)
                .ok_or_else(|| ExecError::UnknownContainer(handle.id.clone()))?;
            (
                c.started + c.behavior.run_for,
                c.behavior.run_for,
                c.behavior.exit_code,
                c.stopped.subscribe(),
            )
        };
        let signalled = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => None,
            r = stopped.wait_for(Option::is_some) => match r {
                Ok(code) => Some(code.unwrap_or(KILLED_EXIT_CODE)),
                // The sender went away: the container was removed while we waited.
                Err(_) => Some(KILLED_EXIT_CODE),
            },
        };
        // A stop that raced with the natural exit still wins, as with a real process.
        let code = signalled.or(*stopped.borrow());
        Ok(match code {
            // Stopped or killed: it ended when the worker signalled it.
            Some(code) => Exit::now(code),
            // A natural exit ran its whole time, however late the worker came to wait for
            // it: the timer "ran" outside the worker, like a process.
            None => Exit {
                code: exit_code,
                ran: Some(run_for),
            },
        })
    }

    async fn stop(&self, handle: &Handle, _grace: Duration) -> Result<(), ExecError> {
        self.signal(handle, STOPPED_EXIT_CODE)
    }

    async fn kill(&self, handle: &Handle) -> Result<(), ExecError> {
        self.signal(handle, KILLED_EXIT_CODE)
    }

    async fn remove(&self, handle: &Handle) -> Result<(), ExecError> {
        let delay = self
            .lock()
            .get(&handle.id)
            .map_or(Duration::ZERO, |c| c.behavior.remove_for);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.lock().remove(&handle.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_env_overrides_the_default_behaviour() {
        let mut spec = TaskSpec::new("img");
        spec.env.insert("CLOUDAI_FAKE_RUN_MS".into(), "250".into());
        spec.env.insert("CLOUDAI_FAKE_EXIT_CODE".into(), "3".into());
        spec.env.insert("CLOUDAI_FAKE_STDOUT".into(), "a\nb".into());
        let b = FakeBehavior::default().for_spec(&spec);
        assert_eq!(b.run_for, Duration::from_millis(250));
        assert_eq!(b.exit_code, 3);
        assert_eq!(b.stdout, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(b.start_error, None);
        let plain = FakeBehavior::default().for_spec(&TaskSpec::new("img"));
        assert_eq!(plain, FakeBehavior::default());
    }

    fn request(run_ms: u64) -> StartRequest {
        let mut spec = TaskSpec::new("img");
        spec.env
            .insert("CLOUDAI_FAKE_RUN_MS".into(), run_ms.to_string());
        StartRequest::for_test(spec)
    }

    #[tokio::test]
    async fn a_late_wait_gets_the_whole_run_time_and_a_stop_gets_none() {
        let exec = FakeExecutor::default();
        let h = exec.start(&request(50)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let exit = exec.wait(&h).await.unwrap();
        assert_eq!(
            exit,
            Exit {
                code: 0,
                ran: Some(Duration::from_millis(50))
            }
        );

        let h = exec.start(&request(60_000)).await.unwrap();
        exec.kill(&h).await.unwrap();
        assert_eq!(exec.wait(&h).await.unwrap(), Exit::now(KILLED_EXIT_CODE));
    }
}
