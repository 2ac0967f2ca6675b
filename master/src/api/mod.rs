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
//! - `POST /api/v1/tasks/{id}/retry` → `{"id"}` of the new task
//! - `POST /api/v1/tasks/cancel`, `POST /api/v1/tasks/retry`: every task a JSON filter
//!   matches (`status`, `worker`, `submitter`, `image`, `dry_run`, `limit`)
//! - `POST /api/v1/workers/{id}/cordon`, `/uncordon`, `/drain` (`{"deadline_seconds"}`)
//! - `GET  /api/v1/workers`, `GET /api/v1/queue/stats`
//!
//! Errors are `{"error": {"code": "NOT_FOUND", "message": "..."}}` with the HTTP status
//! of the gRPC code (and `leader_url` when a standby refuses).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloudai_proto::pb;
use serde_json::{json, Value};
use tonic::transport::server::TcpConnectInfo;
use tonic::{Code, Status};

use crate::admin_service::AdminSvc;
use crate::auth::{allowed, Action, Auth, Principal};
use crate::client_service::ClientSvc;

mod admin;
mod cluster;
mod logs;
mod tasks;

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

/// The `/api/v1` routes.
pub fn routes(api: Api) -> Router {
    Router::new()
        .route("/api/v1/tasks", get(tasks::list).post(tasks::enqueue))
        .route("/api/v1/tasks/:id", get(tasks::get_one))
        .route("/api/v1/tasks/:id/cancel", post(tasks::cancel))
        .route("/api/v1/tasks/:id/retry", post(admin::retry))
        .route("/api/v1/tasks/cancel", post(admin::cancel_matching))
        .route("/api/v1/tasks/retry", post(admin::retry_matching))
        .route("/api/v1/tasks/:id/logs", get(logs::logs))
        .route("/api/v1/workers", get(cluster::workers))
        .route("/api/v1/workers/:id/cordon", post(admin::cordon))
        .route("/api/v1/workers/:id/uncordon", post(admin::uncordon))
        .route("/api/v1/workers/:id/drain", post(admin::drain))
        .route("/api/v1/queue/stats", get(cluster::stats))
        .with_state(api)
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

pub(crate) fn task_json(t: pb::Task) -> Result<Value, ApiError> {
    let t: cloudai_queue::Task = t
        .try_into()
        .map_err(|e: cloudai_proto::ConvertError| ApiError(Status::internal(e.to_string())))?;
    serde_json::to_value(t).map_err(|e| ApiError(Status::internal(e.to_string())))
}
