//! cloudai worker: dials the master, runs assigned tasks as containers, streams their
//! events back, and survives a flaky master connection.
//!
//! - [`config`]: [`WorkerConfig`], the one typed config (also the CLI flags).
//! - [`runtime`]: [`run`], the connect/register/heartbeat/reconnect loop.
//! - [`attempt`]: the life of one attempt (pull, start, output, timeout, cancel, remove),
//!   shared by every executor.
//! - [`executor`]: the [`Executor`] trait, [`DockerExecutor`] (bollard) and
//!   [`FakeExecutor`] (timers, for tests and benchmarks).
//! - [`metrics`]: [`WorkerMetrics`], the worker's Prometheus registry and its typed
//!   handles (running attempts, pull and start durations, re-sent reports).
//! - [`http`]: `GET /metrics` on `--metrics-listen` (axum), off by default.
//! - [`capacity`]: what the host offers (capped by flags), GPUs, heartbeat telemetry.
//! - [`tls`]: TLS to the master (`--ca`, and a client certificate for mTLS).
//! - [`testing`]: an in-process worker on a fake executor, for other crates' tests.
//! - [`error`]: [`ExecError`], [`WorkerError`] and the [`Result`] alias.

#![warn(missing_docs)]

pub mod attempt;
pub mod capacity;
pub mod config;
pub mod error;
pub mod executor;
pub mod http;
pub mod metrics;
pub mod runtime;
pub mod testing;
pub mod tls;

pub use config::WorkerConfig;
pub use error::{ExecError, Result, WorkerError};
pub use executor::{DockerExecutor, Executor, FakeBehavior, FakeExecutor};
pub use metrics::WorkerMetrics;
pub use runtime::run;
