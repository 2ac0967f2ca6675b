//! Embedded SQLite backend (placeholder until built).

use std::path::Path;

use crate::error::{QueueError, Result};
use crate::store::StoreOptions;

/// The embedded store.
pub struct SqliteStore;

impl SqliteStore {
    /// Opens or creates the file.
    pub async fn open(_path: &Path, _opts: StoreOptions) -> Result<Self> {
        Err(QueueError::Backend {
            backend: "sqlite",
            message: "not built yet".into(),
            retryable: false,
        })
    }
}
