//! `cloudai worker`: runs tasks through the local Docker daemon (or, with the hidden
//! `--fake-executor`, with timers instead of containers) until Ctrl-C / SIGTERM.

use std::sync::Arc;

use cloudai_worker::executor::PullLimiter;
use cloudai_worker::{DockerExecutor, Executor, FakeExecutor, WorkerError};

use crate::args::WorkerArgs;
use crate::exit::{CliError, CliResult, Kind};

/// Runs the worker; returns its exit code.
pub async fn run(a: WorkerArgs) -> CliResult<i32> {
    crate::init_tracing("info", std::io::stderr);
    let executor: Arc<dyn Executor> = if a.fake_executor {
        Arc::new(FakeExecutor::default())
    } else {
        let docker = DockerExecutor::connect().await.map_err(|e| {
            CliError::new(
                Kind::Other,
                format!("cannot use docker: {e}; is the docker daemon running?"),
            )
        })?;
        let loosened = a.config.container.loosened();
        if !loosened.is_empty() {
            tracing::warn!(loosened = ?loosened, "container restrictions loosened on this worker");
        }
        if a.config.container.no_init {
            // Not a loosening: only how a stop reaches the task changes.
            tracing::info!(
                "containers run without an init process (--container-no-init): a task that ignores SIGTERM stops only at the --stop-grace kill"
            );
        }
        let docker = docker.with_policy(a.config.container.clone());
        Arc::new(docker.with_pull_limit(PullLimiter::per_minute(a.config.pulls_per_minute)))
    };
    let shutdown = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = super::master::sigterm() => {}
        }
        tracing::info!("shutting down");
    };
    cloudai_worker::run(a.config, executor, shutdown)
        .await
        .map_err(|e| CliError::new(kind_of(&e), format!("worker stopped: {e}")))?;
    Ok(0)
}

/// The exit code family of a worker's permanent failure, the same as the CLI's (`cloudai
/// --help`): 2 bad flags, 10 the master cannot be talked to as configured (TLS), 17 a
/// refused join token, 18 a refused role.
fn kind_of(e: &WorkerError) -> Kind {
    match e {
        WorkerError::Config { .. } => Kind::InvalidArgument,
        WorkerError::Tls { .. } => Kind::Unreachable,
        WorkerError::Rejected { code, .. } => match code {
            tonic::Code::Unauthenticated => Kind::Unauthenticated,
            tonic::Code::PermissionDenied => Kind::PermissionDenied,
            _ => Kind::InvalidArgument,
        },
        _ => Kind::Other,
    }
}
