//! `/api/v1/workers` and `/api/v1/queue/stats`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use cloudai_proto::pb;
use cloudai_proto::pb::client_service_server::ClientService;
use serde_json::{json, Value};

use super::{request, Api, ApiResult, ErrorBody};
use crate::auth::Action;

#[utoipa::path(get, path = "/api/v1/workers", tag = "workers", responses((status = 200, description = "`{\"workers\": [...]}` with health, labels, capacity, free, running tasks"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn workers(
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
                "cordoned": w.cordoned,
                "drain_deadline": super::time_json(w.drain_deadline),
                "version": w.version,
                "last_heartbeat": super::time_json(w.last_heartbeat),
            })
        })
        .collect();
    Ok(Json(json!({ "workers": list })).into_response())
}

#[utoipa::path(get, path = "/api/v1/queue/stats", tag = "queue", responses((status = 200, description = "`{\"counts\", \"oldest_queued_at\", \"finished_last_minute\"}`"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn stats(
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
    let oldest = super::time_json(r.oldest_queued_at);
    Ok(Json(json!({
        "counts": counts,
        "oldest_queued_at": oldest,
        "finished_last_minute": r.finished_last_minute,
    }))
    .into_response())
}
