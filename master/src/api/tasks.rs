//! `/api/v1/tasks`: list, enqueue, one task, cancel.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use cloudai_proto::pb;
use serde::Deserialize;
use serde_json::json;
use tonic::Status;

use super::{request, status_of, task_json, Api, ApiError, ApiResult};
use crate::auth::Action;
use cloudai_proto::pb::client_service_server::ClientService;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    /// Comma-separated statuses.
    status: Option<String>,
    worker: Option<String>,
    submitter: Option<String>,
    limit: Option<u32>,
    page_token: Option<String>,
}

pub(super) async fn list(
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

pub(super) async fn enqueue(
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

pub(super) async fn get_one(
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

pub(super) async fn cancel(
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
