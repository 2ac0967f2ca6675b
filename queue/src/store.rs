//! The store's traits, one per concern ([`TaskStore`], [`AttemptLedger`], [`LogStore`],
//! [`WorkerStore`], [`UserStore`]), and [`QueueStore`], all of them together.
//!
//! Contract every backend keeps (the conformance suite checks each point):
//! - A call that returns `Ok` is durable: a reopened store sees it.
//! - Every status change goes through [`crate::state::check`]; an illegal one is
//!   [`QueueError::IllegalTransition`](crate::QueueError::IllegalTransition) and changes nothing.
//! - Calls that carry a fencing token fail with `StaleToken` unless it is the task's current
//!   token, and change nothing.
//! - Concurrent `claim`/`assign` calls (from one or many masters) never hand one queued
//!   task to two attempts.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::array::{ArrayEnqueued, Elements};
use crate::error::Result;
use crate::history::TaskTimes;
use crate::leader::{Candidate, Lease, Member};
use crate::model::{
    Attempt, ClaimRequest, Enqueued, LogChunk, NewTask, QueueStats, Resources, Task, TaskId,
    TaskStatus, WorkerHealth, WorkerRecord,
};
use crate::query::TaskQuery;
use crate::report::{Applied, LostCause, ReportEvent};
use crate::schedule::Schedule;
use crate::users::UserRecord;

/// Default cap on log bytes kept per task (10 MiB); older output is dropped first.
pub const DEFAULT_MAX_LOG_BYTES_PER_TASK: u64 = 10 * 1024 * 1024;

/// Options every backend honours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Log bytes kept per task; when exceeded, the oldest chunks are dropped and the
    /// seq-0 system chunk says how many bytes were dropped in total.
    pub max_log_bytes_per_task: u64,
    /// Most tasks in `queued` at once; an enqueue past it is `QueueFull`. `None`: no cap.
    pub max_queued: Option<u64>,
    /// Count the commands the store's client sends, by name ([`QueueStore::commands_sent`]).
    /// Off by default: on MongoDB the driver's command monitoring builds a document of
    /// every command and reply, ~12 % of a busy master's CPU.
    pub count_commands: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_log_bytes_per_task: DEFAULT_MAX_LOG_BYTES_PER_TASK,
            max_queued: None,
            count_commands: false,
        }
    }
}

/// A queued task as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedTask {
    /// The task.
    pub id: TaskId,
    /// Its resource request, as given (see [`QueuedTask::reservation`]).
    pub resources: Resources,
    /// The only worker that may run it.
    pub pinned_worker: Option<String>,
    /// Worker attributes it requires. Shared: a read gives the tasks of one shape (the
    /// same constraints and preferences) one copy, decoded once.
    pub constraints: Arc<[crate::constraint::Constraint]>,
    /// Worker attributes it prefers, shared likewise.
    pub prefer: Arc<[crate::constraint::Preference]>,
    /// Its priority (higher first).
    pub priority: i32,
    /// Who enqueued it; `None` without auth. Fair share and quotas go by this.
    pub submitter: Option<String>,
}

impl QueuedTask {
    /// The parts of `task` placement needs.
    pub fn of(task: &Task) -> QueuedTask {
        QueuedTask {
            id: task.id,
            resources: task.spec.resources,
            pinned_worker: task.spec.pinned_worker.clone(),
            constraints: task.spec.constraints.as_slice().into(),
            prefer: task.spec.prefer.as_slice().into(),
            priority: task.spec.priority,
            submitter: task.submitted_by.clone(),
        }
    }

    /// What it reserves on a worker, as [`crate::TaskSpec::reservation`] says.
    pub fn reservation(&self) -> Resources {
        crate::model::reserved(self.resources)
    }
}

/// Every concern of durable storage together: what the master holds. A backend
/// implements each narrow trait; this one only names the whole.
pub trait QueueStore:
    TaskStore
    + AttemptLedger
    + LogStore
    + WorkerStore
    + UserStore
    + LeaderStore
    + ScheduleStore
    + Send
    + Sync
    + 'static
{
    /// "sqlite" or "mongodb", for logs and test output.
    fn backend_name(&self) -> &'static str;

    /// The commands sent to a remote store since it was opened, by command name, in name
    /// order (MongoDB: counted by the driver's command monitoring). Empty for an embedded
    /// store, which sends none, and unless [`StoreOptions::count_commands`] is on.
    fn commands_sent(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// Tasks: enqueueing and reading them.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Adds a task in `queued`. Validates the spec first. When the spec has an idempotency
    /// key already used by a task with an equal spec, returns that task with
    /// `created = false`; with a different spec, `IdempotencyConflict`. With
    /// [`StoreOptions::max_queued`], a new task that would take the queue past the cap is
    /// `QueueFull`, decided atomically with the insert.
    async fn enqueue(&self, task: NewTask) -> Result<Enqueued>;

    /// Like `enqueue` for many, atomically: either every task is stored or none is.
    async fn enqueue_batch(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>>;

    /// The elements of an array, as `enqueue_batch` of them (all or none, the same
    /// checks), answered with what was made instead of every element. A store may write
    /// each element as it is made rather than build the whole array first.
    async fn enqueue_array(&self, elements: Elements) -> Result<ArrayEnqueued> {
        let mut made = ArrayEnqueued::new(elements.id());
        for e in self.enqueue_batch(elements.collect()).await? {
            made.add(e);
        }
        Ok(made)
    }

    /// One task by id; `NotFound` when absent.
    async fn get(&self, id: TaskId) -> Result<Task>;

    /// The task whose id (hyphenated, lowercase) starts with `prefix`: `NoMatch`, or
    /// `AmbiguousPrefix` when several do. A full id works too.
    async fn resolve_prefix(&self, prefix: &str) -> Result<TaskId>;

    /// Tasks matching `query`, newest first.
    async fn list(&self, query: &TaskQuery) -> Result<Vec<Task>>;

    /// Queued tasks eligible at `now` (`not_before <= now`), in dispatch order: priority
    /// high to low, then oldest first. At most `limit`.
    async fn queued(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Task>>;

    /// What `queued` returns, reduced to what placement needs (id, resources, pin):
    /// the dispatcher's read, which need not load whole tasks. Same order and filter.
    async fn queued_asks(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<QueuedTask>> {
        Ok(self
            .queued(now, limit)
            .await?
            .iter()
            .map(QueuedTask::of)
            .collect())
    }

    /// When the delayed queued tasks become due: the distinct `not_before` times in
    /// `(now, until]` of queued tasks whose `not_before` lies after their creation (a
    /// delayed start, a retry's backoff), soonest first, at most `limit`. What arms the
    /// dispatcher's timers. Backends answer from an index, not by reading every queued task.
    async fn delayed_times(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DateTime<Utc>>>;

    /// Who has queued tasks (whatever their `not_before`): each submitter once, `None`
    /// standing for tasks enqueued without a user, in no particular order. Fair share
    /// reads each one's head with [`TaskStore::queued_asks_of`]. Backends answer from an
    /// index, without visiting each queued task.
    async fn queued_submitters(&self) -> Result<Vec<Option<String>>>;

    /// `queued_asks` of one submitter's tasks (`None`: those enqueued without a user), in
    /// the same order and with the same filter.
    async fn queued_asks_of(
        &self,
        now: DateTime<Utc>,
        submitter: Option<&str>,
        limit: usize,
    ) -> Result<Vec<QueuedTask>>;

    /// The times of tasks that ended at or after `since` (at most `limit` of them, the
    /// most recent ends first) and of those assigned or running now: what the history
    /// charts are drawn from (`history::buckets`). Backends answer from an index on the
    /// end time; this default reads through `list`.
    async fn recent_times(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<TaskTimes>> {
        use crate::model::TaskStatus;
        let mut out = Vec::new();
        let live = TaskQuery {
            statuses: vec![TaskStatus::Assigned, TaskStatus::Running],
            limit: 10_000,
            ..TaskQuery::default()
        };
        let ended = TaskQuery {
            statuses: TaskStatus::ALL
                .into_iter()
                .filter(|s| s.is_terminal())
                .collect(),
            limit: limit.max(1),
            ..TaskQuery::default()
        };
        for q in [live, ended] {
            let tasks = self.list(&q).await?;
            out.extend(
                tasks
                    .iter()
                    .filter(|t| t.finished_at.is_none_or(|f| f >= since))
                    .map(TaskTimes::of),
            );
        }
        Ok(out)
    }

    /// Ends `waiting` for task `id` as the dependency rule decided: queued, or cancelled
    /// with the reason. `IllegalTransition` when it is no longer waiting. The leader's.
    async fn settle_waiting(
        &self,
        id: TaskId,
        res: crate::deps::Resolution,
        now: DateTime<Utc>,
    ) -> Result<Task>;

    /// Counts per status, oldest queued task, tasks finished in the minute before `now`.
    async fn stats(&self, now: DateTime<Utc>) -> Result<QueueStats>;

    /// The elements of array `id` per status (statuses with none left out); empty when
    /// no task is an element of it.
    async fn array_counts(&self, id: &str) -> Result<BTreeMap<TaskStatus, u64>>;

    /// Assigned or running tasks a user asked to cancel: what the leader delivers to their
    /// workers when the cancel came through another master.
    async fn cancel_requests(&self) -> Result<Vec<TaskId>> {
        let query = TaskQuery {
            statuses: vec![
                crate::model::TaskStatus::Assigned,
                crate::model::TaskStatus::Running,
            ],
            limit: 10_000,
            ..TaskQuery::default()
        };
        Ok(self
            .list(&query)
            .await?
            .into_iter()
            .filter(|t| t.cancel_requested)
            .map(|t| t.id)
            .collect())
    }
}

/// The attempt ledger: every change to an attempt is ONE conditional write keyed by the
/// task and the attempt's fencing token, and returns the task as written, so that the
/// master's memory is only ever updated from what the store holds.
#[async_trait]
pub trait AttemptLedger: Send + Sync {
    /// Assigns this queued task to `worker_id`: a new attempt with the next fencing token,
    /// status `assigned`. Fails with `IllegalTransition` when it is not queued (for example
    /// another master took it first).
    async fn assign(&self, id: TaskId, worker_id: &str, now: DateTime<Utc>) -> Result<Task>;

    /// Atomically takes the first queued task, in dispatch order, that is eligible for
    /// `req.worker_id` (pinned to it or to nobody), whose request fits `req.free`, and whose
    /// `not_before <= req.now`, and assigns it as `assign` does. `None` when there is none.
    async fn claim(&self, req: &ClaimRequest) -> Result<Option<Task>>;

    /// Applies `worker_id`'s report of the attempt holding `token` (events in ascending seq;
    /// the attempt must be that worker's, else `Invalid`):
    /// start, output (kept as that attempt's, bounded per task) and end, in one write at
    /// `now`, with the worker's times. Events already stored are skipped, so a repeat
    /// changes nothing; a report that skips events is `ReportGap` and changes nothing.
    /// `StaleToken` when a newer attempt exists, `AttemptOver` when the attempt ended,
    /// except for the late result of an attempt lost to silence (see `lifecycle`).
    async fn report(
        &self,
        id: TaskId,
        token: u64,
        worker_id: &str,
        events: Vec<ReportEvent>,
        now: DateTime<Utc>,
    ) -> Result<Applied>;

    /// The master's verdict on the live attempt `token`: `lost`, for `cause`; the task
    /// retries (by its lost budget) or ends as [`crate::retry::disposition`] decides.
    async fn lose(
        &self,
        id: TaskId,
        token: u64,
        cause: LostCause,
        now: DateTime<Utc>,
    ) -> Result<Task>;

    /// A user's cancel: a queued task becomes `cancelled` at once; an assigned or running one
    /// gets `cancel_requested = true` (its worker stops it and reports `cancelled`).
    /// A terminal task is an `IllegalTransition` to `cancelled`.
    async fn request_cancel(&self, id: TaskId, now: DateTime<Utc>) -> Result<Task>;
}

/// Task output (written by [`AttemptLedger::report`]).
#[async_trait]
pub trait LogStore: Send + Sync {
    /// Chunks with `seq > after` (all, including the seq-0 marker, when `after` is None),
    /// in seq order, at most `limit`. `NotFound` when the task does not exist.
    async fn read_logs(
        &self,
        id: TaskId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogChunk>>;
}

/// The worker registry.
#[async_trait]
pub trait WorkerStore: Send + Sync {
    /// Inserts or replaces a worker record.
    async fn upsert_worker(&self, worker: &WorkerRecord) -> Result<()>;

    /// Sets a known worker's health and (when given) its last heartbeat time.
    /// `UnknownWorker` when absent.
    async fn set_worker_health(
        &self,
        id: &str,
        health: WorkerHealth,
        last_heartbeat: Option<DateTime<Utc>>,
    ) -> Result<()>;

    /// One worker, `None` when unknown.
    async fn get_worker(&self, id: &str) -> Result<Option<WorkerRecord>>;

    /// Every known worker, by id.
    async fn list_workers(&self) -> Result<Vec<WorkerRecord>>;
}

/// Leadership among the masters that share the store (see [`crate::leader`]).
#[async_trait]
pub trait LeaderStore: Send + Sync {
    /// One round of the election for `me`, who holds the lease under epoch `held` when it
    /// believes it leads: renews it then; otherwise takes it when it is vacant, when it is
    /// `takeover` unchanged (the lease as `me` saw it a whole TTL ago), or when it is held
    /// under `me`'s id by an earlier run of `me`; a take raises the epoch. Records `me` as
    /// seen at `now`. Returns the lease as it is afterwards. A store that serves one master
    /// only (SQLite) holds an OS lock instead and refuses a second master with
    /// `StoreLocked`.
    async fn campaign(
        &self,
        me: &Candidate,
        held: Option<u64>,
        takeover: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Lease>;

    /// Gives the lease up (a clean shutdown), when `holder` still holds it under `epoch`:
    /// the next campaign of another master takes it at once.
    async fn resign(&self, holder: &str, epoch: u64) -> Result<()>;

    /// The lease, if any, and every master seen, by id.
    async fn group(&self) -> Result<(Option<Lease>, Vec<Member>)>;

    /// The lease alone, if any: what a standby watches between campaigns (one read).
    async fn lease(&self) -> Result<Option<Lease>> {
        Ok(self.group().await?.0)
    }

    /// This master no longer leads (its lease ran out by its own clock): the store refuses
    /// its leader-only writes from now on, until a campaign finds it leading again.
    fn stand_down(&self) {}
}

/// Users and the join token (auth). Only keyed hashes of tokens are ever stored.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Adds a user. `Invalid` when the name is malformed or taken, or the token hash is
    /// already another user's.
    async fn add_user(&self, user: &UserRecord) -> Result<()>;

    /// One user by name, `None` when unknown.
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>>;

    /// The user whose token hash is `token_hash`, `None` when no user has it.
    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<UserRecord>>;

    /// Every user, by name.
    async fn list_users(&self) -> Result<Vec<UserRecord>>;

    /// Removes a user; false when there was none.
    async fn remove_user(&self, name: &str) -> Result<bool>;

    /// Replaces a user's token hash (token rotation); false when the user is unknown.
    async fn set_user_token_hash(&self, name: &str, token_hash: &str) -> Result<bool>;

    /// Sets (or, with `None`, removes) a user's quota; false when the user is unknown.
    async fn set_user_quota(&self, name: &str, quota: Option<crate::quota::Quota>) -> Result<bool>;

    /// The hash of the worker join token, `None` until one is set.
    async fn join_token_hash(&self) -> Result<Option<String>>;

    /// Stores `token_hash` as the join token's hash. With `only_if_absent`, an existing
    /// hash is kept (several masters starting at once create one token, not several).
    /// True when this call wrote it.
    async fn set_join_token_hash(&self, token_hash: &str, only_if_absent: bool) -> Result<bool>;

    /// The join token replaced by the last rotation, while it is still accepted: its hash
    /// and the end of its grace. `None` when there is none (or it was never set).
    async fn previous_join_token(&self) -> Result<Option<(String, DateTime<Utc>)>>;

    /// Keeps `token_hash` (the join token being replaced) accepted until `until`.
    async fn set_previous_join_token(&self, token_hash: &str, until: DateTime<Utc>) -> Result<()>;
}

/// Cron schedules (`crate::schedule`), one record per name.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Adds a schedule; `ScheduleExists` when the name is taken.
    async fn add_schedule(&self, schedule: &Schedule) -> Result<()>;

    /// One schedule by name, `None` when unknown.
    async fn get_schedule(&self, name: &str) -> Result<Option<Schedule>>;

    /// Every schedule, by name.
    async fn list_schedules(&self) -> Result<Vec<Schedule>>;

    /// Writes `schedule` in place of the stored one only if that one's version is still
    /// `expected` (compare-and-set); false when it is not (changed or removed meanwhile).
    async fn replace_schedule(&self, schedule: &Schedule, expected: u64) -> Result<bool>;

    /// Removes a schedule (its runs stay); false when there was none.
    async fn remove_schedule(&self, name: &str) -> Result<bool>;
}

/// Attempts still holding resources (assigned or running), used to rebuild reservations.
pub fn live_attempt(task: &Task) -> Option<&Attempt> {
    if task.status.is_active() {
        task.attempts.last()
    } else {
        None
    }
}
