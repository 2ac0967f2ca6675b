//! cloudai master: the worker registry, the dispatcher and the gRPC services.
//!
//! - [`config`]: [`MasterConfig`], every flag with its `CLOUDAI_*` variable and default.
//! - [`error`]: [`MasterError`] and the one mapping of queue errors to gRPC statuses.
//! - [`serve`]: runs the master on a listener the caller bound, until `shutdown`.

#![warn(missing_docs)]

pub mod config;
pub mod error;

use std::future::Future;
use std::sync::Arc;

use cloudai_queue::QueueStore;

pub use config::{MasterConfig, PlacementPolicy};
pub use error::{MasterError, Result};

/// Serves the master on `listener` until `shutdown` resolves, with `store` as the durable
/// state. The caller binds the listener and opens the store (tests bind `127.0.0.1:0`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    store: Arc<dyn QueueStore>,
    config: MasterConfig,
) -> Result<(), MasterError> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cloudai_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let _ = (store, config);
    let incoming = tonic::transport::server::TcpIncoming::from_listener(listener, true, None)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
