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
//! | 17   | not authenticated (no API token, an unknown or empty one, a wrong join token) |
//! | 18   | permission denied (the token's role may not do this) |
//! | 19   | busy (over the enqueue rate limit, or the queue is full) |
//!
//! `enqueue --wait` exits with the task's own exit code; `124` when it timed out, `125`
//! when it was cancelled, lost, or could not start.

use std::fmt;

use cloudai_proto::transport::{classify, speaks_tls, Problem};
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

    /// The TLS mistake `e` (a failed connection or call to `url`) shows, told apart
    /// (proto `transport`), as a connection error: `None` when it is not one.
    pub fn from_transport(url: &str, e: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let problem = match classify(e)? {
            Problem::Http2Failure(_) if url.starts_with("http://") && speaks_tls(url) => {
                Problem::PlainUrlTlsPort
            }
            Problem::Http2Failure(_) => return None,
            p => p,
        };
        Some(Self::new(Kind::Unreachable, problem.explain(url)))
    }

    /// Maps a gRPC status from the master (see proto/PROTOCOL.md, "Error codes").
    pub fn from_status(url: &str, s: &tonic::Status) -> Self {
        if matches!(
            s.code(),
            Code::Unknown | Code::Internal | Code::Unavailable | Code::Cancelled
        ) {
            if let Some(e) = Self::from_transport(url, s) {
                return e;
            }
        }
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

/// A clap error as one line that keeps everything it says: the message, the items listed
/// under it (the missing arguments), its tips, the usage, and which `--help` to read.
pub fn clap_one_line(rendered: &str) -> String {
    let mut head = String::new();
    let mut items: Vec<&str> = Vec::new();
    let mut tips: Vec<&str> = Vec::new();
    let mut usage: Option<&str> = None;
    for line in rendered.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("For more information") {
            continue;
        }
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage.get_or_insert(u);
        } else if let Some(t) = line.strip_prefix("tip: ") {
            tips.push(t);
        } else if head.is_empty() {
            head = line.strip_prefix("error: ").unwrap_or(line).to_string();
        } else if usage.is_none() {
            items.push(line);
        }
    }
    if head.is_empty() {
        head = "invalid arguments".into();
    }
    let mut out = head;
    if !items.is_empty() {
        out.push(' ');
        out.push_str(&items.join(", "));
    }
    for t in tips {
        out.push_str("; tip: ");
        out.push_str(t);
    }
    // `cloudai master --tls-cert <PATH> ...` -> `cloudai master`: the command to ask.
    let command = usage
        .map(|u| {
            u.split_whitespace()
                .take_while(|w| !w.starts_with(['-', '<', '[']))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "cloudai".into());
    match usage {
        Some(u) => out.push_str(&format!(" (usage: {u}; see `{command} --help`)")),
        None => out.push_str(&format!(" (see `{command} --help`)")),
    }
    out
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
            "unexpected argument '--nope' found (usage: cloudai tasks; see `cloudai tasks --help`)"
        );
        let missing = "error: the following required arguments were not provided:\n  --tls-key <PATH>\n\nUsage: cloudai master --tls-cert <PATH> --tls-key <PATH>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            clap_one_line(missing),
            "the following required arguments were not provided: --tls-key <PATH> (usage: cloudai master --tls-cert <PATH> --tls-key <PATH>; see `cloudai master --help`)"
        );
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
