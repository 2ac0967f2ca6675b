//! What can go wrong for a user of the `cloudai` command, and the exit code of each.
//!
//! Every error is printed as ONE line on stderr (`error: ...`), never a backtrace, and
//! each kind has its own exit code so that scripts can tell them apart:
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | any other error (internal, unexpected answer from the master) |
//! | 2    | invalid argument or usage (unknown flag, bad `KEY=VALUE`, bad worker id) |
//! | 10   | cannot reach the master (connection refused, unreachable, timed out) |
//! | 11   | unknown task id (no task has this id or prefix) |
//! | 12   | ambiguous task id prefix (matches more than one task) |
//! | 13   | invalid image reference |
//! | 14   | invalid memory, cpu or duration syntax |
//! | 15   | unknown worker |
//! | 16   | not possible in the task's state (e.g. cancel a finished task), or an idempotency key conflict |
//!
//! `enqueue --wait` exits with the task's own exit code; `124` when it timed out, `125`
//! when it was cancelled, lost, or could not start.

use std::fmt;

use tonic::Code;

/// Exit code of `enqueue --wait` when the task timed out (as `timeout(1)` does).
pub const EXIT_TASK_TIMED_OUT: i32 = 124;
/// Exit code of `enqueue --wait` when the task ended without an exit code of its own.
pub const EXIT_TASK_NO_CODE: i32 = 125;

/// The kind of a user-facing error; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything else.
    Other,
    /// Bad flag, bad value, bad usage.
    InvalidArgument,
    /// The master cannot be reached.
    Unreachable,
    /// No task has this id or prefix.
    UnknownTask,
    /// The prefix matches several tasks.
    AmbiguousTask,
    /// The image reference is malformed.
    InvalidImage,
    /// A memory, cpu or duration value does not parse.
    InvalidUnit,
    /// No worker has this id.
    UnknownWorker,
    /// The task's state does not allow it.
    Conflict,
    /// No API token, or one the master does not know.
    Unauthenticated,
    /// The token's role may not do this.
    PermissionDenied,
    /// Over the enqueue rate limit, or the queue is full: try again later.
    Busy,
}

impl Kind {
    /// The process exit code for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Other => 1,
            Kind::InvalidArgument => 2,
            Kind::Unreachable => 10,
            Kind::UnknownTask => 11,
            Kind::AmbiguousTask => 12,
            Kind::InvalidImage => 13,
            Kind::InvalidUnit => 14,
            Kind::UnknownWorker => 15,
            Kind::Conflict => 16,
            Kind::Unauthenticated => 17,
            Kind::PermissionDenied => 18,
            Kind::Busy => 19,
        }
    }
}

/// An error shown to the user as one line, with the exit code of its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// Decides the exit code.
    pub kind: Kind,
    /// The one line shown after `error: `.
    pub message: String,
}

/// Result alias of the CLI.
pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
        }
    }

    /// Shorthand for an invalid argument.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Kind::InvalidArgument, message)
    }

    /// The master at `url` could not be reached.
    pub fn unreachable(url: &str, why: impl fmt::Display) -> Self {
        Self::new(
            Kind::Unreachable,
            format!(
                "cannot reach the master at {url} ({why}); is it running? start one with `cloudai master`, or pass --master URL"
            ),
        )
    }

    /// Maps a gRPC status from the master (see proto/PROTOCOL.md, "Error codes").
    pub fn from_status(url: &str, s: &tonic::Status) -> Self {
        let msg = one_line(s.message());
        let lower = msg.to_ascii_lowercase();
        let kind = match s.code() {
            Code::NotFound if lower.contains("worker") => Kind::UnknownWorker,
            Code::NotFound => Kind::UnknownTask,
            Code::InvalidArgument if lower.contains("ambiguous") => Kind::AmbiguousTask,
            Code::InvalidArgument if lower.contains("image") => Kind::InvalidImage,
            Code::InvalidArgument => Kind::InvalidArgument,
            Code::FailedPrecondition | Code::AlreadyExists => Kind::Conflict,
            Code::Unauthenticated => Kind::Unauthenticated,
            Code::PermissionDenied => Kind::PermissionDenied,
            Code::ResourceExhausted => Kind::Busy,
            Code::Unavailable | Code::DeadlineExceeded => {
                return Self::unreachable(url, if msg.is_empty() { "unavailable" } else { &msg });
            }
            _ => Kind::Other,
        };
        let message = if msg.is_empty() {
            format!("the master answered {:?}", s.code())
        } else {
            msg
        };
        CliError::new(kind, message)
    }

    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<crate::units::UnitError> for CliError {
    fn from(e: crate::units::UnitError) -> Self {
        CliError::new(Kind::InvalidUnit, e.0)
    }
}

/// Joins a possibly multi-line message into one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first meaningful line of a clap error, for the one-line rule; clap's own
/// rendering has usage and tips on further lines.
pub fn clap_one_line(rendered: &str) -> String {
    let first = rendered
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    first.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let kinds = [
            Kind::Other,
            Kind::InvalidArgument,
            Kind::Unreachable,
            Kind::UnknownTask,
            Kind::AmbiguousTask,
            Kind::InvalidImage,
            Kind::InvalidUnit,
            Kind::UnknownWorker,
            Kind::Conflict,
            Kind::Unauthenticated,
            Kind::PermissionDenied,
            Kind::Busy,
        ];
        let mut codes: Vec<i32> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.push(EXIT_TASK_TIMED_OUT);
        codes.push(EXIT_TASK_NO_CODE);
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n);
        assert!(!codes.contains(&0));
    }

    #[test]
    fn statuses_map_to_kinds() {
        let url = "http://127.0.0.1:1";
        let k = |code, msg: &str| CliError::from_status(url, &tonic::Status::new(code, msg)).kind;
        assert_eq!(
            k(Code::NotFound, "unknown worker \"w9\""),
            Kind::UnknownWorker
        );
        assert_eq!(
            k(Code::NotFound, "no task id starts with \"ab\""),
            Kind::UnknownTask
        );
        assert_eq!(
            k(Code::InvalidArgument, "task id prefix \"0\" is ambiguous"),
            Kind::AmbiguousTask
        );
        assert_eq!(
            k(Code::InvalidArgument, "invalid image: \"A\""),
            Kind::InvalidImage
        );
        assert_eq!(
            k(Code::InvalidArgument, "invalid cpu"),
            Kind::InvalidArgument
        );
        assert_eq!(k(Code::FailedPrecondition, "illegal"), Kind::Conflict);
        assert_eq!(k(Code::Unavailable, "down"), Kind::Unreachable);
        assert_eq!(k(Code::Unauthenticated, "missing"), Kind::Unauthenticated);
        assert_eq!(k(Code::PermissionDenied, "viewer"), Kind::PermissionDenied);
        assert_eq!(k(Code::ResourceExhausted, "rate"), Kind::Busy);
        assert_eq!(k(Code::Internal, "boom"), Kind::Other);
        let e = CliError::from_status(url, &tonic::Status::unavailable("x"));
        assert!(e.message.contains(url) && e.message.contains("cloudai master"));
    }

    #[test]
    fn clap_errors_become_one_line() {
        let rendered = "error: unexpected argument '--nope' found\n\nUsage: cloudai tasks\n\nFor more information, try '--help'.\n";
        assert_eq!(
            clap_one_line(rendered),
            "unexpected argument '--nope' found"
        );
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
