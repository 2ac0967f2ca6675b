//! The gRPC client of the master's `ClientService`, shared by the CLI commands and the
//! interactive shell. Converts answers into views and errors into [`CliError`]s.

use std::time::Duration;

use chrono::Utc;
use cloudai_proto::pb;
use cloudai_proto::pb::admin_service_client::AdminServiceClient;
use cloudai_proto::pb::client_service_client::ClientServiceClient;
use cloudai_queue as q;
use futures::{Stream, StreamExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::credentials::{Bearer, Credentials};

use crate::exit::{CliError, CliResult, Kind};
use crate::view::{StatsView, TaskView, WorkerView};

/// The master's address when neither `--master` nor `CLOUDAI_MASTER` is given.
pub const DEFAULT_MASTER_URL: &str = "http://127.0.0.1:50051";

/// The master's `AdminService`, with the caller's credentials.
pub type AdminClient = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// What `enqueue` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The task's id.
    pub id: String,
    /// False when the idempotency key matched an existing task.
    pub created: bool,
    /// Set when no registered worker could ever take the task (it is queued anyway).
    pub warning: Option<String>,
}

/// A connected client of one master (of a group, the first that answered).
#[derive(Clone)]
pub struct Client {
    url: String,
    creds: Credentials,
    inner: ClientServiceClient<InterceptedService<Channel, Bearer>>,
    admin: AdminClient,
}

/// The innermost cause of an error, which names the real problem ("Connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let s = cur.to_string();
    // io errors read "Connection refused (os error 111)"; keep the words.
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The leader's URL a standby's refusal carries.
fn leader_url(s: &tonic::Status) -> Option<String> {
    s.metadata()
        .get(cloudai_master::error::LEADER_URL_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Largest gRPC message sent or accepted: the master's default limit (16 MiB).
const MAX_MESSAGE_BYTES: usize = cloudai_master::config::DEFAULT_MAX_MESSAGE_BYTES;

impl Client {
    /// Connects to the master at `url` (`http://HOST:PORT`; a bare `HOST:PORT` gets
    /// `http://`). Fails with [`Kind::Unreachable`] when nothing answers.
    pub async fn connect(url: &str) -> CliResult<Client> {
        Self::connect_with(url, &crate::credentials::process_default()).await
    }

    /// Like [`Client::connect`], presenting `creds` (API token, CA of the master). `urls`
    /// may list several masters, comma-separated (a group sharing a store): the first that
    /// answers is used; when none does, the error names the last.
    pub async fn connect_with(urls: &str, creds: &Credentials) -> CliResult<Client> {
        let mut last = None;
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            match Self::connect_one(url, creds).await {
                Ok(c) => return Ok(c),
                Err(e) if e.kind == Kind::Unreachable => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| CliError::invalid("no master url given")))
    }

    async fn connect_one(url: &str, creds: &Credentials) -> CliResult<Client> {
        let url = creds.url(url);
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| CliError::invalid(format!("invalid master url {url:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let endpoint = creds.tls(endpoint, &url)?;
        let channel = endpoint.connect().await.map_err(|e| {
            CliError::from_transport(&url, &e)
                .unwrap_or_else(|| CliError::unreachable(&url, root_cause(&e)))
        })?;
        Ok(Client {
            url,
            creds: creds.clone(),
            inner: ClientServiceClient::with_interceptor(channel.clone(), creds.bearer()?)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            admin: AdminServiceClient::with_interceptor(channel, creds.bearer()?)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        })
    }

    /// The URL it talks to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its `AdminService` client, for calls this type does not wrap.
    pub fn admin(&self) -> AdminClient {
        self.admin.clone()
    }

    /// Its `ClientService` client, for calls this type does not wrap.
    pub fn service(&self) -> ClientServiceClient<InterceptedService<Channel, Bearer>> {
        self.inner.clone()
    }

    /// A refusal of a call made through [`Client::service`], as the CLI reports it.
    pub fn status(&self, s: tonic::Status) -> CliError {
        CliError::from_status(&self.url, &s)
    }

    /// Enqueues one task (with `strict`, refused when no registered worker could ever
    /// take it); returns its id, whether it was created (false when the idempotency key
    /// matched an existing task) and the master's warning, if any.
    pub async fn enqueue(
        &self,
        spec: q::TaskSpec,
        parents: &[(String, q::DependencyCondition)],
        strict: bool,
    ) -> CliResult<Enqueued> {
        let mut wire: pb::TaskSpec = spec.into();
        // Ids as given (prefixes too): the master resolves them.
        wire.after
            .extend(parents.iter().map(|(id, c)| pb::Dependency {
                task_id: id.clone(),
                condition: pb::DependencyCondition::from(*c) as i32,
            }));
        let r = self
            .inner
            .clone()
            .enqueue(pb::EnqueueRequest {
                spec: Some(wire),
                strict,
            })
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        Ok(Enqueued {
            id: r.task_id,
            created: r.created,
            warning: Some(r.warning).filter(|w| !w.is_empty()),
        })
    }

    /// Enqueues a job array of `spec` over `indices` (`0-99%8`); with `strict`, refused
    /// when no registered worker could ever take an element.
    pub async fn enqueue_array(
        &self,
        spec: q::TaskSpec,
        parents: &[(String, q::DependencyCondition)],
        indices: &str,
        strict: bool,
    ) -> CliResult<pb::EnqueueArrayResponse> {
        let mut wire: pb::TaskSpec = spec.into();
        wire.after
            .extend(parents.iter().map(|(id, c)| pb::Dependency {
                task_id: id.clone(),
                condition: pb::DependencyCondition::from(*c) as i32,
            }));
        Ok(self
            .inner
            .clone()
            .enqueue_array(pb::EnqueueArrayRequest {
                spec: Some(wire),
                indices: indices.to_string(),
                strict,
            })
            .await
            .map_err(|s| self.status(s))?
            .into_inner())
    }

    /// An array's summary.
    pub async fn array(&self, id: &str) -> CliResult<pb::ArraySummary> {
        Ok(self
            .inner
            .clone()
            .get_array(pb::GetArrayRequest { id: id.to_string() })
            .await
            .map_err(|s| self.status(s))?
            .into_inner())
    }

    /// One task by full id or unambiguous prefix.
    pub async fn task(&self, id: &str) -> CliResult<TaskView> {
        let t = self
            .inner
            .clone()
            .get_task(pb::GetTaskRequest { id: id.to_string() })
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        TaskView::from_pb(t)
    }

    /// Tasks, newest first, following pages until `limit` (0: the server's default page).
    /// The master filters (by status, worker and submitter) before it pages.
    pub async fn tasks(
        &self,
        filter: pb::TaskFilter,
        oldest_first: bool,
        limit: usize,
    ) -> CliResult<Vec<TaskView>> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let want = if limit == 0 { 0 } else { limit - out.len() };
            let r = self
                .inner
                .clone()
                .list_tasks(pb::ListTasksRequest {
                    statuses: filter.statuses.clone(),
                    worker_id: filter.worker_id.clone(),
                    limit: want.min(u32::MAX as usize) as u32,
                    page_token: page_token.clone(),
                    submitted_by: filter.submitted_by.clone(),
                    image: filter.image.clone(),
                    labels: filter.labels.clone(),
                    created_after: filter.created_after,
                    created_before: filter.created_before,
                    text: filter.text.clone(),
                    oldest_first,
                    array: filter.array.clone(),
                })
                .await
                .map_err(|s| self.status(s))?
                .into_inner();
            let got = r.tasks.len();
            for t in r.tasks {
                out.push(TaskView::from_pb(t)?);
            }
            if limit == 0 || out.len() >= limit || r.next_page_token.is_empty() || got == 0 {
                break;
            }
            page_token = r.next_page_token;
        }
        if limit > 0 {
            out.truncate(limit);
        }
        Ok(out)
    }

    /// Asks the master to cancel a task; returns it as it is after the request.
    pub async fn cancel(&self, id: &str) -> CliResult<TaskView> {
        let r = self
            .inner
            .clone()
            .cancel_task(pb::CancelTaskRequest { id: id.to_string() })
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        let t = r.task.ok_or_else(|| {
            CliError::new(Kind::Other, "the master answered a cancel without the task")
        })?;
        TaskView::from_pb(t)
    }

    /// Enqueues the ended task `id` again; the new task's id.
    pub async fn retry(&self, id: &str) -> CliResult<String> {
        let r = self
            .admin
            .clone()
            .retry_task(pb::RetryTaskRequest { id: id.to_string() })
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        Ok(r.task_id)
    }

    /// Cancels (`cancel`) or retries every task `req`'s filter matches.
    pub async fn matching(
        &self,
        cancel: bool,
        req: pb::MatchRequest,
    ) -> CliResult<pb::MatchResponse> {
        let mut admin = self.admin.clone();
        let r = if cancel {
            admin.cancel_matching(req).await
        } else {
            admin.retry_matching(req).await
        };
        Ok(r.map_err(|s| self.status(s))?.into_inner())
    }

    /// Cordons `id` (with `drain`: drains it, stopping what still runs after that
    /// long), or (`cordon` false) lifts it; the worker as it is then.
    pub async fn cordon(
        &self,
        id: &str,
        cordon: bool,
        drain: Option<Duration>,
    ) -> CliResult<WorkerView> {
        let mut admin = self.admin.clone();
        let worker_id = id.to_string();
        let r = match (cordon, drain) {
            (false, _) => admin.uncordon_worker(pb::WorkerRequest { worker_id }).await,
            (true, None) => admin.cordon_worker(pb::WorkerRequest { worker_id }).await,
            (true, Some(d)) => {
                let deadline = prost_types::Duration::try_from(d)
                    .map_err(|_| CliError::invalid("the drain deadline is too far"))?;
                admin
                    .drain_worker(pb::DrainRequest {
                        worker_id,
                        deadline: Some(deadline),
                    })
                    .await
            }
        };
        WorkerView::from_pb(r.map_err(|s| self.status(s))?.into_inner())
    }

    /// Every worker the master knows.
    pub async fn workers(&self) -> CliResult<Vec<WorkerView>> {
        let r = match self
            .inner
            .clone()
            .list_workers(pb::ListWorkersRequest {})
            .await
        {
            Ok(r) => r.into_inner(),
            // A standby names the leader, which knows the workers: ask it.
            Err(s) => match leader_url(&s) {
                Some(url) if url != self.url => {
                    let leader = Self::connect_one(&url, &self.creds).await?;
                    return Box::pin(leader.workers()).await;
                }
                _ => return Err(self.status(s)),
            },
        };
        r.workers.into_iter().map(WorkerView::from_pb).collect()
    }

    /// The masters sharing the store: who leads, under which epoch, each one's last renewal.
    pub async fn master_status(&self) -> CliResult<pb::MasterStatusResponse> {
        Ok(self
            .inner
            .clone()
            .master_status(pb::MasterStatusRequest {})
            .await
            .map_err(|s| self.status(s))?
            .into_inner())
    }

    /// Counts per status and the rest of `queue stats`.
    pub async fn stats(&self) -> CliResult<StatsView> {
        let r = self
            .inner
            .clone()
            .queue_stats(pb::QueueStatsRequest {})
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        StatsView::from_pb(r, Utc::now())
    }

    /// A task's log chunks: stored ones, then (with `follow`) live ones until the task
    /// ends. `stdout`/`stderr` choose the streams (system chunks always come), `attempt`
    /// one attempt's output (every attempt's when `None`).
    pub async fn logs(
        &self,
        id: &str,
        follow: bool,
        stdout: bool,
        stderr: bool,
        attempt: Option<u32>,
    ) -> CliResult<impl Stream<Item = CliResult<q::LogChunk>> + Send + 'static> {
        let url = self.url.clone();
        let stream = self
            .inner
            .clone()
            .stream_logs(pb::StreamLogsRequest {
                id: id.to_string(),
                follow,
                after_seq: None,
                stdout,
                stderr,
                attempt,
            })
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        Ok(stream.map(move |item| match item {
            Ok(c) => q::LogChunk::try_from(c).map_err(|e| {
                CliError::new(
                    Kind::Other,
                    format!("unexpected answer from the master: {e}"),
                )
            }),
            Err(s) => Err(CliError::from_status(&url, &s)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connection_names_the_url() {
        // Bind then drop to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let err = Client::connect(&url).await.err().unwrap();
        assert_eq!(err.kind, Kind::Unreachable);
        assert!(err.message.contains(&url), "{}", err.message);
        assert!(err.message.contains("cloudai master"), "{}", err.message);
    }

    #[tokio::test]
    async fn malformed_url_is_an_invalid_argument() {
        let err = Client::connect("http://bad host:1").await.err().unwrap();
        assert_eq!(err.kind, Kind::InvalidArgument);
    }
}
