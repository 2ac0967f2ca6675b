//! `AdminService`'s users and worker join token: `AddUser`, `ListUsers`, `RemoveUser`,
//! `SetUserQuota` and `RotateJoinToken` (PROTOCOL.md, "AdminService"). They read and write the store alone,
//! through the client handlers' store access (its timeout and metrics), so any master
//! answers them, a standby too. The keyed hashes are made with the secret of the auth
//! layer that admitted the call; the operator actions themselves are
//! [`crate::auth::setup`]'s, which the CLI also runs straight on the store (`--store`).

use std::sync::Arc;

use cloudai_proto::pb;
use cloudai_queue::{Role, UserRecord};
use tonic::{Request, Status};

use cloudai_proto::convert::users::quota_of;

use crate::auth::{setup, Auth, ServerSecret};
use crate::client_service::ClientSvc;
use crate::error::status;

/// The server secret of the auth layer in front of `request`; refused when the master
/// does not require auth (it would check no token it made).
fn secret_of<T>(request: &Request<T>, what: &str) -> Result<Arc<Auth>, Status> {
    let auth = crate::auth::auth_of(request)
        .ok_or_else(|| Status::internal("no auth layer in front of the admin service"))?;
    if auth.secret().is_none() {
        return Err(Status::failed_precondition(format!(
            "this master does not require auth ({:?} mode), so it would check no token: \
             {what} on a master started with --require-auth (or on a non-loopback address), \
             or write the store directly with `--store` and `--secret-file`",
            auth.mode()
        )));
    }
    Ok(auth)
}

fn secret(auth: &Auth) -> Result<&ServerSecret, Status> {
    auth.secret()
        .ok_or_else(|| Status::internal("auth is enforced without a server secret"))
}

/// Who asks, for the log.
fn caller<T>(request: &Request<T>) -> String {
    crate::auth::submitter(request).unwrap_or_else(|| "-".into())
}

/// A user on the wire, without its token hash.
pub fn user_info(u: &UserRecord) -> pb::UserInfo {
    pb::UserInfo {
        name: u.name.clone(),
        role: u.role.as_str().to_string(),
        created_at: Some(cloudai_proto::convert::timestamp(u.created_at)),
        quota: u.quota.map(pb::Quota::from),
    }
}

/// `AddUser`: a new user and its API token, shown once.
pub async fn add_user(
    client: &ClientSvc,
    request: Request<pb::AddUserRequest>,
) -> Result<pb::AddUserResponse, Status> {
    let auth = secret_of(&request, "add users")?;
    let by = caller(&request);
    let r = request.into_inner();
    cloudai_queue::users::validate_user_name(&r.name).map_err(status)?;
    let role: Role = r.role.parse().map_err(status)?;
    let store = client.shared.store.as_ref();
    let (user, token) = client
        .store_call(
            "add_user",
            setup::add_user_record(store, secret(&auth)?, &r.name, role, quota_of(r.quota)),
        )
        .await?;
    tracing::info!(user = %user.name, role = %role, by = %by, "user added");
    Ok(pb::AddUserResponse {
        user: Some(user_info(&user)),
        token,
    })
}

/// `ListUsers`: every user, by name.
pub async fn list_users(
    client: &ClientSvc,
    _request: Request<pb::ListUsersRequest>,
) -> Result<pb::ListUsersResponse, Status> {
    let mut users = client
        .store_call("list_users", client.shared.store.list_users())
        .await?;
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(pb::ListUsersResponse {
        users: users.iter().map(user_info).collect(),
    })
}

/// `RemoveUser`: its token is refused from the next call on (every call looks the token
/// up in the store).
pub async fn remove_user(
    client: &ClientSvc,
    request: Request<pb::RemoveUserRequest>,
) -> Result<pb::RemoveUserResponse, Status> {
    let by = caller(&request);
    let name = request.into_inner().name;
    let removed = client
        .store_call("remove_user", client.shared.store.remove_user(&name))
        .await?;
    if !removed {
        return Err(Status::not_found(format!(
            "no user named {name:?} (`cloudai users list` lists them)"
        )));
    }
    tracing::info!(user = %name, by = %by, "user removed");
    Ok(pb::RemoveUserResponse {})
}

/// `SetUserQuota`: the user with its new quota (none when no limit is set). This master's
/// dispatcher reads quotas again at once; others within `fairness::REFRESH`.
pub async fn set_user_quota(
    client: &ClientSvc,
    request: Request<pb::SetUserQuotaRequest>,
) -> Result<pb::UserInfo, Status> {
    let by = caller(&request);
    let r = request.into_inner();
    let quota = quota_of(r.quota);
    let store = client.shared.store.as_ref();
    let found = client
        .store_call("set_user_quota", store.set_user_quota(&r.name, quota))
        .await?;
    if !found {
        return Err(Status::not_found(format!(
            "no user named {:?} (`cloudai users list` lists them)",
            r.name
        )));
    }
    client.shared.fair.quotas_changed();
    client.shared.wake_dispatcher();
    let user = client
        .store_call("get_user", store.get_user(&r.name))
        .await?
        .ok_or_else(|| Status::not_found(format!("user {:?} was removed meanwhile", r.name)))?;
    tracing::info!(user = %r.name, quota = ?quota, by = %by, "user quota set");
    Ok(user_info(&user))
}

/// `RotateJoinToken`: a new join token, shown once; the replaced one admits workers for
/// the grace, after which every master ends the streams of those that joined with it.
pub async fn rotate_join_token(
    client: &ClientSvc,
    request: Request<pb::RotateJoinTokenRequest>,
) -> Result<pb::RotateJoinTokenResponse, Status> {
    let auth = secret_of(&request, "rotate the join token")?;
    let by = caller(&request);
    let grace = match request.into_inner().grace {
        None => std::time::Duration::ZERO,
        Some(d) => std::time::Duration::try_from(d)
            .map_err(|_| Status::invalid_argument("the grace must not be negative"))?,
    };
    let store = client.shared.store.as_ref();
    let (join_token, until) = client
        .store_call(
            "rotate_join_token",
            setup::rotate_join_token(store, secret(&auth)?, grace),
        )
        .await?;
    tracing::warn!(
        by = %by,
        grace_seconds = grace.as_secs_f64(),
        "worker join token rotated; workers that joined with the old one are disconnected \
         when its grace is over"
    );
    Ok(pb::RotateJoinTokenResponse {
        join_token,
        previous_valid_until: until.map(cloudai_proto::convert::timestamp),
    })
}
