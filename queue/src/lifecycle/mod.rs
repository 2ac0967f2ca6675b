//! The task changes behind each store call, as pure functions over a loaded [`Task`].
//! Every backend loads the task, applies one of these inside its own atomic write
//! (a SQLite transaction, a MongoDB transaction with a conditional update), and writes
//! it back only when it returns `Ok`, so a rejected call changes nothing and both
//! backends share one implementation of the lifecycle.
//!
//! - this module: enqueue, assign, the end of an attempt, cancel.
//! - [`report`]: a worker's ordered report of an attempt (start, output, end), the
//!   master's verdict `lost`, and the late result of an attempt lost to silence.

mod report;

pub(crate) use report::{apply_report, lose};

use chrono::{DateTime, Utc};

use crate::deps::Resolution;
use crate::error::{QueueError, Result};
use crate::model::{Attempt, AttemptOutcome, NewTask, Task, TaskId, TaskStatus};
use crate::retry::{self, Disposition};
use crate::state;
use crate::validate::validate_worker_id;

/// A fresh task: `waiting` when it runs after others or is an element of a capped array
/// (the cap releases it), else `queued`; not dispatched before its spec's `not_before`.
pub(crate) fn new_task(new: NewTask, now: DateTime<Utc>) -> Task {
    let capped = new.spec.array.as_ref().is_some_and(|a| a.max_running > 0);
    let status = if new.spec.after.is_empty() && !capped {
        TaskStatus::Queued
    } else {
        TaskStatus::Waiting
    };
    let not_before = new.spec.not_before.map_or(now, |t| t.max(now));
    Task {
        id: TaskId::new(),
        spec: new.spec,
        status,
        created_at: now,
        updated_at: now,
        not_before,
        finished_at: None,
        attempts: Vec::new(),
        cancel_requested: false,
        exit_code: None,
        error: None,
        submitted_by: new.submitted_by,
    }
}

/// `queued -> assigned` with a new attempt holding the next fencing token.
pub(crate) fn assign(task: &mut Task, worker_id: &str, now: DateTime<Utc>) -> Result<()> {
    validate_worker_id(worker_id)?;
    state::check(task.id, task.status, TaskStatus::Assigned)?;
    let number = task.attempts.len() as u32 + 1;
    task.attempts
        .push(Attempt::new(number, task.token() + 1, worker_id, now));
    task.status = TaskStatus::Assigned;
    task.updated_at = now;
    Ok(())
}

/// `Ok` when `token` is the current attempt's token.
pub(crate) fn check_token(task: &Task, token: u64) -> Result<()> {
    let current = task.token();
    if task.attempts.is_empty() || token != current {
        Err(QueueError::StaleToken {
            task: task.id,
            got: token,
            current,
        })
    } else {
        Ok(())
    }
}

/// `assigned -> running` for the attempt holding `token`, started at `at`.
pub(crate) fn mark_running(task: &mut Task, token: u64, at: DateTime<Utc>) -> Result<()> {
    check_token(task, token)?;
    state::check(task.id, task.status, TaskStatus::Running)?;
    if let Some(a) = task.attempts.last_mut() {
        a.started_at = Some(at);
    }
    task.status = TaskStatus::Running;
    task.updated_at = at;
    Ok(())
}

/// Ends the attempt holding `token` with `outcome`: it ended at `at` (the worker's time;
/// never before its start), and the write happens at `now`, which also starts a retry
/// backoff. The task retries or ends as `retry` decides.
pub(crate) fn finish(
    task: &mut Task,
    token: u64,
    outcome: AttemptOutcome,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<()> {
    check_token(task, token)?;
    if !outcome.status.is_terminal() {
        return Err(QueueError::invalid(
            "outcome",
            format!(
                "{} is not an end of an attempt (succeeded, failed, cancelled, timed_out, lost)",
                outcome.status
            ),
        ));
    }
    state::check(task.id, task.status, outcome.status)?;
    let disposition = retry::disposition(task, &outcome, now);
    let next = match disposition {
        Disposition::Retry { .. } => TaskStatus::Queued,
        Disposition::Final(s) => s,
    };
    state::check(task.id, task.status, next)?;
    let mut ended = at;
    if let Some(a) = task.attempts.last_mut() {
        ended = a.started_at.map_or(at, |s| at.max(s));
        a.finished_at = Some(ended);
        a.outcome = Some(outcome.status);
        a.exit_code = outcome.exit_code;
        a.error.clone_from(&outcome.error);
    }
    if outcome.exit_code.is_some() {
        task.exit_code = outcome.exit_code;
    }
    if outcome.error.is_some() {
        task.error = outcome.error;
    }
    match disposition {
        Disposition::Retry { not_before } => {
            task.status = TaskStatus::Queued;
            task.not_before = not_before;
        }
        Disposition::Final(s) => {
            task.status = s;
            task.finished_at = Some(ended);
        }
    }
    task.updated_at = now;
    Ok(())
}

/// A user's cancel: queued ends at once, assigned or running gets `cancel_requested`.
pub(crate) fn request_cancel(task: &mut Task, now: DateTime<Utc>) -> Result<()> {
    state::check(task.id, task.status, TaskStatus::Cancelled)?;
    if matches!(task.status, TaskStatus::Queued | TaskStatus::Waiting) {
        task.status = TaskStatus::Cancelled;
        task.finished_at = Some(now);
    } else {
        task.cancel_requested = true;
    }
    task.updated_at = now;
    Ok(())
}

/// `waiting -> queued` or `waiting -> cancelled` (with the reason as its error), as the
/// dependency rule decided (`deps::verdict`).
pub(crate) fn settle_waiting(task: &mut Task, res: &Resolution, now: DateTime<Utc>) -> Result<()> {
    let to = match res {
        Resolution::Release => TaskStatus::Queued,
        Resolution::Cancel(_) => TaskStatus::Cancelled,
    };
    if task.status != TaskStatus::Waiting {
        return Err(QueueError::IllegalTransition {
            task: task.id,
            from: task.status,
            to,
        });
    }
    state::check(task.id, task.status, to)?;
    task.status = to;
    task.updated_at = now;
    if let Resolution::Cancel(reason) = res {
        task.finished_at = Some(now);
        task.error = Some(reason.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskSpec;

    fn queued(max_attempts: u32) -> Task {
        let mut spec = TaskSpec::new("busybox");
        spec.max_attempts = max_attempts;
        new_task(spec.into(), Utc::now())
    }

    fn outcome(status: TaskStatus) -> AttemptOutcome {
        AttemptOutcome {
            status,
            exit_code: Some(1),
            error: Some("boom".into()),
        }
    }

    #[test]
    fn tokens_increase_per_attempt() {
        let now = Utc::now();
        let mut t = queued(3);
        assign(&mut t, "w1", now).unwrap();
        assert_eq!((t.token(), t.attempts[0].number), (1, 1));
        finish(&mut t, 1, outcome(TaskStatus::Failed), now, now).unwrap();
        assert_eq!(t.status, TaskStatus::Queued);
        assert!(t.not_before > now);
        assign(&mut t, "w2", now).unwrap();
        assert_eq!((t.token(), t.attempts[1].number), (2, 2));
        assert!(matches!(
            mark_running(&mut t, 1, now),
            Err(QueueError::StaleToken {
                got: 1,
                current: 2,
                ..
            })
        ));
    }

    #[test]
    fn rejected_changes_leave_the_task_alone() {
        let now = Utc::now();
        let mut t = queued(1);
        let before = t.clone();
        assert!(matches!(
            mark_running(&mut t, 0, now),
            Err(QueueError::StaleToken { .. })
        ));
        assert!(matches!(
            assign(&mut t, "bad worker", now),
            Err(QueueError::Invalid { .. })
        ));
        assert_eq!(t, before);
        assign(&mut t, "w", now).unwrap();
        let before = t.clone();
        assert!(matches!(
            finish(&mut t, 1, outcome(TaskStatus::Succeeded), now, now),
            Err(QueueError::IllegalTransition { .. })
        ));
        assert!(matches!(
            finish(&mut t, 1, outcome(TaskStatus::Queued), now, now),
            Err(QueueError::Invalid {
                field: "outcome",
                ..
            })
        ));
        assert_eq!(t, before);
    }

    #[test]
    fn cancel_depends_on_status() {
        let now = Utc::now();
        let mut t = queued(1);
        request_cancel(&mut t, now).unwrap();
        assert_eq!(t.status, TaskStatus::Cancelled);
        assert!(request_cancel(&mut t, now).is_err());
        let mut t = queued(1);
        assign(&mut t, "w", now).unwrap();
        request_cancel(&mut t, now).unwrap();
        assert_eq!(t.status, TaskStatus::Assigned);
        assert!(t.cancel_requested);
    }
}
