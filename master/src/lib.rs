//! cloudai master: the worker registry, the dispatcher and the gRPC services.
//!
//! - [`config`]: [`MasterConfig`], every flag with its `CLOUDAI_*` variable and default.
//! - [`server`]: [`serve`], which runs a master on a caller-bound listener until shutdown.
//! - [`placement`]: the pure placement policy (best fit or spread); see `PLACEMENT.md`.
//! - [`cluster`]: the in-memory view of workers, health and reservations (IO-free);
//!   [`conn`]: a worker's stream and the messages the master sends on it.
//! - [`registry`]: rebuilding that view from the store at start, the health monitor,
//!   reconciling what a reconnecting worker runs.
//! - [`dispatcher`]: the event-driven loop that assigns queued tasks to workers;
//!   [`fairness`]: what its fair share and quotas read (cached) and the step applying them.
//! - [`reasons`]: why a task waits (recorded by the dispatcher as it passes) and the
//!   enqueue check that some registered worker could ever take a task.
//! - [`arrays`]: `EnqueueArray` and `GetArray` (job arrays; the cap is `workflow`'s).
//! - [`workflow`]: the leader's duty that decides waiting tasks (dependencies) and arms
//!   the timers of delayed ones.
//! - [`schedules`]: the `*Schedule` calls and the leader's duty that fires due cron
//!   schedules every second.
//! - [`leadership`]: the election among masters sharing a store; the leader's duties.
//! - [`ledger`]: every change to an attempt as one conditional store write, retried
//!   until stored, and memory updated only from what it returned.
//! - [`shared`]: state shared by services and loops.
//! - [`logs`]: waking `StreamLogs` followers.
//! - [`enqueue`]: `Enqueue` and `EnqueueBatch` (with the could-it-ever-run check).
//! - [`worker_service`], [`client_service`], [`agent_service`], [`admin_service`]
//!   (retry, bulk cancel and retry by filter): the gRPC services; [`admin_users`]: its
//!   users and join-token rotation;
//!   [`reports`] applies what workers report, in order, off the stream's reader.
//! - [`task_filter`]: the search criteria of listings and bulk actions, as a `TaskQuery`.
//! - [`wire`]: master-only conversions to and from `cloudai.v1` messages.
//! - [`auth`]: tokens and their keyed hashes, roles and permissions, the auth mode.
//! - [`metrics`]: the Prometheus metric families; [`http`]: the HTTP listener serving
//!   `/metrics` (`--http-listen`) and [`api`], the JSON API over the client handlers;
//!   [`dashboard`]: the web pages at `/` (embedded assets that call the API).
//! - [`tls`]: the TLS listener, which logs each failed handshake (rate-limited).
//! - [`limits`]: backpressure on enqueue (per-client rate limit, cap on queued tasks).
//! - [`error`]: [`MasterError`] and the one mapping of queue errors to gRPC statuses.

#![warn(missing_docs)]
// Handlers return `tonic::Status` by value, as tonic's own traits do.
#![allow(clippy::result_large_err)]

pub mod admin_service;
pub mod admin_users;
pub mod agent_service;
pub mod api;
pub mod arrays;
pub mod auth;
pub mod client_service;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod dashboard;
pub mod dispatcher;
pub mod enqueue;
pub mod error;
pub mod fairness;
pub mod http;
pub mod leadership;
pub mod ledger;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod placement;
pub mod reasons;
pub mod registry;
pub mod reports;
pub mod schedules;
pub mod server;
pub mod shared;
pub mod task_filter;
pub mod tls;
pub mod wire;
pub mod worker_service;
pub mod workflow;

pub use config::{MasterConfig, PlacementPolicy};
pub use error::{MasterError, Result};
pub use server::serve;
