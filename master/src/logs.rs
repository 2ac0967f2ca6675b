//! Task output on the master: [`LogHub`] wakes `StreamLogs` followers when a task's log
//! or status changes (they then read from the store, so memory stays bounded), and
//! [`LogBatch`] groups a worker's log events into few `append_logs` calls.

use std::collections::HashMap;
use std::sync::Mutex;

use cloudai_queue::{NewLogChunk, QueueError, QueueStore, TaskId};
use tokio::sync::watch;

/// Per-task change signals for followers. Holds an entry only while someone follows.
#[derive(Debug, Default)]
pub struct LogHub {
    tasks: Mutex<HashMap<TaskId, watch::Sender<u64>>>,
}

/// A follower's subscription; dropping it forgets the task once nobody follows.
pub struct Subscription<'a> {
    hub: &'a LogHub,
    task: TaskId,
    /// Changes whenever the task's log or status changes.
    pub rx: watch::Receiver<u64>,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        let mut tasks = self.hub.tasks.lock().expect("log hub lock");
        if let Some(tx) = tasks.get(&self.task) {
            // Our own receiver is still alive here.
            if tx.receiver_count() <= 1 {
                tasks.remove(&self.task);
            }
        }
    }
}

impl LogHub {
    /// Starts following `task`. Subscribe before reading, so no change is missed.
    pub fn subscribe(&self, task: TaskId) -> Subscription<'_> {
        let mut tasks = self.tasks.lock().expect("log hub lock");
        let rx = tasks
            .entry(task)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Subscription {
            hub: self,
            task,
            rx,
        }
    }

    /// Wakes the followers of `task`, if any.
    pub fn notify(&self, task: TaskId) {
        let tasks = self.tasks.lock().expect("log hub lock");
        if let Some(tx) = tasks.get(&task) {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Tasks followed right now (for tests and metrics).
    pub fn followed(&self) -> usize {
        self.tasks.lock().expect("log hub lock").len()
    }
}

/// Most bytes buffered before a flush.
pub const BATCH_MAX_BYTES: usize = 1 << 20;
/// Most chunks buffered before a flush.
pub const BATCH_MAX_CHUNKS: usize = 512;

/// Log events of one worker stream waiting to be appended, in arrival order.
#[derive(Debug, Default)]
pub struct LogBatch {
    chunks: Vec<(TaskId, u64, NewLogChunk)>,
    bytes: usize,
}

impl LogBatch {
    /// Buffers one chunk; returns true when the batch should be flushed now.
    pub fn push(&mut self, task: TaskId, token: u64, chunk: NewLogChunk) -> bool {
        self.bytes += chunk.data.len();
        self.chunks.push((task, token, chunk));
        self.bytes >= BATCH_MAX_BYTES || self.chunks.len() >= BATCH_MAX_CHUNKS
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Splits the buffer into one run per consecutive (task, token), keeping order.
    pub fn take_runs(&mut self) -> Vec<(TaskId, u64, Vec<NewLogChunk>)> {
        self.bytes = 0;
        let mut runs: Vec<(TaskId, u64, Vec<NewLogChunk>)> = Vec::new();
        for (task, token, chunk) in self.chunks.drain(..) {
            match runs.last_mut() {
                Some((t, k, v)) if *t == task && *k == token => v.push(chunk),
                _ => runs.push((task, token, vec![chunk])),
            }
        }
        runs
    }

    /// Appends everything buffered and wakes followers. A stale token drops that run
    /// (the attempt is no longer current); other errors are logged and the run dropped,
    /// since the worker does not resend log chunks.
    pub async fn flush(&mut self, store: &dyn QueueStore, hub: &LogHub) {
        for (task, token, chunks) in self.take_runs() {
            match store.append_logs(task, token, chunks).await {
                Ok(_) => hub.notify(task),
                Err(e @ QueueError::StaleToken { .. }) => {
                    tracing::debug!(task_id = %task, error = %e, "dropped logs of a stale attempt")
                }
                Err(e) => tracing::warn!(task_id = %task, error = %e, "could not store logs"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use cloudai_queue::LogStream;

    fn chunk(n: usize) -> NewLogChunk {
        NewLogChunk {
            stream: LogStream::Stdout,
            time: Utc::now(),
            data: vec![b'x'; n],
        }
    }

    #[test]
    fn batch_groups_consecutive_runs_in_order() {
        let (a, b) = (TaskId::new(), TaskId::new());
        let mut batch = LogBatch::default();
        assert!(!batch.push(a, 1, chunk(1)));
        batch.push(a, 1, chunk(2));
        batch.push(b, 1, chunk(3));
        batch.push(a, 1, chunk(4));
        batch.push(a, 2, chunk(5));
        let runs = batch.take_runs();
        let shape: Vec<_> = runs
            .iter()
            .map(|(t, k, v)| (*t, *k, v.iter().map(|c| c.data.len()).collect::<Vec<_>>()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (a, 1, vec![1, 2]),
                (b, 1, vec![3]),
                (a, 1, vec![4]),
                (a, 2, vec![5])
            ]
        );
        assert!(batch.is_empty());
    }

    #[test]
    fn batch_asks_for_a_flush_when_full() {
        let t = TaskId::new();
        let mut batch = LogBatch::default();
        assert!(batch.push(t, 1, chunk(BATCH_MAX_BYTES)));
        batch.take_runs();
        let full = (0..BATCH_MAX_CHUNKS)
            .map(|_| batch.push(t, 1, chunk(1)))
            .last();
        assert_eq!(full, Some(true));
    }

    #[tokio::test]
    async fn hub_wakes_followers_and_forgets_unfollowed_tasks() {
        let hub = LogHub::default();
        let t = TaskId::new();
        hub.notify(t); // nobody follows: no entry is created
        assert_eq!(hub.followed(), 0);
        let mut s1 = hub.subscribe(t);
        let s2 = hub.subscribe(t);
        assert_eq!(hub.followed(), 1);
        hub.notify(t);
        s1.rx.changed().await.unwrap();
        drop(s2);
        assert_eq!(hub.followed(), 1);
        drop(s1);
        assert_eq!(hub.followed(), 0);
    }
}
