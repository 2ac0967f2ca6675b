//! The conformance suite every [`QueueStore`] backend runs: the same cases, asserting
//! the trait's contract (ordering, fencing, transitions, idempotency, concurrency,
//! durability, bounded logs, users and the join token). A backend is done when the suite
//! passes against it.
//!
//! A backend's test file implements [`Harness`] and calls [`conformance_suite!`]
//! (see `tests/sqlite_conformance.rs`); the macro generates one test per case.
//! Each case keeps to a few hundred documents so slow servers run it in seconds.

mod arrays;
mod basics;
mod deps;
mod dispatch;
mod durability;
mod fair;
mod lifecycle;
mod limits;
mod reports;
mod schedules;
mod search;
mod users;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use crate::error::Result;
use crate::model::{ClaimRequest, NewLogChunk, Resources, Task, TaskId, TaskSpec};
use crate::report::{Applied, AttemptEnd, LostCause, ReportBody, ReportEvent};
use crate::store::{QueueStore, StoreOptions};

pub use arrays::*;
pub use basics::*;
pub use deps::*;
pub use dispatch::*;
pub use durability::*;
pub use fair::*;
pub use lifecycle::*;
pub use limits::*;
pub use reports::*;
pub use schedules::*;
pub use search::*;
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
            reports_are_ordered_and_idempotent,
            a_late_result_of_a_silent_attempt_is_accepted,
            output_is_kept_per_attempt,
            a_chunk_larger_than_the_cap_keeps_its_tail,
            dispatch_order_is_priority_then_id,
            queue_cap_is_atomic,
            queued_asks_match_queued,
            queued_reads_per_submitter,
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
            list_filters_by_submitter,
            list_searches_match_the_rule,
            recent_times_are_what_the_history_needs,
            dependents_are_released_or_cancelled_down_the_chain,
            dependents_wait_through_retries_and_the_sweep_catches_up,
            not_before_in_the_spec_delays_the_task,
            delayed_times_are_the_queued_tasks_not_yet_due,
            array_elements_are_found_counted_and_capped,
            an_array_enqueue_answers_what_it_made_and_is_all_or_nothing,
            array_elements_wait_for_parents_and_are_cancelled_together,
            schedules_are_stored_and_changed_by_compare_and_set,
            a_schedule_fires_each_tick_exactly_once,
            users_add_find_rotate_remove,
            user_quotas_round_trip,
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

/// Reports `bodies` (each at its time) as the next events of the attempt holding `token`:
/// numbered after what the store already has of that attempt, written at the last time.
async fn report(
    store: &dyn QueueStore,
    id: TaskId,
    token: u64,
    bodies: Vec<(DateTime<Utc>, ReportBody)>,
) -> Result<Applied> {
    let (stored, worker) = match store.get(id).await {
        Ok(t) => t
            .attempts
            .iter()
            .find(|a| a.token == token)
            .map_or((0, "w1".to_string()), |a| {
                (a.reported_seq, a.worker_id.clone())
            }),
        Err(_) => (0, "w1".to_string()),
    };
    let at = bodies.last().map_or_else(Utc::now, |(t, _)| *t);
    let events = bodies
        .into_iter()
        .enumerate()
        .map(|(i, (time, body))| ReportEvent {
            seq: stored + 1 + i as u64,
            time,
            body,
        })
        .collect();
    store.report(id, token, &worker, events, at).await
}

/// The worker reports its container started at `at`.
async fn started(
    store: &dyn QueueStore,
    id: TaskId,
    token: u64,
    at: DateTime<Utc>,
) -> Result<Task> {
    let body = ReportBody::Started {
        container_id: "c1".into(),
    };
    Ok(report(store, id, token, vec![(at, body)]).await?.task)
}

/// The worker reports output chunks.
async fn output(
    store: &dyn QueueStore,
    id: TaskId,
    token: u64,
    chunks: Vec<NewLogChunk>,
) -> Result<Applied> {
    let bodies = chunks
        .into_iter()
        .map(|c| {
            (
                c.time,
                ReportBody::Output {
                    stream: c.stream,
                    data: c.data,
                },
            )
        })
        .collect();
    report(store, id, token, bodies).await
}

/// The worker reports the attempt ended at `at`.
async fn ended(
    store: &dyn QueueStore,
    id: TaskId,
    token: u64,
    end: AttemptEnd,
    at: DateTime<Utc>,
) -> Result<Task> {
    Ok(
        report(store, id, token, vec![(at, ReportBody::Finished(end))])
            .await?
            .task,
    )
}

/// A task allowed two attempts whose first, assigned to `w1` and failed at `at`, left it
/// queued again for a retry: as the store returned it.
async fn failed_once(store: &dyn QueueStore, at: DateTime<Utc>) -> Task {
    let t = add(
        store,
        TaskSpec {
            max_attempts: 2,
            ..spec()
        },
    )
    .await;
    let a = store.assign(t.id, "w1", at).await.unwrap();
    let back = ended(store, a.id, a.token(), AttemptEnd::Exited(1), at)
        .await
        .unwrap();
    assert_eq!(back.status, crate::model::TaskStatus::Queued);
    back
}

/// The master's `lost` verdict for the attempt holding `token`.
async fn lost(store: &dyn QueueStore, id: TaskId, token: u64, at: DateTime<Utc>) -> Result<Task> {
    store
        .lose(id, token, LostCause::Gone("worker died".into()), at)
        .await
}

/// Every task in the store, newest first.
async fn all(store: &dyn QueueStore) -> Vec<Task> {
    store
        .list(&crate::query::TaskQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("list")
}
