//! Why a task waits (Slurm's `squeue` REASON) and whether it could ever run.
//!
//! The dispatcher records a reason for each task it read and could not place, as it
//! passes ([`Board::record`]); a query adds the reasons a task shows by itself (its
//! dependencies, its backoff, its `--at`) with [`of`], pure. A task the last pass did not
//! read waits behind others (`Priority`), or for room when the cluster had none at all
//! (`Resources`). So a listing costs no placement run: one map lookup per task.
//!
//! Only the leader dispatches: on a standby the dispatcher's reasons are unknown (unset).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use cloudai_proto::convert::timestamp;
use cloudai_proto::pb;
use cloudai_queue::constraint::Constraint;
use cloudai_queue::{Resources, Task, TaskId, TaskStatus};

use crate::placement::{self, TaskAsk, WorkerSlot};

/// Most reasons the board keeps from one pass (a pass reads at most a few thousand).
const MAX_RECORDED: usize = 20_000;

/// One of the reasons a task waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// Tasks ahead of it in dispatch order go first.
    Priority,
    /// A worker could take it; none has the room free now.
    Resources,
    /// No registered worker could ever take it.
    NoWorkerFits,
    /// Its pinned worker is unknown, unhealthy, cordoned, full or fails its constraints.
    PinnedWorkerUnavailable,
    /// Its submitter is at a quota.
    Quota,
    /// A retry's backoff.
    Backoff,
    /// Its parents, or its array's cap.
    Dependency,
    /// Its `--at` / `--in` time.
    BeginTime,
}

impl Code {
    fn wire(self) -> pb::WaitReasonCode {
        match self {
            Code::Priority => pb::WaitReasonCode::Priority,
            Code::Resources => pb::WaitReasonCode::Resources,
            Code::NoWorkerFits => pb::WaitReasonCode::NoWorkerFits,
            Code::PinnedWorkerUnavailable => pb::WaitReasonCode::PinnedWorkerUnavailable,
            Code::Quota => pb::WaitReasonCode::Quota,
            Code::Backoff => pb::WaitReasonCode::Backoff,
            Code::Dependency => pb::WaitReasonCode::Dependency,
            Code::BeginTime => pb::WaitReasonCode::BeginTime,
        }
    }
}

/// Why one task waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// Which reason.
    pub code: Code,
    /// For people: the closest worker and what it lacks, the pinned worker's state.
    pub detail: String,
    /// When the wait ends, for `Backoff` and `BeginTime`.
    pub until: Option<DateTime<Utc>>,
}

impl Reason {
    fn new(code: Code, detail: impl Into<String>) -> Reason {
        Reason {
            code,
            detail: detail.into(),
            until: None,
        }
    }

    /// On the wire.
    pub fn to_wire(&self) -> pb::WaitReason {
        pb::WaitReason {
            code: self.code.wire() as i32,
            detail: self.detail.clone(),
            until: self.until.map(timestamp),
        }
    }
}

/// What the last dispatch pass saw.
#[derive(Debug, Default)]
struct Seen {
    reasons: HashMap<TaskId, Reason>,
    /// No schedulable worker had any room: nothing was read.
    full: bool,
}

/// The dispatcher's reasons, shared with the services that show them.
#[derive(Debug, Default)]
pub struct Board {
    seen: Mutex<Arc<Seen>>,
}

impl Board {
    /// Replaces what the board knows with one pass's reasons.
    pub fn record(&self, reasons: HashMap<TaskId, Reason>) {
        *self.lock() = Arc::new(Seen {
            reasons,
            full: false,
        });
    }

    /// A pass found no room on any worker and read nothing: unread tasks wait for room.
    /// What the board knew of the tasks it did read stays.
    pub fn cluster_full(&self) {
        let mut seen = self.lock();
        if !seen.full {
            *seen = Arc::new(Seen {
                reasons: seen.reasons.clone(),
                full: true,
            });
        }
    }

    /// What the board knows now, taken once for a listing of many tasks; `leading`: this
    /// master dispatches (else the dispatcher's reasons are unknown here).
    pub fn view(&self, leading: bool) -> BoardView {
        BoardView {
            seen: leading.then(|| self.lock().clone()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<Seen>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One moment of the [`Board`]: reasons for any number of tasks without its lock.
pub struct BoardView {
    seen: Option<Arc<Seen>>,
}

impl BoardView {
    /// The reason of `task` at `now`.
    pub fn reason(&self, task: &Task, now: DateTime<Utc>) -> Option<Reason> {
        of(task, now, self.seen.as_deref())
    }
}

/// The reason of `task` at `now`, from the task itself and (on the leader) what the last
/// pass saw. None for a task that is not waiting or queued.
fn of(task: &Task, now: DateTime<Utc>, seen: Option<&Seen>) -> Option<Reason> {
    match task.status {
        TaskStatus::Waiting => {
            let detail = if task.spec.after.is_empty() {
                "its array's cap is reached".to_string()
            } else {
                format!("waiting for {} parent task(s)", task.spec.after.len())
            };
            Some(Reason::new(Code::Dependency, detail))
        }
        TaskStatus::Queued if task.not_before > now => {
            let code = if task.attempts.is_empty() {
                Code::BeginTime
            } else {
                Code::Backoff
            };
            Some(Reason {
                until: Some(task.not_before),
                ..Reason::new(code, "")
            })
        }
        TaskStatus::Queued => {
            let seen = seen?;
            Some(match seen.reasons.get(&task.id) {
                Some(r) => r.clone(),
                None if seen.full => Reason::new(Code::Resources, "no worker has room free"),
                None => Reason::new(Code::Priority, "tasks ahead of it go first"),
            })
        }
        _ => None,
    }
}

/// A pass's reasons, built as it goes: one feasibility check per distinct shape of task
/// (request, pin, constraints), not one per task.
#[derive(Default)]
pub struct PassReasons {
    reasons: HashMap<TaskId, Reason>,
    /// Each shape's verdict, found by a hash of the borrowed shape: a task of a shape seen
    /// before costs a hash and a comparison, not a copy of its constraints (which was a
    /// constrained dispatch's own cost, BENCHMARKS.md).
    shapes: HashMap<u64, Vec<(OwnedShape, Reason)>>,
}

/// A shape of task as [`PassReasons`] keeps it.
type OwnedShape = (Resources, Option<String>, Vec<Constraint>);

/// The hash of a borrowed shape.
fn shape_hash(shape: &Shape<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    shape.hash(&mut h);
    h.finish()
}

impl PassReasons {
    /// Records why `id`, read and not placed, waits, against the workers as they were
    /// before the pass's placements (`slots`).
    pub fn unplaced(&mut self, id: TaskId, slots: &[WorkerSlot], ask: &TaskAsk<'_>) {
        if self.reasons.len() >= MAX_RECORDED {
            return;
        }
        let shape: Shape<'_> = (ask.request, ask.pinned, ask.constraints);
        let bucket = self.shapes.entry(shape_hash(&shape)).or_default();
        let known = bucket
            .iter()
            .find(|((r, p, c), _)| (*r, p.as_deref(), c.as_slice()) == shape);
        let reason = match known {
            Some((_, r)) => r.clone(),
            None => {
                let r = unplaced(slots, ask);
                let owned = (shape.0, shape.1.map(str::to_string), shape.2.to_vec());
                bucket.push((owned, r.clone()));
                r
            }
        };
        self.reasons.insert(id, reason);
    }

    /// Records that `id` waits for its submitter's quota.
    pub fn over_quota(&mut self, id: TaskId, over: &cloudai_queue::OverQuota) {
        if self.reasons.len() < MAX_RECORDED {
            self.reasons
                .insert(id, Reason::new(Code::Quota, over.to_string()));
        }
    }

    /// Everything recorded.
    pub fn into_reasons(self) -> HashMap<TaskId, Reason> {
        self.reasons
    }
}

/// `tasks` on the wire, each with its wait reason as this master knows it (one look at
/// the board for them all).
pub fn wire_tasks(
    shared: &crate::shared::Shared,
    tasks: impl IntoIterator<Item = Task>,
) -> Vec<pb::Task> {
    let view = shared.reasons.view(shared.leading());
    let now = Utc::now();
    tasks
        .into_iter()
        .map(|task| {
            let reason = view.reason(&task, now);
            let mut t = pb::Task::from(task);
            t.wait_reason = reason.map(|r| r.to_wire());
            t
        })
        .collect()
}

/// What the enqueue check depends on: the reservation, the pin and the constraints.
type Shape<'s> = (Resources, Option<&'s str>, &'s [Constraint]);

/// The enqueue check, for each of `specs`: a warning when no registered worker could
/// ever take it (by capacity or constraints), naming the closest one and what it lacks.
/// None when one could, when no worker is registered yet, and on a standby (it has no
/// registry). One look at the registry for them all, one check per shape of task.
pub fn unplaceable<'s>(
    shared: &crate::shared::Shared,
    specs: impl ExactSizeIterator<Item = &'s cloudai_queue::TaskSpec>,
) -> Vec<Option<String>> {
    if !shared.leading() {
        return vec![None; specs.len()];
    }
    let cluster = shared.cluster();
    let mut shapes: HashMap<Shape<'_>, Option<String>> = HashMap::new();
    specs
        .map(|spec| {
            let key = (
                spec.reservation(),
                spec.pinned_worker.as_deref(),
                spec.constraints.as_slice(),
            );
            if let Some(w) = shapes.get(&key) {
                return w.clone();
            }
            let ask = TaskAsk {
                request: spec.reservation(),
                pinned: spec.pinned_worker.as_deref(),
                constraints: &spec.constraints,
                prefer: &spec.prefer,
                waited: std::time::Duration::ZERO,
            };
            let warning = placement::feasible(cluster.registered(), &ask)
                .err()
                .map(|lack| format!("no registered worker could ever take this task: {lack}"));
            shapes.insert(key, warning.clone());
            warning
        })
        .collect()
}

/// Why a task read by a pass was not placed. Pure.
pub fn unplaced(slots: &[WorkerSlot], ask: &TaskAsk<'_>) -> Reason {
    if let Some(pin) = ask.pinned {
        let detail = match slots.iter().find(|w| w.id == pin) {
            None => format!("worker {pin} is not registered"),
            Some(w) => match placement::check(w, ask) {
                Err(r) => r.to_string(),
                Ok(()) => format!("worker {pin} was full"),
            },
        };
        return Reason::new(Code::PinnedWorkerUnavailable, detail);
    }
    match placement::feasible(slots.iter().map(WorkerSlot::registered), ask) {
        Err(lack) => Reason::new(Code::NoWorkerFits, lack.to_string()),
        Ok(()) if slots.is_empty() => Reason::new(Code::NoWorkerFits, "no worker is registered"),
        Ok(()) => Reason::new(
            Code::Resources,
            "no worker that could take it has room free",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudai_queue::TaskSpec;

    fn task(status: TaskStatus) -> Task {
        let now = Utc::now();
        Task {
            id: TaskId::new(),
            spec: TaskSpec::new("busybox"),
            status,
            created_at: now,
            updated_at: now,
            // Due already, whatever `now` a test asks about.
            not_before: now - chrono::Duration::seconds(1),
            finished_at: None,
            attempts: Vec::new(),
            cancel_requested: false,
            exit_code: None,
            error: None,
            submitted_by: None,
        }
    }

    fn slot(id: &str, cpu: u64, free: u64, zone: &str) -> WorkerSlot {
        let cap = Resources {
            cpu_millis: cpu,
            memory_bytes: 1 << 30,
            gpus: 0,
            disk_bytes: 0,
        };
        WorkerSlot {
            id: id.into(),
            capacity: cap,
            free: Resources {
                cpu_millis: free,
                ..cap
            },
            schedulable: true,
            attributes: Arc::new([("zone".to_string(), zone.to_string())].into()),
        }
    }

    #[test]
    fn a_task_says_what_it_waits_for_by_itself() {
        let now = Utc::now();
        let mut waiting = task(TaskStatus::Waiting);
        waiting.spec.after = vec![cloudai_queue::deps::Dependency {
            task: TaskId::new(),
            condition: cloudai_queue::deps::DependencyCondition::Ok,
        }];
        assert_eq!(of(&waiting, now, None).unwrap().code, Code::Dependency);
        let mut later = task(TaskStatus::Queued);
        later.not_before = now + chrono::Duration::minutes(5);
        let r = of(&later, now, None).unwrap();
        assert_eq!((r.code, r.until), (Code::BeginTime, Some(later.not_before)));
        later
            .attempts
            .push(cloudai_queue::Attempt::new(1, 1, "w", now));
        assert_eq!(of(&later, now, None).unwrap().code, Code::Backoff);
        assert_eq!(of(&task(TaskStatus::Running), now, None), None);
        assert_eq!(of(&task(TaskStatus::Succeeded), now, None), None);
        // Due and queued: only the dispatcher knows, and a standby has none.
        assert_eq!(of(&task(TaskStatus::Queued), now, None), None);
    }

    #[test]
    fn due_tasks_take_the_dispatchers_reason_or_wait_behind_others() {
        let now = Utc::now();
        let board = Board::default();
        let read = task(TaskStatus::Queued);
        let unread = task(TaskStatus::Queued);
        board.record(HashMap::from([(
            read.id,
            Reason::new(Code::NoWorkerFits, "closest worker w lacks gpus"),
        )]));
        assert_eq!(
            board.view(true).reason(&read, now).unwrap().code,
            Code::NoWorkerFits
        );
        assert_eq!(
            board.view(true).reason(&unread, now).unwrap().code,
            Code::Priority
        );
        assert_eq!(
            board.view(false).reason(&read, now),
            None,
            "a standby does not know"
        );
        board.cluster_full();
        assert_eq!(
            board.view(true).reason(&unread, now).unwrap().code,
            Code::Resources
        );
        assert_eq!(
            board.view(true).reason(&read, now).unwrap().code,
            Code::NoWorkerFits,
            "what the last read saw stays"
        );
    }

    #[test]
    fn unplaced_tells_resources_from_no_worker_fits_and_pins() {
        let ws = [slot("a", 4000, 0, "a"), slot("b", 2000, 2000, "b")];
        let big = TaskAsk::sized(Resources {
            cpu_millis: 3000,
            memory_bytes: 1,
            gpus: 0,
            disk_bytes: 0,
        });
        assert_eq!(unplaced(&ws, &big).code, Code::Resources);
        let huge = TaskAsk::sized(Resources {
            cpu_millis: 9000,
            ..big.request
        });
        let r = unplaced(&ws, &huge);
        assert_eq!(r.code, Code::NoWorkerFits);
        assert!(
            r.detail.contains("cpu_millis 9000 requested"),
            "{}",
            r.detail
        );
        let cs: Vec<Constraint> = vec!["zone=b".parse().unwrap()];
        let constrained = TaskAsk {
            constraints: &cs,
            ..big
        };
        assert_eq!(unplaced(&ws, &constrained).code, Code::NoWorkerFits);
        let pinned = TaskAsk {
            pinned: Some("a"),
            ..big
        };
        let r = unplaced(&ws, &pinned);
        assert_eq!(r.code, Code::PinnedWorkerUnavailable);
        assert!(r.detail.contains("free capacity of a"), "{}", r.detail);
        assert_eq!(unplaced(&[], &big).code, Code::NoWorkerFits);
    }

    #[test]
    fn a_pass_checks_each_shape_once() {
        let ws = [slot("a", 1000, 0, "a")];
        let mut pass = PassReasons::default();
        let ask = TaskAsk::sized(Resources {
            cpu_millis: 500,
            memory_bytes: 1,
            gpus: 0,
            disk_bytes: 0,
        });
        let (t1, t2) = (TaskId::new(), TaskId::new());
        pass.unplaced(t1, &ws, &ask);
        pass.unplaced(t2, &[], &ask); // same shape: the first verdict is reused
        assert_eq!(pass.shapes.len(), 1);
        // Another shape (constraints differ) gets its own verdict, then reuses it.
        let cs: Vec<Constraint> = vec!["zone=b".parse().unwrap()];
        let constrained = TaskAsk {
            constraints: &cs,
            ..ask
        };
        let (t3, t4) = (TaskId::new(), TaskId::new());
        pass.unplaced(t3, &ws, &constrained);
        pass.unplaced(t4, &[], &constrained);
        assert_eq!(pass.shapes.values().map(Vec::len).sum::<usize>(), 2);
        let r = pass.into_reasons();
        assert_eq!(r[&t1], r[&t2]);
        assert_eq!(r[&t1].code, Code::Resources);
        assert_eq!(r[&t3], r[&t4]);
        assert_eq!(r[&t3].code, Code::NoWorkerFits);
    }
}
