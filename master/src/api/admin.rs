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

use super::{request, status_of, Api, ApiError, ApiResult};
use crate::auth::Action;

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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Bulk {
    #[serde(default)]
    status: Vec<String>,
    worker: Option<String>,
    submitter: Option<String>,
    image: Option<String>,
    #[serde(default)]
    dry_run: bool,
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainBody {
    #[serde(default)]
    deadline_seconds: f64,
}

fn worker_json(w: pb::WorkerInfo) -> serde_json::Value {
    json!({
        "id": w.id,
        "cordoned": w.cordoned,
        "drain_deadline": w
            .drain_deadline
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)),
    })
}

pub(super) async fn cordon(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(worker_id): Path<String>,
) -> ApiResult {
    let req = request(
        &api,
        &headers,
        peer,
        Action::Bulk,
        pb::WorkerRequest { worker_id },
    )
    .await?;
    Ok(Json(worker_json(
        api.admin.cordon_worker(req).await?.into_inner(),
    ))
    .into_response())
}

pub(super) async fn uncordon(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(worker_id): Path<String>,
) -> ApiResult {
    let req = request(
        &api,
        &headers,
        peer,
        Action::Bulk,
        pb::WorkerRequest { worker_id },
    )
    .await?;
    Ok(Json(worker_json(
        api.admin.uncordon_worker(req).await?.into_inner(),
    ))
    .into_response())
}

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
    if !(b.deadline_seconds.is_finite() && b.deadline_seconds >= 0.0) {
        return Err(ApiError(Status::invalid_argument(
            "deadline_seconds must be 0 or more",
        )));
    }
    let d = std::time::Duration::from_secs_f64(b.deadline_seconds);
    let msg = pb::DrainRequest {
        worker_id,
        deadline: prost_types::Duration::try_from(d).ok(),
    };
    let req = request(&api, &headers, peer, Action::Bulk, msg).await?;
    Ok(Json(worker_json(api.admin.drain_worker(req).await?.into_inner())).into_response())
}
