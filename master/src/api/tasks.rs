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

use super::{request, status_of, task_json, Api, ApiError, ApiResult, ErrorBody};
use crate::auth::Action;
use cloudai_proto::pb::client_service_server::ClientService;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Comma-separated statuses (queued, assigned, running, succeeded, failed, cancelled,
    /// timed_out, lost).
    status: Option<String>,
    /// Only tasks whose current or last attempt is on this worker.
    worker: Option<String>,
    /// Only tasks this user submitted.
    submitter: Option<String>,
    /// Exact, or a prefix ending in `*`.
    image: Option<String>,
    /// `key=value`, several comma-separated; all must hold.
    label: Option<String>,
    /// Created at or after this RFC 3339 time.
    since: Option<String>,
    /// Created before this RFC 3339 time.
    until: Option<String>,
    /// Free text over id, image and command.
    q: Option<String>,
    /// Only the elements of this job array (its whole id).
    array: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    order: Option<String>,
    /// Page size (default 100, at most 1000).
    limit: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(ListQuery), responses((status = 200, description = "A page of tasks: `{\"tasks\": [...], \"next_page_token\"}` (empty token: the last page)"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
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
    let oldest_first = match q.order.as_deref().map(str::trim) {
        None | Some("") | Some("desc") => false,
        Some("asc") => true,
        Some(o) => {
            return Err(ApiError(Status::invalid_argument(format!(
                "order must be asc or desc, not {o:?}"
            ))))
        }
    };
    let msg = pb::ListTasksRequest {
        statuses,
        worker_id: q.worker,
        limit: q.limit.unwrap_or(0),
        page_token: q.page_token.unwrap_or_default(),
        submitted_by: q.submitter,
        image: q.image,
        labels: match &q.label {
            None => Default::default(),
            Some(l) => labels_of(l)?,
        },
        created_after: time_of("since", q.since.as_deref())?,
        created_before: time_of("until", q.until.as_deref())?,
        text: q.q,
        oldest_first,
        array: q.array,
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

/// `key=value,key2=value2` as a label map.
fn labels_of(s: &str) -> Result<std::collections::HashMap<String, String>, ApiError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(ApiError(Status::invalid_argument(format!(
                "label filter {p:?} is not key=value"
            )))),
        })
        .collect()
}

/// An RFC 3339 time parameter as a protobuf timestamp.
pub(super) fn time_of(
    name: &str,
    v: Option<&str>,
) -> Result<Option<prost_types::Timestamp>, ApiError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| {
                Some(cloudai_proto::convert::timestamp(
                    t.with_timezone(&chrono::Utc),
                ))
            })
            .map_err(|e| {
                ApiError(Status::invalid_argument(format!(
                    "{name} must be an RFC 3339 time such as 2026-12-01T18:00:00Z, not {v:?}: {e}"
                )))
            }),
    }
}

/// A task to enqueue, in JSON. Units: CPU in cores, memory in bytes, timeout in seconds.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
    /// Run after these tasks have ended as each needs.
    #[serde(default)]
    pub after: Vec<ApiDependency>,
    /// Start no earlier than this RFC 3339 time.
    pub not_before: Option<String>,
    /// Worker attributes required, as `cloudai enqueue --constraint` takes them:
    /// `zone=a`, `disk!=hdd`, `gpu.model in (a100,h100)`, `ssd exists`.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Worker attributes preferred, `KEY=VALUE` each.
    #[serde(default)]
    pub prefer: Vec<String>,
    /// Refuse (409 FAILED_PRECONDITION) a task no registered worker could ever take,
    /// instead of accepting it with a `warning`.
    #[serde(default)]
    pub strict: bool,
}

/// One parent of a task, in JSON.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiDependency {
    /// The parent's id, or an unambiguous prefix.
    pub task: String,
    /// `ok` (it must succeed; the default), `notok` or `any`.
    #[serde(default)]
    pub condition: Option<String>,
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
            after: self
                .after
                .into_iter()
                .map(|d| {
                    let c = match d.condition.as_deref() {
                        None => cloudai_queue::DependencyCondition::Ok,
                        Some(c) => c.parse().map_err(|e: cloudai_queue::QueueError| {
                            ApiError(Status::invalid_argument(e.to_string()))
                        })?,
                    };
                    Ok(pb::Dependency {
                        task_id: d.task,
                        condition: pb::DependencyCondition::from(c) as i32,
                    })
                })
                .collect::<Result<_, ApiError>>()?,
            not_before: time_of("not_before", self.not_before.as_deref())?,
            constraints: self
                .constraints
                .iter()
                .map(|c| {
                    c.parse::<cloudai_queue::constraint::Constraint>()
                        .map(|c| cloudai_proto::convert::constraint(&c))
                        .map_err(|e| ApiError(Status::invalid_argument(e.to_string())))
                })
                .collect::<Result<_, _>>()?,
            prefer: self
                .prefer
                .iter()
                .map(|p| {
                    p.parse::<cloudai_queue::constraint::Preference>()
                        .map(|p| cloudai_proto::convert::preference(&p))
                        .map_err(|e| ApiError(Status::invalid_argument(e.to_string())))
                })
                .collect::<Result<_, _>>()?,
            ..Default::default()
        })
    }
}

#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", request_body = ApiSpec, responses((status = 201, description = "Enqueued: `{\"id\", \"created\": true}`"), (status = 200, description = "The idempotency key named an existing task: `{\"id\", \"created\": false}`"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
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
    let strict = spec.strict;
    let msg = pb::EnqueueRequest {
        spec: Some(spec.into_pb()?),
        strict,
    };
    let req = request(&api, &headers, peer, Action::Enqueue, msg).await?;
    let r = api.svc.enqueue(req).await?.into_inner();
    let code = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut body = json!({ "id": r.task_id, "created": r.created });
    if !r.warning.is_empty() {
        body["warning"] = json!(r.warning);
    }
    Ok((code, Json(body)).into_response())
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", params(("id" = String, Path, description = "A task id, or an unambiguous prefix of one")), responses((status = 200, description = "The task, with its attempts"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
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

#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks", params(("id" = String, Path, description = "A task id, or an unambiguous prefix of one")), responses((status = 200, description = "`{\"task\"}` as it is after the request (queued: cancelled at once; running: stopping)"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
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
