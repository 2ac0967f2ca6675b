//! Placement: which worker gets a queued task. Pure and synchronous: plain structs in,
//! a decision out, no IO and no clock. The policy is documented in `PLACEMENT.md`.
//!
//! - this module: eligibility ([`check`]), the choice among eligible workers ([`place`])
//!   and batches ([`plan`]).
//! - [`feasible`]: whether any registered worker could ever take a task, and if not,
//!   the closest one and what it lacks (the enqueue warning, the `NoWorkerFits` reason).
//! - [`fair`]: the order of several submitters' tasks (fair share, DRF) and their quotas.
//! - [`devices`]: which GPU devices (by UUID) a placed task gets, one task per device.

pub mod devices;
pub mod fair;
mod feasible;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cloudai_queue::constraint::{Constraint, Preference};
use cloudai_queue::Resources;

use crate::config::PlacementPolicy;

pub use feasible::{feasible, Lack, Registered};

/// One worker as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSlot {
    /// Worker id.
    pub id: String,
    /// Everything it offers.
    pub capacity: Resources,
    /// Capacity minus the reservations of its live attempts.
    pub free: Resources,
    /// Healthy and connected: only such workers get new work.
    pub schedulable: bool,
    /// Its labels and built-in attributes: what constraints and preferences match.
    pub attributes: Arc<BTreeMap<String, String>>,
}

/// A queued task as placement sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskAsk<'a> {
    /// Resources it reserves while it runs.
    pub request: Resources,
    /// The only worker allowed to run it.
    pub pinned: Option<&'a str>,
    /// Attributes a worker must have.
    pub constraints: &'a [Constraint],
    /// Attributes it prefers (a score term among eligible workers).
    pub prefer: &'a [Preference],
    /// How long it has waited since its enqueue (the starvation rule reads it).
    pub waited: Duration,
}

impl<'a> TaskAsk<'a> {
    /// A task with only a request: no pin, no constraints, no preferences.
    pub fn sized(request: Resources) -> TaskAsk<'static> {
        TaskAsk {
            request,
            pinned: None,
            constraints: &[],
            prefer: &[],
            waited: Duration::ZERO,
        }
    }
}

/// The first resource a request needs more of than is available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortfall {
    /// `cpu_millis`, `memory_bytes`, `gpus` or `disk_bytes` (the wire's field names).
    pub resource: &'static str,
    /// What the task reserves.
    pub requested: u64,
    /// What the worker has (free, or in total for [`feasible`]).
    pub available: u64,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} requested, {} available",
            self.resource, self.requested, self.available
        )
    }
}

/// The first dimension (CPU, memory, GPUs, disk) on which `request` exceeds `have`.
pub fn shortfall(request: &Resources, have: &Resources) -> Option<Shortfall> {
    [
        ("cpu_millis", request.cpu_millis, have.cpu_millis),
        ("memory_bytes", request.memory_bytes, have.memory_bytes),
        ("gpus", u64::from(request.gpus), u64::from(have.gpus)),
        ("disk_bytes", request.disk_bytes, have.disk_bytes),
    ]
    .into_iter()
    .find(|(_, want, has)| want > has)
    .map(|(resource, requested, available)| Shortfall {
        resource,
        requested,
        available,
    })
}

/// The first of `constraints` a worker with `attributes` fails.
pub fn unmet<'c>(
    attributes: &BTreeMap<String, String>,
    constraints: &'c [Constraint],
) -> Option<&'c Constraint> {
    constraints.iter().find(|c| !c.matches(attributes))
}

/// Why a task cannot go to a worker (or to any worker) now. The task keeps waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The task is pinned to a worker that is not known at all.
    PinnedWorkerUnknown(String),
    /// The task is pinned to another worker.
    PinnedElsewhere(String),
    /// The worker is not healthy or not connected.
    Unschedulable(String),
    /// The worker fails one of the task's constraints.
    ConstraintUnmet {
        /// The worker.
        worker: String,
        /// The constraint it fails, as the user wrote it.
        constraint: String,
    },
    /// The request does not fit the worker's free capacity.
    DoesNotFit {
        /// The worker.
        worker: String,
        /// The first resource short.
        short: Shortfall,
    },
    /// No schedulable worker has room for the request.
    NoWorkerFits,
    /// The task is being placed already (the dispatcher or another agent call holds it):
    /// it is no longer queued.
    AlreadyPlaced,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reject::PinnedWorkerUnknown(w) => write!(f, "task is pinned to unknown worker {w}"),
            Reject::PinnedElsewhere(w) => write!(f, "task is pinned to worker {w}"),
            Reject::Unschedulable(w) => write!(f, "worker {w} is not healthy and connected"),
            Reject::ConstraintUnmet { worker, constraint } => {
                write!(f, "worker {worker} fails the constraint {constraint}")
            }
            Reject::DoesNotFit { worker, short } => {
                write!(
                    f,
                    "request does not fit the free capacity of {worker}: {short}"
                )
            }
            Reject::NoWorkerFits => write!(f, "no healthy worker has room for the request"),
            Reject::AlreadyPlaced => write!(f, "task is not queued: it is being assigned already"),
        }
    }
}

/// Whether `task` may go to `worker` now: pin respected, worker schedulable, constraints
/// met, request fits.
pub fn check(worker: &WorkerSlot, task: &TaskAsk<'_>) -> Result<(), Reject> {
    if let Some(pin) = task.pinned {
        if pin != worker.id {
            return Err(Reject::PinnedElsewhere(pin.to_string()));
        }
    }
    if !worker.schedulable {
        return Err(Reject::Unschedulable(worker.id.clone()));
    }
    if let Some(c) = unmet(&worker.attributes, task.constraints) {
        return Err(Reject::ConstraintUnmet {
            worker: worker.id.clone(),
            constraint: c.to_string(),
        });
    }
    if let Some(short) = shortfall(&task.request, &worker.free) {
        return Err(Reject::DoesNotFit {
            worker: worker.id.clone(),
            short,
        });
    }
    Ok(())
}

/// How many of the task's preferences a worker matches.
fn preferred(worker: &WorkerSlot, task: &TaskAsk<'_>) -> usize {
    task.prefer
        .iter()
        .filter(|p| p.matches(&worker.attributes))
        .count()
}

/// Picks the worker (an index into `workers`) for `task` under `policy`, or says why the
/// task waits. Among eligible workers, more matched preferences come first, then the
/// policy's score; ties go to the lowest worker id, so the choice is deterministic.
pub fn place(
    policy: PlacementPolicy,
    workers: &[WorkerSlot],
    task: &TaskAsk<'_>,
) -> Result<usize, Reject> {
    place_matched(policy, workers, task, None)
}

/// What each worker's attributes say about one shape of task (its constraints and
/// preferences): `None` where a constraint fails, else how many preferences it matches.
/// Attributes do not change within a batch, so [`plan`] works this out once per shape,
/// not once per task: matching is string work, the rest of the choice is arithmetic.
fn matching(workers: &[WorkerSlot], task: &TaskAsk<'_>) -> Vec<Option<usize>> {
    workers
        .iter()
        .map(|w| unmet(&w.attributes, task.constraints).map_or(Some(preferred(w, task)), |_| None))
        .collect()
}

/// [`place`], with the shape's [`matching`] when the caller has it.
fn place_matched(
    policy: PlacementPolicy,
    workers: &[WorkerSlot],
    task: &TaskAsk<'_>,
    matched: Option<&[Option<usize>]>,
) -> Result<usize, Reject> {
    if let Some(pin) = task.pinned {
        let i = workers
            .iter()
            .position(|w| w.id == pin)
            .ok_or_else(|| Reject::PinnedWorkerUnknown(pin.to_string()))?;
        return check(&workers[i], task).map(|()| i);
    }
    let mut best: Option<(usize, usize, f64)> = None;
    for (i, w) in workers.iter().enumerate() {
        let prefs = match matched {
            Some(m) => match m[i] {
                Some(p) if w.schedulable && shortfall(&task.request, &w.free).is_none() => p,
                _ => continue,
            },
            None => {
                if check(w, task).is_err() {
                    continue;
                }
                preferred(w, task)
            }
        };
        let score = leftover_score(w, &task.request);
        let better = match best {
            None => true,
            Some((j, p, s)) => {
                let by_fit = match policy {
                    PlacementPolicy::BestFit => score.total_cmp(&s),
                    PlacementPolicy::Spread => s.total_cmp(&score),
                };
                let ord = p.cmp(&prefs).then(by_fit);
                ord == Ordering::Less || (ord == Ordering::Equal && w.id < workers[j].id)
            }
        };
        if better {
            best = Some((i, prefs, score));
        }
    }
    best.map(|(i, _, _)| i).ok_or(Reject::NoWorkerFits)
}

/// Places `tasks` in order (the caller passes them in dispatch order: priority, then age),
/// deducting each placed request from its worker's `free`, so a batch never over-commits.
/// A task that fits nowhere is skipped and the next one is tried (backfill). Returns
/// `(task index, worker index)` pairs.
///
/// No starvation (`starve_after`): the first task that fits nowhere and has waited at
/// least that long gets a *hold* on the worker closest to fitting it ([`hold_for`]):
/// nothing later in the batch is placed there, so what runs there ends and the held task
/// fits. One hold per batch, for the earliest such task in dispatch order; with `None`,
/// pure backfill.
pub fn plan(
    policy: PlacementPolicy,
    workers: &mut [WorkerSlot],
    tasks: &[TaskAsk<'_>],
    starve_after: Option<Duration>,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut held: Option<(usize, bool)> = None;
    type Shape<'a> = (&'a [Constraint], &'a [Preference]);
    let mut shapes: HashMap<Shape<'_>, Vec<Option<usize>>> = HashMap::new();
    for (t, task) in tasks.iter().enumerate() {
        let plain = task.constraints.is_empty() && task.prefer.is_empty();
        let matched = (!plain && task.pinned.is_none()).then(|| {
            shapes
                .entry((task.constraints, task.prefer))
                .or_insert_with(|| matching(workers, task))
                .as_slice()
        });
        match place_matched(policy, workers, task, matched) {
            Ok(w) => {
                workers[w].free = workers[w].free.saturating_sub(&task.request);
                out.push((t, w));
            }
            Err(_) if held.is_none() && starve_after.is_some_and(|s| task.waited >= s) => {
                if let Some(w) = hold_for(workers, task) {
                    // Held: later tasks see it as unschedulable; restored below.
                    held = Some((w, workers[w].schedulable));
                    workers[w].schedulable = false;
                }
            }
            Err(_) => {}
        }
    }
    if let Some((w, was)) = held {
        workers[w].schedulable = was;
    }
    out
}

/// The worker to hold for a starving `task`: schedulable, meeting its pin and
/// constraints, with the capacity to hold it, and the least left to free for it (the sum
/// over dimensions of the missing amount as a fraction of the worker's capacity). Ties
/// go to the lowest id. None when no worker could take it at all.
pub fn hold_for(workers: &[WorkerSlot], task: &TaskAsk<'_>) -> Option<usize> {
    let deficit = |w: &WorkerSlot| {
        let frac = |want: u64, free: u64, cap: u64| {
            if want <= free || cap == 0 {
                0.0
            } else {
                (want - free) as f64 / cap as f64
            }
        };
        let (r, f, c) = (&task.request, &w.free, &w.capacity);
        frac(r.cpu_millis, f.cpu_millis, c.cpu_millis)
            + frac(r.memory_bytes, f.memory_bytes, c.memory_bytes)
            + frac(u64::from(r.gpus), u64::from(f.gpus), u64::from(c.gpus))
            + frac(r.disk_bytes, f.disk_bytes, c.disk_bytes)
    };
    workers
        .iter()
        .enumerate()
        .filter(|(_, w)| {
            w.schedulable
                && task.pinned.is_none_or(|p| p == w.id)
                && unmet(&w.attributes, task.constraints).is_none()
                && shortfall(&task.request, &w.capacity).is_none()
        })
        .min_by(|(_, a), (_, b)| deficit(a).total_cmp(&deficit(b)).then(a.id.cmp(&b.id)))
        .map(|(i, _)| i)
}

/// Sum over the dimensions the worker offers of the fraction of its capacity left free
/// after placing `req`. Lower means a tighter fit. Dimensions with zero capacity count 0.
fn leftover_score(w: &WorkerSlot, req: &Resources) -> f64 {
    let left = w.free.saturating_sub(req);
    let frac = |free: u64, cap: u64| {
        if cap == 0 {
            0.0
        } else {
            free as f64 / cap as f64
        }
    };
    frac(left.cpu_millis, w.capacity.cpu_millis)
        + frac(left.memory_bytes, w.capacity.memory_bytes)
        + frac(u64::from(left.gpus), u64::from(w.capacity.gpus))
        + frac(left.disk_bytes, w.capacity.disk_bytes)
}
