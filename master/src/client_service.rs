//! `ClientService`: what the CLI calls (PROTOCOL.md, "ClientService").

use std::pin::Pin;
use std::sync::Arc;

use chrono::Utc;
use cloudai_proto::{convert, pb};
use cloudai_queue::{LogStream, QueueError, TaskId, TaskQuery, TaskSpec};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::{convert_status, missing, status, within};
use crate::limits::EnqueueLimits;
use crate::shared::Shared;
use crate::wire;

/// Most tasks one `ListTasks` page returns.
pub const MAX_LIST_LIMIT: usize = 1000;
/// Log chunks read from the store per step of `StreamLogs`.
const LOG_PAGE: usize = 256;
/// A follower re-checks the store at least this often even without a wake-up.
const FOLLOW_BACKSTOP: std::time::Duration = std::time::Duration::from_secs(5);
/// The same on a master that does not lead: it hears of no report, so it reads the store.
const FOLLOW_POLL_STANDBY: std::time::Duration = std::time::Duration::from_millis(500);

/// The client-facing service.
pub struct ClientSvc {
    pub(crate) shared: Arc<Shared>,
    pub(crate) limits: EnqueueLimits,
}

impl ClientSvc {
    /// A service over the master's shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        let limits = EnqueueLimits::new(&shared.config);
        ClientSvc { shared, limits }
    }

    /// Wire spec → domain spec. Array membership is the master's to give (EnqueueArray).
    pub(crate) fn spec(&self, spec: Option<pb::TaskSpec>) -> Result<TaskSpec, Status> {
        let spec = spec.ok_or_else(|| missing("spec"))?;
        if spec.array.is_some() {
            return Err(Status::invalid_argument(
                "spec.array is set by the master: enqueue an array with EnqueueArray",
            ));
        }
        spec.try_into().map_err(convert_status)
    }

    /// A pinned worker must be known: to the leader's registry, or (on a standby, which
    /// has no workers of its own) to the store's.
    pub(crate) async fn check_pinned(&self, specs: &[&TaskSpec]) -> Result<(), Status> {
        for w in specs.iter().filter_map(|s| s.pinned_worker.as_ref()) {
            let known = if self.shared.leading() {
                self.shared.cluster().worker(w).is_some()
            } else {
                self.store_call("get_worker", self.shared.store.get_worker(w))
                    .await?
                    .is_some()
            };
            if !known {
                return Err(status(QueueError::UnknownWorker(w.clone())));
            }
        }
        Ok(())
    }

    pub(crate) async fn resolve(&self, id: &str) -> Result<TaskId, Status> {
        if id.is_empty() {
            return Err(Status::invalid_argument("missing task id"));
        }
        let prefix = id.to_ascii_lowercase();
        self.store_call("resolve", self.shared.store.resolve_prefix(&prefix))
            .await
    }

    /// A store call on behalf of a client: bounded by `--store-timeout`, its error mapped
    /// to the client's status.
    pub(crate) fn refused(&self, reason: &str) {
        let label = crate::metrics::ReasonLabel {
            reason: reason.to_string(),
        };
        self.shared
            .metrics
            .enqueue_refusals
            .get_or_create(&label)
            .inc();
    }

    /// A full queue (`--max-queued`) is the store's refusal.
    pub(crate) fn refused_by_store(&self, s: &Status) {
        if s.code() == tonic::Code::ResourceExhausted {
            self.refused("queue_full");
        }
    }

    pub(crate) async fn store_call<T>(
        &self,
        op: &str,
        fut: impl std::future::Future<Output = Result<T, QueueError>>,
    ) -> Result<T, Status> {
        let t0 = std::time::Instant::now();
        let r = within(self.shared.config.store_timeout, async {
            fut.await.map_err(status)
        })
        .await;
        let failed = matches!(&r, Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Internal));
        self.shared.metrics.store_call(op, t0.elapsed(), failed);
        r
    }
}

type LogStreamOut = Pin<Box<dyn Stream<Item = Result<pb::LogChunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::client_service_server::ClientService for ClientSvc {
    async fn enqueue(
        &self,
        request: Request<pb::EnqueueRequest>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
        crate::enqueue::one(self, request).await.map(Response::new)
    }

    async fn enqueue_array(
        &self,
        request: Request<pb::EnqueueArrayRequest>,
    ) -> Result<Response<pb::EnqueueArrayResponse>, Status> {
        crate::arrays::enqueue(self, request)
            .await
            .map(Response::new)
    }

    async fn get_array(
        &self,
        request: Request<pb::GetArrayRequest>,
    ) -> Result<Response<pb::ArraySummary>, Status> {
        crate::arrays::summary(self, &request.into_inner().id)
            .await
            .map(Response::new)
    }

    async fn add_schedule(
        &self,
        request: Request<pb::AddScheduleRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        crate::schedules::add(self, request)
            .await
            .map(Response::new)
    }

    async fn list_schedules(
        &self,
        _request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        crate::schedules::list(self).await.map(Response::new)
    }

    async fn get_schedule(
        &self,
        request: Request<pb::ScheduleRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let name = request.into_inner().name;
        crate::schedules::get(self, &name).await.map(Response::new)
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::ScheduleRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let name = request.into_inner().name;
        crate::schedules::set_paused(self, &name, true)
            .await
            .map(Response::new)
    }

    async fn resume_schedule(
        &self,
        request: Request<pb::ScheduleRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let name = request.into_inner().name;
        crate::schedules::set_paused(self, &name, false)
            .await
            .map(Response::new)
    }

    async fn remove_schedule(
        &self,
        request: Request<pb::ScheduleRequest>,
    ) -> Result<Response<pb::RemoveScheduleResponse>, Status> {
        let name = request.into_inner().name;
        crate::schedules::remove(self, &name)
            .await
            .map(Response::new)
    }

    async fn run_schedule(
        &self,
        request: Request<pb::ScheduleRequest>,
    ) -> Result<Response<pb::RunScheduleResponse>, Status> {
        let name = request.into_inner().name;
        crate::schedules::run_now(self, &name)
            .await
            .map(Response::new)
    }

    async fn enqueue_batch(
        &self,
        request: Request<pb::EnqueueBatchRequest>,
    ) -> Result<Response<pb::EnqueueBatchResponse>, Status> {
        crate::enqueue::batch(self, request)
            .await
            .map(Response::new)
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let id = self.resolve(&request.into_inner().id).await?;
        let task = self.store_call("get", self.shared.store.get(id)).await?;
        let mut wire = crate::reasons::wire_tasks(&self.shared, [task]);
        Ok(Response::new(wire.remove(0)))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let r = request.into_inner();
        let limit = match r.limit as usize {
            0 => cloudai_queue::DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        let before = if r.page_token.is_empty() {
            None
        } else {
            Some(
                r.page_token
                    .parse::<TaskId>()
                    .map_err(|_| Status::invalid_argument("malformed page_token"))?,
            )
        };
        let query = TaskQuery {
            oldest_first: r.oldest_first,
            limit,
            before,
            ..crate::task_filter::query_of(crate::task_filter::filter_of(&r))?
        };
        let tasks = self
            .store_call("list", self.shared.store.list(&query))
            .await?;
        let next_page_token = match tasks.last() {
            Some(t) if tasks.len() == limit => t.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListTasksResponse {
            tasks: crate::reasons::wire_tasks(&self.shared, tasks),
            next_page_token,
        }))
    }

    async fn cancel_task(
        &self,
        request: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::CancelTaskResponse>, Status> {
        let principal = crate::auth::principal(&request);
        let id = self.resolve(&request.into_inner().id).await?;
        if let Some(p) = &principal {
            let t = self.store_call("get", self.shared.store.get(id)).await?;
            crate::auth::check_cancel(Some(p), &id.to_string(), t.submitted_by.as_deref())?;
        }
        let task = self
            .store_call("cancel", self.shared.store.request_cancel(id, Utc::now()))
            .await?;
        if task.status.is_active() {
            self.shared.send_cancel(id);
        }
        if task.status.is_terminal() {
            self.shared.task_ended(&task);
        }
        self.shared.logs.notify(id);
        tracing::info!(task_id = %id, status = %task.status, "cancel requested");
        Ok(Response::new(pb::CancelTaskResponse {
            task: Some(task.into()),
        }))
    }

    type StreamLogsStream = LogStreamOut;

    async fn stream_logs(
        &self,
        request: Request<pb::StreamLogsRequest>,
    ) -> Result<Response<LogStreamOut>, Status> {
        let r = request.into_inner();
        let id = self.resolve(&r.id).await?;
        // Fail fast on an unknown task rather than inside the stream.
        self.store_call("get", self.shared.store.get(id)).await?;
        let filter = StreamFilter {
            stdout: r.stdout || !r.stderr,
            stderr: r.stderr || !r.stdout,
            attempt: r.attempt,
        };
        let (tx, rx) = mpsc::channel(16);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if let Err(e) = follow(&shared, id, r.after_seq, r.follow, filter, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        // Workers stream to the leader: only it knows them.
        if !self.shared.leading() {
            return Err(crate::error::not_leader(&self.shared.role()));
        }
        let workers = self
            .shared
            .cluster()
            .workers()
            .map(wire::worker_info)
            .collect();
        Ok(Response::new(pb::ListWorkersResponse { workers }))
    }

    async fn master_status(
        &self,
        _request: Request<pb::MasterStatusRequest>,
    ) -> Result<Response<pb::MasterStatusResponse>, Status> {
        let (lease, members) = self.store_call("group", self.shared.store.group()).await?;
        let lease = lease.unwrap_or(cloudai_queue::Lease {
            holder: String::new(),
            url: String::new(),
            epoch: 0,
            renewals: 0,
            sole: false,
        });
        let role = match self.shared.role() {
            crate::leadership::Role::Leader { .. } => "leader",
            crate::leadership::Role::Standby { .. } => "standby",
            crate::leadership::Role::Starting => "starting",
        };
        Ok(Response::new(pb::MasterStatusResponse {
            leader_id: lease.holder.clone(),
            leader_url: lease.url.clone(),
            epoch: lease.epoch,
            masters: members
                .into_iter()
                .map(|m| pb::MasterInfo {
                    leader: m.id == lease.holder,
                    id: m.id,
                    url: m.url,
                    last_seen: Some(convert::timestamp(m.last_seen)),
                })
                .collect(),
            answered_by: self.shared.config.master_id(),
            role: role.into(),
        }))
    }

    async fn queue_stats(
        &self,
        _request: Request<pb::QueueStatsRequest>,
    ) -> Result<Response<pb::QueueStatsResponse>, Status> {
        let stats = self
            .store_call("stats", self.shared.store.stats(Utc::now()))
            .await?;
        Ok(Response::new(stats.into()))
    }
}

#[derive(Clone, Copy)]
struct StreamFilter {
    stdout: bool,
    stderr: bool,
    /// Only this attempt's output (the seq-0 marker of dropped output always goes).
    attempt: Option<u32>,
}

impl StreamFilter {
    fn wants(&self, c: &cloudai_queue::LogChunk) -> bool {
        let stream = match c.stream {
            LogStream::Stdout => self.stdout,
            LogStream::Stderr => self.stderr,
            LogStream::System => true,
        };
        stream && (c.seq == 0 || self.attempt.is_none_or(|a| a == c.attempt))
    }
}

/// Sends stored chunks after `after`, then (when following) new ones as the hub signals
/// them, until the task is terminal and drained. Memory: one page at a time.
async fn follow(
    shared: &Shared,
    id: TaskId,
    mut after: Option<u64>,
    follow: bool,
    filter: StreamFilter,
    tx: &mpsc::Sender<Result<pb::LogChunk, Status>>,
) -> Result<(), Status> {
    let mut sub = shared.logs.subscribe(id);
    let mut terminal = false;
    loop {
        sub.rx.borrow_and_update();
        let limit = shared.config.store_timeout;
        let chunks = within(limit, async {
            shared
                .store
                .read_logs(id, after, LOG_PAGE)
                .await
                .map_err(status)
        })
        .await?;
        let full = chunks.len() == LOG_PAGE;
        for c in chunks {
            after = Some(c.seq);
            if filter.wants(&c) && tx.send(Ok(c.into())).await.is_err() {
                return Ok(()); // the client went away
            }
        }
        if full {
            continue;
        }
        if !follow || terminal {
            return Ok(());
        }
        // Output is stored with (or before) the result, so once terminal one more read
        // drains it.
        let task = within(limit, async { shared.store.get(id).await.map_err(status) }).await?;
        if task.status.is_terminal() {
            terminal = true;
            continue;
        }
        tokio::select! {
            _ = sub.rx.changed() => {}
            _ = tokio::time::sleep(if shared.leading() { FOLLOW_BACKSTOP } else { FOLLOW_POLL_STANDBY }) => {}
            _ = tx.closed() => return Ok(()),
            _ = shared.until_shutdown() => return Err(Status::unavailable("master is shutting down")),
        }
    }
}
