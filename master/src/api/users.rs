//! `/api/v1/users` and `/api/v1/join-token/rotate`: the `AdminService` user and join-token
//! handlers over HTTP (an admin's). The request carries the API's [`Auth`], as the gRPC
//! auth layer puts it, for the handlers that hash with the server secret.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use cloudai_proto::pb;
use cloudai_proto::pb::admin_service_server::AdminService;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::Status;

use super::{request, Api, ApiError, ApiResult, ErrorBody};
use crate::auth::Action;

/// `msg` as an authenticated admin request, with the API's auth checks attached.
async fn admin_request<T>(
    api: &Api,
    headers: &HeaderMap,
    peer: SocketAddr,
    msg: T,
) -> Result<tonic::Request<T>, ApiError> {
    let mut req = request(api, headers, peer, Action::ManageUsers, msg).await?;
    req.extensions_mut().insert(api.auth.clone());
    Ok(req)
}

fn body<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError(Status::invalid_argument(format!(
            "not a valid {what} (JSON): {e}"
        )))
    })
}

fn user_json(u: &pb::UserInfo) -> Value {
    json!({
        "name": u.name,
        "role": u.role,
        "created_at": super::time_json(u.created_at),
        "quota": u.quota.map(|q| QuotaBody {
            cpu_millis: q.cpu_millis,
            memory_bytes: q.memory_bytes,
            gpus: q.gpus,
            running: q.running,
        }),
    })
}

/// A user's quota: what its assigned and running tasks may reserve at once. Each limit
/// left out (or null) is unlimited.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaBody {
    /// CPU in thousandths of a core.
    #[serde(default)]
    cpu_millis: Option<u64>,
    /// Memory in bytes.
    #[serde(default)]
    memory_bytes: Option<u64>,
    /// Whole GPUs.
    #[serde(default)]
    gpus: Option<u32>,
    /// Tasks assigned or running at once.
    #[serde(default)]
    running: Option<u32>,
}

impl From<QuotaBody> for pb::Quota {
    fn from(q: QuotaBody) -> Self {
        pb::Quota {
            cpu_millis: q.cpu_millis,
            memory_bytes: q.memory_bytes,
            gpus: q.gpus,
            running: q.running,
        }
    }
}

/// `GET /api/v1/users` → `{"users": [{"name", "role", "created_at"}]}`.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", operation_id = "list_users", responses((status = 200, description = "`{\"users\": [{\"name\", \"role\", \"created_at\"}]}`"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn list(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult {
    let req = admin_request(&api, &headers, peer, pb::ListUsersRequest {}).await?;
    let r = api.admin.list_users(req).await?.into_inner();
    let users: Vec<Value> = r.users.iter().map(user_json).collect();
    Ok(Json(json!({ "users": users })).into_response())
}

/// `POST /api/v1/users` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    /// The name (recorded on the tasks it submits).
    name: String,
    /// viewer, submitter or admin.
    role: String,
    /// Its quota; none when left out.
    #[serde(default)]
    quota: Option<QuotaBody>,
}

/// `POST /api/v1/users` `{"name", "role"}` → 201 `{"name", "role", "token"}` (the token
/// shown this once).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", operation_id = "add_user", request_body = NewUser, responses((status = 201, description = "`{\"name\", \"role\", \"created_at\", \"token\"}`: the API token, shown this once"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn add(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let b: NewUser = body(&bytes, "user (`{\"name\", \"role\"}`)")?;
    let msg = pb::AddUserRequest {
        name: b.name,
        role: b.role,
        quota: b.quota.map(Into::into),
    };
    let req = admin_request(&api, &headers, peer, msg).await?;
    let r = api.admin.add_user(req).await?.into_inner();
    let u = r
        .user
        .ok_or_else(|| ApiError(Status::internal("the user was added but not returned")))?;
    let mut v = user_json(&u);
    v["token"] = json!(r.token);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `DELETE /api/v1/users/{name}` → 204; its token is refused from then on.
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users", operation_id = "remove_user", params(("name" = String, Path, description = "The user's name")), responses((status = 204, description = "Removed; its token is refused from then on"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn remove(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let req = admin_request(&api, &headers, peer, pb::RemoveUserRequest { name }).await?;
    api.admin.remove_user(req).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /api/v1/users/{name}/quota` `{"cpu_millis", "memory_bytes", "gpus", "running"}`
/// (each optional; `{}` removes the quota) → the user.
#[utoipa::path(put, path = "/api/v1/users/{name}/quota", tag = "users", operation_id = "set_user_quota", params(("name" = String, Path, description = "The user's name")), request_body = QuotaBody, responses((status = 200, description = "`{\"name\", \"role\", \"created_at\", \"quota\"}`: the user with its new quota"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn set_quota(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let q: QuotaBody = body(
        &bytes,
        "quota (`{\"cpu_millis\", \"memory_bytes\", \"gpus\", \"running\"}`, each optional)",
    )?;
    let msg = pb::SetUserQuotaRequest {
        name,
        quota: Some(q.into()),
    };
    let req = admin_request(&api, &headers, peer, msg).await?;
    let u = api.admin.set_user_quota(req).await?.into_inner();
    Ok(Json(user_json(&u)).into_response())
}

/// `POST /api/v1/join-token/rotate` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Rotate {
    /// Required: 0 ends the old token at once, and so is never chosen by omission.
    grace_seconds: f64,
}

/// `POST /api/v1/join-token/rotate` `{"grace_seconds"}` → `{"join_token",
/// "grace_seconds", "previous_valid_until"}`.
#[utoipa::path(post, path = "/api/v1/join-token/rotate", tag = "users", operation_id = "rotate_join_token", request_body = Rotate, responses((status = 200, description = "`{\"join_token\", \"grace_seconds\", \"previous_valid_until\"}`"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn rotate(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let b: Rotate = body(
        &bytes,
        "rotation (`{\"grace_seconds\": N}`; 0 ends the old token at once)",
    )?;
    if !(b.grace_seconds.is_finite() && b.grace_seconds >= 0.0) {
        return Err(ApiError(Status::invalid_argument(
            "grace_seconds must be 0 or more",
        )));
    }
    let grace = std::time::Duration::try_from_secs_f64(b.grace_seconds)
        .map_err(|_| ApiError(Status::invalid_argument("grace_seconds is too large")))?;
    let msg = pb::RotateJoinTokenRequest {
        grace: prost_types::Duration::try_from(grace).ok(),
    };
    let req = admin_request(&api, &headers, peer, msg).await?;
    let r = api.admin.rotate_join_token(req).await?.into_inner();
    let until = super::time_json(r.previous_valid_until);
    Ok(Json(json!({
        "join_token": r.join_token,
        "grace_seconds": b.grace_seconds,
        "previous_valid_until": until,
    }))
    .into_response())
}
