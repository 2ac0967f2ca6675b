//! Admitting a registering worker: its join token (the current one, or the one a rotation
//! replaced, during its grace) and, for a certificate from `certs issue`, the worker id it
//! was issued for. The auth layer puts a [`JoinCheck`] into the worker stream's request;
//! the worker service runs it on `Register` and hands the token it matched
//! ([`JoinedWith`]) to [`super::rotation`], which ends the stream once that token no longer
//! admits.

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::Status;

use super::guard::{show, Auth};

/// Which join token a worker registered with: the stored hash its token matched (the
/// current one, or the replaced one during its grace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedWith(pub String);

impl Auth {
    /// Checks a worker's join token (always accepted when auth is off).
    pub async fn verify_join_token(&self, token: &str) -> Result<(), Status> {
        self.admit_join_token(token).await.map(|_| ())
    }

    /// Checks a worker's join token; the stored hash it matched, `None` when auth is off
    /// (nothing to match, nothing to end later).
    pub async fn admit_join_token(&self, token: &str) -> Result<Option<JoinedWith>, Status> {
        if !self.mode.enforced() {
            return Ok(None);
        }
        let secret = self
            .secret
            .as_ref()
            .ok_or_else(|| Status::internal("auth is enforced without a server secret"))?;
        if token.is_empty() {
            return Err(Status::unauthenticated(
                "missing join token: start the worker with --join-token or CLOUDAI_JOIN_TOKEN \
                 (the master prints it at its first start; `cloudai token rotate` makes a new one)",
            ));
        }
        let stored = self
            .store
            .join_token_hash()
            .await
            .map_err(crate::error::status)?;
        if let Some(h) = stored.filter(|h| secret.verify(token, h)) {
            return Ok(Some(JoinedWith(h)));
        }
        // The token a rotation replaced, during its grace (`cloudai token rotate --grace`).
        let previous = self
            .store
            .previous_join_token()
            .await
            .map_err(crate::error::status)?;
        match previous {
            Some((h, until)) if secret.verify(token, &h) => {
                if chrono::Utc::now() < until {
                    return Ok(Some(JoinedWith(h)));
                }
                // The token a rotation replaced, after its grace: say so, as the stream's
                // end does to a worker that was connected with it.
                Err(Status::unauthenticated(format!(
                    "invalid join token: {} (its grace ended at {})",
                    super::rotation::ROTATED,
                    until.format("%Y-%m-%d %H:%M:%S UTC")
                )))
            }
            _ => Err(Status::unauthenticated(
                "invalid join token (it may have been rotated with `cloudai token rotate`)",
            )),
        }
    }
}

/// The join-token check handed to the worker service through the request extensions.
#[derive(Clone)]
pub struct JoinCheck {
    auth: Arc<Auth>,
    peer: Option<SocketAddr>,
    /// The worker id the client certificate was issued for (`certs issue`), if any.
    bound: Option<String>,
}

impl JoinCheck {
    pub(super) fn new(auth: Arc<Auth>, peer: Option<SocketAddr>, bound: Option<String>) -> Self {
        JoinCheck { auth, peer, bound }
    }

    /// Admits a registering worker, or refuses it (and logs the refusal): its join token,
    /// and the id its certificate was issued for. On success, the token it joined with
    /// (`None` when auth is off).
    pub async fn verify(&self, worker_id: &str, token: &str) -> Result<Option<JoinedWith>, Status> {
        let checked = match &self.bound {
            Some(bound) if bound != worker_id => Err(Status::permission_denied(format!(
                "this client certificate was issued for worker {bound:?}; it cannot register \
                 as {worker_id:?} (start it with --id {bound}, or issue {worker_id} its own \
                 with `cloudai certs issue {worker_id}`)"
            ))),
            _ => self.auth.admit_join_token(token).await,
        };
        checked.inspect_err(|s| {
            tracing::warn!(
                peer = %show(self.peer),
                worker_id = %worker_id,
                reason = %s.message(),
                "worker registration refused"
            );
        })
    }
}

/// The join-token check of a worker stream (`None` when the auth layer is not in front).
pub fn join_check<T>(request: &tonic::Request<T>) -> Option<JoinCheck> {
    request.extensions().get::<JoinCheck>().cloned()
}

/// The auth layer in front of `request`, which the layer puts into every client call's
/// extensions (`None` when no auth layer is in front): the admin handlers hash new
/// tokens with its secret.
pub fn auth_of<T>(request: &tonic::Request<T>) -> Option<Arc<Auth>> {
    request.extensions().get::<Arc<Auth>>().cloned()
}
