//! The embedded backend: one SQLite file in WAL mode with `synchronous = FULL`, so a call
//! that returns `Ok` survives a crash or power loss.
//!
//! - [`writer`]: one thread owns the write connection and group-commits every pending
//!   command in one transaction, each in its own savepoint.
//! - [`readers`]: a pool of read connections used from tokio's blocking pool.
//! - [`schema`]: tables, indexes, connection settings, row encoding.
//! - [`body`]: a task's `body` column, compact JSON, and reading older bodies.
//! - [`ops`], [`queries`], [`logs`]: the SQL of writes, reads, and bounded task output.
//! - [`users`]: API users and the join token hash (auth).
//! - [`lock`]: one master per file, by an OS lock (the store's leadership).
//!
//! No call blocks the async runtime: writes wait on a channel, reads on `spawn_blocking`.

mod body;
mod lock;
mod logs;
mod ops;
mod queries;
mod readers;
mod schedules;
mod schema;
mod users;
mod writer;

use std::path::Path;
use std::sync::Arc;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::array::{ArrayEnqueued, Elements};
use crate::error::Result;
use crate::leader::{Candidate, Lease, Member};
use crate::model::{
    ClaimRequest, Enqueued, LogChunk, NewTask, QueueStats, Task, TaskId, TaskStatus, WorkerHealth,
    WorkerRecord,
};
use crate::query::TaskQuery;
use crate::report::{Applied, LostCause, ReportEvent};
use crate::schedule::Schedule;
use crate::store::{
    AttemptLedger, LeaderStore, LogStore, QueueStore, QueuedTask, ScheduleStore, StoreOptions,
    TaskStore, UserStore, WorkerStore,
};
use crate::users::UserRecord;

pub use lock::MasterLock;
use readers::Readers;
use writer::Writer;

/// The embedded store. Cheap to share behind an `Arc`; several processes may open the same
/// file (SQLite's locking serialises their writes).
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    opts: StoreOptions,
    path: std::path::PathBuf,
    /// Held once a master campaigned: the file serves that master only.
    master: std::sync::Mutex<Option<(MasterLock, Lease)>>,
}

impl SqliteStore {
    /// Opens the file at `path`, creating it, its parent directory and the schema when
    /// absent.
    pub async fn open(path: &Path, opts: StoreOptions) -> Result<Self> {
        let owned = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || schema::open_writer(&owned))
            .await
            .map_err(|e| schema::backend_error(format!("open task failed: {e}")))??;
        tracing::debug!(path = %path.display(), "sqlite store open");
        Ok(SqliteStore {
            writer: Writer::spawn(conn)?,
            readers: Readers::new(path.to_path_buf()),
            opts,
            path: path.to_path_buf(),
            master: std::sync::Mutex::new(None),
        })
    }
}

impl QueueStore for SqliteStore {
    fn backend_name(&self) -> &'static str {
        schema::BACKEND
    }
}

#[async_trait]
impl TaskStore for SqliteStore {
    // Creation times are taken in the writer thread, where ids are made too, so that
    // both rise together and "oldest first" means the same by either.
    async fn enqueue(&self, task: NewTask) -> Result<Enqueued> {
        let cap = self.opts.max_queued;
        self.writer
            .run(move |c| ops::enqueue(c, task, Utc::now(), cap))
            .await
    }

    async fn enqueue_batch(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>> {
        let cap = self.opts.max_queued;
        self.writer
            .run(move |c| ops::enqueue_batch(c, tasks, Utc::now(), cap))
            .await
    }

    // Each element is made in the writer as it is written, never all at once.
    async fn enqueue_array(&self, elements: Elements) -> Result<ArrayEnqueued> {
        let cap = self.opts.max_queued;
        self.writer
            .run(move |c| {
                let mut made = ArrayEnqueued::new(elements.id());
                ops::enqueue_each(c, elements, Utc::now(), cap, |e| made.add(e))?;
                Ok(made)
            })
            .await
    }

    async fn get(&self, id: TaskId) -> Result<Task> {
        self.readers.run(move |c| schema::load_task(c, id)).await
    }

    async fn resolve_prefix(&self, prefix: &str) -> Result<TaskId> {
        let prefix = prefix.to_string();
        self.readers
            .run(move |c| queries::resolve_prefix(c, &prefix))
            .await
    }

    async fn list(&self, query: &TaskQuery) -> Result<Vec<Task>> {
        let query = query.clone();
        self.readers.run(move |c| queries::list(c, &query)).await
    }

    async fn queued(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Task>> {
        self.readers
            .run(move |c| queries::queued(c, now, limit))
            .await
    }

    async fn queued_asks(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<QueuedTask>> {
        self.readers
            .run(move |c| queries::queued_asks_of(c, now, None, limit))
            .await
    }

    async fn delayed_times(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DateTime<Utc>>> {
        self.readers
            .run(move |c| queries::delayed_times(c, now, until, limit))
            .await
    }

    async fn queued_submitters(&self) -> Result<Vec<Option<String>>> {
        self.readers.run(queries::queued_submitters).await
    }

    async fn queued_asks_of(
        &self,
        now: DateTime<Utc>,
        submitter: Option<&str>,
        limit: usize,
    ) -> Result<Vec<QueuedTask>> {
        let of = submitter.unwrap_or_default().to_string();
        self.readers
            .run(move |c| queries::queued_asks_of(c, now, Some(&of), limit))
            .await
    }

    async fn stats(&self, now: DateTime<Utc>) -> Result<QueueStats> {
        self.readers.run(move |c| queries::stats(c, now)).await
    }

    async fn array_counts(&self, id: &str) -> Result<BTreeMap<TaskStatus, u64>> {
        let id = id.to_string();
        self.readers
            .run(move |c| queries::array_counts(c, &id))
            .await
    }

    async fn settle_waiting(
        &self,
        id: TaskId,
        res: crate::deps::Resolution,
        now: DateTime<Utc>,
    ) -> Result<Task> {
        self.writer
            .run(move |c| ops::settle_waiting(c, id, &res, now))
            .await
    }

    async fn recent_times(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::history::TaskTimes>> {
        self.readers
            .run(move |c| queries::recent_times(c, since, limit))
            .await
    }
}

#[async_trait]
impl AttemptLedger for SqliteStore {
    async fn assign(&self, id: TaskId, worker_id: &str, now: DateTime<Utc>) -> Result<Task> {
        let worker_id = worker_id.to_string();
        self.writer
            .run(move |c| ops::assign(c, id, &worker_id, now))
            .await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Option<Task>> {
        let req = req.clone();
        self.writer.run(move |c| ops::claim(c, &req)).await
    }

    async fn report(
        &self,
        id: TaskId,
        token: u64,
        worker_id: &str,
        events: Vec<ReportEvent>,
        now: DateTime<Utc>,
    ) -> Result<Applied> {
        let max = self.opts.max_log_bytes_per_task;
        let worker = worker_id.to_string();
        self.writer
            .run(move |c| ops::report(c, id, token, &worker, &events, now, max))
            .await
    }

    async fn lose(
        &self,
        id: TaskId,
        token: u64,
        cause: LostCause,
        now: DateTime<Utc>,
    ) -> Result<Task> {
        self.writer
            .run(move |c| ops::lose(c, id, token, &cause, now))
            .await
    }

    async fn request_cancel(&self, id: TaskId, now: DateTime<Utc>) -> Result<Task> {
        self.writer
            .run(move |c| ops::request_cancel(c, id, now))
            .await
    }
}

#[async_trait]
impl LogStore for SqliteStore {
    async fn read_logs(
        &self,
        id: TaskId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogChunk>> {
        self.readers
            .run(move |c| logs::read(c, id, after, limit))
            .await
    }
}

#[async_trait]
impl WorkerStore for SqliteStore {
    async fn upsert_worker(&self, worker: &WorkerRecord) -> Result<()> {
        let worker = worker.clone();
        self.writer
            .run(move |c| ops::upsert_worker(c, &worker))
            .await
    }

    async fn set_worker_health(
        &self,
        id: &str,
        health: WorkerHealth,
        last_heartbeat: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let id = id.to_string();
        self.writer
            .run(move |c| ops::set_worker_health(c, &id, health, last_heartbeat))
            .await
    }

    async fn get_worker(&self, id: &str) -> Result<Option<WorkerRecord>> {
        let id = id.to_string();
        self.readers.run(move |c| queries::get_worker(c, &id)).await
    }

    async fn list_workers(&self) -> Result<Vec<WorkerRecord>> {
        self.readers.run(queries::list_workers).await
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn add_schedule(&self, schedule: &Schedule) -> Result<()> {
        let s = schedule.clone();
        self.writer.run(move |c| schedules::add(c, &s)).await
    }

    async fn get_schedule(&self, name: &str) -> Result<Option<Schedule>> {
        let name = name.to_string();
        self.readers.run(move |c| schedules::get(c, &name)).await
    }

    async fn list_schedules(&self) -> Result<Vec<Schedule>> {
        self.readers.run(schedules::list).await
    }

    async fn replace_schedule(&self, schedule: &Schedule, expected: u64) -> Result<bool> {
        let s = schedule.clone();
        self.writer
            .run(move |c| schedules::replace(c, &s, expected))
            .await
    }

    async fn remove_schedule(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.writer.run(move |c| schedules::remove(c, &name)).await
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn add_user(&self, user: &UserRecord) -> Result<()> {
        let user = user.clone();
        self.writer.run(move |c| users::add(c, &user)).await
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        let name = name.to_string();
        self.readers.run(move |c| users::get(c, &name)).await
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<UserRecord>> {
        let hash = token_hash.to_string();
        self.readers
            .run(move |c| users::by_token_hash(c, &hash))
            .await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        self.readers.run(users::list).await
    }

    async fn remove_user(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.writer.run(move |c| users::remove(c, &name)).await
    }

    async fn set_user_token_hash(&self, name: &str, token_hash: &str) -> Result<bool> {
        let (name, hash) = (name.to_string(), token_hash.to_string());
        self.writer
            .run(move |c| users::set_token_hash(c, &name, &hash))
            .await
    }

    async fn set_user_quota(&self, name: &str, quota: Option<crate::quota::Quota>) -> Result<bool> {
        let name = name.to_string();
        self.writer
            .run(move |c| users::set_quota(c, &name, quota))
            .await
    }

    async fn join_token_hash(&self) -> Result<Option<String>> {
        self.readers.run(users::join_token_hash).await
    }

    async fn set_join_token_hash(&self, token_hash: &str, only_if_absent: bool) -> Result<bool> {
        let hash = token_hash.to_string();
        self.writer
            .run(move |c| users::set_join_token_hash(c, &hash, only_if_absent))
            .await
    }

    async fn previous_join_token(&self) -> Result<Option<(String, DateTime<Utc>)>> {
        self.readers.run(users::previous_join_token).await
    }

    async fn set_previous_join_token(&self, token_hash: &str, until: DateTime<Utc>) -> Result<()> {
        let hash = token_hash.to_string();
        self.writer
            .run(move |c| users::set_previous_join_token(c, &hash, until))
            .await
    }
}

/// A SQLite file serves one master: its first campaign takes the file's OS lock and it
/// leads from then on (epoch 1); another master's campaign is `StoreLocked`, naming it.
#[async_trait]
impl LeaderStore for SqliteStore {
    async fn campaign(
        &self,
        me: &Candidate,
        _held: Option<u64>,
        _takeover: Option<&Lease>,
        _now: DateTime<Utc>,
    ) -> Result<Lease> {
        let mut m = self.master.lock().unwrap_or_else(|e| e.into_inner());
        if m.is_none() {
            let lock = MasterLock::acquire(&self.path, &format!("master {} at {}", me.id, me.url))?;
            let lease = Lease {
                holder: me.id.clone(),
                url: me.url.clone(),
                epoch: 1,
                renewals: 0,
                sole: true,
            };
            *m = Some((lock, lease));
        }
        let (_, lease) = m.as_mut().expect("set above");
        lease.renewals += 1;
        Ok(lease.clone())
    }

    async fn resign(&self, holder: &str, _epoch: u64) -> Result<()> {
        let mut m = self.master.lock().unwrap_or_else(|e| e.into_inner());
        if m.as_ref().is_some_and(|(_, l)| l.holder == holder) {
            *m = None;
        }
        Ok(())
    }

    async fn group(&self) -> Result<(Option<Lease>, Vec<Member>)> {
        let m = self.master.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match m.as_ref() {
            Some((_, l)) => (
                Some(l.clone()),
                vec![Member {
                    id: l.holder.clone(),
                    url: l.url.clone(),
                    last_seen: Utc::now(),
                }],
            ),
            None => (None, Vec::new()),
        })
    }
}
