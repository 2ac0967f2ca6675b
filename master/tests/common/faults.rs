//! A store that fails or pauses on demand, around a real SQLite store: the faults of a
//! production store (a MongoDB election, a slow primary, a write that races another)
//! made to happen at the worst moment, which a test picks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cloudai_queue::*;
use tokio::sync::oneshot;

/// A pause of one call: the test learns when it is entered and says when it may go on.
struct Gate {
    entered: Option<oneshot::Sender<()>>,
    release: oneshot::Receiver<()>,
}

/// The wrapper. Operations are named by their trait method.
pub struct FaultStore {
    inner: Arc<dyn QueueStore>,
    failures: Mutex<HashMap<&'static str, u32>>,
    calls: Mutex<HashMap<&'static str, u32>>,
    gates: Mutex<HashMap<(&'static str, TaskId), Gate>>,
    down: AtomicBool,
    hung: AtomicBool,
}

impl FaultStore {
    pub fn new(inner: Arc<dyn QueueStore>) -> Arc<FaultStore> {
        Arc::new(FaultStore {
            inner,
            failures: Mutex::default(),
            calls: Mutex::default(),
            gates: Mutex::default(),
            down: AtomicBool::new(false),
            hung: AtomicBool::new(false),
        })
    }

    /// While down, every call fails at once with a retryable error (a store that refuses
    /// connections).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// While hung, every call waits until it is not (a store that accepts connections and
    /// never answers).
    pub fn set_hung(&self, hung: bool) {
        self.hung.store(hung, Ordering::SeqCst);
    }

    /// The next `times` calls of `op` fail with a retryable backend error.
    pub fn fail(&self, op: &'static str, times: u32) {
        self.failures.lock().unwrap().insert(op, times);
    }

    /// How many calls of `op` were made (failed ones included).
    pub fn calls(&self, op: &'static str) -> u32 {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    /// The next call of `op` about `task` waits: the first receiver resolves when it is
    /// entered, and it goes on when the sender is used (or dropped).
    pub fn hold(
        &self,
        op: &'static str,
        task: TaskId,
    ) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (entered_tx, entered) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        self.gates.lock().unwrap().insert(
            (op, task),
            Gate {
                entered: Some(entered_tx),
                release: release_rx,
            },
        );
        (entered, release)
    }

    async fn check(&self, op: &'static str, task: Option<TaskId>) -> Result<()> {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
        while self.hung.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(QueueError::Backend {
                backend: "sqlite",
                message: format!("injected outage in {op}"),
                retryable: true,
            });
        }
        let gate = task.and_then(|t| self.gates.lock().unwrap().remove(&(op, t)));
        if let Some(mut g) = gate {
            if let Some(e) = g.entered.take() {
                let _ = e.send(());
            }
            let _ = g.release.await;
        }
        let mut f = self.failures.lock().unwrap();
        match f.get_mut(op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(QueueError::Backend {
                    backend: "sqlite",
                    message: format!("injected fault in {op}"),
                    retryable: true,
                })
            }
            _ => Ok(()),
        }
    }
}

impl QueueStore for FaultStore {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    fn commands_sent(&self) -> Vec<(String, u64)> {
        self.inner.commands_sent()
    }
}

#[async_trait]
impl ScheduleStore for FaultStore {
    async fn add_schedule(&self, s: &cloudai_queue::schedule::Schedule) -> Result<()> {
        self.check("add_schedule", None).await?;
        self.inner.add_schedule(s).await
    }
    async fn get_schedule(&self, name: &str) -> Result<Option<cloudai_queue::schedule::Schedule>> {
        self.check("get_schedule", None).await?;
        self.inner.get_schedule(name).await
    }
    async fn list_schedules(&self) -> Result<Vec<cloudai_queue::schedule::Schedule>> {
        self.check("list_schedules", None).await?;
        self.inner.list_schedules().await
    }
    async fn replace_schedule(
        &self,
        s: &cloudai_queue::schedule::Schedule,
        expected: u64,
    ) -> Result<bool> {
        self.check("replace_schedule", None).await?;
        self.inner.replace_schedule(s, expected).await
    }
    async fn remove_schedule(&self, name: &str) -> Result<bool> {
        self.check("remove_schedule", None).await?;
        self.inner.remove_schedule(name).await
    }
}

#[async_trait]
impl TaskStore for FaultStore {
    async fn enqueue(&self, task: NewTask) -> Result<Enqueued> {
        self.check("enqueue", None).await?;
        self.inner.enqueue(task).await
    }
    async fn enqueue_batch(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>> {
        self.check("enqueue_batch", None).await?;
        self.inner.enqueue_batch(tasks).await
    }
    async fn get(&self, id: TaskId) -> Result<Task> {
        self.check("get", Some(id)).await?;
        self.inner.get(id).await
    }
    async fn resolve_prefix(&self, prefix: &str) -> Result<TaskId> {
        self.check("resolve_prefix", None).await?;
        self.inner.resolve_prefix(prefix).await
    }
    async fn list(&self, query: &TaskQuery) -> Result<Vec<Task>> {
        self.check("list", None).await?;
        self.inner.list(query).await
    }
    async fn queued(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Task>> {
        self.check("queued", None).await?;
        self.inner.queued(now, limit).await
    }
    async fn delayed_times(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DateTime<Utc>>> {
        self.check("delayed_times", None).await?;
        self.inner.delayed_times(now, until, limit).await
    }
    async fn queued_asks(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<QueuedTask>> {
        self.check("queued_asks", None).await?;
        self.inner.queued_asks(now, limit).await
    }
    async fn queued_submitters(&self) -> Result<Vec<Option<String>>> {
        self.check("queued_submitters", None).await?;
        self.inner.queued_submitters().await
    }
    async fn queued_asks_of(
        &self,
        now: DateTime<Utc>,
        submitter: Option<&str>,
        limit: usize,
    ) -> Result<Vec<QueuedTask>> {
        self.check("queued_asks", None).await?;
        self.inner.queued_asks_of(now, submitter, limit).await
    }
    async fn stats(&self, now: DateTime<Utc>) -> Result<QueueStats> {
        self.check("stats", None).await?;
        self.inner.stats(now).await
    }
    async fn array_counts(&self, id: &str) -> Result<std::collections::BTreeMap<TaskStatus, u64>> {
        self.check("array_counts", None).await?;
        self.inner.array_counts(id).await
    }
    async fn settle_waiting(
        &self,
        id: TaskId,
        res: cloudai_queue::deps::Resolution,
        now: DateTime<Utc>,
    ) -> Result<Task> {
        self.check("settle_waiting", Some(id)).await?;
        self.inner.settle_waiting(id, res, now).await
    }
}

#[async_trait]
impl AttemptLedger for FaultStore {
    async fn assign(&self, id: TaskId, worker_id: &str, now: DateTime<Utc>) -> Result<Task> {
        self.check("assign", Some(id)).await?;
        self.inner.assign(id, worker_id, now).await
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<Option<Task>> {
        self.check("claim", None).await?;
        self.inner.claim(req).await
    }
    async fn report(
        &self,
        id: TaskId,
        token: u64,
        worker_id: &str,
        events: Vec<ReportEvent>,
        now: DateTime<Utc>,
    ) -> Result<Applied> {
        self.check("report", Some(id)).await?;
        self.inner.report(id, token, worker_id, events, now).await
    }
    async fn lose(
        &self,
        id: TaskId,
        token: u64,
        cause: LostCause,
        now: DateTime<Utc>,
    ) -> Result<Task> {
        self.check("lose", Some(id)).await?;
        self.inner.lose(id, token, cause, now).await
    }
    async fn request_cancel(&self, id: TaskId, now: DateTime<Utc>) -> Result<Task> {
        self.check("request_cancel", None).await?;
        self.inner.request_cancel(id, now).await
    }
}

#[async_trait]
impl LogStore for FaultStore {
    async fn read_logs(
        &self,
        id: TaskId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogChunk>> {
        self.check("read_logs", None).await?;
        self.inner.read_logs(id, after, limit).await
    }
}

#[async_trait]
impl WorkerStore for FaultStore {
    async fn upsert_worker(&self, worker: &WorkerRecord) -> Result<()> {
        self.check("upsert_worker", None).await?;
        self.inner.upsert_worker(worker).await
    }
    async fn set_worker_health(
        &self,
        id: &str,
        health: WorkerHealth,
        last_heartbeat: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.inner
            .set_worker_health(id, health, last_heartbeat)
            .await
    }
    async fn get_worker(&self, id: &str) -> Result<Option<WorkerRecord>> {
        self.inner.get_worker(id).await
    }
    async fn list_workers(&self) -> Result<Vec<WorkerRecord>> {
        self.check("list_workers", None).await?;
        self.inner.list_workers().await
    }
}

#[async_trait]
impl UserStore for FaultStore {
    async fn add_user(&self, user: &UserRecord) -> Result<()> {
        self.inner.add_user(user).await
    }
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.inner.get_user(name).await
    }
    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<UserRecord>> {
        self.inner.user_by_token_hash(token_hash).await
    }
    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        self.inner.list_users().await
    }
    async fn remove_user(&self, name: &str) -> Result<bool> {
        self.inner.remove_user(name).await
    }
    async fn set_user_token_hash(&self, name: &str, token_hash: &str) -> Result<bool> {
        self.inner.set_user_token_hash(name, token_hash).await
    }

    async fn set_user_quota(
        &self,
        name: &str,
        quota: Option<cloudai_queue::Quota>,
    ) -> Result<bool> {
        self.inner.set_user_quota(name, quota).await
    }
    async fn join_token_hash(&self) -> Result<Option<String>> {
        self.inner.join_token_hash().await
    }
    async fn set_join_token_hash(&self, token_hash: &str, only_if_absent: bool) -> Result<bool> {
        self.inner
            .set_join_token_hash(token_hash, only_if_absent)
            .await
    }
    async fn previous_join_token(&self) -> Result<Option<(String, DateTime<Utc>)>> {
        self.inner.previous_join_token().await
    }
    async fn set_previous_join_token(&self, token_hash: &str, until: DateTime<Utc>) -> Result<()> {
        self.inner.set_previous_join_token(token_hash, until).await
    }
}

/// Leadership is passed through untouched: the faults under test are those of the
/// attempt writes (a SQLite store's lease is its file lock, which no outage takes away).
#[async_trait]
impl LeaderStore for FaultStore {
    async fn campaign(
        &self,
        me: &Candidate,
        held: Option<u64>,
        takeover: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Lease> {
        self.inner.campaign(me, held, takeover, now).await
    }
    async fn resign(&self, holder: &str, epoch: u64) -> Result<()> {
        self.inner.resign(holder, epoch).await
    }
    async fn group(&self) -> Result<(Option<Lease>, Vec<Member>)> {
        self.inner.group().await
    }
    fn stand_down(&self) {
        self.inner.stand_down()
    }
}
