//! [`Auth`]: the checks the master runs on every call, and [`AuthLayer`], the tower layer
//! that runs them before any service sees a request.
//!
//! - Client and agent calls: the `authorization: Bearer <token>` metadata names a user
//!   (found by the keyed hash of the token); the user's role must allow the method's
//!   [`Action`]. The [`Principal`] is put into the request's extensions for the handlers
//!   (`submitted_by`, cancel ownership).
//! - The worker stream: with `--client-ca`, a verified client certificate is required;
//!   the join token in `Register` is checked by the worker service through the
//!   [`JoinCheck`](super::join::JoinCheck) placed in the extensions.
//! - Health checking and reflection are public.
//!
//! Every refusal is `UNAUTHENTICATED` (no or bad credentials) or `PERMISSION_DENIED`
//! (role too small), with a message that says what to do, and is logged with the peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use cloudai_queue::{QueueStore, Role};
use futures::future::BoxFuture;
use tonic::body::BoxBody;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::join::JoinCheck;
use super::mode::AuthMode;
use super::roles::{allowed, cancel_action, least_role, rpc_rule, Action, RpcRule};
use super::token::ServerSecret;
use crate::metrics::ReasonLabel;

/// Who is calling, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user's name (recorded as `submitted_by`).
    pub name: String,
    /// The user's role.
    pub role: Role,
    /// Where the call came from, for logs.
    pub peer: Option<SocketAddr>,
}

/// The master's authentication state for one run.
pub struct Auth {
    pub(super) mode: AuthMode,
    pub(super) secret: Option<ServerSecret>,
    pub(super) store: Arc<dyn QueueStore>,
    require_worker_cert: bool,
    /// Hash of the in-memory admin token of the master's own shell.
    shell_token_hash: Option<String>,
    /// Where refusals are counted (`cloudai_auth_refusals_total`), when metrics are on.
    refusals: Option<Family<ReasonLabel, Counter>>,
}

impl Auth {
    /// Checks nothing (local-dev or `--insecure` mode).
    pub fn open(mode: AuthMode, store: Arc<dyn QueueStore>, require_worker_cert: bool) -> Auth {
        Auth {
            mode,
            secret: None,
            store,
            require_worker_cert,
            shell_token_hash: None,
            refusals: None,
        }
    }

    /// Checks tokens against `store` with `secret`. `shell_token` is accepted as an admin
    /// named `master-shell` without being stored.
    pub fn enforced(
        secret: ServerSecret,
        store: Arc<dyn QueueStore>,
        require_worker_cert: bool,
        shell_token: Option<&str>,
    ) -> Auth {
        Auth {
            mode: AuthMode::Required,
            shell_token_hash: shell_token.map(|t| secret.hash(t)),
            refusals: None,
            secret: Some(secret),
            store,
            require_worker_cert,
        }
    }

    /// Counts each refusal in `family`, by reason (`unauthenticated`, `permission_denied`).
    pub fn count_refusals_in(mut self, family: Family<ReasonLabel, Counter>) -> Self {
        self.refusals = Some(family);
        self
    }

    fn refused(
        &self,
        path: &str,
        peer: Option<SocketAddr>,
        user: Option<&str>,
        s: Status,
    ) -> Status {
        if let Some(f) = &self.refusals {
            let reason = match s.code() {
                tonic::Code::PermissionDenied => "permission_denied",
                _ => "unauthenticated",
            };
            f.get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
        }
        refused(path, peer, user, s)
    }

    /// The mode in force.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The server secret that keys the stored hashes (`None` when auth is off).
    pub fn secret(&self) -> Option<&ServerSecret> {
        self.secret.as_ref()
    }

    /// Admits or refuses a request before routing; on success an authenticated client
    /// call carries its [`Principal`], and a worker stream a [`JoinCheck`].
    pub async fn admit<B>(self: &Arc<Self>, req: &mut http::Request<B>) -> Result<(), Status> {
        let path = req.uri().path().to_string();
        let peer = peer_of(req);
        match rpc_rule(&path) {
            RpcRule::Public => Ok(()),
            RpcRule::Worker => {
                if self.require_worker_cert && !has_client_cert(req) {
                    let s = Status::unauthenticated(
                        "workers must present a client certificate signed by the master's \
                         --client-ca (worker flags --tls-cert and --tls-key)",
                    );
                    return Err(self.refused(&path, peer, None, s));
                }
                let bound = client_cert(req).and_then(|der| super::pki::bound_worker_id(&der));
                req.extensions_mut()
                    .insert(JoinCheck::new(self.clone(), peer, bound));
                Ok(())
            }
            RpcRule::Client(action) => {
                // The handlers that add users and rotate the join token hash with its secret.
                req.extensions_mut().insert(self.clone());
                if !self.mode.enforced() {
                    return Ok(());
                }
                let principal = self
                    .authenticate(req.headers(), peer)
                    .await
                    .map_err(|s| self.refused(&path, peer, None, s))?;
                if !allowed(principal.role, action) {
                    let s = denied(&principal, action);
                    return Err(self.refused(&path, peer, Some(&principal.name), s));
                }
                req.extensions_mut().insert(principal);
                Ok(())
            }
        }
    }

    /// The user a call's `authorization: Bearer` header names (used by the HTTP API too).
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Principal, Status> {
        let token = bearer(headers)?;
        let secret = self
            .secret
            .as_ref()
            .ok_or_else(|| Status::internal("auth is enforced without a server secret"))?;
        let hash = secret.hash(token);
        if self.shell_token_hash.as_deref() == Some(hash.as_str()) {
            return Ok(Principal {
                name: "master-shell".into(),
                role: Role::Admin,
                peer,
            });
        }
        match self.store.user_by_token_hash(&hash).await {
            Ok(Some(user)) => Ok(Principal {
                name: user.name,
                role: user.role,
                peer,
            }),
            Ok(None) => Err(Status::unauthenticated(
                "invalid API token: no user has it (it may have been rotated or removed)",
            )),
            Err(e) => Err(crate::error::status(e)),
        }
    }
}

/// Who submits the tasks of `request`: the authenticated user, `None` when auth is off.
pub fn submitter<T>(request: &tonic::Request<T>) -> Option<String> {
    principal(request).map(|p| p.name)
}

/// The authenticated caller of `request`, `None` when auth is off.
pub fn principal<T>(request: &tonic::Request<T>) -> Option<Principal> {
    request.extensions().get::<Principal>().cloned()
}

/// `Ok` when the caller may cancel a task submitted by `submitted_by`: always when auth is
/// off (`principal` is `None`), its own task for a submitter, any task for an admin.
pub fn check_cancel(
    principal: Option<&Principal>,
    task_id: &str,
    submitted_by: Option<&str>,
) -> Result<(), Status> {
    let Some(p) = principal else {
        return Ok(());
    };
    let action = cancel_action(&p.name, submitted_by);
    if allowed(p.role, action) {
        return Ok(());
    }
    let owner = submitted_by.unwrap_or("an unknown user");
    let s = Status::permission_denied(format!(
        "user {} ({}) may not cancel task {task_id}: it was submitted by {owner}; only its \
         submitter or an admin may cancel it",
        p.name, p.role
    ));
    Err(refused(
        "/cloudai.v1.ClientService/CancelTask",
        p.peer,
        Some(&p.name),
        s,
    ))
}

fn denied(p: &Principal, action: Action) -> Status {
    Status::permission_denied(format!(
        "user {} has role {} and may not {}; that needs role {} or higher",
        p.name,
        p.role,
        action.describe(),
        least_role(action)
    ))
}

fn refused(path: &str, peer: Option<SocketAddr>, user: Option<&str>, s: Status) -> Status {
    tracing::warn!(
        peer = %show(peer),
        method = %path,
        user = user.unwrap_or("-"),
        code = ?s.code(),
        reason = %s.message(),
        "request refused"
    );
    s
}

pub(super) fn show(peer: Option<SocketAddr>) -> String {
    peer.map(|p| p.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The token of an `authorization: Bearer <token>` header.
fn bearer(headers: &http::HeaderMap) -> Result<&str, Status> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(Status::unauthenticated(
            "missing API token: this master requires authentication; pass --token or set \
             CLOUDAI_TOKEN (an admin creates one with `cloudai users add NAME --role ROLE`)",
        ));
    };
    let text = value
        .to_str()
        .map_err(|_| Status::unauthenticated("malformed authorization header"))?;
    match text
        .trim_end()
        .split_once(' ')
        .unwrap_or((text.trim_end(), ""))
    {
        (scheme, token) if scheme.eq_ignore_ascii_case("bearer") && token.trim().is_empty() => {
            Err(Status::unauthenticated(
                "the API token is empty: pass the token `cloudai users add` printed \
                 (--token or CLOUDAI_TOKEN)",
            ))
        }
        (scheme, token) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(Status::unauthenticated(
            "malformed authorization header: expected `Bearer <token>`",
        )),
    }
}

fn peer_of<B>(req: &http::Request<B>) -> Option<SocketAddr> {
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
}

fn has_client_cert<B>(req: &http::Request<B>) -> bool {
    client_cert(req).is_some()
}

/// The client's own certificate (DER), first of the chain it presented.
fn client_cert<B>(req: &http::Request<B>) -> Option<Vec<u8>> {
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.peer_certs())?;
    certs.first().map(|c| c.as_ref().to_vec())
}

/// Tower layer running [`Auth::admit`] in front of every service.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Auth>,
}

impl AuthLayer {
    /// A layer checking with `auth`.
    pub fn new(auth: Arc<Auth>) -> Self {
        AuthLayer { auth }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the master's routes.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Auth>,
}

impl<S> tower_service::Service<http::Request<BoxBody>> for AuthService<S>
where
    S: tower_service::Service<http::Request<BoxBody>, Response = http::Response<BoxBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<BoxBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<BoxBody>) -> Self::Future {
        // The clone is not ready; swap it in so the ready service handles this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            match auth.admit(&mut req).await {
                Ok(()) => inner.call(req).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudai_queue::sqlite::SqliteStore;
    use cloudai_queue::{StoreOptions, UserRecord};

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn QueueStore> {
        Arc::new(
            SqliteStore::open(&dir.path().join("q.db"), StoreOptions::default())
                .await
                .unwrap(),
        )
    }

    fn request(path: &str, auth: Option<&str>) -> http::Request<()> {
        let mut b = http::Request::builder().uri(format!("http://m{path}"));
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap()
    }

    #[tokio::test]
    async fn bearer_tokens_roles_and_messages() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let secret = ServerSecret::from_bytes(b"k");
        let viewer_token = "cai_viewer";
        store
            .add_user(&UserRecord {
                name: "vera".into(),
                role: Role::Viewer,
                token_hash: secret.hash(viewer_token),
                created_at: chrono::Utc::now(),
                quota: None,
            })
            .await
            .unwrap();
        let auth = Arc::new(Auth::enforced(secret, store, false, Some("cai_shell")));

        let list = "/cloudai.v1.ClientService/ListTasks";
        let enqueue = "/cloudai.v1.ClientService/Enqueue";

        let e = auth.admit(&mut request(list, None)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("missing API token"));
        let e = auth
            .admit(&mut request(list, Some("Basic abc")))
            .await
            .unwrap_err();
        assert!(e.message().contains("malformed"));
        let e = auth
            .admit(&mut request(list, Some("Bearer cai_wrong")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("invalid API token"));

        let mut ok = request(list, Some("Bearer cai_viewer"));
        auth.admit(&mut ok).await.unwrap();
        let p = ok.extensions().get::<Principal>().unwrap();
        assert_eq!((p.name.as_str(), p.role), ("vera", Role::Viewer));

        let e = auth
            .admit(&mut request(enqueue, Some("bearer cai_viewer")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            e.message(),
            "user vera has role viewer and may not enqueue tasks; that needs role submitter or higher"
        );

        let mut shell = request(enqueue, Some("Bearer cai_shell"));
        auth.admit(&mut shell).await.unwrap();
        assert_eq!(
            shell.extensions().get::<Principal>().unwrap().role,
            Role::Admin
        );

        auth.admit(&mut request("/grpc.health.v1.Health/Check", None))
            .await
            .unwrap();
        let mut worker = request("/cloudai.v1.WorkerService/Connect", None);
        auth.admit(&mut worker).await.unwrap();
        assert!(worker.extensions().get::<JoinCheck>().is_some());
    }

    #[tokio::test]
    async fn join_tokens_and_open_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let secret = ServerSecret::from_bytes(b"k");
        store
            .set_join_token_hash(&secret.hash("caj_right"), true)
            .await
            .unwrap();
        let auth = Auth::enforced(secret, store.clone(), false, None);
        auth.verify_join_token("caj_right").await.unwrap();
        let e = auth.verify_join_token("caj_wrong").await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("invalid join token"));
        let e = auth.verify_join_token("").await.unwrap_err();
        assert!(e.message().contains("missing join token"));

        let open = Arc::new(Auth::open(AuthMode::LocalDev, store, false));
        open.verify_join_token("").await.unwrap();
        let mut r = request("/cloudai.v1.ClientService/Enqueue", None);
        open.admit(&mut r).await.unwrap();
        assert!(r.extensions().get::<Principal>().is_none());

        let certs = Arc::new(Auth::open(AuthMode::LocalDev, open.store.clone(), true));
        let e = certs
            .admit(&mut request("/cloudai.v1.WorkerService/Connect", None))
            .await
            .unwrap_err();
        assert!(e.message().contains("client certificate"));
    }

    #[test]
    fn cancel_ownership() {
        let sub = Principal {
            name: "sam".into(),
            role: Role::Submitter,
            peer: None,
        };
        check_cancel(Some(&sub), "t1", Some("sam")).unwrap();
        let e = check_cancel(Some(&sub), "t1", Some("alice")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("submitted by alice"));
        let admin = Principal {
            role: Role::Admin,
            ..sub.clone()
        };
        check_cancel(Some(&admin), "t1", Some("alice")).unwrap();
        check_cancel(None, "t1", Some("alice")).unwrap();
    }
}
