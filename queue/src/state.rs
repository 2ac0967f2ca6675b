//! The status state machine: one table of legal transitions.
//!
//! ```text
//! waiting ──► queued (its parents ended as it needs: `deps`) | cancelled
//! queued ──► assigned ──► running ──► succeeded | failed | cancelled | timed_out | lost
//!   │  ▲        │  │                      (and back to queued for a retry)
//!   │  └────────┘  └──► failed | cancelled | timed_out | lost   (never started)
//!   └──► cancelled
//! ```
//! Terminal statuses never change again.

use crate::error::{QueueError, Result};
use crate::model::{TaskId, TaskStatus};

use TaskStatus::*;

/// Every legal `(from, to)` pair. Anything else is an [`QueueError::IllegalTransition`].
pub const TRANSITIONS: &[(TaskStatus, TaskStatus)] = &[
    (Waiting, Queued),
    (Waiting, Cancelled),
    (Queued, Assigned),
    (Queued, Cancelled),
    (Assigned, Running),
    (Assigned, Queued),
    (Assigned, Failed),
    (Assigned, Cancelled),
    (Assigned, TimedOut),
    (Assigned, Lost),
    (Running, Succeeded),
    (Running, Failed),
    (Running, Cancelled),
    (Running, TimedOut),
    (Running, Lost),
    (Running, Queued),
];

/// True when the table allows `from -> to`.
pub fn is_legal(from: TaskStatus, to: TaskStatus) -> bool {
    TRANSITIONS.iter().any(|&(f, t)| f == from && t == to)
}

/// `Ok` when the table allows `from -> to`, else a typed error naming the task.
pub fn check(task: TaskId, from: TaskStatus, to: TaskStatus) -> Result<()> {
    if is_legal(from, to) {
        Ok(())
    } else {
        Err(QueueError::IllegalTransition { task, from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_is_decided_by_the_table() {
        let id = TaskId::new();
        let mut legal = 0;
        for from in TaskStatus::ALL {
            for to in TaskStatus::ALL {
                let expected = TRANSITIONS.contains(&(from, to));
                match check(id, from, to) {
                    Ok(()) => {
                        assert!(expected, "{from} -> {to} accepted but not in table");
                        legal += 1;
                    }
                    Err(QueueError::IllegalTransition {
                        task,
                        from: f,
                        to: t,
                    }) => {
                        assert!(!expected, "{from} -> {to} rejected but in table");
                        assert_eq!((task, f, t), (id, from, to));
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        }
        assert_eq!(legal, TRANSITIONS.len());
    }

    #[test]
    fn terminal_statuses_have_no_way_out() {
        for from in TaskStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in TaskStatus::ALL {
                assert!(!is_legal(from, to), "{from} -> {to} must be illegal");
            }
        }
    }

    #[test]
    fn legal_transitions_listed_explicitly() {
        let expected_legal = [
            ("waiting", "queued"),
            ("waiting", "cancelled"),
            ("queued", "assigned"),
            ("queued", "cancelled"),
            ("assigned", "running"),
            ("assigned", "queued"),
            ("assigned", "failed"),
            ("assigned", "cancelled"),
            ("assigned", "timed_out"),
            ("assigned", "lost"),
            ("running", "succeeded"),
            ("running", "failed"),
            ("running", "cancelled"),
            ("running", "timed_out"),
            ("running", "lost"),
            ("running", "queued"),
        ];
        for (f, t) in expected_legal {
            assert!(
                is_legal(f.parse().unwrap(), t.parse().unwrap()),
                "{f} -> {t}"
            );
        }
        let illegal = [
            ("waiting", "assigned"),
            ("waiting", "running"),
            ("waiting", "succeeded"),
            ("queued", "waiting"),
            ("queued", "running"),
            ("queued", "succeeded"),
            ("queued", "failed"),
            ("queued", "lost"),
            ("queued", "timed_out"),
            ("queued", "queued"),
            ("assigned", "assigned"),
            ("assigned", "succeeded"),
            ("running", "assigned"),
            ("running", "running"),
            ("succeeded", "queued"),
            ("failed", "queued"),
            ("cancelled", "running"),
            ("timed_out", "queued"),
            ("lost", "queued"),
        ];
        for (f, t) in illegal {
            assert!(
                !is_legal(f.parse().unwrap(), t.parse().unwrap()),
                "{f} -> {t}"
            );
        }
    }

    #[test]
    fn active_and_terminal_partition_the_statuses() {
        for s in TaskStatus::ALL {
            let kinds = [
                matches!(s, Waiting | Queued),
                s.is_active(),
                s.is_terminal(),
            ];
            assert_eq!(kinds.iter().filter(|k| **k).count(), 1, "{s}");
        }
    }
}
