//! The conformance suite every [`QueueStore`] backend runs: the same cases, asserting
//! the trait's contract (ordering, fencing, transitions, idempotency, concurrency,
//! durability, bounded logs, users and the join token). A backend is done when the suite
//! passes against it.
//!
//! A backend's test file implements [`Harness`] and calls [`conformance_suite!`]
//! (see `tests/sqlite_conformance.rs`); the macro generates one test per case.
//! Each case keeps to a few hundred documents so slow servers run it in seconds.

mod basics;
mod dispatch;
mod durability;
mod lifecycle;
mod reports;
mod users;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use crate::model::{ClaimRequest, Resources, Task, TaskSpec};
use crate::store::{QueueStore, StoreOptions};

pub use basics::*;
pub use dispatch::*;
pub use durability::*;
pub use lifecycle::*;
pub use reports::*;
pub use users::*;

/// Opens the backend under test. One harness is one empty store: every `open` of the
/// same harness sees the same data, and two harnesses never share data.
#[async_trait::async_trait]
pub trait Harness: Send + Sync + 'static {
    /// Opens the store at this harness's location (same data every call, fresh per harness).
    async fn open(&self, opts: StoreOptions) -> Arc<dyn QueueStore>;
}

/// Generates one `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` per case.
/// `$make` is an async expression returning `Option<impl Harness>`; `None` means the
/// backend is unavailable: the test prints "skipped: <why>" to stderr and returns.
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dependency.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            enqueue_get_round_trip,
            get_unknown_is_not_found,
            resolve_prefix_unique_ambiguous_none_full,
            idempotent_enqueue_returns_existing,
            idempotency_conflict_is_rejected,
            invalid_spec_is_rejected_and_not_stored,
            enqueue_batch_is_all_or_nothing,
            queued_lists_priority_then_fifo,
            claim_takes_priority_then_fifo,
            not_before_is_respected,
            pinned_tasks_go_only_to_their_worker,
            claim_respects_resource_fit,
            assign_non_queued_is_illegal,
            lifecycle_assign_running_succeeded,
            illegal_transitions_change_nothing,
            stale_token_is_rejected,
            start_and_finish_in_one_write,
            queued_asks_match_queued,
            failed_attempts_retry_then_fail,
            lost_attempts_use_their_own_budget,
            cancel_queued_ends_at_once,
            cancel_running_is_requested_then_reported,
            cancel_terminal_is_illegal,
            concurrent_claimers_take_each_task_once,
            concurrent_assigns_have_one_winner,
            persistence_across_reopen,
            bounded_logs_keep_newest_with_marker,
            read_logs_after_and_limit,
            stats_counts_oldest_and_recent,
            worker_registry,
            list_filters_and_pages,
            users_add_find_rotate_remove,
            join_token_set_once_then_rotate,
            join_token_concurrent_creation_has_one_winner,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                match $make.await {
                    Some(harness) => $crate::conformance::$case(&harness).await,
                    None => eprintln!(
                        "skipped: conformance case {}: backend not available",
                        stringify!($case)
                    ),
                }
            }
        )*
    };
}

/// Prints the line that makes the backend and case visible in test output.
fn passed(store: &dyn QueueStore, case: &str) {
    eprintln!("conformance[{}]: {case} ok", store.backend_name());
}

/// The current time rounded up to the next millisecond: every backend can store it
/// exactly, and it is not before anything that already happened.
fn now() -> DateTime<Utc> {
    Utc.timestamp_millis_opt(Utc::now().timestamp_millis() + 1)
        .single()
        .unwrap_or_else(Utc::now)
}

/// A minimal valid spec.
fn spec() -> TaskSpec {
    TaskSpec::new("busybox:1.36")
}

/// A spec with this priority.
fn prio(priority: i32) -> TaskSpec {
    TaskSpec { priority, ..spec() }
}

/// Plenty of everything.
fn roomy() -> Resources {
    Resources {
        cpu_millis: 64_000,
        memory_bytes: 256 << 30,
        gpus: 8,
        disk_bytes: 1 << 40,
    }
}

/// A claim by `worker` with room for anything, at `at`.
fn claim_at(worker: &str, at: DateTime<Utc>) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.to_string(),
        free: roomy(),
        now: at,
    }
}

/// Enqueues `spec` and returns the new task.
async fn add(store: &dyn QueueStore, spec: TaskSpec) -> Task {
    let e = store.enqueue(spec.into()).await.expect("enqueue");
    assert!(e.created, "a spec without a reused key creates a task");
    e.task
}

/// Every task in the store, newest first.
async fn all(store: &dyn QueueStore) -> Vec<Task> {
    store
        .list(&crate::model::TaskQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("list")
}
