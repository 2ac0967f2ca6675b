//! The MongoDB backend: cloudai's production store, shared by several masters through one
//! replica set. `database/schema.md` documents every collection, field and index.
//!
//! - [`doc`]: BSON shapes of tasks, attempts, workers and log chunks.
//! - [`exec`]: transient-error classification, bounded retries, transactions.
//! - [`indexes`]: the indexes created at connect, and the hints the queries use.
//! - `tasks`: enqueue, reads and listing.
//! - `asks`: the dispatcher's reads of queued tasks, projected and decoded raw.
//! - `transitions`: claim, `lost`, cancel (conditional on status and token).
//! - `batch`: assigns and reports under group commit, many in one transaction.
//! - `logs`: bounded, chunked task output, appended inside a report's transaction.
//! - `registry`: worker records and queue statistics.
//! - `users`: API users and the join token hash (auth); `schedules`: cron schedules.
//! - `leader`: the leader lease and the masters seen; the epoch check of leader writes.
//! - `monitor`: the commands the client sends, counted by name (command monitoring).

mod asks;
mod batch;
pub(crate) mod doc;
pub(crate) mod exec;
pub mod indexes;
mod leader;
mod logs;
mod monitor;
mod registry;
mod schedules;
mod tasks;
mod transitions;
mod users;

use std::collections::BTreeMap;

use async_trait::async_trait;
use bson::Document;
use chrono::{DateTime, Utc};
use mongodb::options::{ClientOptions, ReadConcern, WriteConcern};
use mongodb::{Client, Collection, Database};

use crate::error::{QueueError, Result};
use crate::leader::{Candidate, Lease, Member};
use crate::model::{
    ClaimRequest, Enqueued, LogChunk, NewTask, QueueStats, Task, TaskId, TaskStatus, WorkerHealth,
    WorkerRecord,
};
use crate::query::TaskQuery;
use crate::report::{Applied, LostCause, ReportEvent};
use crate::schedule::Schedule;
use crate::store::{
    AttemptLedger, LeaderStore, LogStore, QueueStore, ScheduleStore, StoreOptions, TaskStore,
    UserStore, WorkerStore,
};
use crate::users::UserRecord;

/// Database used when the URI names none.
pub const DEFAULT_DATABASE: &str = "cloudai";

/// Collection names, as in the CloudAI schema users may already have.
pub mod names {
    /// One document per task.
    pub const TASKS: &str = "TASKS";
    /// One document per worker.
    pub const WORKER_REGISTRY: &str = "WORKER_REGISTRY";
    /// One document per attempt.
    pub const ASSIGNMENTS: &str = "ASSIGNMENTS";
    /// One document per finished task.
    pub const RESULTS: &str = "RESULTS";
    /// One document per API user: role and the keyed hash of its token.
    pub const USERS: &str = "USERS";
    /// Cluster-wide settings, e.g. the worker join token's hash.
    pub const SETTINGS: &str = "SETTINGS";
    /// Chunks of task output.
    pub const LOGS: &str = "LOGS";
    /// One document per master sharing the store: its URL and when it was last seen.
    pub const MASTERS: &str = "MASTERS";
    /// One document per cron schedule.
    pub const SCHEDULES: &str = "SCHEDULES";
}

/// The MongoDB store. Cheap to share: the driver's client pools connections.
pub struct MongoStore {
    client: Client,
    db: Database,
    tasks: Collection<Document>,
    workers: Collection<Document>,
    assignments: Collection<Document>,
    results: Collection<Document>,
    logs: Collection<Document>,
    users: Collection<Document>,
    settings: Collection<Document>,
    masters: Collection<Document>,
    schedules: Collection<Document>,
    opts: StoreOptions,
    /// Commands sent, by name.
    commands: std::sync::Arc<monitor::CommandCounts>,
    /// The epoch this store handle's master leads under, as its last campaign found:
    /// checked by every write only the leader may make (see `leader`).
    fence: std::sync::atomic::AtomicU64,
    /// Concurrent assigns, committed together.
    assign_group: crate::group::Group<batch::AssignReq, Result<Task>>,
    /// Concurrent reports, committed together.
    report_group: crate::group::Group<batch::ReportReq, Result<Applied>>,
}

impl MongoStore {
    /// Connects to the deployment `uri` names and creates the indexes (idempotently).
    ///
    /// The database is the URI's path (`mongodb://h/prod` uses `prod`), `cloudai` when absent.
    /// Unless the URI says otherwise (`w=`, `readConcernLevel=`, `retryWrites=`), writes wait
    /// for a majority, reads see majority-committed data and retryable writes are on.
    /// `enqueue_batch` and every status change use transactions, which MongoDB offers on
    /// replica sets and sharded clusters only.
    pub async fn connect(uri: &str, opts: StoreOptions) -> Result<MongoStore> {
        let mut co = ClientOptions::parse(uri)
            .await
            .map_err(|e| QueueError::InvalidStoreUri {
                uri: uri.to_string(),
                reason: e.to_string(),
            })?;
        co.write_concern.get_or_insert_with(WriteConcern::majority);
        co.read_concern.get_or_insert_with(ReadConcern::majority);
        co.retry_writes.get_or_insert(true);
        co.app_name.get_or_insert_with(|| "cloudai".into());
        let commands = std::sync::Arc::new(monitor::CommandCounts::default());
        if opts.count_commands {
            co.command_event_handler = Some(commands.handler());
        }
        let db_name = co
            .default_database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.into());
        let client = Client::with_options(co).map_err(|e| exec::backend_error(&e))?;
        let db = client.database(&db_name);
        let store = MongoStore {
            tasks: db.collection(names::TASKS),
            workers: db.collection(names::WORKER_REGISTRY),
            assignments: db.collection(names::ASSIGNMENTS),
            results: db.collection(names::RESULTS),
            logs: db.collection(names::LOGS),
            users: db.collection(names::USERS),
            settings: db.collection(names::SETTINGS),
            masters: db.collection(names::MASTERS),
            schedules: db.collection(names::SCHEDULES),
            fence: std::sync::atomic::AtomicU64::new(leader::UNFENCED),
            assign_group: crate::group::Group::new(batch::MAX_BATCH),
            report_group: crate::group::Group::new(batch::MAX_BATCH),
            commands,
            client,
            db,
            opts,
        };
        indexes::ensure(&store.db).await?;
        tracing::info!(database = %db_name, "mongodb store ready");
        Ok(store)
    }

    /// The database this store uses, for tools and tests (e.g. `explain`).
    pub fn database(&self) -> &Database {
        &self.db
    }
}

impl QueueStore for MongoStore {
    fn backend_name(&self) -> &'static str {
        "mongodb"
    }

    fn commands_sent(&self) -> Vec<(String, u64)> {
        self.commands.snapshot()
    }
}

#[async_trait]
impl TaskStore for MongoStore {
    async fn enqueue(&self, task: NewTask) -> Result<Enqueued> {
        self.enqueue_one(task).await
    }

    async fn enqueue_batch(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>> {
        self.enqueue_many(tasks).await
    }

    async fn get(&self, id: TaskId) -> Result<Task> {
        self.get_task(id).await
    }

    async fn resolve_prefix(&self, prefix: &str) -> Result<TaskId> {
        self.resolve(prefix).await
    }

    async fn list(&self, query: &TaskQuery) -> Result<Vec<Task>> {
        self.list_tasks(query).await
    }

    async fn queued(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Task>> {
        self.queued_tasks(now, limit).await
    }

    async fn delayed_times(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DateTime<Utc>>> {
        self.delayed_due(now, until, limit).await
    }

    async fn queued_submitters(&self) -> Result<Vec<Option<String>>> {
        self.queued_submitter_names().await
    }

    async fn queued_asks(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::store::QueuedTask>> {
        self.queued_asks_by(now, None, limit).await
    }

    async fn queued_asks_of(
        &self,
        now: DateTime<Utc>,
        submitter: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::store::QueuedTask>> {
        self.queued_asks_by(now, Some(submitter), limit).await
    }

    async fn stats(&self, now: DateTime<Utc>) -> Result<QueueStats> {
        self.queue_stats(now).await
    }

    async fn array_counts(&self, id: &str) -> Result<BTreeMap<TaskStatus, u64>> {
        self.count_array(id).await
    }

    async fn settle_waiting(
        &self,
        id: TaskId,
        res: crate::deps::Resolution,
        now: DateTime<Utc>,
    ) -> Result<Task> {
        self.end_waiting(id, res, now).await
    }

    async fn recent_times(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::history::TaskTimes>> {
        self.times_since(since, limit).await
    }

    async fn cancel_requests(&self) -> Result<Vec<TaskId>> {
        self.pending_cancels().await
    }
}

#[async_trait]
impl AttemptLedger for MongoStore {
    async fn assign(&self, id: TaskId, worker_id: &str, now: DateTime<Utc>) -> Result<Task> {
        self.assign_task(id, worker_id, now).await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Option<Task>> {
        self.claim_task(req).await
    }

    async fn report(
        &self,
        id: TaskId,
        token: u64,
        worker_id: &str,
        events: Vec<ReportEvent>,
        now: DateTime<Utc>,
    ) -> Result<Applied> {
        self.report_attempt(id, token, worker_id, events, now).await
    }

    async fn lose(
        &self,
        id: TaskId,
        token: u64,
        cause: LostCause,
        now: DateTime<Utc>,
    ) -> Result<Task> {
        self.lose_attempt(id, token, cause, now).await
    }

    async fn request_cancel(&self, id: TaskId, now: DateTime<Utc>) -> Result<Task> {
        self.cancel(id, now).await
    }
}

#[async_trait]
impl LogStore for MongoStore {
    async fn read_logs(
        &self,
        id: TaskId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogChunk>> {
        self.read(id, after, limit).await
    }
}

#[async_trait]
impl WorkerStore for MongoStore {
    async fn upsert_worker(&self, worker: &WorkerRecord) -> Result<()> {
        self.put_worker(worker).await
    }

    async fn set_worker_health(
        &self,
        id: &str,
        health: WorkerHealth,
        last_heartbeat: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.set_health(id, health, last_heartbeat).await
    }

    async fn get_worker(&self, id: &str) -> Result<Option<WorkerRecord>> {
        self.find_worker(id).await
    }

    async fn list_workers(&self) -> Result<Vec<WorkerRecord>> {
        self.all_workers().await
    }
}

#[async_trait]
impl ScheduleStore for MongoStore {
    async fn add_schedule(&self, schedule: &Schedule) -> Result<()> {
        self.insert_schedule(schedule).await
    }

    async fn get_schedule(&self, name: &str) -> Result<Option<Schedule>> {
        self.schedule_named(name).await
    }

    async fn list_schedules(&self) -> Result<Vec<Schedule>> {
        self.all_schedules().await
    }

    async fn replace_schedule(&self, schedule: &Schedule, expected: u64) -> Result<bool> {
        self.cas_schedule(schedule, expected).await
    }

    async fn remove_schedule(&self, name: &str) -> Result<bool> {
        self.delete_schedule(name).await
    }
}

#[async_trait]
impl UserStore for MongoStore {
    async fn add_user(&self, user: &UserRecord) -> Result<()> {
        self.insert_user(user).await
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.user_named(name).await
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<UserRecord>> {
        self.user_with_hash(token_hash).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        self.all_users().await
    }

    async fn remove_user(&self, name: &str) -> Result<bool> {
        self.delete_user(name).await
    }

    async fn set_user_token_hash(&self, name: &str, token_hash: &str) -> Result<bool> {
        self.replace_user_hash(name, token_hash).await
    }

    async fn set_user_quota(&self, name: &str, quota: Option<crate::quota::Quota>) -> Result<bool> {
        self.replace_user_quota(name, quota).await
    }

    async fn join_token_hash(&self) -> Result<Option<String>> {
        self.stored_join_hash().await
    }

    async fn set_join_token_hash(&self, token_hash: &str, only_if_absent: bool) -> Result<bool> {
        self.store_join_hash(token_hash, only_if_absent).await
    }

    async fn previous_join_token(&self) -> Result<Option<(String, DateTime<Utc>)>> {
        self.stored_previous_join().await
    }

    async fn set_previous_join_token(&self, token_hash: &str, until: DateTime<Utc>) -> Result<()> {
        self.store_previous_join(token_hash, until).await
    }
}

#[async_trait]
impl LeaderStore for MongoStore {
    async fn campaign(
        &self,
        me: &Candidate,
        held: Option<u64>,
        takeover: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Lease> {
        self.campaign_once(me, held, takeover, now).await
    }

    async fn resign(&self, holder: &str, epoch: u64) -> Result<()> {
        self.resign_lease(holder, epoch).await
    }

    async fn group(&self) -> Result<(Option<Lease>, Vec<Member>)> {
        self.leader_group().await
    }

    async fn lease(&self) -> Result<Option<Lease>> {
        self.read_lease().await
    }

    fn stand_down(&self) {
        MongoStore::stand_down(self)
    }
}
