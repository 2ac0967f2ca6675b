//! Placement: which worker gets a queued task. Pure and synchronous: plain structs in,
//! a decision out, no IO and no clock. The policy is documented in `PLACEMENT.md`.

use std::cmp::Ordering;

use cloudai_queue::Resources;

use crate::config::PlacementPolicy;

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
}

/// A queued task as placement sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskAsk<'a> {
    /// Resources it reserves while it runs.
    pub request: Resources,
    /// The only worker allowed to run it.
    pub pinned: Option<&'a str>,
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
    /// The request does not fit the worker's free capacity.
    DoesNotFit(String),
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
            Reject::DoesNotFit(w) => write!(f, "request does not fit the free capacity of {w}"),
            Reject::NoWorkerFits => write!(f, "no healthy worker has room for the request"),
            Reject::AlreadyPlaced => write!(f, "task is not queued: it is being assigned already"),
        }
    }
}

/// Whether `task` may go to `worker` now: pin respected, worker schedulable, request fits.
pub fn check(worker: &WorkerSlot, task: &TaskAsk<'_>) -> Result<(), Reject> {
    if let Some(pin) = task.pinned {
        if pin != worker.id {
            return Err(Reject::PinnedElsewhere(pin.to_string()));
        }
    }
    if !worker.schedulable {
        return Err(Reject::Unschedulable(worker.id.clone()));
    }
    if !task.request.fits_in(&worker.free) {
        return Err(Reject::DoesNotFit(worker.id.clone()));
    }
    Ok(())
}

/// Picks the worker (an index into `workers`) for `task` under `policy`, or says why the
/// task waits. Ties go to the lowest worker id, so the choice is deterministic.
pub fn place(
    policy: PlacementPolicy,
    workers: &[WorkerSlot],
    task: &TaskAsk<'_>,
) -> Result<usize, Reject> {
    if let Some(pin) = task.pinned {
        let i = workers
            .iter()
            .position(|w| w.id == pin)
            .ok_or_else(|| Reject::PinnedWorkerUnknown(pin.to_string()))?;
        return check(&workers[i], task).map(|()| i);
    }
    let mut best: Option<(usize, f64)> = None;
    for (i, w) in workers.iter().enumerate() {
        if check(w, task).is_err() {
            continue;
        }
        let score = leftover_score(w, &task.request);
        let better = match best {
            None => true,
            Some((j, s)) => {
                let ord = match policy {
                    PlacementPolicy::BestFit => score.total_cmp(&s),
                    PlacementPolicy::Spread => s.total_cmp(&score),
                };
                ord == Ordering::Less || (ord == Ordering::Equal && w.id < workers[j].id)
            }
        };
        if better {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i).ok_or(Reject::NoWorkerFits)
}

/// Places `tasks` in order (the caller passes them in dispatch order: priority, then age),
/// deducting each placed request from its worker's `free`, so a batch never over-commits.
/// A task that fits nowhere is skipped and the next one is tried (backfill). Returns
/// `(task index, worker index)` pairs.
pub fn plan(
    policy: PlacementPolicy,
    workers: &mut [WorkerSlot],
    tasks: &[TaskAsk<'_>],
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (t, task) in tasks.iter().enumerate() {
        if let Ok(w) = place(policy, workers, task) {
            workers[w].free = workers[w].free.saturating_sub(&task.request);
            out.push((t, w));
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use PlacementPolicy::{BestFit, Spread};

    const GIB: u64 = 1 << 30;

    fn res(cpu: u64, mem_gib: u64, gpus: u32) -> Resources {
        Resources {
            cpu_millis: cpu,
            memory_bytes: mem_gib * GIB,
            gpus,
            disk_bytes: 0,
        }
    }

    fn worker(id: &str, cap: Resources, used: Resources) -> WorkerSlot {
        WorkerSlot {
            id: id.into(),
            capacity: cap,
            free: cap.saturating_sub(&used),
            schedulable: true,
        }
    }

    fn ask(request: Resources) -> TaskAsk<'static> {
        TaskAsk {
            request,
            pinned: None,
        }
    }

    fn two_sizes() -> Vec<WorkerSlot> {
        vec![
            worker("big", res(8000, 16, 0), res(0, 0, 0)),
            worker("small", res(2000, 4, 0), res(0, 0, 0)),
        ]
    }

    #[test]
    fn best_fit_takes_the_tightest_worker() {
        let ws = two_sizes();
        assert_eq!(place(BestFit, &ws, &ask(res(1000, 1, 0))), Ok(1));
    }

    #[test]
    fn spread_takes_the_emptiest_worker() {
        let ws = two_sizes();
        assert_eq!(place(Spread, &ws, &ask(res(1000, 1, 0))), Ok(0));
    }

    #[test]
    fn best_fit_uses_free_not_capacity() {
        // "big" is nearly full, so placing there leaves less than on the empty "small".
        let ws = vec![
            worker("big", res(8000, 16, 0), res(7000, 15, 0)),
            worker("small", res(2000, 4, 0), res(0, 0, 0)),
        ];
        assert_eq!(place(BestFit, &ws, &ask(res(500, 0, 0))), Ok(0));
        assert_eq!(place(Spread, &ws, &ask(res(500, 0, 0))), Ok(1));
    }

    #[test]
    fn a_request_that_fits_only_the_big_worker_goes_there() {
        let ws = two_sizes();
        for policy in [BestFit, Spread] {
            assert_eq!(place(policy, &ws, &ask(res(4000, 8, 0))), Ok(0));
        }
    }

    #[test]
    fn a_task_that_fits_nowhere_waits() {
        let ws = two_sizes();
        for policy in [BestFit, Spread] {
            assert_eq!(
                place(policy, &ws, &ask(res(16_000, 1, 0))),
                Err(Reject::NoWorkerFits)
            );
            assert_eq!(
                place(policy, &ws, &ask(res(0, 0, 1))),
                Err(Reject::NoWorkerFits)
            );
        }
        assert_eq!(
            place(BestFit, &[], &ask(res(0, 0, 0))),
            Err(Reject::NoWorkerFits)
        );
    }

    #[test]
    fn every_dimension_must_fit() {
        let ws = vec![worker("w", res(4000, 4, 1), res(0, 0, 0))];
        assert_eq!(place(BestFit, &ws, &ask(res(4000, 4, 1))), Ok(0));
        assert!(place(BestFit, &ws, &ask(res(4001, 4, 1))).is_err());
        assert!(place(BestFit, &ws, &ask(res(4000, 5, 1))).is_err());
        assert!(place(BestFit, &ws, &ask(res(4000, 4, 2))).is_err());
        let mut disk = ask(res(0, 0, 0));
        disk.request.disk_bytes = 1;
        assert!(place(BestFit, &ws, &disk).is_err());
    }

    #[test]
    fn unschedulable_workers_get_nothing() {
        let mut ws = two_sizes();
        ws[1].schedulable = false;
        assert_eq!(place(BestFit, &ws, &ask(res(1000, 1, 0))), Ok(0));
        ws[0].schedulable = false;
        assert_eq!(
            place(BestFit, &ws, &ask(res(1000, 1, 0))),
            Err(Reject::NoWorkerFits)
        );
    }

    #[test]
    fn pinned_task_goes_only_to_its_worker() {
        let ws = two_sizes();
        let t = TaskAsk {
            request: res(1000, 1, 0),
            pinned: Some("big"),
        };
        // Best fit alone would pick "small".
        assert_eq!(place(BestFit, &ws, &t), Ok(0));
        assert_eq!(place(Spread, &ws, &t), Ok(0));
    }

    #[test]
    fn pinned_task_waits_when_its_worker_is_full_unhealthy_or_unknown() {
        let mut ws = two_sizes();
        let t = TaskAsk {
            request: res(3000, 1, 0),
            pinned: Some("small"),
        };
        assert_eq!(
            place(BestFit, &ws, &t),
            Err(Reject::DoesNotFit("small".into()))
        );
        let t = TaskAsk {
            request: res(1000, 1, 0),
            pinned: Some("small"),
        };
        ws[1].schedulable = false;
        assert_eq!(
            place(BestFit, &ws, &t),
            Err(Reject::Unschedulable("small".into()))
        );
        let t = TaskAsk {
            request: res(0, 0, 0),
            pinned: Some("ghost"),
        };
        assert_eq!(
            place(BestFit, &ws, &t),
            Err(Reject::PinnedWorkerUnknown("ghost".into()))
        );
    }

    #[test]
    fn ties_go_to_the_lowest_id() {
        let ws = vec![
            worker("b", res(1000, 1, 0), res(0, 0, 0)),
            worker("a", res(1000, 1, 0), res(0, 0, 0)),
        ];
        for policy in [BestFit, Spread] {
            assert_eq!(place(policy, &ws, &ask(res(100, 0, 0))), Ok(1));
        }
    }

    #[test]
    fn best_fit_keeps_gpu_workers_for_gpu_tasks() {
        let ws = vec![
            worker("gpu", res(4000, 8, 2), res(0, 0, 0)),
            worker("cpu", res(8000, 16, 0), res(0, 0, 0)),
        ];
        assert_eq!(place(BestFit, &ws, &ask(res(1000, 1, 0))), Ok(1));
        assert_eq!(place(BestFit, &ws, &ask(res(1000, 1, 1))), Ok(0));
    }

    #[test]
    fn plan_never_over_commits_and_backfills() {
        let mut ws = two_sizes();
        let tasks = [
            ask(res(1500, 1, 0)), // small
            ask(res(9000, 1, 0)), // fits nowhere: skipped, does not block the rest
            ask(res(1500, 1, 0)), // small is too full now: big
            ask(res(6500, 1, 0)), // big has 6500 left
            ask(res(1, 0, 0)),    // small has 500 left
            ask(res(600, 0, 0)),  // nothing has 600 left
        ];
        let placed = plan(BestFit, &mut ws, &tasks);
        assert_eq!(placed, vec![(0, 1), (2, 0), (3, 0), (4, 1)]);
        assert_eq!(ws[0].free.cpu_millis, 0);
        assert_eq!(ws[1].free.cpu_millis, 499);
        let mut total = [0u64; 2];
        for (t, w) in &placed {
            total[*w] += tasks[*t].request.cpu_millis;
        }
        assert!(total[0] <= 8000 && total[1] <= 2000);
    }

    #[test]
    fn plan_spreads_evenly_under_spread() {
        let mut ws = vec![
            worker("a", res(4000, 4, 0), res(0, 0, 0)),
            worker("b", res(4000, 4, 0), res(0, 0, 0)),
        ];
        let tasks = [ask(res(1000, 1, 0)); 4];
        let placed = plan(Spread, &mut ws, &tasks);
        let on_a = placed.iter().filter(|(_, w)| *w == 0).count();
        assert_eq!((placed.len(), on_a), (4, 2));
        let mut ws2 = ws.clone();
        ws2[0].free = ws2[0].capacity;
        ws2[1].free = ws2[1].capacity;
        let packed = plan(BestFit, &mut ws2, &tasks);
        assert!(packed.iter().all(|(_, w)| *w == packed[0].1));
    }

    #[test]
    fn zero_requests_fit_anywhere_schedulable() {
        let ws = vec![worker("w", res(0, 0, 0), res(0, 0, 0))];
        assert_eq!(place(BestFit, &ws, &ask(res(0, 0, 0))), Ok(0));
    }

    #[test]
    fn check_explains_each_rejection() {
        let w = worker("w", res(1000, 1, 0), res(0, 0, 0));
        let t = TaskAsk {
            request: res(0, 0, 0),
            pinned: Some("v"),
        };
        assert_eq!(check(&w, &t), Err(Reject::PinnedElsewhere("v".into())));
        assert_eq!(
            check(&w, &ask(res(2000, 0, 0))),
            Err(Reject::DoesNotFit("w".into()))
        );
        assert!(Reject::DoesNotFit("w".into())
            .to_string()
            .contains("free capacity"));
        assert_eq!(check(&w, &ask(res(1000, 1, 0))), Ok(()));
    }
}
