//! Worker domain values → `cloudai.v1` messages. The only runtime module that builds
//! prost structs; shared conversions (specs, resources, timestamps) come from
//! `cloudai_proto::convert`.

use chrono::Utc;
use cloudai_proto::convert::timestamp;
use cloudai_proto::pb;

use super::state::AttemptKey;
use crate::attempt::{AttemptEvent, Finish};
use crate::capacity::Usage;

/// Wraps a worker message body.
pub(crate) fn message(msg: pb::worker_message::Msg) -> pb::WorkerMessage {
    pb::WorkerMessage { msg: Some(msg) }
}

/// A `TaskEvent` for one attempt, timestamped now.
fn task_event(key: &AttemptKey, event: pb::task_event::Event) -> pb::TaskEvent {
    pb::TaskEvent {
        task_id: key.0.clone(),
        token: key.1,
        time: Some(timestamp(Utc::now())),
        event: Some(event),
    }
}

/// An in-flight attempt event. Output chunks keep the time they were read.
pub(crate) fn event(key: &AttemptKey, e: AttemptEvent) -> pb::TaskEvent {
    use pb::task_event::Event;
    match e {
        AttemptEvent::Pulling(progress) => {
            task_event(key, Event::Pulling(pb::Pulling { progress }))
        }
        AttemptEvent::Started { container_id } => {
            task_event(key, Event::Started(pb::Started { container_id }))
        }
        AttemptEvent::Output(chunk) => {
            let mut ev = task_event(
                key,
                Event::Log(pb::LogData {
                    stream: pb::LogStream::from(chunk.stream) as i32,
                    data: chunk.data,
                }),
            );
            ev.time = Some(timestamp(chunk.time));
            ev
        }
    }
}

/// The one `Finished` event of an attempt.
pub(crate) fn finished(key: &AttemptKey, f: &Finish) -> pb::TaskEvent {
    let (kind, exit_code, error) = match f {
        Finish::Exited(code) => (pb::FinishKind::Exited, Some(*code), String::new()),
        Finish::TimedOut => (pb::FinishKind::TimedOut, None, "timed out".to_string()),
        Finish::Cancelled => (pb::FinishKind::Cancelled, None, "cancelled".to_string()),
        Finish::Error(e) => (pb::FinishKind::Error, None, e.clone()),
    };
    task_event(
        key,
        pb::task_event::Event::Finished(pb::Finished {
            kind: kind as i32,
            exit_code,
            error,
        }),
    )
}

/// Heartbeat usage.
pub(crate) fn usage(u: Usage) -> pb::Usage {
    pb::Usage {
        cpu_percent: u.cpu_percent,
        memory_used_bytes: u.memory_used_bytes,
        memory_total_bytes: u.memory_total_bytes,
    }
}

/// An attempt reference.
pub(crate) fn attempt_ref(key: &AttemptKey) -> pb::AttemptRef {
    pb::AttemptRef {
        task_id: key.0.clone(),
        token: key.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_maps_onto_finish_kind() {
        let key = ("t".to_string(), 9);
        let get = |f: Finish| match finished(&key, &f).event {
            Some(pb::task_event::Event::Finished(x)) => x,
            other => panic!("not finished: {other:?}"),
        };
        let exited = get(Finish::Exited(2));
        assert_eq!(exited.kind, pb::FinishKind::Exited as i32);
        assert_eq!(exited.exit_code, Some(2));
        assert_eq!(get(Finish::TimedOut).kind, pb::FinishKind::TimedOut as i32);
        assert_eq!(
            get(Finish::Cancelled).kind,
            pb::FinishKind::Cancelled as i32
        );
        let err = get(Finish::Error("pull x: denied".into()));
        assert_eq!(err.kind, pb::FinishKind::Error as i32);
        assert_eq!(err.error, "pull x: denied");
        assert_eq!(finished(&key, &Finish::TimedOut).token, 9);
    }
}
