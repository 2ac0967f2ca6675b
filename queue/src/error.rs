//! Errors of the queue layer. Every variant names the problem; `is_retryable` says
//! whether the same call may succeed later without a change of input.

use crate::model::{TaskId, TaskStatus};

/// Result alias for the queue layer.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// What can go wrong in the queue layer.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No task has this id.
    #[error("task {0} not found")]
    NotFound(TaskId),
    /// No task id starts with this prefix.
    #[error("no task id starts with {0:?}")]
    NoMatch(String),
    /// More than one task id starts with this prefix.
    #[error("task id prefix {prefix:?} is ambiguous: it matches {count} tasks")]
    AmbiguousPrefix {
        /// The prefix given.
        prefix: String,
        /// How many tasks it matched (at least 2).
        count: usize,
    },
    /// The state machine does not allow this move.
    #[error("{}", illegal(task, *from, *to))]
    IllegalTransition {
        /// The task.
        task: TaskId,
        /// Its current status.
        from: TaskStatus,
        /// The status asked for.
        to: TaskStatus,
    },
    /// A report carried a fencing token that is not the task's current attempt.
    #[error("stale fencing token for task {task}: got {got}, current is {current}")]
    StaleToken {
        /// The task.
        task: TaskId,
        /// The token in the report.
        got: u64,
        /// The task's current token.
        current: u64,
    },
    /// A worker's report skipped events: the store has its attempt up to `stored`, and the
    /// report's first new event is `got` (not `stored + 1`). Nothing was applied; the
    /// worker must send the missing events first.
    #[error("report of task {task} attempt token {token} has a gap: events up to {stored} are stored, the report starts at {got}")]
    ReportGap {
        /// The task.
        task: TaskId,
        /// The attempt's token.
        token: u64,
        /// Last event seq stored.
        stored: u64,
        /// First seq of the report past it.
        got: u64,
    },
    /// The attempt has ended (the master or an earlier report ended it), so new events
    /// about it are not applied.
    #[error(
        "attempt with token {token} of task {task} is over ({outcome}): its report is not applied"
    )]
    AttemptOver {
        /// The task.
        task: TaskId,
        /// The attempt's token.
        token: u64,
        /// How the attempt ended.
        outcome: TaskStatus,
    },
    /// Enqueueing would take the queue past its cap (`--max-queued`).
    #[error("the queue is full: {queued} tasks are queued and the limit is {max} (--max-queued); retry once some have started")]
    QueueFull {
        /// Tasks queued now.
        queued: u64,
        /// The cap.
        max: u64,
    },
    /// The store is a SQLite file another master holds (SQLite serves one master at a time).
    #[error("store {path} is in use by another master{}; a SQLite store serves one master at a time (use MongoDB for several)", holder.as_ref().map(|h| format!(": {h}")).unwrap_or_default())]
    StoreLocked {
        /// The store file.
        path: String,
        /// Who holds it, as it wrote in the lock file.
        holder: Option<String>,
    },
    /// A write only the leader may make carried an epoch that is no longer the lease's:
    /// the master that made it has been replaced and must step down. Nothing changed.
    #[error("write fenced: made under leader epoch {epoch}, but the lease is at epoch {current}; this master no longer leads")]
    Fenced {
        /// The epoch the write carried.
        epoch: u64,
        /// The lease's epoch now.
        current: u64,
    },
    /// The idempotency key is already used by a task with a different spec.
    #[error("idempotency key {key:?} is already used by task {existing} with a different spec")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The task that holds it.
        existing: TaskId,
    },
    /// The input is malformed or out of bounds.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field or argument.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A user with this name exists already.
    #[error("user {0:?} already exists (remove it first with `cloudai users remove`)")]
    UserExists(String),
    /// A schedule with this name exists already.
    #[error("schedule {0:?} already exists (remove it first with `cloudai schedule rm`)")]
    ScheduleExists(String),
    /// No schedule has this name.
    #[error("no schedule named {0:?} (`cloudai schedule list` shows them)")]
    NoSchedule(String),
    /// No worker with this id is known.
    #[error("unknown worker {0:?}")]
    UnknownWorker(String),
    /// The store URI names no backend we have, or is malformed.
    #[error("invalid store uri {uri:?}: {reason}")]
    InvalidStoreUri {
        /// The URI given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend failed. `retryable` is true for transient faults (network, busy).
    #[error("{backend} store error: {message}")]
    Backend {
        /// "sqlite" or "mongodb".
        backend: &'static str,
        /// The backend's own message.
        message: String,
        /// Whether the same call may succeed later.
        retryable: bool,
    },
}

impl QueueError {
    /// True when the same call may succeed later without changing the input.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            QueueError::Backend {
                retryable: true,
                ..
            }
        )
    }

    /// Shorthand for [`QueueError::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        QueueError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// What a refused move says: an ended task "already ended", anything else the move.
fn illegal(task: &TaskId, from: TaskStatus, to: TaskStatus) -> String {
    if from.is_terminal() {
        format!("task {task} already ended ({from}): it cannot become {to}")
    } else {
        format!("illegal transition for task {task}: {from} -> {to}")
    }
}
