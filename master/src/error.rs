//! The master's errors, and the ONE place where domain errors become gRPC statuses
//! (the mapping of `proto/PROTOCOL.md`, "Error codes").

use cloudai_proto::ConvertError;
use cloudai_queue::QueueError;
use tonic::{Code, Status};

/// Result alias for the master.
pub type Result<T, E = MasterError> = std::result::Result<T, E>;

/// What stops the master from serving.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The store failed while the master started (rebuilding its view).
    #[error("store: {0}")]
    Store(#[from] QueueError),
    /// The gRPC server failed (listener, HTTP/2).
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not load the descriptors.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The listener given to `serve` is unusable.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
    /// Flags that do not go together (e.g. a public --http-listen without auth).
    #[error("{0}")]
    Config(String),
    /// Auth or TLS could not be set up (secret file, join token, certificates, flags).
    #[error("security: {0}")]
    Security(#[from] crate::auth::setup::SetupError),
}

impl MasterError {
    /// True when starting again later may succeed (a transient store fault).
    pub fn is_retryable(&self) -> bool {
        matches!(self, MasterError::Store(e) if e.is_retryable())
    }
}

/// Maps a queue error to the gRPC status a client sees.
pub fn status(e: QueueError) -> Status {
    let code = match &e {
        QueueError::NotFound(_)
        | QueueError::NoMatch(_)
        | QueueError::UnknownWorker(_)
        | QueueError::NoSchedule(_) => Code::NotFound,
        QueueError::Invalid { .. }
        | QueueError::AmbiguousPrefix { .. }
        | QueueError::InvalidStoreUri { .. } => Code::InvalidArgument,
        QueueError::IdempotencyConflict { .. }
        | QueueError::UserExists(_)
        | QueueError::ScheduleExists(_) => Code::AlreadyExists,
        QueueError::IllegalTransition { .. }
        | QueueError::StaleToken { .. }
        | QueueError::AttemptOver { .. }
        | QueueError::ReportGap { .. } => Code::FailedPrecondition,
        QueueError::QueueFull { .. } => Code::ResourceExhausted,
        QueueError::StoreLocked { .. } => Code::FailedPrecondition,
        // A write only the leader makes, from a master that was replaced: go to the leader.
        QueueError::Fenced { .. } => Code::Unavailable,
        QueueError::Backend {
            retryable: true, ..
        } => return Status::unavailable(format!("the store is unavailable, retry shortly: {e}")),
        QueueError::Backend { .. } => Code::Internal,
    };
    Status::new(code, e.to_string())
}

/// Runs a client call's store work within `limit` (`--store-timeout`): past it the call
/// is `UNAVAILABLE` and says that the store did not answer, never a hang. A write that
/// timed out may still land; the message says to retry with an idempotency key.
pub async fn within<T>(
    limit: std::time::Duration,
    fut: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(Status::unavailable(format!(
            "the store did not answer within {} ms (--store-timeout); it may be down or \
             failing over. Retry shortly (an enqueue retried with the same idempotency key \
             never makes a second task)",
            limit.as_millis()
        ))),
    }
}

/// The metadata key that carries the leader's URL on a refusal from a standby.
pub const LEADER_URL_KEY: &str = "cloudai-leader-url";

/// What a master that does not lead answers a call only the leader serves (a worker's
/// stream, the agent API, the worker list): `UNAVAILABLE`, naming the leader and carrying
/// its URL in `cloudai-leader-url` so that workers and clients go there.
pub fn not_leader(role: &crate::leadership::Role) -> Status {
    use crate::leadership::Role;
    let mut status = match role {
        Role::Standby {
            leader: Some((id, url)),
        } => Status::unavailable(format!(
            "this master is a standby; the leader is {id} at {url}"
        )),
        _ => Status::unavailable(
            "this master does not lead and no leader is known yet; retry shortly",
        ),
    };
    if let Role::Standby {
        leader: Some((_, url)),
    } = role
    {
        if let Ok(v) = url.parse() {
            status.metadata_mut().insert(LEADER_URL_KEY, v);
        }
    }
    status
}

/// A wire message that does not convert to a domain value is the caller's mistake.
pub fn convert_status(e: ConvertError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// A required message field is absent.
pub fn missing(field: &str) -> Status {
    Status::invalid_argument(format!("missing field {field}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudai_queue::{TaskId, TaskStatus};

    #[test]
    fn every_queue_error_maps_per_protocol() {
        let id = TaskId::new();
        let cases = [
            (QueueError::NotFound(id), Code::NotFound),
            (QueueError::NoMatch("ab".into()), Code::NotFound),
            (QueueError::UnknownWorker("w".into()), Code::NotFound),
            (QueueError::invalid("image", "empty"), Code::InvalidArgument),
            (
                QueueError::AmbiguousPrefix {
                    prefix: "0".into(),
                    count: 2,
                },
                Code::InvalidArgument,
            ),
            (
                QueueError::InvalidStoreUri {
                    uri: "x".into(),
                    reason: "y".into(),
                },
                Code::InvalidArgument,
            ),
            (
                QueueError::IdempotencyConflict {
                    key: "k".into(),
                    existing: id,
                },
                Code::AlreadyExists,
            ),
            (
                QueueError::IllegalTransition {
                    task: id,
                    from: TaskStatus::Succeeded,
                    to: TaskStatus::Cancelled,
                },
                Code::FailedPrecondition,
            ),
            (
                QueueError::StaleToken {
                    task: id,
                    got: 1,
                    current: 2,
                },
                Code::FailedPrecondition,
            ),
            (
                QueueError::AttemptOver {
                    task: id,
                    token: 1,
                    outcome: TaskStatus::Lost,
                },
                Code::FailedPrecondition,
            ),
            (
                QueueError::ReportGap {
                    task: id,
                    token: 1,
                    stored: 2,
                    got: 4,
                },
                Code::FailedPrecondition,
            ),
            (
                QueueError::QueueFull { queued: 9, max: 9 },
                Code::ResourceExhausted,
            ),
            (
                QueueError::Backend {
                    backend: "sqlite",
                    message: "busy".into(),
                    retryable: true,
                },
                Code::Unavailable,
            ),
            (
                QueueError::Backend {
                    backend: "sqlite",
                    message: "corrupt".into(),
                    retryable: false,
                },
                Code::Internal,
            ),
        ];
        for (err, code) in cases {
            let msg = err.to_string();
            let s = status(err);
            assert_eq!(s.code(), code, "{msg}");
            assert!(s.message().ends_with(&msg), "{}", s.message());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_does_not_answer_is_unavailable_not_a_hang() {
        let limit = std::time::Duration::from_secs(5);
        let r: Result<(), Status> = within(limit, futures::future::pending()).await;
        let s = r.unwrap_err();
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().contains("--store-timeout"), "{}", s.message());
        assert_eq!(within(limit, async { Ok(7) }).await.unwrap(), 7);
    }

    #[test]
    fn convert_errors_are_invalid_argument() {
        let s = convert_status(ConvertError::Missing("spec"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("spec"));
    }
}
