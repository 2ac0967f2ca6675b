//! [`serve`]: wires the services, the dispatcher and the health monitor together on a
//! listener the caller bound, and shuts everything down when the caller's future resolves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cloudai_proto::pb;
use cloudai_queue::QueueStore;
use tokio::sync::watch;

use crate::agent_service::AgentSvc;
use crate::client_service::ClientSvc;
use crate::config::MasterConfig;
use crate::error::MasterError;
use crate::leadership;
use crate::shared::Shared;
use crate::worker_service::WorkerSvc;

/// Serves the master on `listener` until `shutdown` resolves, with `store` as the durable
/// state. The caller binds the listener and opens the store (tests bind `127.0.0.1:0`).
///
/// On start the master campaigns for the lead among the masters sharing the store (a
/// SQLite store serves one: a second master fails here with `StoreLocked`); the leader
/// rebuilds its view from the store (workers, live attempts, pending retries) and does
/// the leader's work, a standby serves client reads and enqueues and sends workers to the
/// leader. On shutdown it stops accepting, ends worker streams and log follows, resigns the
/// lead (another master takes over at once), and returns once in-flight calls are done.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    store: Arc<dyn QueueStore>,
    mut config: MasterConfig,
) -> Result<(), MasterError> {
    // Where it really listens (a test binds port 0): the default id and URL come from it.
    config.listen = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let max_msg = config.max_message_bytes;
    let shared = Arc::new(Shared::new(store, config, stop_rx.clone()));
    leadership::first(&shared).await?;
    let security = crate::auth::setup::prepare(
        &shared.config.security,
        listener.local_addr()?,
        shared.store.clone(),
        Some(shared.metrics.auth_refusals.clone()),
    )
    .await?;

    let (mut health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::worker_service_server::WorkerServiceServer<WorkerSvc>>()
        .await;
    health
        .set_serving::<pb::client_service_server::ClientServiceServer<ClientSvc>>()
        .await;
    health
        .set_serving::<pb::agent_service_server::AgentServiceServer<AgentSvc>>()
        .await;
    // Reflection in both versions (grpcio-reflection's Python client and older grpcurl
    // builds speak only v1alpha); each lists both.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cloudai_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection = reflection_builder().build_v1()?;
    let reflection_v1alpha = reflection_builder().build_v1alpha()?;

    let worker =
        pb::worker_service_server::WorkerServiceServer::new(WorkerSvc::new(shared.clone()))
            .max_decoding_message_size(max_msg)
            .max_encoding_message_size(max_msg);
    let client_svc = Arc::new(ClientSvc::new(shared.clone()));
    let admin_svc = Arc::new(crate::admin_service::AdminSvc::new(client_svc.clone()));
    // The HTTP API runs the same client handlers.
    crate::http::start(
        shared.clone(),
        security.auth.clone(),
        client_svc.clone(),
        admin_svc.clone(),
        stop_rx.clone(),
    )
    .await
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => MasterError::Config(e.to_string()),
        _ => MasterError::Listener(e),
    })?;

    let admin = pb::admin_service_server::AdminServiceServer::from_arc(admin_svc);
    let client = pb::client_service_server::ClientServiceServer::from_arc(client_svc)
        .max_decoding_message_size(max_msg)
        .max_encoding_message_size(max_msg);
    let agent = pb::agent_service_server::AgentServiceServer::new(AgentSvc::new(shared.clone()))
        .max_decoding_message_size(max_msg)
        .max_encoding_message_size(max_msg);

    let election = tokio::spawn(leadership::run(shared.clone()));
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let local = listener.local_addr()?;
    tracing::info!(addr = %local, store = shared.store.backend_name(), "master serving");

    let mut stop = stop_rx.clone();
    let router = tonic::transport::Server::builder()
        .layer(crate::auth::AuthLayer::new(security.auth))
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(health_svc)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(worker)
        .add_service(client)
        .add_service(admin)
        .add_service(agent);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let served = match security.tls {
        Some((files, tls)) => {
            let incoming = crate::tls::incoming(listener, files, tls);
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from_listener(
                listener,
                true,
                Some(Duration::from_secs(30)),
            )
            .map_err(|e| std::io::Error::other(e.to_string()))?;
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
    };
    // Whatever ended the server, stop the loops too.
    let mut stop = stop_rx;
    if !*stop.borrow_and_update() {
        election.abort();
    }
    // The election resigns the lead on shutdown.
    let _ = election.await;
    tracing::info!("master stopped");
    served.map_err(MasterError::from)
}
