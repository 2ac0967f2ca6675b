//! The WAL checkpointer: copies committed pages from the write-ahead log back into the
//! database file on its own thread and connection. SQLite's own (automatic) checkpoint
//! runs inside the COMMIT that crosses its threshold, so the caller whose write happened
//! to cross it waited for the copy and its fsync: for the commit of a 100,000-task array,
//! every page it wrote, a second time. Here a commit only pokes this thread; the copy
//! runs beside the writer (a PASSIVE checkpoint never blocks it), and an acknowledged
//! write is durable in the log as before (`synchronous = FULL`).

use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::schema::{backend_error, open_checkpointer};
use crate::error::Result;

/// Least time between two checkpoints: pokes in between fold into the next one, so a
/// busy writer costs one copy-and-fsync of the database file per interval, not per commit.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// Handle to the checkpointer thread; the thread stops once every handle is dropped.
pub(crate) struct Checkpointer {
    tx: SyncSender<()>,
}

impl Checkpointer {
    /// Opens its connection to the file at `path` and starts the thread.
    pub(crate) fn spawn(path: &Path) -> Result<Checkpointer> {
        let conn = open_checkpointer(path)?;
        // One pending poke is enough: the next pass copies everything committed by then.
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("cloudai-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &rx))
            .map_err(|e| backend_error(format!("cannot start checkpoint thread: {e}")))?;
        Ok(Checkpointer { tx })
    }

    /// Says that the log grew; never waits.
    pub(crate) fn poke(&self) {
        let _ = self.tx.try_send(());
    }
}

fn run(conn: &Connection, rx: &Receiver<()>) {
    let mut last: Option<Instant> = None;
    while rx.recv().is_ok() {
        if let Some(wait) = last.and_then(|t| MIN_INTERVAL.checked_sub(t.elapsed())) {
            std::thread::sleep(wait);
        }
        // PASSIVE: copies what no reader still needs, without waiting for readers or
        // the writer; what it leaves is copied by a later pass.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "sqlite checkpoint failed; the next commit retries it");
        }
        last = Some(Instant::now());
    }
    tracing::debug!("sqlite checkpointer stopped");
}
