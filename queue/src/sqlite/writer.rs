//! The single writer: one thread owns the write connection and applies commands in
//! batches. Everything pending is drained and run in ONE transaction (group commit, one
//! fsync for many calls); each command runs inside its own savepoint, so a command that
//! fails rolls back only itself. Replies are sent only after `COMMIT` returns, so an `Ok`
//! is durable.
//!
//! The writer also copies the log back into the database file (a checkpoint), once
//! enough rows have changed and only after the batch's replies are sent. SQLite's own
//! automatic checkpoint runs inside the COMMIT that crosses its threshold, so the
//! callers of that batch waited for the copy and its fsync: for the commit of a
//! 100,000-task array, every page it wrote, a second time. (A checkpointer thread
//! beside the writer was tried too: on two cores its fsyncs and wake-ups raised the
//! median enqueue-to-start latency at 1,000 tasks/s by a third.)

use std::panic::{catch_unwind, AssertUnwindSafe};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::schema::{backend_error, BACKEND};
use crate::error::{QueueError, Result};

/// Most commands applied in one transaction.
const MAX_BATCH: usize = 1024;
/// Commands waiting for the writer before callers wait to send.
const QUEUE_DEPTH: usize = 8192;
/// Rows changed since the last checkpoint after which the writer runs the next one:
/// about SQLite's own cadence (1,000 pages of log) on the drain's mix of writes.
const CHECKPOINT_AFTER_CHANGES: u64 = 1000;

/// A write command as the writer thread sees it.
trait Job: Send {
    /// Runs the command; true when it succeeded and its changes should be kept.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Sends the reply. `failure` is set when the whole batch was rolled back.
    fn complete(self: Box<Self>, failure: Option<&BatchFailure>);
}

/// Why a batch did not commit, copied into every caller's error.
struct BatchFailure {
    message: String,
    retryable: bool,
}

impl BatchFailure {
    fn error(&self) -> QueueError {
        QueueError::Backend {
            backend: BACKEND,
            message: self.message.clone(),
            retryable: self.retryable,
        }
    }
}

impl From<rusqlite::Error> for BatchFailure {
    fn from(e: rusqlite::Error) -> Self {
        match QueueError::from(e) {
            QueueError::Backend {
                message, retryable, ..
            } => BatchFailure { message, retryable },
            other => BatchFailure {
                message: other.to_string(),
                retryable: false,
            },
        }
    }
}

struct Command<T, F> {
    f: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Command<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = match self.f.take() {
            Some(f) => catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(backend_error("write command panicked"))),
            None => Err(backend_error("write command ran twice")),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn complete(self: Box<Self>, failure: Option<&BatchFailure>) {
        let reply = match (self.result, failure) {
            (Some(Err(e)), _) => Err(e),
            (_, Some(f)) => Err(f.error()),
            (Some(Ok(v)), None) => Ok(v),
            (None, None) => Err(backend_error("write command did not run")),
        };
        // The caller may have gone away; its write is committed regardless.
        let _ = self.reply.send(reply);
    }
}

/// Handle to the writer thread. Dropping every handle stops the thread.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn spawn(conn: Connection) -> Result<Writer> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("cloudai-sqlite-writer".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| backend_error(format!("cannot start writer thread: {e}")))?;
        Ok(Writer { tx })
    }

    /// Runs `f` in the writer's transaction and returns its result once committed.
    /// Changes `f` made are rolled back when it returns `Err`.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Command {
            f: Some(f),
            result: None,
            reply,
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| backend_error("writer thread stopped"))?;
        rx.await
            .map_err(|_| backend_error("writer thread stopped before replying"))?
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>) {
    let mut checkpointed_at = conn.total_changes();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match apply(&conn, &mut batch) {
            Ok(()) => {
                batch.into_iter().for_each(|j| j.complete(None));
                if conn.total_changes() - checkpointed_at >= CHECKPOINT_AFTER_CHANGES {
                    checkpoint(&conn);
                    checkpointed_at = conn.total_changes();
                }
            }
            Err(failure) => {
                tracing::warn!(
                    error = %failure.message,
                    commands = batch.len(),
                    "sqlite write batch rolled back"
                );
                // Fails harmlessly when SQLite already rolled back on its own.
                let _ = conn.execute_batch("ROLLBACK");
                batch.into_iter().for_each(|j| j.complete(Some(&failure)));
            }
        }
    }
    tracing::debug!("sqlite writer stopped");
}

/// A PASSIVE checkpoint: copies what no reader still needs, without waiting for readers;
/// what it leaves, a later one copies.
fn checkpoint(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "sqlite checkpoint failed; the next one retries it");
    }
}

fn apply(conn: &Connection, batch: &mut [Box<dyn Job>]) -> std::result::Result<(), BatchFailure> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    // Alone, a command's transaction is its savepoint: no sub-journal of every page it
    // changes (a big enqueue batch spent a fifth of its time writing one).
    if let [job] = batch {
        if job.run(conn) {
            conn.execute_batch("COMMIT")?;
        } else {
            conn.execute_batch("ROLLBACK")?;
        }
        return Ok(());
    }
    for job in batch.iter_mut() {
        // Cached statements: a savepoint pair per command is parsed once per connection,
        // not once per command (it showed in profiles of the drain benchmark).
        conn.prepare_cached("SAVEPOINT cmd")?.execute([])?;
        if job.run(conn) {
            conn.prepare_cached("RELEASE cmd")?.execute([])?;
        } else {
            conn.prepare_cached("ROLLBACK TO cmd")?.execute([])?;
            conn.prepare_cached("RELEASE cmd")?.execute([])?;
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(())
}
