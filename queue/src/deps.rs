//! Dependencies between tasks (`cloudai enqueue --after ID:ok`): the types, the rule that
//! decides a waiting task from its parents' statuses ([`verdict`], pure), and the passes
//! that apply it through any [`QueueStore`]: [`settle`] (one task), [`resolve`] (the
//! dependents of a task that ended, and theirs in turn when they are cancelled: the whole
//! cascade in one pass) and [`sweep`] (every waiting task, which makes the passes safe to
//! lose in a crash: the leader sweeps at start and every few seconds).
//!
//! A parent's outcome counts once it is final: a failed attempt that will be retried
//! leaves the task `queued`, not `failed`, so its dependents go on waiting.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{QueueError, Result};
use crate::model::{Task, TaskId, TaskStatus};
use crate::query::TaskQuery;
use crate::store::QueueStore;

/// The outcome a dependent needs of its parent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DependencyCondition {
    /// The parent succeeded (Slurm's `afterok`; the default).
    #[default]
    #[serde(rename = "ok")]
    Ok,
    /// The parent ended any other way: failed, timed out, lost or cancelled.
    #[serde(rename = "notok")]
    NotOk,
    /// The parent ended, however.
    #[serde(rename = "any")]
    Any,
}

impl DependencyCondition {
    /// Every condition.
    pub const ALL: [DependencyCondition; 3] = [Self::Ok, Self::NotOk, Self::Any];

    /// The name in the CLI, JSON and the stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotOk => "notok",
            Self::Any => "any",
        }
    }

    /// Whether a parent in `status` meets the condition: `None` while the parent has not
    /// ended (it may yet), `Some(false)` when it never will.
    pub fn holds(self, status: TaskStatus) -> Option<bool> {
        if !status.is_terminal() {
            return None;
        }
        Some(match self {
            Self::Ok => status == TaskStatus::Succeeded,
            Self::NotOk => status != TaskStatus::Succeeded,
            Self::Any => true,
        })
    }
}

impl fmt::Display for DependencyCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DependencyCondition {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                QueueError::invalid(
                    "after",
                    format!("{s:?} is not a condition: ok, notok or any"),
                )
            })
    }
}

/// One parent of a task, and what it must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dependency {
    /// The parent.
    pub task: TaskId,
    /// What the parent's final outcome must be.
    #[serde(default)]
    pub condition: DependencyCondition,
}

/// How a waiting task leaves `waiting`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Every condition holds: it is queued.
    Release,
    /// A condition never can: it is cancelled, with this reason.
    Cancel(String),
}

/// The rule: with `parents` (each dependency and its parent's status, `None` when the
/// parent does not exist), a task is cancelled as soon as one condition can never hold,
/// released once all hold, and waits otherwise (`None`).
pub fn verdict(parents: &[(Dependency, Option<TaskStatus>)]) -> Option<Resolution> {
    let mut all_hold = true;
    for (d, status) in parents {
        match status.map(|s| (s, d.condition.holds(s))) {
            None => {
                return Some(Resolution::Cancel(format!(
                    "dependency {} does not exist",
                    d.task
                )))
            }
            Some((s, Some(false))) => {
                return Some(Resolution::Cancel(format!(
                    "dependency {} ended {s}",
                    d.task
                )))
            }
            Some((_, None)) => all_hold = false,
            Some((_, Some(true))) => {}
        }
    }
    all_hold.then_some(Resolution::Release)
}

/// Decides waiting task `id` from its parents now; the task as changed, or `None` when it
/// waits on (or was no longer waiting: cancelled by a user, settled by another pass).
pub async fn settle(
    store: &dyn QueueStore,
    id: TaskId,
    now: DateTime<Utc>,
) -> Result<Option<Task>> {
    let task = store.get(id).await?;
    if task.status != TaskStatus::Waiting {
        return Ok(None);
    }
    let mut parents = Vec::with_capacity(task.spec.after.len());
    for d in &task.spec.after {
        let status = match store.get(d.task).await {
            Ok(p) => Some(p.status),
            Err(QueueError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        parents.push((*d, status));
    }
    let Some(res) = verdict(&parents) else {
        return Ok(None);
    };
    match store.settle_waiting(id, res, now).await {
        Ok(t) => Ok(Some(t)),
        Err(QueueError::IllegalTransition { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Most dependents read for one parent in one pass.
const MAX_DEPENDENTS: usize = 10_000;

/// After `parent` ended: decides each task waiting on it, and, for each of those that is
/// cancelled, the tasks waiting on that one, down the chain. Every task changed.
pub async fn resolve(
    store: &dyn QueueStore,
    parent: TaskId,
    now: DateTime<Utc>,
) -> Result<Vec<Task>> {
    let mut changed = Vec::new();
    let mut ended = vec![parent];
    while let Some(p) = ended.pop() {
        let query = TaskQuery {
            statuses: vec![TaskStatus::Waiting],
            depends_on: Some(p),
            oldest_first: true,
            limit: MAX_DEPENDENTS,
            ..TaskQuery::default()
        };
        for child in store.list(&query).await? {
            if let Some(t) = settle(store, child.id, now).await? {
                if t.status.is_terminal() {
                    ended.push(t.id);
                }
                changed.push(t);
            }
        }
    }
    Ok(changed)
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    /// Every task it changed.
    pub changed: Vec<Task>,
    /// Waiting tasks it found (before deciding them).
    pub waiting: usize,
}

/// Decides every waiting task (at most `limit`, oldest first), cascading cancellations:
/// what a pass lost in a crash, or a parent's end another master stored, is caught up.
pub async fn sweep(store: &dyn QueueStore, now: DateTime<Utc>, limit: usize) -> Result<Swept> {
    let query = TaskQuery {
        statuses: vec![TaskStatus::Waiting],
        oldest_first: true,
        limit,
        ..TaskQuery::default()
    };
    let mut changed = Vec::new();
    let waiting = store.list(&query).await?;
    let found = waiting.len();
    for w in waiting {
        if let Some(t) = settle(store, w.id, now).await? {
            let cancelled = t.status.is_terminal().then_some(t.id);
            changed.push(t);
            if let Some(id) = cancelled {
                changed.extend(resolve(store, id, now).await?);
            }
        }
    }
    Ok(Swept {
        changed,
        waiting: found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    fn dep(condition: DependencyCondition) -> Dependency {
        Dependency {
            task: TaskId::new(),
            condition,
        }
    }

    #[test]
    fn each_condition_waits_for_a_final_outcome() {
        use DependencyCondition as C;
        for c in C::ALL {
            for s in [Waiting, Queued, Assigned, Running] {
                assert_eq!(c.holds(s), None, "{c} with a parent {s}");
            }
        }
        assert_eq!(C::Ok.holds(Succeeded), Some(true));
        for s in [Failed, Cancelled, TimedOut, Lost] {
            assert_eq!(C::Ok.holds(s), Some(false));
            assert_eq!(C::NotOk.holds(s), Some(true));
            assert_eq!(C::Any.holds(s), Some(true));
        }
        assert_eq!(C::NotOk.holds(Succeeded), Some(false));
        assert_eq!(C::Any.holds(Succeeded), Some(true));
        assert_eq!("NOTOK".parse::<C>().unwrap(), C::NotOk);
        assert!("afterok".parse::<C>().is_err());
    }

    #[test]
    fn one_impossible_parent_cancels_all_holding_releases_else_wait() {
        use DependencyCondition as C;
        let (a, b) = (dep(C::Ok), dep(C::NotOk));
        assert_eq!(verdict(&[]), Some(Resolution::Release));
        assert_eq!(
            verdict(&[(a, Some(Succeeded)), (b, Some(Failed))]),
            Some(Resolution::Release)
        );
        assert_eq!(verdict(&[(a, Some(Succeeded)), (b, Some(Running))]), None);
        // Cancelled at once, even while another parent still runs.
        assert_eq!(
            verdict(&[(b, Some(Running)), (a, Some(TimedOut))]),
            Some(Resolution::Cancel(format!(
                "dependency {} ended timed_out",
                a.task
            )))
        );
        assert_eq!(
            verdict(&[(a, None)]),
            Some(Resolution::Cancel(format!(
                "dependency {} does not exist",
                a.task
            )))
        );
    }
}
