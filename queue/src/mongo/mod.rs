//! MongoDB backend (placeholder until built).

use crate::error::{QueueError, Result};
use crate::store::StoreOptions;

/// The MongoDB store.
pub struct MongoStore;

impl MongoStore {
    /// Connects.
    pub async fn connect(_uri: &str, _opts: StoreOptions) -> Result<Self> {
        Err(QueueError::Backend {
            backend: "mongodb",
            message: "not built yet".into(),
            retryable: false,
        })
    }
}
