//! A worker's report of an attempt, applied in order and idempotently, and the master's
//! verdict `lost`.
//!
//! Reports are numbered per attempt (1, 2, 3, …). The attempt remembers the last seq
//! stored (`reported_seq`): events at or below it are repeats and change nothing, the
//! first new event must follow it directly (else [`QueueError::ReportGap`]), and the
//! times stored are the worker's. The end is always the last event; anything after it is
//! acknowledged and ignored.
//!
//! **Late results.** An attempt the master ended `lost` because its worker went silent
//! ([`LostCause::Silence`]) may still be reported by that worker when it comes back. While
//! the task has no newer attempt (it waits in `queued` for its retry), the report is
//! applied: start and output are kept as that attempt's, and its end undoes the `lost`
//! verdict (the task is put back where it was, `running` or `assigned`, which is an undo
//! of the last transition rather than a new one) and then ends the attempt as reported,
//! so the task succeeds, fails or retries as if the worker had never been cut off. Once a
//! newer attempt exists, or the task has ended, the late report is stale.

use chrono::{DateTime, Utc};

use super::{check_token, finish, mark_running};
use crate::error::{QueueError, Result};
use crate::model::{AttemptOutcome, NewLogChunk, Task, TaskStatus};
use crate::report::{LostCause, ReportBody, ReportEvent};

/// What a report asks of the store beyond the task itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ReportPlan {
    /// Output to append, in order, for attempt `attempt`.
    pub chunks: Vec<NewLogChunk>,
    /// The attempt number the output belongs to.
    pub attempt: u32,
    /// Every event up to this seq is stored once the write commits.
    pub through: u64,
    /// False when every event was stored already (nothing to write).
    pub changed: bool,
    /// True for the late result of an attempt lost to silence.
    pub late: bool,
}

/// Applies `events` (ascending seq) of the attempt holding `token`, reported by
/// `worker_id`, to `task`, writing at `now`. On `Err` the task is unchanged.
pub(crate) fn apply_report(
    task: &mut Task,
    token: u64,
    worker_id: &str,
    events: &[ReportEvent],
    now: DateTime<Utc>,
) -> Result<ReportPlan> {
    check_token(task, token)?;
    let last = task.attempts.len() - 1;
    if task.attempts[last].worker_id != worker_id {
        return Err(QueueError::invalid(
            "worker",
            format!(
                "attempt {token} of task {} belongs to worker {}, not {worker_id}",
                task.id, task.attempts[last].worker_id
            ),
        ));
    }
    let stored = task.attempts[last].reported_seq;
    let fresh: Vec<&ReportEvent> = events.iter().filter(|e| e.seq > stored).collect();
    let mut plan = ReportPlan {
        attempt: task.attempts[last].number,
        through: stored,
        ..ReportPlan::default()
    };
    let Some(first) = fresh.first() else {
        return Ok(plan);
    };
    let attempt = &task.attempts[last];
    plan.late = match attempt.outcome {
        None => false,
        Some(TaskStatus::Lost) if attempt.lost_to_silence && task.status == TaskStatus::Queued => {
            true
        }
        Some(outcome) => {
            return Err(QueueError::AttemptOver {
                task: task.id,
                token,
                outcome,
            })
        }
    };
    if first.seq != stored + 1 {
        return Err(QueueError::ReportGap {
            task: task.id,
            token,
            stored,
            got: first.seq,
        });
    }
    if fresh.windows(2).any(|w| w[1].seq != w[0].seq + 1) {
        return Err(QueueError::invalid(
            "report",
            "event seqs must rise by one without gaps",
        ));
    }
    let mut t = task.clone();
    let mut ended = false;
    for e in fresh {
        plan.through = e.seq;
        if ended {
            continue;
        }
        match &e.body {
            ReportBody::Started { .. } => {
                if plan.late {
                    // Kept for the late end; a start the worker made after the master gave
                    // up moves the `lost` time with it, so no attempt ends before it starts.
                    let a = t.attempts.last_mut().expect("checked above");
                    let start = *a.started_at.get_or_insert(e.time);
                    a.finished_at = a.finished_at.map(|f| f.max(start));
                } else if t.status == TaskStatus::Assigned {
                    mark_running(&mut t, token, e.time)?;
                }
            }
            ReportBody::Output { stream, data } => plan.chunks.push(NewLogChunk {
                stream: *stream,
                time: e.time,
                data: data.clone(),
            }),
            ReportBody::Finished(end) => {
                if plan.late {
                    reopen(&mut t);
                }
                // A container ran even if its start was never reported.
                if t.status == TaskStatus::Assigned && end.ran() {
                    mark_running(&mut t, token, e.time)?;
                }
                finish(&mut t, token, end.outcome(), e.time, now)?;
                ended = true;
            }
        }
    }
    t.attempts[last].reported_seq = plan.through;
    t.updated_at = now;
    plan.changed = true;
    *task = t;
    Ok(plan)
}

/// Undoes the `lost` verdict on the last attempt (see the module docs): the attempt is
/// live again and the task back in the status it had before it was lost.
fn reopen(t: &mut Task) {
    let earlier_error = t.attempts[..t.attempts.len() - 1]
        .iter()
        .rev()
        .find_map(|a| a.error.clone());
    let a = t.attempts.last_mut().expect("a late result has an attempt");
    a.outcome = None;
    a.finished_at = None;
    a.error = None;
    a.lost_to_silence = false;
    t.status = if a.started_at.is_some() {
        TaskStatus::Running
    } else {
        TaskStatus::Assigned
    };
    t.error = earlier_error;
}

/// The master's verdict on the live attempt `token`: `lost`, for `cause`.
pub(crate) fn lose(
    task: &mut Task,
    token: u64,
    cause: &LostCause,
    now: DateTime<Utc>,
) -> Result<()> {
    check_token(task, token)?;
    let outcome = AttemptOutcome {
        status: TaskStatus::Lost,
        exit_code: None,
        error: Some(cause.describe()),
    };
    finish(task, token, outcome, now, now)?;
    if let Some(a) = task.attempts.last_mut() {
        a.lost_to_silence = matches!(cause, LostCause::Silence { .. });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{assign, new_task};
    use crate::model::{LogStream, TaskSpec};
    use crate::report::AttemptEnd;
    use chrono::Duration;

    fn ev(seq: u64, at: DateTime<Utc>, body: ReportBody) -> ReportEvent {
        ReportEvent {
            seq,
            time: at,
            body,
        }
    }

    fn started(seq: u64, at: DateTime<Utc>) -> ReportEvent {
        ev(
            seq,
            at,
            ReportBody::Started {
                container_id: "c".into(),
            },
        )
    }

    fn line(seq: u64, at: DateTime<Utc>, text: &str) -> ReportEvent {
        ev(
            seq,
            at,
            ReportBody::Output {
                stream: LogStream::Stdout,
                data: text.as_bytes().to_vec(),
            },
        )
    }

    fn ended(seq: u64, at: DateTime<Utc>, code: i32) -> ReportEvent {
        ev(seq, at, ReportBody::Finished(AttemptEnd::Exited(code)))
    }

    fn assigned(max_attempts: u32) -> (Task, DateTime<Utc>) {
        let t0 = Utc::now();
        let mut spec = TaskSpec::new("busybox");
        spec.max_attempts = max_attempts;
        let mut t = new_task(spec.into(), t0);
        assign(&mut t, "w1", t0).unwrap();
        (t, t0)
    }

    #[test]
    fn a_whole_report_keeps_the_workers_times_and_output_in_order() {
        let (mut t, t0) = assigned(1);
        let (s, e) = (t0 + Duration::seconds(1), t0 + Duration::seconds(3));
        let now = t0 + Duration::seconds(9);
        let events = [
            started(1, s),
            line(2, s, "a"),
            line(3, e, "b"),
            ended(4, e, 0),
        ];
        let plan = apply_report(&mut t, 1, "w1", &events, now).unwrap();
        assert_eq!((plan.through, plan.changed, plan.late), (4, true, false));
        let text: Vec<&[u8]> = plan.chunks.iter().map(|c| c.data.as_slice()).collect();
        assert_eq!(text, [b"a", b"b"]);
        assert_eq!(t.status, TaskStatus::Succeeded);
        let a = &t.attempts[0];
        assert_eq!((a.started_at, a.finished_at), (Some(s), Some(e)));
        assert_eq!(
            t.finished_at,
            Some(e),
            "the task ended when its container did"
        );
        assert_eq!(t.updated_at, now);
        assert_eq!(a.reported_seq, 4);
    }

    #[test]
    fn repeats_change_nothing_and_resume_where_the_store_is() {
        let (mut t, t0) = assigned(1);
        apply_report(&mut t, 1, "w1", &[started(1, t0), line(2, t0, "a")], t0).unwrap();
        let before = t.clone();
        let again = apply_report(&mut t, 1, "w1", &[started(1, t0), line(2, t0, "a")], t0).unwrap();
        assert_eq!((again.through, again.changed), (2, false));
        assert!(again.chunks.is_empty());
        assert_eq!(t, before);
        // A re-send from the start after a reconnect: only the new tail is applied.
        let all = [
            started(1, t0),
            line(2, t0, "a"),
            line(3, t0, "b"),
            ended(4, t0, 0),
        ];
        let plan = apply_report(&mut t, 1, "w1", &all, t0).unwrap();
        assert_eq!(plan.chunks.len(), 1);
        assert_eq!(plan.chunks[0].data, b"b");
        assert_eq!(t.status, TaskStatus::Succeeded);
        // After the end, a repeat is still acknowledged, new events are refused.
        assert_eq!(apply_report(&mut t, 1, "w1", &all, t0).unwrap().through, 4);
        let r = apply_report(&mut t, 1, "w1", &[line(5, t0, "late")], t0);
        assert!(matches!(r, Err(QueueError::AttemptOver { .. })), "{r:?}");
        let r = apply_report(&mut t, 1, "w1", &[line(9, t0, "late")], t0);
        assert!(
            matches!(r, Err(QueueError::AttemptOver { .. })),
            "an ended attempt has no gaps, only an end: {r:?}"
        );
    }

    #[test]
    fn gaps_stale_tokens_and_broken_runs_are_refused_without_change() {
        let (mut t, t0) = assigned(1);
        let before = t.clone();
        let r = apply_report(&mut t, 1, "w1", &[line(2, t0, "x")], t0);
        assert!(
            matches!(
                r,
                Err(QueueError::ReportGap {
                    stored: 0,
                    got: 2,
                    ..
                })
            ),
            "{r:?}"
        );
        let r = apply_report(&mut t, 7, "w1", &[started(1, t0)], t0);
        assert!(matches!(r, Err(QueueError::StaleToken { .. })), "{r:?}");
        let r = apply_report(&mut t, 1, "w1", &[started(1, t0), line(3, t0, "x")], t0);
        assert!(matches!(r, Err(QueueError::Invalid { .. })), "{r:?}");
        assert_eq!(t, before);
    }

    #[test]
    fn an_end_without_a_reported_start_still_ran_and_an_error_did_not() {
        let (mut t, t0) = assigned(1);
        apply_report(&mut t, 1, "w1", &[ended(1, t0, 0)], t0).unwrap();
        assert_eq!(t.status, TaskStatus::Succeeded);
        assert_eq!(t.attempts[0].started_at, Some(t0));
        let (mut t, t0) = assigned(1);
        let pull = ev(
            1,
            t0,
            ReportBody::Finished(AttemptEnd::Error("no such image".into())),
        );
        apply_report(&mut t, 1, "w1", &[pull], t0).unwrap();
        assert_eq!(t.status, TaskStatus::Failed);
        assert_eq!(t.attempts[0].started_at, None);
        assert_eq!(t.error.as_deref(), Some("no such image"));
    }

    #[test]
    fn a_late_result_is_accepted_only_while_no_newer_attempt_exists() {
        let (mut t, t0) = assigned(1);
        apply_report(&mut t, 1, "w1", &[started(1, t0), line(2, t0, "a")], t0).unwrap();
        let later = t0 + Duration::seconds(20);
        lose(
            &mut t,
            1,
            &LostCause::Silence {
                worker_id: "w1".into(),
            },
            later,
        )
        .unwrap();
        assert_eq!(t.status, TaskStatus::Queued, "lost attempts are retried");
        assert!(t.attempts[0].lost_to_silence);
        // The worker comes back with the rest: its output and its end are accepted.
        let end = t0 + Duration::seconds(2);
        let plan = apply_report(
            &mut t,
            1,
            "w1",
            &[line(3, end, "b"), ended(4, end, 0)],
            later,
        )
        .unwrap();
        assert!(plan.late);
        assert_eq!(plan.chunks[0].data, b"b");
        assert_eq!(t.status, TaskStatus::Succeeded);
        let a = &t.attempts[0];
        assert_eq!(
            (a.outcome, a.finished_at),
            (Some(TaskStatus::Succeeded), Some(end))
        );
        assert_eq!((a.error.as_deref(), t.error.as_deref()), (None, None));
        assert!(!a.lost_to_silence);

        // A newer attempt exists: the old one's report is stale.
        let (mut t, t0) = assigned(1);
        lose(
            &mut t,
            1,
            &LostCause::Silence {
                worker_id: "w1".into(),
            },
            t0,
        )
        .unwrap();
        assign(&mut t, "w2", t0).unwrap();
        let r = apply_report(&mut t, 1, "w1", &[ended(1, t0, 0)], t0);
        assert!(matches!(r, Err(QueueError::StaleToken { .. })), "{r:?}");

        // Lost for another cause: no late result.
        let (mut t, t0) = assigned(1);
        lose(
            &mut t,
            1,
            &LostCause::Gone("reconnected without it".into()),
            t0,
        )
        .unwrap();
        let r = apply_report(&mut t, 1, "w1", &[ended(1, t0, 0)], t0);
        assert!(matches!(r, Err(QueueError::AttemptOver { .. })), "{r:?}");
    }

    #[test]
    fn a_late_start_after_the_loss_never_ends_before_it_starts() {
        let (mut t, t0) = assigned(1);
        lose(
            &mut t,
            1,
            &LostCause::Silence {
                worker_id: "w1".into(),
            },
            t0,
        )
        .unwrap();
        let later = t0 + Duration::seconds(3);
        apply_report(&mut t, 1, "w1", &[started(1, later)], later).unwrap();
        let a = &t.attempts[0];
        assert_eq!(a.outcome, Some(TaskStatus::Lost), "no end yet: still lost");
        assert_eq!((a.started_at, a.finished_at), (Some(later), Some(later)));
        let end = later + Duration::seconds(2);
        apply_report(&mut t, 1, "w1", &[ended(2, end, 0)], end).unwrap();
        let a = &t.attempts[0];
        assert_eq!((a.started_at, a.finished_at), (Some(later), Some(end)));
        assert_eq!(t.status, TaskStatus::Succeeded);
    }

    #[test]
    fn a_late_failure_counts_as_a_failure_and_retries_by_the_failure_budget() {
        let (mut t, t0) = assigned(2);
        lose(
            &mut t,
            1,
            &LostCause::Silence {
                worker_id: "w1".into(),
            },
            t0,
        )
        .unwrap();
        apply_report(&mut t, 1, "w1", &[started(1, t0), ended(2, t0, 3)], t0).unwrap();
        assert_eq!(t.status, TaskStatus::Queued, "one failure of two allowed");
        assert_eq!(t.attempts[0].outcome, Some(TaskStatus::Failed));
        assert_eq!(t.exit_code, Some(3));
    }
}
