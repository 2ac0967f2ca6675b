//! One master per SQLite file: an exclusive OS lock (`flock`, through `std::fs::File`) on
//! `<store>.master.lock` beside the file, held for as long as the master's store is open
//! and released by the OS when the process ends however it ends, so a crashed master
//! never leaves a stale lock behind. The lock file names its holder, so a second master
//! can say who has the store.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{QueueError, Result};

/// A held master lock; dropping it releases the lock.
#[derive(Debug)]
pub struct MasterLock {
    _file: File,
    path: PathBuf,
}

impl MasterLock {
    /// The lock file of the store at `db`.
    pub fn path_for(db: &Path) -> PathBuf {
        let mut name = db.as_os_str().to_owned();
        name.push(".master.lock");
        PathBuf::from(name)
    }

    /// Takes the lock of the store at `db` for `holder` (who this master is: its id and
    /// address). `StoreLocked` names the master holding it when another process does.
    pub fn acquire(db: &Path, holder: &str) -> Result<MasterLock> {
        let path = Self::path_for(db);
        let io = |e: std::io::Error| QueueError::Backend {
            backend: super::schema::BACKEND,
            message: format!("lock file {}: {e}", path.display()),
            retryable: false,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut who = String::new();
                let _ = file.read_to_string(&mut who);
                return Err(QueueError::StoreLocked {
                    path: db.display().to_string(),
                    holder: Some(who.trim().to_string()).filter(|w| !w.is_empty()),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{holder} (pid {})", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(MasterLock { _file: file, path })
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cloudai.db");
        let first = MasterLock::acquire(&db, "master-a at http://10.0.0.1:50051").unwrap();
        assert!(first.path().ends_with("cloudai.db.master.lock"));
        match MasterLock::acquire(&db, "master-b") {
            Err(QueueError::StoreLocked { path, holder }) => {
                assert!(path.ends_with("cloudai.db"), "{path}");
                let holder = holder.expect("the holder is named");
                assert!(
                    holder.contains("master-a at http://10.0.0.1:50051"),
                    "{holder}"
                );
                assert!(holder.contains(&std::process::id().to_string()), "{holder}");
            }
            other => panic!("expected StoreLocked, got {other:?}"),
        }
        drop(first);
        let again = MasterLock::acquire(&db, "master-b").expect("free once released");
        drop(again);
    }
}
