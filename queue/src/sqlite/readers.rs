//! A small pool of read connections. WAL lets them read while the writer writes; each
//! read runs on tokio's blocking pool so the runtime's threads never wait on SQLite.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::schema::{backend_error, open_reader};
use crate::error::Result;

/// Idle read connections kept open; more are opened under load and closed after.
const MAX_IDLE: usize = 8;

/// The pool. Cheap to share behind an `Arc`.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Arc<Readers> {
        Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on a read connection, off the async runtime.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match idle {
                Some(c) => c,
                None => open_reader(&pool.path)?,
            };
            let result = f(&conn);
            let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE && conn.is_autocommit() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| backend_error(format!("read task failed: {e}")))?
    }
}
