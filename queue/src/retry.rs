//! What happens to a task when an attempt ends: retry after a backoff, or finish.
//! Pure: every store calls [`disposition`] inside its own atomic update.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{AttemptOutcome, Task, TaskStatus};

/// First retry delay.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Where a task goes after an attempt ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Back to `queued`, not dispatched before `not_before`.
    Retry {
        /// Earliest dispatch time.
        not_before: DateTime<Utc>,
    },
    /// The task ends in this terminal status.
    Final(TaskStatus),
}

/// Decides the task's next status when its current attempt ends with `outcome`.
///
/// Failed and timed-out attempts count against `max_attempts`; lost attempts count
/// against `max_lost_retries` separately. A task whose cancel was requested never retries,
/// and when its attempt is lost (the worker died before it could report the cancel) the
/// task ends `cancelled`, as its user asked; the attempt keeps `lost` and its cause.
pub fn disposition(task: &Task, outcome: &AttemptOutcome, now: DateTime<Utc>) -> Disposition {
    if task.cancel_requested && outcome.status == TaskStatus::Lost {
        return Disposition::Final(TaskStatus::Cancelled);
    }
    let ended = |pred: fn(TaskStatus) -> bool| {
        task.attempts
            .iter()
            .filter(|a| a.outcome.is_some_and(pred))
            .count() as u32
            + 1
    };
    let retry = match outcome.status {
        _ if task.cancel_requested => false,
        TaskStatus::Failed | TaskStatus::TimedOut => {
            ended(|s| matches!(s, TaskStatus::Failed | TaskStatus::TimedOut))
                < task.spec.max_attempts
        }
        TaskStatus::Lost => ended(|s| s == TaskStatus::Lost) <= task.spec.max_lost_retries,
        _ => false,
    };
    if retry {
        let n = task.attempts.len() as u32;
        Disposition::Retry {
            not_before: now + backoff_delay(n, jitter_seed(task)),
        }
    } else {
        Disposition::Final(outcome.status)
    }
}

/// Exponential delay before retry number `n` (1-based), with up to 50% jitter taken from
/// `seed` so that tasks failing together do not all come back together.
pub fn backoff_delay(n: u32, seed: u64) -> chrono::Duration {
    let exp = n.saturating_sub(1).min(20);
    let base = BACKOFF_INITIAL
        .saturating_mul(1u32 << exp)
        .min(BACKOFF_MAX)
        .as_millis() as u64;
    let jitter_pct = seed % 51; // 0..=50
    let ms = base - base * jitter_pct / 100;
    chrono::Duration::milliseconds(ms as i64)
}

fn jitter_seed(task: &Task) -> u64 {
    let b = task.id.0.as_u128();
    (b as u64) ^ ((b >> 64) as u64) ^ task.attempts.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attempt, TaskId, TaskSpec};

    fn task(max_attempts: u32, max_lost: u32, past: &[TaskStatus]) -> Task {
        let now = Utc::now();
        let mut spec = TaskSpec::new("busybox");
        spec.max_attempts = max_attempts;
        spec.max_lost_retries = max_lost;
        let mut attempts: Vec<Attempt> = past
            .iter()
            .enumerate()
            .map(|(i, s)| Attempt {
                finished_at: Some(now),
                outcome: Some(*s),
                ..Attempt::new(i as u32 + 1, i as u64 + 1, "w", now)
            })
            .collect();
        let n = attempts.len();
        attempts.push(Attempt::new(n as u32 + 1, n as u64 + 1, "w", now));
        Task {
            id: TaskId::new(),
            spec,
            status: TaskStatus::Running,
            created_at: now,
            updated_at: now,
            not_before: now,
            finished_at: None,
            attempts,
            cancel_requested: false,
            exit_code: None,
            error: None,
            submitted_by: None,
        }
    }

    fn outcome(status: TaskStatus) -> AttemptOutcome {
        AttemptOutcome {
            status,
            exit_code: None,
            error: None,
        }
    }

    #[test]
    fn success_and_cancel_are_final() {
        let now = Utc::now();
        for s in [TaskStatus::Succeeded, TaskStatus::Cancelled] {
            assert_eq!(
                disposition(&task(5, 5, &[]), &outcome(s), now),
                Disposition::Final(s)
            );
        }
    }

    #[test]
    fn failures_retry_until_max_attempts() {
        let now = Utc::now();
        let t = task(3, 0, &[TaskStatus::Failed]);
        assert!(matches!(
            disposition(&t, &outcome(TaskStatus::Failed), now),
            Disposition::Retry { not_before } if not_before > now
        ));
        let t = task(3, 0, &[TaskStatus::Failed, TaskStatus::TimedOut]);
        assert_eq!(
            disposition(&t, &outcome(TaskStatus::TimedOut), now),
            Disposition::Final(TaskStatus::TimedOut)
        );
        let t = task(1, 0, &[]);
        assert_eq!(
            disposition(&t, &outcome(TaskStatus::Failed), now),
            Disposition::Final(TaskStatus::Failed)
        );
    }

    #[test]
    fn lost_attempts_have_their_own_budget() {
        let now = Utc::now();
        // One failure budget, but lost attempts do not spend it.
        let t = task(1, 2, &[TaskStatus::Lost]);
        assert!(matches!(
            disposition(&t, &outcome(TaskStatus::Lost), now),
            Disposition::Retry { .. }
        ));
        let t = task(1, 2, &[TaskStatus::Lost, TaskStatus::Lost]);
        assert_eq!(
            disposition(&t, &outcome(TaskStatus::Lost), now),
            Disposition::Final(TaskStatus::Lost)
        );
    }

    #[test]
    fn cancel_requested_never_retries() {
        let mut t = task(5, 5, &[]);
        t.cancel_requested = true;
        assert_eq!(
            disposition(&t, &outcome(TaskStatus::Failed), Utc::now()),
            Disposition::Final(TaskStatus::Failed)
        );
    }

    #[test]
    fn a_lost_attempt_of_a_cancelled_task_ends_it_cancelled() {
        // Found by the chaos test: the worker died between the cancel and its report.
        let mut t = task(5, 5, &[]);
        t.cancel_requested = true;
        assert_eq!(
            disposition(&t, &outcome(TaskStatus::Lost), Utc::now()),
            Disposition::Final(TaskStatus::Cancelled)
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let d1 = backoff_delay(1, 0).num_milliseconds();
        let d2 = backoff_delay(2, 0).num_milliseconds();
        let d30 = backoff_delay(30, 0).num_milliseconds();
        assert_eq!(d1, 1000);
        assert_eq!(d2, 2000);
        assert_eq!(d30, BACKOFF_MAX.as_millis() as i64);
        let jittered = backoff_delay(2, 50).num_milliseconds();
        assert_eq!(jittered, 1000);
    }
}
