//! `/api/v1/tasks/{id}/retry` and the bulk `/api/v1/tasks/cancel` and
//! `/api/v1/tasks/retry`: the `AdminService` handlers over HTTP.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use cloudai_proto::pb;
use cloudai_proto::pb::admin_service_server::AdminService;
use serde::Deserialize;
use serde_json::json;
use tonic::Status;

use super::{request, status_of, Api, ApiError, ApiResult, ErrorBody};
use crate::auth::Action;

#[utoipa::path(post, path = "/api/v1/tasks/{id}/retry", tag = "tasks", params(("id" = String, Path, description = "A task id, or an unambiguous prefix of one")), responses((status = 201, description = "`{\"id\"}` of the new task (label `cloudai.retry-of`)"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn retry(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let req = request(
        &api,
        &headers,
        peer,
        Action::Enqueue,
        pb::RetryTaskRequest { id },
    )
    .await?;
    let r = api.admin.retry_task(req).await?.into_inner();
    Ok((StatusCode::CREATED, Json(json!({ "id": r.task_id }))).into_response())
}

/// A bulk action's filter, in JSON.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Bulk {
    /// Statuses; none: for a cancel every unfinished one, for a retry failed, timed_out,
    /// lost and cancelled.
    #[serde(default)]
    status: Vec<String>,
    /// Only tasks whose current or last attempt is on this worker.
    worker: Option<String>,
    /// Only tasks this user submitted.
    submitter: Option<String>,
    /// An image, exact, or a prefix ending in `*`.
    image: Option<String>,
    /// Every one of these labels with these values.
    #[serde(default)]
    labels: std::collections::HashMap<String, String>,
    /// Created at or after this RFC 3339 time.
    since: Option<String>,
    /// Created before this RFC 3339 time.
    until: Option<String>,
    /// Free text over id, image and command.
    q: Option<String>,
    /// Only the elements of this job array (its whole id).
    array: Option<String>,
    /// Say which tasks, change nothing.
    #[serde(default)]
    dry_run: bool,
    /// Act on at most this many (default 1000, at most 10000).
    #[serde(default)]
    limit: u32,
}

impl Bulk {
    fn parse(body: &[u8]) -> Result<pb::MatchRequest, ApiError> {
        let b: Bulk = serde_json::from_slice(body).map_err(|e| {
            ApiError(Status::invalid_argument(format!(
                "the filter is not valid JSON: {e}"
            )))
        })?;
        let statuses = b
            .status
            .iter()
            .map(|s| status_of(s).map(|st| pb::TaskStatus::from(st) as i32))
            .collect::<Result<_, _>>()?;
        Ok(pb::MatchRequest {
            filter: Some(pb::TaskFilter {
                statuses,
                worker_id: b.worker,
                submitted_by: b.submitter,
                image: b.image,
                labels: b.labels,
                created_after: super::tasks::time_of("since", b.since.as_deref())?,
                created_before: super::tasks::time_of("until", b.until.as_deref())?,
                text: b.q,
                array: b.array,
            }),
            dry_run: b.dry_run,
            limit: b.limit,
        })
    }
}

fn answer(r: pb::MatchResponse, dry_run: bool) -> ApiResult {
    Ok(Json(json!({
        "dry_run": dry_run,
        "task_ids": r.task_ids,
        "new_task_ids": r.new_task_ids,
        "truncated": r.truncated,
        "skipped": r.skipped,
    }))
    .into_response())
}

#[utoipa::path(post, path = "/api/v1/tasks/cancel", tag = "bulk", request_body = Bulk, responses((status = 200, description = "`{\"dry_run\", \"task_ids\", \"truncated\", \"skipped\"}`"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn cancel_matching(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let msg = Bulk::parse(&body)?;
    let dry = msg.dry_run;
    let req = request(&api, &headers, peer, Action::Bulk, msg).await?;
    answer(api.admin.cancel_matching(req).await?.into_inner(), dry)
}

#[utoipa::path(post, path = "/api/v1/tasks/retry", tag = "bulk", request_body = Bulk, responses((status = 200, description = "`{\"dry_run\", \"task_ids\", \"new_task_ids\", \"truncated\", \"skipped\"}`"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn retry_matching(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let msg = Bulk::parse(&body)?;
    let dry = msg.dry_run;
    let req = request(&api, &headers, peer, Action::Bulk, msg).await?;
    answer(api.admin.retry_matching(req).await?.into_inner(), dry)
}

/// `POST /api/v1/workers/{id}/drain` body: how long running tasks may go on.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DrainBody {
    /// Seconds running tasks may go on before they are stopped and retried elsewhere.
    #[serde(default)]
    deadline_seconds: f64,
}

fn worker_json(w: pb::WorkerInfo) -> serde_json::Value {
    json!({
        "id": w.id,
        "cordoned": w.cordoned,
        "drain_deadline": super::time_json(w.drain_deadline),
    })
}

#[utoipa::path(post, path = "/api/v1/workers/{id}/cordon", tag = "workers", params(("id" = String, Path, description = "A worker id")), responses((status = 200, description = "`{\"id\", \"cordoned\", \"drain_deadline\"}`"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn cordon(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(worker_id): Path<String>,
) -> ApiResult {
    set_cordon(&api, &headers, peer, worker_id, true).await
}

#[utoipa::path(post, path = "/api/v1/workers/{id}/uncordon", tag = "workers", params(("id" = String, Path, description = "A worker id")), responses((status = 200, description = "`{\"id\", \"cordoned\", \"drain_deadline\"}`"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn uncordon(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(worker_id): Path<String>,
) -> ApiResult {
    set_cordon(&api, &headers, peer, worker_id, false).await
}

/// Cordons (`on`) or uncordons a worker; the worker as it is after.
async fn set_cordon(
    api: &Api,
    headers: &HeaderMap,
    peer: SocketAddr,
    worker_id: String,
    on: bool,
) -> ApiResult {
    let req = request(
        api,
        headers,
        peer,
        Action::Bulk,
        pb::WorkerRequest { worker_id },
    )
    .await?;
    let w = if on {
        api.admin.cordon_worker(req).await?
    } else {
        api.admin.uncordon_worker(req).await?
    };
    Ok(Json(worker_json(w.into_inner())).into_response())
}

#[utoipa::path(post, path = "/api/v1/workers/{id}/drain", tag = "workers", params(("id" = String, Path, description = "A worker id")), request_body(content = Option<DrainBody>, description = "How long running tasks may go on (default 0: stopped at once)"), responses((status = 200, description = "`{\"id\", \"cordoned\", \"drain_deadline\"}`"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn drain(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(worker_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let b: DrainBody = if body.is_empty() {
        DrainBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError(Status::invalid_argument(format!(
                "not a drain request: {e}"
            )))
        })?
    };
    // A drain that long is no drain: the bound also keeps the time arithmetic in range.
    const MAX_DEADLINE_SECONDS: f64 = 366.0 * 24.0 * 3600.0;
    if !(0.0..=MAX_DEADLINE_SECONDS).contains(&b.deadline_seconds) {
        return Err(ApiError(Status::invalid_argument(format!(
            "deadline_seconds must be 0 to {MAX_DEADLINE_SECONDS} (a year), not {}",
            b.deadline_seconds
        ))));
    }
    let d = std::time::Duration::from_secs_f64(b.deadline_seconds);
    let msg = pb::DrainRequest {
        worker_id,
        deadline: prost_types::Duration::try_from(d).ok(),
    };
    let req = request(&api, &headers, peer, Action::Bulk, msg).await?;
    Ok(Json(worker_json(api.admin.drain_worker(req).await?.into_inner())).into_response())
}
