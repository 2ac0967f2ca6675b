//! The HTTP JSON API, `/api/v1`, on the `--http-listen` port: a thin transport over the
//! same `ClientService` handlers the gRPC port runs, so validation, limits, standbys'
//! refusals and ownership checks have one source. Each route names the [`Action`] it
//! needs; a bearer token is checked exactly as for gRPC (roles in `auth/roles.rs`).
//!
//! - `GET  /api/v1/tasks?status=queued,running&worker=W&submitter=S&limit=N&page_token=T`
//! - `POST /api/v1/tasks` (a JSON [`ApiSpec`]) → `{"id", "created"}`
//! - `GET  /api/v1/tasks/{id}` (full id or prefix), with its attempts
//! - `POST /api/v1/tasks/{id}/cancel`
//! - `GET  /api/v1/tasks/{id}/logs?attempt=N&stream=stdout|stderr` → JSON lines array;
//!   with `follow=true`, Server-Sent Events (`event: log`, then `event: end`)
//! - `GET  /api/v1/workers`, `GET /api/v1/queue/stats`
//!
//! Errors are `{"error": {"code": "NOT_FOUND", "message": "..."}}` with the HTTP status
//! of the gRPC code (and `leader_url` when a standby refuses).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloudai_proto::pb;
use cloudai_proto::pb::client_service_server::ClientService;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::transport::server::TcpConnectInfo;
use tonic::{Code, Status};

use crate::auth::{allowed, Action, Auth, Principal};
use crate::client_service::ClientSvc;

/// What the API routes share.
#[derive(Clone)]
pub struct Api {
    /// The gRPC client handlers, shared with the gRPC port.
    pub svc: Arc<ClientSvc>,
    /// The same checks as the gRPC port.
    pub auth: Arc<Auth>,
}

/// The `/api/v1` routes.
pub fn routes(api: Api) -> Router {
    Router::new()
        .route("/api/v1/tasks", get(list_tasks).post(enqueue))
        .route("/api/v1/tasks/:id", get(get_task))
        .route("/api/v1/tasks/:id/cancel", post(cancel))
        .route("/api/v1/tasks/:id/logs", get(logs))
        .route("/api/v1/workers", get(workers))
        .route("/api/v1/queue/stats", get(stats))
        .with_state(api)
}

/// An error answered as JSON with the HTTP status of its gRPC code.
struct ApiError(Status);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let s = self.0;
        let http = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut err = json!({ "code": code_name(s.code()), "message": s.message() });
        if let Some(url) = s
            .metadata()
            .get("cloudai-leader-url")
            .and_then(|v| v.to_str().ok())
        {
            err["leader_url"] = json!(url);
        }
        (http, Json(json!({ "error": err }))).into_response()
    }
}

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        ApiError(s)
    }
}

fn code_name(c: Code) -> String {
    // "NotFound" -> "NOT_FOUND", as gRPC names its codes.
    let mut out = String::new();
    for (i, ch) in format!("{c:?}").chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

type ApiResult = Result<Response, ApiError>;

/// Authenticates the call for `action` and wraps `msg` as the gRPC handlers expect it:
/// the caller as its [`Principal`], the peer as its connect info.
async fn request<T>(
    api: &Api,
    headers: &HeaderMap,
    peer: SocketAddr,
    action: Action,
    msg: T,
) -> Result<tonic::Request<T>, ApiError> {
    let mut req = tonic::Request::new(msg);
    req.extensions_mut().insert(TcpConnectInfo {
        local_addr: None,
        remote_addr: Some(peer),
    });
    if api.auth.mode().enforced() {
        let p: Principal = api.auth.authenticate(headers, Some(peer)).await?;
        if !allowed(p.role, action) {
            return Err(ApiError(Status::permission_denied(format!(
                "user {} has role {} and may not {}",
                p.name,
                p.role,
                action.describe()
            ))));
        }
        req.extensions_mut().insert(p);
    }
    Ok(req)
}

#[derive(Deserialize)]
struct ListQuery {
    /// Comma-separated statuses.
    status: Option<String>,
    worker: Option<String>,
    submitter: Option<String>,
    limit: Option<u32>,
    page_token: Option<String>,
}

async fn list_tasks(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let statuses = match &q.status {
        None => Vec::new(),
        Some(s) => s
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| status_of(s.trim()).map(|st| pb::TaskStatus::from(st) as i32))
            .collect::<Result<_, _>>()?,
    };
    let msg = pb::ListTasksRequest {
        statuses,
        worker_id: q.worker,
        limit: q.limit.unwrap_or(0),
        page_token: q.page_token.unwrap_or_default(),
        submitted_by: q.submitter,
    };
    let req = request(&api, &headers, peer, Action::Read, msg).await?;
    let r = api.svc.list_tasks(req).await?.into_inner();
    let tasks = r
        .tasks
        .into_iter()
        .map(task_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "tasks": tasks, "next_page_token": r.next_page_token })).into_response())
}

fn status_of(s: &str) -> Result<cloudai_queue::TaskStatus, ApiError> {
    cloudai_queue::TaskStatus::ALL
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| {
            let all: Vec<&str> = cloudai_queue::TaskStatus::ALL
                .iter()
                .map(|s| s.as_str())
                .collect();
            ApiError(Status::invalid_argument(format!(
                "unknown status {s:?}; one of {}",
                all.join(", ")
            )))
        })
}

fn task_json(t: pb::Task) -> Result<Value, ApiError> {
    let t: cloudai_queue::Task = t
        .try_into()
        .map_err(|e: cloudai_proto::ConvertError| ApiError(Status::internal(e.to_string())))?;
    serde_json::to_value(t).map_err(|e| ApiError(Status::internal(e.to_string())))
}

/// A task to enqueue, in JSON. Units: CPU in cores, memory in bytes, timeout in seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    /// The image.
    pub image: String,
    /// Docker's Cmd (passed to the entrypoint).
    #[serde(default)]
    pub command: Vec<String>,
    /// Replaces the image's entrypoint when given.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// CPU cores (0.5 = half a core).
    #[serde(default)]
    pub cpu: f64,
    /// Memory in bytes.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Whole GPUs.
    #[serde(default)]
    pub gpus: u32,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// Attempts in total for the task's own failures (0: the default, 1).
    #[serde(default)]
    pub max_attempts: u32,
    /// Wall-clock limit of one attempt, in seconds.
    pub timeout_seconds: Option<f64>,
    /// Run only on this worker.
    pub worker: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Enqueueing twice with the same key returns the first task.
    pub idempotency_key: Option<String>,
}

impl ApiSpec {
    fn into_pb(self) -> Result<pb::TaskSpec, ApiError> {
        if !(self.cpu.is_finite() && self.cpu >= 0.0) {
            return Err(ApiError(Status::invalid_argument(
                "cpu must be a number of cores, 0 or more",
            )));
        }
        let timeout = match self.timeout_seconds {
            None => None,
            Some(t) if t.is_finite() && t > 0.0 => Some(prost_types::Duration {
                seconds: t.trunc() as i64,
                nanos: (t.fract() * 1e9) as i32,
            }),
            Some(_) => {
                return Err(ApiError(Status::invalid_argument(
                    "timeout_seconds must be above 0",
                )))
            }
        };
        Ok(pb::TaskSpec {
            image: self.image,
            command: self.command,
            entrypoint: self.entrypoint,
            env: self.env.into_iter().collect(),
            resources: Some(pb::Resources {
                cpu_millis: (self.cpu * 1000.0).round() as u64,
                memory_bytes: self.memory_bytes,
                gpus: self.gpus,
                disk_bytes: 0,
            }),
            priority: self.priority,
            max_attempts: self.max_attempts,
            timeout,
            pinned_worker: self.worker,
            labels: self.labels.into_iter().collect(),
            idempotency_key: self.idempotency_key,
            ..Default::default()
        })
    }
}

async fn enqueue(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    // JSON whatever the content type says (`curl -d` sends a form's).
    let spec: ApiSpec = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Status::invalid_argument(format!(
            "the task spec is not valid JSON: {e}"
        )))
    })?;
    let msg = pb::EnqueueRequest {
        spec: Some(spec.into_pb()?),
    };
    let req = request(&api, &headers, peer, Action::Enqueue, msg).await?;
    let r = api.svc.enqueue(req).await?.into_inner();
    let code = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(json!({ "id": r.task_id, "created": r.created }))).into_response())
}

async fn get_task(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let req = request(
        &api,
        &headers,
        peer,
        Action::Read,
        pb::GetTaskRequest { id },
    )
    .await?;
    let t = api.svc.get_task(req).await?.into_inner();
    Ok(Json(task_json(t)?).into_response())
}

async fn cancel(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    // The least role that may cancel anything; ownership is the handler's check.
    let req = request(
        &api,
        &headers,
        peer,
        Action::CancelOwn,
        pb::CancelTaskRequest { id },
    )
    .await?;
    let r = api.svc.cancel_task(req).await?.into_inner();
    let task = r.task.map(task_json).transpose()?;
    Ok(Json(json!({ "task": task })).into_response())
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
    attempt: Option<u32>,
    /// `stdout` or `stderr`; both when absent.
    stream: Option<String>,
}

fn chunk_json(c: pb::LogChunk) -> Value {
    let stream = match pb::LogStream::try_from(c.stream) {
        Ok(pb::LogStream::Stderr) => "stderr",
        Ok(pb::LogStream::System) => "system",
        _ => "stdout",
    };
    let time = c
        .time
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32));
    json!({
        "seq": c.seq,
        "attempt": c.attempt,
        "stream": stream,
        "time": time,
        "text": String::from_utf8_lossy(&c.data),
    })
}

async fn logs(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult {
    let (stdout, stderr) = match q.stream.as_deref() {
        None | Some("") => (true, true),
        Some("stdout") => (true, false),
        Some("stderr") => (false, true),
        Some(other) => {
            return Err(ApiError(Status::invalid_argument(format!(
                "unknown stream {other:?}; stdout or stderr"
            ))))
        }
    };
    let msg = pb::StreamLogsRequest {
        id,
        follow: q.follow,
        after_seq: None,
        stdout,
        stderr,
        attempt: q.attempt,
    };
    let req = request(&api, &headers, peer, Action::Read, msg).await?;
    let chunks = api.svc.stream_logs(req).await?.into_inner();
    if !q.follow {
        let all: Vec<Result<pb::LogChunk, Status>> = chunks.collect().await;
        let lines = all
            .into_iter()
            .map(|c| c.map(chunk_json))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Json(json!({ "chunks": lines })).into_response());
    }
    Ok(Sse::new(events(chunks))
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response())
}

/// Each chunk as an `event: log`, then `event: end` (or `event: error`) when it stops.
fn events(
    chunks: impl Stream<Item = Result<pb::LogChunk, Status>> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let ended = futures::stream::once(async {
        Ok::<_, Infallible>(Event::default().event("end").data("{}"))
    });
    chunks
        .map(|c| {
            Ok(match c {
                Ok(c) => Event::default()
                    .event("log")
                    .data(chunk_json(c).to_string()),
                Err(s) => Event::default().event("error").data(
                    json!({ "code": code_name(s.code()), "message": s.message() }).to_string(),
                ),
            })
        })
        .chain(ended)
}

async fn workers(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult {
    let req = request(
        &api,
        &headers,
        peer,
        Action::Read,
        pb::ListWorkersRequest {},
    )
    .await?;
    let r = api.svc.list_workers(req).await?.into_inner();
    let res = |r: Option<pb::Resources>| {
        let r = r.unwrap_or_default();
        json!({ "cpu": r.cpu_millis as f64 / 1000.0, "memory_bytes": r.memory_bytes, "gpus": r.gpus })
    };
    let health = |h: i32| match pb::WorkerHealth::try_from(h) {
        Ok(pb::WorkerHealth::Healthy) => "healthy",
        Ok(pb::WorkerHealth::Suspect) => "suspect",
        Ok(pb::WorkerHealth::Dead) => "dead",
        _ => "unknown",
    };
    let list: Vec<Value> = r
        .workers
        .into_iter()
        .map(|w| {
            json!({
                "id": w.id,
                "health": health(w.health),
                "labels": w.labels.into_iter().collect::<BTreeMap<_, _>>(),
                "capacity": res(w.capacity),
                "free": res(w.free),
                "running_task_ids": w.running_task_ids,
                "hostname": w.hostname,
                "version": w.version,
                "last_heartbeat": w.last_heartbeat.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)),
            })
        })
        .collect();
    Ok(Json(json!({ "workers": list })).into_response())
}

async fn stats(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult {
    let req = request(&api, &headers, peer, Action::Read, pb::QueueStatsRequest {}).await?;
    let r = api.svc.queue_stats(req).await?.into_inner();
    let mut counts = BTreeMap::new();
    for c in r.counts {
        if let Ok(s) = cloudai_proto::convert::task_status("counts", c.status) {
            counts.insert(s.as_str().to_string(), c.count);
        }
    }
    let oldest = r
        .oldest_queued_at
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32));
    Ok(Json(json!({
        "counts": counts,
        "oldest_queued_at": oldest,
        "finished_last_minute": r.finished_last_minute,
    }))
    .into_response())
}
