//! Errors of the worker library: [`ExecError`] for one attempt's execution, [`WorkerError`]
//! for the runtime as a whole. Retry meaning is encoded in the type.

/// The worker's result alias.
pub type Result<T, E = WorkerError> = std::result::Result<T, E>;

/// Why an executor operation failed. Each variant says which step broke, so the
/// `Finished{ERROR}` text tells the user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The image could not be made available; `message` is the registry's or daemon's text.
    #[error("pull {image}: {message}")]
    Pull {
        /// The image reference as the task gave it.
        image: String,
        /// What the registry or daemon said.
        message: String,
    },
    /// The container could not be created.
    #[error("create container: {0}")]
    Create(String),
    /// The container was created but could not be started (it has been removed again).
    #[error("start container: {0}")]
    Start(String),
    /// A running container's output, exit or stop failed.
    #[error("runtime: {0}")]
    Runtime(String),
    /// The handle refers to nothing this executor knows.
    #[error("unknown container {0}")]
    UnknownContainer(String),
    /// The worker's container policy forbids the task (e.g. its image is not on the
    /// allow-list); permanent for this worker.
    #[error("rejected by this worker's container policy: {0}")]
    Forbidden(String),
}

impl ExecError {
    /// True when trying the same step again later may succeed (daemon hiccup), false when
    /// the task itself is at fault (bad image, bad command).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ExecError::Runtime(_))
    }
}

/// Why the worker runtime stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A flag or environment value is invalid; permanent.
    #[error("invalid config {field}: {reason}")]
    Config {
        /// The flag.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The master refused the registration for a reason retrying will not fix
    /// (bad id, bad join token); permanent.
    #[error("master rejected registration: {0}")]
    Rejected(String),
    /// Connecting to or talking with the master failed; the runtime retries these itself
    /// and only surfaces them from helpers.
    #[error("master connection: {0}")]
    Connection(String),
    /// The master sent something that breaks the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The master does not lead; the leader is at this URL (from `cloudai-leader-url`).
    #[error("master is a standby; the leader is at {0}")]
    Redirect(String),
    /// An executor failure outside of a single attempt (e.g. the Docker daemon is absent).
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl WorkerError {
    /// True for errors that a reconnect with backoff can cure.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            WorkerError::Connection(_) | WorkerError::Protocol(_) | WorkerError::Redirect(_)
        )
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        WorkerError::Config {
            field,
            reason: reason.into(),
        }
    }
}

impl From<tonic::transport::Error> for WorkerError {
    fn from(e: tonic::transport::Error) -> Self {
        WorkerError::Connection(e.to_string())
    }
}

impl From<tonic::Status> for WorkerError {
    /// Codes that mean "this worker may not join as configured" are permanent; the rest
    /// (including ALREADY_EXISTS, which clears when the master notices the old stream died)
    /// are retried.
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        if let Some(url) = s
            .metadata()
            .get("cloudai-leader-url")
            .and_then(|v| v.to_str().ok())
        {
            return WorkerError::Redirect(url.to_string());
        }
        match s.code() {
            Code::InvalidArgument | Code::Unauthenticated | Code::PermissionDenied => {
                WorkerError::Rejected(format!("{:?}: {}", s.code(), s.message()))
            }
            _ => WorkerError::Connection(format!("{:?}: {}", s.code(), s.message())),
        }
    }
}
