//! What a worker reports about an attempt, in domain terms: an ordered, numbered list of
//! events (start, output, end), each with the worker's own time. The store applies a report
//! in one conditional write ([`crate::store::AttemptLedger::report`]); sequence numbers make
//! a repeated report a no-op, so a worker may send everything again after a reconnect.

use chrono::{DateTime, Utc};

use crate::model::{AttemptOutcome, LogStream, Task, TaskStatus};

/// One event of an attempt, as its worker recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportEvent {
    /// Position in the attempt's report: 1 for its first event, then 2, 3, … without gaps.
    pub seq: u64,
    /// When it happened, by the worker's clock (the time stored).
    pub time: DateTime<Utc>,
    /// What happened.
    pub body: ReportBody,
}

/// What happened to an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportBody {
    /// Its container runs.
    Started {
        /// The container's id.
        container_id: String,
    },
    /// A chunk of its output.
    Output {
        /// Which stream.
        stream: LogStream,
        /// The bytes, as written.
        data: Vec<u8>,
    },
    /// It ended; always the last event of an attempt.
    Finished(AttemptEnd),
}

impl ReportEvent {
    /// Bytes this event carries (output data; a small constant for the others), for
    /// windows and budgets.
    pub fn weight(&self) -> usize {
        match &self.body {
            ReportBody::Output { data, .. } => data.len() + 32,
            ReportBody::Started { container_id } => container_id.len() + 32,
            ReportBody::Finished(AttemptEnd::Error(e)) => e.len() + 32,
            ReportBody::Finished(_) => 32,
        }
    }
}

/// How an attempt ended, as its worker saw it. Maps one-to-one onto the protocol's
/// `FinishKind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    /// The container ran and exited with this code.
    Exited(i32),
    /// It ran past its timeout and was stopped.
    TimedOut,
    /// It was asked to stop (cancel) before it ended.
    Cancelled,
    /// It could not be run (pull, create or start failed); the text says why.
    Error(String),
}

impl AttemptEnd {
    /// The attempt's outcome: exit 0 succeeded, any other exit or an error failed.
    pub fn outcome(&self) -> AttemptOutcome {
        let (status, exit_code, error) = match self {
            AttemptEnd::Exited(0) => (TaskStatus::Succeeded, Some(0), None),
            AttemptEnd::Exited(code) => (
                TaskStatus::Failed,
                Some(*code),
                Some(format!("exited with code {code}")),
            ),
            AttemptEnd::TimedOut => (
                TaskStatus::TimedOut,
                None,
                Some("ran past its timeout".to_string()),
            ),
            AttemptEnd::Cancelled => (TaskStatus::Cancelled, None, None),
            AttemptEnd::Error(e) if e.is_empty() => (
                TaskStatus::Failed,
                None,
                Some("the worker could not run the task".to_string()),
            ),
            AttemptEnd::Error(e) => (TaskStatus::Failed, None, Some(e.clone())),
        };
        AttemptOutcome {
            status,
            exit_code,
            error,
        }
    }

    /// True when a container ran (so the attempt started even if no start was reported).
    pub fn ran(&self) -> bool {
        matches!(self, AttemptEnd::Exited(_) | AttemptEnd::TimedOut)
    }
}

/// Why the master ends an attempt as `lost`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LostCause {
    /// Its worker went silent past the dead timeout. The worker may still have a result,
    /// which is accepted late while the task has no newer attempt (PROTOCOL.md).
    Silence {
        /// The silent worker.
        worker_id: String,
    },
    /// Anything else (the worker came back without it, the assignment never reached it):
    /// no result can come.
    Gone(String),
}

impl LostCause {
    /// The error text kept on the attempt.
    pub fn describe(&self) -> String {
        match self {
            LostCause::Silence { worker_id } => {
                format!("worker {worker_id} went silent past the dead timeout")
            }
            LostCause::Gone(why) => why.clone(),
        }
    }
}

/// What a report did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The task after the write.
    pub task: Task,
    /// Every event of the attempt up to this seq is stored: what the master acknowledges.
    pub through: u64,
    /// True when the report changed anything (false for a repeat of stored events).
    pub changed: bool,
    /// True when this was the late result of an attempt lost to silence.
    pub late: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_map_onto_outcomes() {
        assert_eq!(
            AttemptEnd::Exited(0).outcome().status,
            TaskStatus::Succeeded
        );
        let f = AttemptEnd::Exited(3).outcome();
        assert_eq!((f.status, f.exit_code), (TaskStatus::Failed, Some(3)));
        assert_eq!(f.error.as_deref(), Some("exited with code 3"));
        assert_eq!(AttemptEnd::TimedOut.outcome().status, TaskStatus::TimedOut);
        assert_eq!(
            AttemptEnd::Cancelled.outcome().status,
            TaskStatus::Cancelled
        );
        let e = AttemptEnd::Error("pull access denied".into()).outcome();
        assert_eq!(e.error.as_deref(), Some("pull access denied"));
        assert!(AttemptEnd::Error(String::new()).outcome().error.is_some());
        assert!(AttemptEnd::Exited(1).ran() && !AttemptEnd::Cancelled.ran());
    }
}
