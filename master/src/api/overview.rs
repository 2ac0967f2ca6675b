//! `/api/v1/whoami` (who the token is and what it may do, so the dashboard shows only
//! the buttons that will work) and `/api/v1/queue/history` (the last hour per minute,
//! from the store, for the overview's charts).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use cloudai_queue::history::{self, MAX_HISTORY_ROWS};
use serde::Deserialize;
use serde_json::json;
use tonic::Status;

use super::{request, Api, ApiError, ApiResult, ErrorBody};
use crate::auth::{allowed, Action, Principal};

#[utoipa::path(get, path = "/api/v1/whoami", tag = "overview", responses((status = 200, description = "`{\"auth_enforced\", \"user\", \"role\", \"may\": {...}}`"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn whoami(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult {
    let enforced = api.auth.mode().enforced();
    let who: Option<Principal> = if enforced {
        Some(api.auth.authenticate(&headers, Some(peer)).await?)
    } else {
        None
    };
    let may = |a: Action| who.as_ref().is_none_or(|p| allowed(p.role, a));
    Ok(Json(json!({
        "auth_enforced": enforced,
        "user": who.as_ref().map(|p| p.name.clone()),
        "role": who.as_ref().map(|p| p.role.to_string()),
        "may": {
            "enqueue": may(Action::Enqueue),
            "cancel_own": may(Action::CancelOwn),
            "cancel_any": may(Action::CancelAny),
            "bulk": may(Action::Bulk),
            "manage_users": may(Action::ManageUsers),
        },
    }))
    .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// How many one-minute buckets, up to a day's.
    minutes: Option<u32>,
}

/// Most buckets one history answers.
const MAX_MINUTES: u32 = 24 * 60;

#[utoipa::path(get, path = "/api/v1/queue/history", tag = "overview", params(HistoryQuery), responses((status = 200, description = "`{\"bucket_seconds\", \"sampled\", \"buckets\": [...]}` oldest first"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn history(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<HistoryQuery>,
) -> ApiResult {
    let minutes = q.minutes.unwrap_or(60);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(ApiError(Status::invalid_argument(format!(
            "minutes must be 1 to {MAX_MINUTES}, not {minutes}"
        ))));
    }
    // Only the check: the read is the store's, through the client handlers' timeout.
    request(&api, &headers, peer, Action::Read, ()).await?;
    let now = Utc::now();
    let width = chrono::Duration::minutes(1);
    let since = now - width * minutes as i32;
    let store = &api.svc.shared.store;
    let rows = api
        .svc
        .store_call("recent_times", store.recent_times(since, MAX_HISTORY_ROWS))
        .await?;
    let sampled = rows.iter().filter(|r| r.finished_at.is_some()).count() >= MAX_HISTORY_ROWS;
    let buckets: Vec<_> = history::buckets(&rows, now, width, minutes as usize)
        .into_iter()
        .map(|b| {
            json!({
                "start": b.start,
                "started": b.started,
                "succeeded": b.succeeded,
                "failed": b.failed,
                "cancelled": b.cancelled,
                "queue_wait_p50_seconds": b.queue_wait_p50,
                "queue_wait_p95_seconds": b.queue_wait_p95,
            })
        })
        .collect();
    Ok(Json(json!({
        "bucket_seconds": width.num_seconds(),
        // More tasks ended in the window than one answer reads: the counts of its
        // oldest minutes are low.
        "sampled": sampled,
        "buckets": buckets,
    }))
    .into_response())
}
