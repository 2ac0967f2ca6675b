//! The HTTP JSON API, `/api/v1`, on the `--http-listen` port: a thin transport over the
//! same `ClientService` handlers the gRPC port runs, so validation, limits, standbys'
//! refusals and ownership checks have one source. Each route names the [`Action`] it
//! needs; a bearer token is checked exactly as for gRPC (roles in `auth/roles.rs`).
//!
//! - `GET  /api/v1/tasks?status=queued,running&worker=W&submitter=S&image=I&label=k=v,k2=v2`
//!   `&since=T&until=T&q=TEXT&order=asc|desc&limit=N&page_token=P` (criteria: `task_filter`)
//! - `POST /api/v1/tasks` (a JSON [`ApiSpec`]) → `{"id", "created"}`
//! - `GET  /api/v1/tasks/{id}` (full id or prefix), with its attempts
//! - `POST /api/v1/tasks/{id}/cancel`
//! - `GET  /api/v1/tasks/{id}/logs?attempt=N&stream=stdout|stderr` → JSON lines array;
//!   with `follow=true`, Server-Sent Events (`event: log`, then `event: end`)
//! - `POST /api/v1/tasks/{id}/retry` → `{"id"}` of the new task
//! - `POST /api/v1/tasks/cancel`, `POST /api/v1/tasks/retry`: every task a JSON filter
//!   matches (`status`, `worker`, `submitter`, `image`, `labels`, `since`, `until`, `q`,
//!   `dry_run`, `limit`)
//! - `POST /api/v1/workers/{id}/cordon`, `/uncordon`, `/drain` (`{"deadline_seconds"}`)
//! - `GET  /api/v1/workers`, `GET /api/v1/queue/stats`, `GET /api/v1/queue/history?minutes=60`
//!   (per minute: starts, ends by outcome, queue-wait p50/p95)
//! - `GET  /api/v1/whoami`: the token's user, role and what it may do
//! - `GET  /api/v1/users`; `POST /api/v1/users` (`{"name", "role"}`) → 201 `{"name",
//!   "role", "token"}`; `DELETE /api/v1/users/{name}` → 204; `PUT
//!   /api/v1/users/{name}/quota` → the user (admin)
//! - `POST /api/v1/join-token/rotate` (`{"grace_seconds"}`) → `{"join_token",
//!   "grace_seconds", "previous_valid_until"}` (admin)
//!
//! Errors are `{"error": {"code": "NOT_FOUND", "message": "..."}}` with the HTTP status
//! of the gRPC code (and `leader_url` when a standby refuses).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cloudai_proto::pb;
use serde_json::Value;
use tonic::transport::server::TcpConnectInfo;
use tonic::{Code, Status};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin_service::AdminSvc;
use crate::auth::{allowed, Action, Auth, Principal};
use crate::client_service::ClientSvc;

mod admin;
mod cluster;
mod logs;
mod openapi;
mod overview;
mod tasks;
mod users;

/// What the API routes share.
#[derive(Clone)]
pub struct Api {
    /// The gRPC client handlers, shared with the gRPC port.
    pub svc: Arc<ClientSvc>,
    /// The gRPC admin handlers.
    pub admin: Arc<AdminSvc>,
    /// The same checks as the gRPC port.
    pub auth: Arc<Auth>,
}

/// The `/api/v1` routes and, at `/api/v1/openapi.json`, their OpenAPI document: each
/// handler's `#[utoipa::path]` registers its route and its documentation together.
pub fn routes(api: Api) -> Router {
    let (router, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(tasks::list, tasks::enqueue))
        .routes(routes!(tasks::get_one))
        .routes(routes!(tasks::cancel))
        .routes(routes!(admin::retry))
        .routes(routes!(admin::cancel_matching))
        .routes(routes!(admin::retry_matching))
        .routes(routes!(logs::logs))
        .routes(routes!(cluster::workers))
        .routes(routes!(admin::cordon))
        .routes(routes!(admin::uncordon))
        .routes(routes!(admin::drain))
        .routes(routes!(cluster::stats))
        .routes(routes!(overview::history))
        .routes(routes!(overview::whoami))
        .routes(routes!(users::list, users::add))
        .routes(routes!(users::remove))
        .routes(routes!(users::set_quota))
        .routes(routes!(users::rotate))
        .split_for_parts();
    let doc = Arc::new(doc);
    router
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .with_state(api)
}

/// The body of every error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// The gRPC code's name: `NOT_FOUND`, `INVALID_ARGUMENT`, `PERMISSION_DENIED`...
    code: String,
    /// What to do about it, for a person.
    message: String,
    /// When a standby refused: the leader's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    leader_url: Option<String>,
}

/// An error answered as JSON with the HTTP status of its gRPC code.
pub(crate) struct ApiError(pub(crate) Status);

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
        let leader_url = s
            .metadata()
            .get("cloudai-leader-url")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = ErrorBody {
            error: ErrorDetail {
                code: code_name(s.code()),
                message: s.message().to_string(),
                leader_url,
            },
        };
        (http, Json(body)).into_response()
    }
}

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        ApiError(s)
    }
}

pub(crate) fn code_name(c: Code) -> String {
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

pub(crate) type ApiResult = Result<Response, ApiError>;

/// Authenticates the call for `action` and wraps `msg` as the gRPC handlers expect it:
/// the caller as its [`Principal`], the peer as its connect info.
pub(crate) async fn request<T>(
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

pub(crate) fn status_of(s: &str) -> Result<cloudai_queue::TaskStatus, ApiError> {
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

/// A protobuf timestamp as the API writes times (RFC 3339 in JSON); `None` when absent.
pub(crate) fn time_json(
    t: Option<prost_types::Timestamp>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    t.and_then(|t| cloudai_proto::convert::from_timestamp("time", &t).ok())
}

/// A task as the API writes it: the stored task, plus `wait_reason` (`code`, `detail`,
/// `until`) while it waits.
pub(crate) fn task_json(mut t: pb::Task) -> Result<Value, ApiError> {
    let reason = t.wait_reason.take();
    let t: cloudai_queue::Task = t
        .try_into()
        .map_err(|e: cloudai_proto::ConvertError| ApiError(Status::internal(e.to_string())))?;
    let mut v = serde_json::to_value(t).map_err(|e| ApiError(Status::internal(e.to_string())))?;
    if let Some(r) = reason {
        v["wait_reason"] = serde_json::json!({
            "code": cloudai_proto::convert::wait_reason_name(r.code),
            "detail": r.detail,
            "until": time_json(r.until),
        });
    }
    Ok(v)
}
