//! cloudai's task model and durable queue.
//!
//! - [`model`]: tasks, specs, attempts, log chunks, worker records (plain data).
//! - [`array`]: job arrays: the index expression (`0-99%8`) and the elements of an array.
//! - [`constraint`]: placement constraints and preferences over worker attributes.
//! - [`deps`]: dependencies between tasks: the rule (pure) and the passes that apply it.
//! - [`state`]: the one table of legal status transitions.
//! - [`history`]: the last hour per minute (starts, ends, queue waits) for the charts.
//! - [`query`]: [`TaskQuery`], the filter and page of listings, searches and bulk
//!   actions, with the rule in plain code.
//! - [`report`]: a worker's ordered report of an attempt, and the master's `lost` verdict.
//! - [`leader`]: the leader lease among masters sharing a store, and the epoch fence.
//! - [`schedule`]: cron schedules: the rule (pure; missed ticks fire once, the overlap
//!   policy) and the pass that fires them exactly once through any store.
//! - [`retry`]: what a task does when an attempt ends (retry with backoff, or finish).
//! - `lifecycle`: the task changes behind each store call, pure, shared by the backends.
//! - `retention`: which output a task keeps under its cap, shared by the backends.
//! - `group`: group commit, so concurrent writes of one kind share a transaction.
//! - [`validate`]: checks of specs, image references, worker ids.
//! - [`store`]: the narrow traits every backend implements (tasks, the attempt ledger,
//!   logs, workers, users) and [`QueueStore`], all of them together.
//! - [`users`]: API users, their roles, and the rules for names and token hashes.
//! - [`quota`]: per-user quotas and the check of one more task against them (pure).
//! - [`sqlite`]: the embedded backend (default), a SQLite file in WAL mode.
//! - [`mongo`]: the production backend on MongoDB.
//! - [`open`]: choosing and opening a backend from a store URI.
//! - `conformance` (feature `testsuite`, and in this crate's tests): the suite every
//!   backend must pass.
//! - [`error`]: [`QueueError`] and the [`Result`] alias.

#![warn(missing_docs)]

pub mod array;
#[cfg(any(test, feature = "testsuite"))]
pub mod conformance;
pub mod constraint;
pub mod deps;
pub mod error;
mod group;
pub mod history;
pub mod leader;
mod lifecycle;
pub mod model;
pub mod mongo;
pub mod open;
pub mod query;
pub mod quota;
pub mod report;
mod retention;
pub mod retry;
pub mod schedule;
pub mod sqlite;
pub mod state;
pub mod store;
pub mod users;
pub mod validate;

pub use error::{QueueError, Result};
pub use leader::{Candidate, Lease, Member};
pub use model::*;
pub use open::{open_store, parse_store_uri, redact_store_uri, StoreLocation, DEFAULT_STORE_URI};
pub use query::{TaskQuery, DEFAULT_LIST_LIMIT};
pub use quota::{OverQuota, Quota, Usage};
pub use report::{Applied, AttemptEnd, LostCause, ReportBody, ReportEvent};
pub use retention::dropped_marker;
pub use store::{
    AttemptLedger, LeaderStore, LogStore, QueueStore, QueuedTask, ScheduleStore, StoreOptions,
    TaskStore, UserStore, WorkerStore,
};
pub use users::{Role, UserRecord};
