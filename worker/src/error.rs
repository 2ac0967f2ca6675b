//! Errors of the worker library: [`ExecError`] for one attempt's execution, [`WorkerError`]
//! for the runtime as a whole. Retry meaning is encoded in the type.

use cloudai_proto::transport::{classify, Problem};

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
    /// (bad id, bad join token); permanent. `code` says which (Unauthenticated for a
    /// join token, PermissionDenied, InvalidArgument).
    #[error("the master refused this worker: {code:?}: {message}")]
    Rejected {
        /// The gRPC code of the refusal.
        code: tonic::Code,
        /// The master's words.
        message: String,
    },
    /// The TLS set-up does not fit the master at `url` (wrong CA, a refused or missing
    /// client certificate, the wrong scheme): see [`Problem`]. Permanent unless the
    /// problem is only an HTTP/2 failure not yet confirmed as a scheme mismatch.
    #[error("{}", problem.explain(url))]
    Tls {
        /// The master's URL (empty until the session fills it in).
        url: String,
        /// What is wrong.
        problem: Problem,
    },
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
        ) || matches!(self, WorkerError::Tls { problem, .. } if !problem.is_permanent())
    }

    /// This error, with the master's URL filled in where it names a TLS problem.
    pub(crate) fn at(self, master: &str) -> Self {
        match self {
            WorkerError::Tls { url, problem } if url.is_empty() => WorkerError::Tls {
                url: master.to_string(),
                problem,
            },
            e => e,
        }
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
        match classify(&e) {
            Some(problem) => WorkerError::Tls {
                url: String::new(),
                problem,
            },
            None => WorkerError::Connection(connection_words(&e)),
        }
    }
}

/// "transport error" alone tells nothing: the innermost cause says what failed.
fn connection_words(e: &(dyn std::error::Error + 'static)) -> String {
    let mut root = None;
    let mut cur = e.source();
    while let Some(c) = cur {
        root = Some(c);
        cur = c.source();
    }
    match root {
        Some(r) => format!("{e}: {r}"),
        None => e.to_string(),
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
        if let Some(problem) = classify(&s) {
            return WorkerError::Tls {
                url: String::new(),
                problem,
            };
        }
        match s.code() {
            Code::InvalidArgument | Code::Unauthenticated | Code::PermissionDenied => {
                WorkerError::Rejected {
                    code: s.code(),
                    message: s.message().to_string(),
                }
            }
            _ => WorkerError::Connection(format!("{:?}: {}", s.code(), s.message())),
        }
    }
}
