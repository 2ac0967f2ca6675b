//! The life of one attempt, the same for every [`Executor`]: prepare (pull) → start →
//! stream output → wait, with the timeout and cancel enforced by stop-with-grace-then-kill,
//! and the container always removed: by [`run_attempt`] before it returns, or, through
//! [`run_until_exit`], by the caller once it has reported the end (the runtime's way: a
//! removal no longer delays the result).

use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudai_queue::TaskSpec;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::executor::{Executor, Handle, OutputChunk, StartRequest};

/// Extra time given to the daemon beyond the grace period before the worker kills itself.
const STOP_SLACK: Duration = Duration::from_secs(10);

/// Something an attempt reports while it runs, in order: pulling, started, output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptEvent {
    /// The image is being pulled; a progress line.
    Pulling(String),
    /// The container runs.
    Started {
        /// Its id.
        container_id: String,
        /// When it started.
        at: DateTime<Utc>,
    },
    /// A chunk of its output.
    Output(OutputChunk),
}

/// How an attempt ended: the domain's [`cloudai_queue::AttemptEnd`], one-to-one with the
/// protocol's `FinishKind`.
pub use cloudai_queue::AttemptEnd as Finish;

/// An attempt's end and when it happened (the container's exit, or the moment the worker
/// gave up on it), as the worker measured it: the time the master stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    /// How it ended.
    pub finish: Finish,
    /// When.
    pub at: DateTime<Utc>,
}

/// Tuning of the attempt policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptOptions {
    /// Time between the polite stop signal and the kill.
    pub stop_grace: Duration,
    /// How long, after the container ended, its remaining output may take to be delivered
    /// before it is abandoned (a consumer that stalls must not hold the container forever).
    pub log_drain: Duration,
}

impl Default for AttemptOptions {
    /// 10 s grace (Docker's own default), 5 min log drain.
    fn default() -> Self {
        AttemptOptions {
            stop_grace: Duration::from_secs(10),
            log_drain: Duration::from_secs(300),
        }
    }
}

/// How urgently an attempt must stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Keep running.
    Run,
    /// Stop with the configured grace (cancel, revoke, shutdown).
    Graceful,
    /// Stop within this long (the lease ended: the grace is capped).
    Within(Duration),
}

/// The sending half of a stop request (cancel, revoke, shutdown, lease end).
#[derive(Debug)]
pub struct Stopper(watch::Sender<Stop>);

/// The receiving half: [`run_attempt`] watches it.
#[derive(Clone, Debug)]
pub struct StopSignal(watch::Receiver<Stop>);

/// A connected pair of stop halves.
pub fn stop_signal() -> (Stopper, StopSignal) {
    let (tx, rx) = watch::channel(Stop::Run);
    (Stopper(tx), StopSignal(rx))
}

impl Stopper {
    /// Asks the attempt to stop, with its configured grace. Idempotent.
    pub fn stop(&self) {
        self.0.send_if_modified(|s| {
            let was = *s;
            if was == Stop::Run {
                *s = Stop::Graceful;
            }
            was == Stop::Run
        });
    }

    /// Asks the attempt to stop within `limit`: its grace is capped there and the kill
    /// follows. Overrides a gentler stop that has not begun yet.
    pub fn stop_within(&self, limit: Duration) {
        self.0.send_replace(Stop::Within(limit));
    }
}

impl StopSignal {
    /// A signal that never fires, for callers with no cancel.
    pub fn never() -> Self {
        // With the sender gone the value can never change.
        StopSignal(watch::channel(Stop::Run).1)
    }

    /// True once a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow() != Stop::Run
    }

    /// The grace a stop asked for now gets: `configured`, or less when a limit was set.
    pub fn grace(&self, configured: Duration) -> Duration {
        match *self.0.borrow() {
            Stop::Within(limit) => configured.min(limit),
            _ => configured,
        }
    }

    /// Resolves when a stop is asked for; never, if the stopper was dropped unused.
    pub async fn stopped(&mut self) {
        if self.0.wait_for(|s| *s != Stop::Run).await.is_err() {
            futures::future::pending::<()>().await;
        }
    }
}

/// The stopped container of an attempt that [`run_until_exit`] returned: whoever holds it
/// must [`remove`](Leftover::remove) it.
#[must_use = "the attempt's container must be removed"]
#[derive(Debug)]
pub struct Leftover(Option<Handle>);

impl Leftover {
    /// Removes the container (retrying a little), if the attempt got as far as one.
    pub async fn remove(self, exec: &dyn Executor) {
        if let Some(handle) = self.0 {
            remove(exec, &handle).await;
        }
    }
}

/// Runs one attempt to its end and returns how and when it ended. Events go to `events`
/// in order; if the receiver is slow the container's output is read more slowly (bounded
/// memory), and if it is gone events are dropped. The container is removed before this
/// returns; the end's time is the container's exit (or the stop), not the removal.
pub async fn run_attempt(
    exec: &dyn Executor,
    req: StartRequest,
    opts: &AttemptOptions,
    stop: StopSignal,
    events: mpsc::Sender<AttemptEvent>,
) -> Ended {
    let (ended, leftover) = run_until_exit(exec, req, opts, stop, events).await;
    leftover.remove(exec).await;
    ended
}

/// [`run_attempt`] up to the container's exit and the delivery of its output, leaving the
/// stopped container to the caller: the end can be reported before the removal.
pub async fn run_until_exit(
    exec: &dyn Executor,
    req: StartRequest,
    opts: &AttemptOptions,
    mut stop: StopSignal,
    events: mpsc::Sender<AttemptEvent>,
) -> (Ended, Leftover) {
    let ended = |finish| Ended {
        finish,
        at: Utc::now(),
    };
    let task_id = req.task_id.clone();
    if let Err(e) = prepare(exec, &req.spec, &mut stop, &events).await {
        return (ended(e), Leftover(None));
    }
    if stop.is_stopped() {
        return (ended(Finish::Cancelled), Leftover(None));
    }
    let handle = match exec.start(&req).await {
        Ok(h) => h,
        Err(e) => return (ended(Finish::Error(e.to_string())), Leftover(None)),
    };
    tracing::debug!(task_id = %task_id, container_id = %handle.id, "container started");
    let started_at = Utc::now();
    let _ = events
        .send(AttemptEvent::Started {
            container_id: handle.id.clone(),
            at: started_at,
        })
        .await;
    let mut output = exec.logs(&handle);
    let log_events = events.clone();
    let mut logs = tokio::spawn(async move {
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(chunk) => {
                    if log_events.send(AttemptEvent::Output(chunk)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading container output failed");
                    return;
                }
            }
        }
    });

    let deadline = req.spec.timeout.map(|t| Instant::now() + t);
    let timeout = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => futures::future::pending().await,
        }
    };
    let finish = tokio::select! {
        exit = exec.wait(&handle) => match exit {
            // The start plus the container's own run time: a worker frozen while it ran
            // learns of the exit late, and the attempt must still show how long it ran.
            Ok(exit) => Ended {
                finish: Finish::Exited(exit.code.clamp(i32::MIN as i64, i32::MAX as i64) as i32),
                at: exit.ended_at(started_at, Utc::now()),
            },
            Err(e) => {
                let at = Utc::now();
                terminate(exec, &handle, stop.grace(opts.stop_grace)).await;
                Ended { finish: Finish::Error(e.to_string()), at }
            }
        },
        _ = timeout => {
            tracing::info!(task_id = %task_id, "attempt timed out, stopping");
            terminate(exec, &handle, stop.grace(opts.stop_grace)).await;
            ended(Finish::TimedOut)
        }
        _ = stop.stopped() => {
            tracing::info!(task_id = %task_id, "attempt cancelled, stopping");
            terminate(exec, &handle, stop.grace(opts.stop_grace)).await;
            ended(Finish::Cancelled)
        }
    };

    let drained = tokio::select! {
        r = tokio::time::timeout(opts.log_drain, &mut logs) => r.is_ok(),
        // A stop during the drain: the output is no longer wanted.
        _ = stop.stopped(), if finish.finish != Finish::Cancelled => false,
    };
    if !drained {
        tracing::warn!(task_id = %task_id, "abandoning undelivered container output");
        logs.abort();
    }
    (finish, Leftover(Some(handle)))
}

async fn prepare(
    exec: &dyn Executor,
    spec: &TaskSpec,
    stop: &mut StopSignal,
    events: &mpsc::Sender<AttemptEvent>,
) -> Result<(), Finish> {
    let (progress_tx, mut progress_rx) = mpsc::channel(8);
    let prepare = exec.prepare(spec, &progress_tx);
    tokio::pin!(prepare);
    let result = loop {
        tokio::select! {
            r = &mut prepare => break r,
            Some(line) = progress_rx.recv() => {
                let _ = events.send(AttemptEvent::Pulling(line)).await;
            }
            // Dropping the prepare future abandons the pull; nothing was started.
            _ = stop.stopped() => return Err(Finish::Cancelled),
        }
    };
    while let Ok(line) = progress_rx.try_recv() {
        let _ = events.send(AttemptEvent::Pulling(line)).await;
    }
    result.map_err(|e| Finish::Error(e.to_string()))
}

/// Stop with grace, then kill, then make sure it has exited.
async fn terminate(exec: &dyn Executor, handle: &Handle, grace: Duration) {
    let stopped = tokio::time::timeout(grace + STOP_SLACK, exec.stop(handle, grace)).await;
    if !matches!(stopped, Ok(Ok(()))) {
        tracing::warn!(container_id = %handle.id, "graceful stop failed, killing");
        if let Err(e) = exec.kill(handle).await {
            tracing::warn!(container_id = %handle.id, error = %e, "kill failed");
        }
    }
    let _ = tokio::time::timeout(STOP_SLACK, exec.wait(handle)).await;
}

/// Removes the container, retrying a little: leaving one behind is worse than a delay.
async fn remove(exec: &dyn Executor, handle: &Handle) {
    for delay_ms in [0u64, 200, 1000, 3000] {
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        match exec.remove(handle).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(container_id = %handle.id, error = %e, "removing container failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{FakeBehavior, FakeExecutor};

    async fn run(
        exec: &FakeExecutor,
        spec: TaskSpec,
        stop: StopSignal,
    ) -> (Finish, Vec<AttemptEvent>) {
        let (tx, mut rx) = mpsc::channel(64);
        let finish = run_attempt(
            exec,
            StartRequest::for_test(spec),
            &AttemptOptions::default(),
            stop,
            tx,
        )
        .await
        .finish;
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        (finish, events)
    }

    #[tokio::test(start_paused = true)]
    async fn exit_code_and_output_in_order() {
        let exec = FakeExecutor::new(FakeBehavior {
            exit_code: 3,
            stdout: vec!["hello".into()],
            ..Default::default()
        });
        let (finish, events) = run(&exec, TaskSpec::new("i"), StopSignal::never()).await;
        assert_eq!(finish, Finish::Exited(3));
        assert!(matches!(events[0], AttemptEvent::Started { .. }));
        assert!(matches!(&events[1], AttemptEvent::Output(c) if c.data == b"hello\n"));
        assert_eq!(exec.live_containers(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_and_cancel_remove_the_container() {
        let exec = FakeExecutor::new(FakeBehavior {
            run_for: Duration::from_secs(3600),
            ..Default::default()
        });
        let mut spec = TaskSpec::new("i");
        spec.timeout = Some(Duration::from_secs(1));
        let (finish, _) = run(&exec, spec, StopSignal::never()).await;
        assert_eq!(finish, Finish::TimedOut);
        assert_eq!(exec.live_containers(), 0);

        let (stopper, signal) = stop_signal();
        let task = tokio::spawn({
            let exec = exec.clone();
            async move { run(&exec, TaskSpec::new("i"), signal).await.0 }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(exec.live_containers(), 1);
        stopper.stop();
        assert_eq!(task.await.unwrap(), Finish::Cancelled);
        assert_eq!(exec.live_containers(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_while_pulling_never_starts() {
        let exec = FakeExecutor::new(FakeBehavior {
            pull_for: Duration::from_secs(60),
            ..Default::default()
        });
        let (stopper, signal) = stop_signal();
        let task = tokio::spawn({
            let exec = exec.clone();
            async move { run(&exec, TaskSpec::new("i"), signal).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        stopper.stop();
        let (finish, events) = task.await.unwrap();
        assert_eq!(finish, Finish::Cancelled);
        assert!(matches!(events[0], AttemptEvent::Pulling(_)));
        assert_eq!(exec.started_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn start_and_pull_errors_are_reported() {
        let exec = FakeExecutor::new(FakeBehavior {
            pull_error: Some("repository does not exist".into()),
            ..Default::default()
        });
        let (finish, _) = run(&exec, TaskSpec::new("nope"), StopSignal::never()).await;
        assert!(matches!(finish, Finish::Error(e) if e.contains("repository does not exist")));
        let exec = FakeExecutor::new(FakeBehavior {
            start_error: Some("no such file".into()),
            ..Default::default()
        });
        let (finish, _) = run(&exec, TaskSpec::new("i"), StopSignal::never()).await;
        assert!(matches!(finish, Finish::Error(e) if e.contains("no such file")));
    }
}
