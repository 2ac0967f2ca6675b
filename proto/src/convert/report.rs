//! The worker stream's reports: `TaskEvent` ↔ [`q::ReportEvent`], `Finished` ↔
//! [`q::AttemptEnd`]. The worker builds events from domain values here; the master turns
//! what arrives into domain values here, and nowhere else.

use chrono::{DateTime, Utc};
use cloudai_queue as q;

use super::{from_timestamp, invalid, log_stream, timestamp, ConvertError};
use crate::pb;
use pb::task_event::Event;

/// One event from a worker, in domain terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerEvent {
    /// Progress of an image pull: shown in the master's log, never stored or acknowledged.
    Pulling {
        /// The task.
        task: q::TaskId,
        /// The attempt's token.
        token: u64,
        /// A progress line.
        progress: String,
    },
    /// A numbered event of an attempt's report.
    Report {
        /// The task.
        task: q::TaskId,
        /// The attempt's token.
        token: u64,
        /// The event.
        event: q::ReportEvent,
    },
}

impl TryFrom<pb::TaskEvent> for WorkerEvent {
    type Error = ConvertError;
    fn try_from(ev: pb::TaskEvent) -> Result<Self, ConvertError> {
        let task: q::TaskId = ev
            .task_id
            .parse()
            .map_err(|_| invalid("task_id", format!("{:?} is not a task id", ev.task_id)))?;
        let token = ev.token;
        if let Some(Event::Pulling(p)) = ev.event {
            return Ok(WorkerEvent::Pulling {
                task,
                token,
                progress: p.progress,
            });
        }
        Ok(WorkerEvent::Report {
            task,
            token,
            event: report_event(ev)?,
        })
    }
}

/// The numbered report event a `TaskEvent` carries (its task and token aside).
pub fn report_event(ev: pb::TaskEvent) -> Result<q::ReportEvent, ConvertError> {
    let body = match ev.event.ok_or(ConvertError::Missing("event"))? {
        Event::Pulling(_) => {
            return Err(invalid("event", "pulling is progress, not a report event"))
        }
        Event::Started(s) => q::ReportBody::Started {
            container_id: s.container_id,
        },
        Event::Log(l) => q::ReportBody::Output {
            stream: log_stream(l.stream)?,
            data: l.data,
        },
        Event::Finished(f) => q::ReportBody::Finished(attempt_end(&f)),
    };
    if ev.seq == 0 {
        return Err(invalid(
            "seq",
            "a started, log or finished event needs a seq from 1",
        ));
    }
    let time = ev.time.as_ref().ok_or(ConvertError::Missing("time"))?;
    Ok(q::ReportEvent {
        seq: ev.seq,
        time: from_timestamp("time", time)?,
        body,
    })
}

/// The wire form of an attempt's report event.
pub fn task_event(task_id: &str, token: u64, e: &q::ReportEvent) -> pb::TaskEvent {
    let event = match &e.body {
        q::ReportBody::Started { container_id } => Event::Started(pb::Started {
            container_id: container_id.clone(),
        }),
        q::ReportBody::Output { stream, data } => Event::Log(pb::LogData {
            stream: pb::LogStream::from(*stream) as i32,
            data: data.clone(),
        }),
        q::ReportBody::Finished(end) => Event::Finished(finished(end)),
    };
    pb::TaskEvent {
        task_id: task_id.to_string(),
        token,
        time: Some(timestamp(e.time)),
        seq: e.seq,
        event: Some(event),
    }
}

/// A pull's progress line (unnumbered).
pub fn pulling(task_id: &str, token: u64, progress: String, at: DateTime<Utc>) -> pb::TaskEvent {
    pb::TaskEvent {
        task_id: task_id.to_string(),
        token,
        time: Some(timestamp(at)),
        seq: 0,
        event: Some(Event::Pulling(pb::Pulling { progress })),
    }
}

/// How an attempt ended → `Finished`.
pub fn finished(end: &q::AttemptEnd) -> pb::Finished {
    let (kind, exit_code, error) = match end {
        q::AttemptEnd::Exited(code) => (pb::FinishKind::Exited, Some(*code), String::new()),
        q::AttemptEnd::TimedOut => (pb::FinishKind::TimedOut, None, "timed out".to_string()),
        q::AttemptEnd::Cancelled => (pb::FinishKind::Cancelled, None, "cancelled".to_string()),
        q::AttemptEnd::Error(e) => (pb::FinishKind::Error, None, e.clone()),
    };
    pb::Finished {
        kind: kind as i32,
        exit_code,
        error,
    }
}

/// `Finished` → how the attempt ended. A malformed one (an exit without a code, an unknown
/// kind) is an error end that says so, never a success.
pub fn attempt_end(f: &pb::Finished) -> q::AttemptEnd {
    match pb::FinishKind::try_from(f.kind) {
        Ok(pb::FinishKind::Exited) => match f.exit_code {
            Some(code) => q::AttemptEnd::Exited(code),
            None => q::AttemptEnd::Error("exited without an exit code".into()),
        },
        Ok(pb::FinishKind::TimedOut) => q::AttemptEnd::TimedOut,
        Ok(pb::FinishKind::Cancelled) => q::AttemptEnd::Cancelled,
        Ok(pb::FinishKind::Error) => q::AttemptEnd::Error(f.error.clone()),
        _ => q::AttemptEnd::Error(format!("worker reported an unknown finish kind {}", f.kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(body: q::ReportBody) {
        let e = q::ReportEvent {
            seq: 7,
            time: DateTime::from_timestamp(1_700_000_000, 123_000_000).unwrap(),
            body,
        };
        let id = q::TaskId::new();
        let wire = task_event(&id.to_string(), 3, &e);
        assert_eq!(
            WorkerEvent::try_from(wire).unwrap(),
            WorkerEvent::Report {
                task: id,
                token: 3,
                event: e
            }
        );
    }

    #[test]
    fn report_events_round_trip() {
        round_trip(q::ReportBody::Started {
            container_id: "abc".into(),
        });
        round_trip(q::ReportBody::Output {
            stream: q::LogStream::Stderr,
            data: b"oops\n".to_vec(),
        });
        for end in [
            q::AttemptEnd::Exited(0),
            q::AttemptEnd::Exited(-9),
            q::AttemptEnd::TimedOut,
            q::AttemptEnd::Cancelled,
            q::AttemptEnd::Error("pull access denied".into()),
        ] {
            round_trip(q::ReportBody::Finished(end));
        }
    }

    #[test]
    fn malformed_events_are_typed_errors() {
        let id = q::TaskId::new().to_string();
        let ok = task_event(
            &id,
            1,
            &q::ReportEvent {
                seq: 1,
                time: Utc::now(),
                body: q::ReportBody::Started {
                    container_id: String::new(),
                },
            },
        );
        let mut e = ok.clone();
        e.seq = 0;
        assert!(matches!(
            WorkerEvent::try_from(e),
            Err(ConvertError::Invalid { field: "seq", .. })
        ));
        let mut e = ok.clone();
        e.time = None;
        assert_eq!(WorkerEvent::try_from(e), Err(ConvertError::Missing("time")));
        let mut e = ok.clone();
        e.task_id = "nope".into();
        assert!(WorkerEvent::try_from(e).is_err());
        let mut e = ok;
        e.event = None;
        assert_eq!(
            WorkerEvent::try_from(e),
            Err(ConvertError::Missing("event"))
        );
        let p = pulling(&id, 1, "50%".into(), Utc::now());
        assert!(matches!(
            WorkerEvent::try_from(p),
            Ok(WorkerEvent::Pulling { .. })
        ));
    }

    #[test]
    fn odd_finishes_never_read_as_success() {
        let f = |kind, exit_code| pb::Finished {
            kind,
            exit_code,
            error: String::new(),
        };
        assert!(matches!(
            attempt_end(&f(pb::FinishKind::Exited as i32, None)),
            q::AttemptEnd::Error(_)
        ));
        assert!(matches!(
            attempt_end(&f(42, Some(0))),
            q::AttemptEnd::Error(_)
        ));
        assert_eq!(
            attempt_end(&f(pb::FinishKind::Exited as i32, Some(0))),
            q::AttemptEnd::Exited(0)
        );
    }
}
