//! Dependencies between tasks (`cloudai enqueue --after ID:ok`): the types, the rule that
//! decides a waiting task from its parents' statuses ([`verdict`], pure), and the passes
//! that apply it through any [`QueueStore`]: [`settle`] (one task), [`resolve`] (the
//! dependents of a task that ended, and theirs in turn when they are cancelled: the whole
//! cascade in one pass) and [`sweep`] (every waiting task, which makes the passes safe to
//! lose in a crash: the leader sweeps at start and every few seconds). An array's
//! elements are decided together ([`arrays`]), under the array's cap.
//!
//! A parent's outcome counts once it is final: a failed attempt that will be retried
//! leaves the task `queued`, not `failed`, so its dependents go on waiting.

mod arrays;

pub use arrays::fill as fill_array;

use std::collections::{BTreeSet, HashMap};
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

/// Parents' statuses as one pass read them (`None`: no such task).
type Parents = HashMap<TaskId, Option<TaskStatus>>;

/// The verdict on waiting `task` from its parents, read through `parents`.
async fn verdict_of(
    store: &dyn QueueStore,
    task: &Task,
    parents: &mut Parents,
) -> Result<Option<Resolution>> {
    let mut of = Vec::with_capacity(task.spec.after.len());
    for d in &task.spec.after {
        let status = match parents.get(&d.task) {
            Some(s) => *s,
            None => {
                let s = match store.get(d.task).await {
                    Ok(p) => Some(p.status),
                    Err(QueueError::NotFound(_)) => None,
                    Err(e) => return Err(e),
                };
                parents.insert(d.task, s);
                s
            }
        };
        of.push((*d, status));
    }
    Ok(verdict(&of))
}

/// Writes `res` for waiting task `id`: the task as changed, or `None` when it was no
/// longer waiting (cancelled by a user, settled by another pass).
async fn write(
    store: &dyn QueueStore,
    id: TaskId,
    res: Resolution,
    now: DateTime<Utc>,
) -> Result<Option<Task>> {
    match store.settle_waiting(id, res, now).await {
        Ok(t) => Ok(Some(t)),
        Err(QueueError::IllegalTransition { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Decides waiting `task` (not an array's element) from its parents now.
async fn decide(store: &dyn QueueStore, task: &Task, now: DateTime<Utc>) -> Result<Option<Task>> {
    match verdict_of(store, task, &mut Parents::new()).await? {
        Some(res) => write(store, task.id, res, now).await,
        None => Ok(None),
    }
}

/// Decides waiting task `id` now; every task changed (none when it waits on, or was no
/// longer waiting). An array's element is decided with its array ([`arrays::fill`]),
/// whose cap may hold it.
pub async fn settle(store: &dyn QueueStore, id: TaskId, now: DateTime<Utc>) -> Result<Vec<Task>> {
    let task = store.get(id).await?;
    if task.status != TaskStatus::Waiting {
        return Ok(Vec::new());
    }
    if let Some(a) = &task.spec.array {
        return arrays::fill(store, &a.id, now).await;
    }
    Ok(decide(store, &task, now).await?.into_iter().collect())
}

/// Most dependents read for one parent in one pass.
const MAX_DEPENDENTS: usize = 10_000;

/// The tasks waiting on `parent`.
async fn dependents(store: &dyn QueueStore, parent: TaskId) -> Result<Vec<Task>> {
    let query = TaskQuery {
        statuses: vec![TaskStatus::Waiting],
        depends_on: Some(parent),
        oldest_first: true,
        limit: MAX_DEPENDENTS,
        ..TaskQuery::default()
    };
    store.list(&query).await
}

/// Decides `waiting` (tasks read as waiting), each array's elements together; then, for
/// each task cancelled, the tasks waiting on it, down the chain (level by level, so a
/// long chain needs no deep recursion). Every task changed.
async fn decide_all(
    store: &dyn QueueStore,
    mut waiting: Vec<Task>,
    now: DateTime<Utc>,
) -> Result<Vec<Task>> {
    let mut changed = Vec::new();
    loop {
        let mut level = Vec::new();
        let mut arrays = BTreeSet::new();
        for w in waiting {
            match &w.spec.array {
                Some(a) => {
                    arrays.insert(a.id.clone());
                }
                None => level.extend(decide(store, &w, now).await?),
            }
        }
        for a in arrays {
            level.extend(arrays::fill(store, &a, now).await?);
        }
        waiting = Vec::new();
        for t in level.iter().filter(|t| t.status.is_terminal()) {
            waiting.extend(dependents(store, t.id).await?);
        }
        changed.extend(level);
        if waiting.is_empty() {
            return Ok(changed);
        }
    }
}

/// After `parent` ended: decides each task waiting on it, and, for each of those that is
/// cancelled, the tasks waiting on that one, down the chain. Every task changed.
pub async fn resolve(
    store: &dyn QueueStore,
    parent: TaskId,
    now: DateTime<Utc>,
) -> Result<Vec<Task>> {
    let children = dependents(store, parent).await?;
    decide_all(store, children, now).await
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    /// Every task it changed.
    pub changed: Vec<Task>,
    /// Waiting tasks it found (before deciding them).
    pub waiting: usize,
    /// The last waiting task it read: where the next page starts (`None` at the end).
    pub next: Option<TaskId>,
}

/// Decides the waiting tasks past `after` (at most `limit`, oldest first), cascading
/// cancellations: what a pass lost in a crash, or a parent's end another master stored,
/// is caught up. A whole sweep is pages from `None` until `next` is `None`.
pub async fn sweep(
    store: &dyn QueueStore,
    now: DateTime<Utc>,
    after: Option<TaskId>,
    limit: usize,
) -> Result<Swept> {
    let query = TaskQuery {
        statuses: vec![TaskStatus::Waiting],
        oldest_first: true,
        limit,
        before: after,
        ..TaskQuery::default()
    };
    let waiting = store.list(&query).await?;
    let found = waiting.len();
    let next = waiting.last().map(|t| t.id).filter(|_| found == limit);
    Ok(Swept {
        changed: decide_all(store, waiting, now).await?,
        waiting: found,
        next,
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
