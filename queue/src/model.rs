//! The task model: what a task asks for, what happened to it, and the worker records
//! the master keeps. Plain data; behaviour lives in `state`, `retry` and the stores.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::deps::{Dependency, DependencyCondition};
use crate::error::QueueError;

/// A task's id: a UUID v7, so ids sort by creation time and never come from the clock alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId(pub Uuid);

impl TaskId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        TaskId(Uuid::now_v7())
    }

    /// When the id was made (its UUID v7 time, to the millisecond): the task's enqueue.
    /// None for an id that carries no time.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(TaskId)
            .map_err(|e| QueueError::invalid("task id", format!("{s:?} is not a uuid: {e}")))
    }
}

/// Resources a task requests or a worker offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Whole GPUs.
    pub gpus: u32,
    /// Scratch disk in bytes.
    pub disk_bytes: u64,
}

impl Resources {
    /// True when `self` fits inside `free` on every dimension.
    pub fn fits_in(&self, free: &Resources) -> bool {
        self.cpu_millis <= free.cpu_millis
            && self.memory_bytes <= free.memory_bytes
            && self.gpus <= free.gpus
            && self.disk_bytes <= free.disk_bytes
    }

    /// `self - other`, floored at zero on each dimension.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            gpus: self.gpus.saturating_sub(other.gpus),
            disk_bytes: self.disk_bytes.saturating_sub(other.disk_bytes),
        }
    }

    /// `self + other`, saturating.
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            gpus: self.gpus.saturating_add(other.gpus),
            disk_bytes: self.disk_bytes.saturating_add(other.disk_bytes),
        }
    }
}

/// Default total attempts for failures of the task itself: one, so no retry.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 1;
/// Default extra attempts when the worker is lost: a lost worker is not the task's fault.
pub const DEFAULT_MAX_LOST_RETRIES: u32 = 3;

/// CPU reserved for a task that requests none, so that unsized tasks cannot pile up
/// without bound on one worker: a tenth of a core.
pub const MIN_RESERVED_CPU_MILLIS: u64 = 100;
/// Memory of a task that requests none: 256 MiB, both what placement reserves and the
/// container's limit (the master sends it in the spec of `Assign`; a worker falls back to
/// it too), so memory is never over-committed. Nomad's default is close (300 MB).
pub const DEFAULT_TASK_MEMORY_BYTES: u64 = 256 << 20;

/// What to run and under which constraints. Immutable once enqueued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Docker image reference.
    pub image: String,
    /// The container's command (Docker's Cmd): arguments passed to the entrypoint, as
    /// `docker run IMAGE ARGS...` passes them; empty means the image's own Cmd.
    /// This and the other fields with a default may be absent where a spec is read (the
    /// SQLite store's compact body writes only what differs from them).
    #[serde(default)]
    pub command: Vec<String>,
    /// Replaces the image's entrypoint when non-empty (`docker run --entrypoint`); empty
    /// means the image's own. `[""]` clears the image's entrypoint, as Docker does.
    /// Defaults to empty, so tasks stored before the field existed still load.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Resources reserved on the worker while the task runs.
    #[serde(default)]
    pub resources: Resources,
    /// Higher first; equal priority runs oldest first.
    #[serde(default)]
    pub priority: i32,
    /// Total attempts for failed or timed-out runs (>= 1).
    pub max_attempts: u32,
    /// Extra attempts allowed when the worker running it is lost.
    pub max_lost_retries: u32,
    /// Wall-clock limit of one attempt.
    #[serde(default, with = "opt_duration_ms")]
    pub timeout: Option<Duration>,
    /// Only this worker may run it.
    pub pinned_worker: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Enqueueing again with the same key returns the first task.
    pub idempotency_key: Option<String>,
    /// Tasks that must end first, each with the outcome it needs (`deps`): until they
    /// have, the task is `waiting`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Dependency>,
    /// Not started before this time (`--at`, `--in`); `None`: as soon as it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// The array this task is an element of (`--array`; see [`crate::array`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<crate::array::ArrayMember>,
    /// Worker attributes it requires (`--constraint`; see [`crate::constraint`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<crate::constraint::Constraint>,
    /// Worker attributes it prefers (`--prefer`), a score term among eligible workers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefer: Vec<crate::constraint::Preference>,
}

impl TaskSpec {
    /// A spec for `image` with every other field at its default.
    pub fn new(image: impl Into<String>) -> Self {
        TaskSpec {
            image: image.into(),
            command: Vec::new(),
            entrypoint: Vec::new(),
            env: BTreeMap::new(),
            resources: Resources::default(),
            priority: 0,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_lost_retries: DEFAULT_MAX_LOST_RETRIES,
            timeout: None,
            pinned_worker: None,
            labels: BTreeMap::new(),
            idempotency_key: None,
            after: Vec::new(),
            not_before: None,
            array: None,
            constraints: Vec::new(),
            prefer: Vec::new(),
        }
    }
}

impl TaskSpec {
    /// What placement reserves on a worker: the request, with CPU and memory that were
    /// left at zero raised to [`MIN_RESERVED_CPU_MILLIS`] and [`DEFAULT_TASK_MEMORY_BYTES`].
    /// The memory is also the container's limit; the CPU is not (a task that gives no CPU
    /// shares the worker's cores: CPU is compressible, memory is not).
    pub fn reservation(&self) -> Resources {
        reserved(self.resources)
    }
}

/// `request` with CPU and memory left at zero raised to the minimum reservation.
pub(crate) fn reserved(mut request: Resources) -> Resources {
    if request.cpu_millis == 0 {
        request.cpu_millis = MIN_RESERVED_CPU_MILLIS;
    }
    if request.memory_bytes == 0 {
        request.memory_bytes = DEFAULT_TASK_MEMORY_BYTES;
    }
    request
}

mod opt_duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// A task's status. See `state` for the legal moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for the tasks it runs after (`TaskSpec::after`) to end.
    Waiting,
    /// Waiting for a worker.
    Queued,
    /// Handed to a worker, not yet started.
    Assigned,
    /// Its container runs.
    Running,
    /// Exited with code 0.
    Succeeded,
    /// Exited non-zero or could not run.
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// Ran past its timeout.
    TimedOut,
    /// Its worker died.
    Lost,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 9] = [
        TaskStatus::Waiting,
        TaskStatus::Queued,
        TaskStatus::Assigned,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::TimedOut,
        TaskStatus::Lost,
    ];

    /// The snake_case name used in the CLI, JSON and the stores.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskStatus::Waiting => "waiting",
            TaskStatus::Queued => "queued",
            TaskStatus::Assigned => "assigned",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::TimedOut => "timed_out",
            TaskStatus::Lost => "lost",
        }
    }

    /// True for statuses that never change again.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded
                | TaskStatus::Failed
                | TaskStatus::Cancelled
                | TaskStatus::TimedOut
                | TaskStatus::Lost
        )
    }

    /// True while an attempt holds a worker's resources.
    pub fn is_active(&self) -> bool {
        matches!(self, TaskStatus::Assigned | TaskStatus::Running)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                QueueError::invalid(
                    "status",
                    format!(
                        "{s:?} is not one of waiting, queued, assigned, running, succeeded, failed, cancelled, timed_out, lost"
                    ),
                )
            })
    }
}

/// One assignment of a task to a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// Fencing token; reports about this attempt must carry it. Increases per task.
    pub token: u64,
    /// The worker it was assigned to.
    pub worker_id: String,
    /// When it was assigned.
    pub assigned_at: DateTime<Utc>,
    /// When its container started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// How it ended; `None` while live.
    pub outcome: Option<TaskStatus>,
    /// The container's exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The worker's report of this attempt is stored up to this event seq (0: nothing
    /// yet); a report repeating stored events changes nothing.
    #[serde(default)]
    pub reported_seq: u64,
    /// Ended `lost` because its worker went silent: the worker may still deliver its
    /// result, which is accepted while the task has no newer attempt (PROTOCOL.md).
    #[serde(default)]
    pub lost_to_silence: bool,
}

impl Attempt {
    /// A fresh, live attempt.
    pub fn new(number: u32, token: u64, worker_id: &str, assigned_at: DateTime<Utc>) -> Self {
        Attempt {
            number,
            token,
            worker_id: worker_id.to_string(),
            assigned_at,
            started_at: None,
            finished_at: None,
            outcome: None,
            exit_code: None,
            error: None,
            reported_seq: 0,
            lost_to_silence: false,
        }
    }
}

/// A task as stored: its spec plus everything that happened to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// What to run.
    pub spec: TaskSpec,
    /// Where it is in its lifecycle.
    pub status: TaskStatus,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When anything about it last changed.
    pub updated_at: DateTime<Utc>,
    /// Not dispatched before this time (retry backoff).
    pub not_before: DateTime<Utc>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// A user asked to cancel it while it was assigned or running.
    pub cancel_requested: bool,
    /// Exit code of the last attempt that exited.
    pub exit_code: Option<i32>,
    /// Error of the last attempt that failed.
    pub error: Option<String>,
    /// Who submitted it, when auth is on.
    pub submitted_by: Option<String>,
}

impl Task {
    /// The current fencing token: the last attempt's, or 0 before any attempt.
    pub fn token(&self) -> u64 {
        self.attempts.last().map(|a| a.token).unwrap_or(0)
    }

    /// The current or last attempt.
    pub fn current_attempt(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// Worker of the current or last attempt.
    pub fn worker_id(&self) -> Option<&str> {
        self.attempts.last().map(|a| a.worker_id.as_str())
    }
}

/// A request to enqueue one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    /// What to run.
    pub spec: TaskSpec,
    /// Who submits it (None in local-dev mode).
    pub submitted_by: Option<String>,
}

impl From<TaskSpec> for NewTask {
    fn from(spec: TaskSpec) -> Self {
        NewTask {
            spec,
            submitted_by: None,
        }
    }
}

/// The result of an enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// The task (the existing one when an idempotency key matched).
    pub task: Task,
    /// False when an idempotency key matched an existing task.
    pub created: bool,
}

/// How an attempt ended, as reported by its worker or decided by the master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// One of succeeded, failed, cancelled, timed_out, lost.
    pub status: TaskStatus,
    /// The container's exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// A request to atomically take the next eligible queued task for one worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The worker that will run it.
    pub worker_id: String,
    /// What the worker has free; the task's request must fit.
    pub free: Resources,
    /// Tasks with `not_before` after this are not eligible.
    pub now: DateTime<Utc>,
}

/// Which stream a log chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
    /// Written by cloudai, e.g. the marker for dropped output.
    System,
}

impl LogStream {
    /// Lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }
}

/// A chunk of output to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLogChunk {
    /// Where it came from.
    pub stream: LogStream,
    /// When the container wrote it.
    pub time: DateTime<Utc>,
    /// The bytes, as written.
    pub data: Vec<u8>,
}

/// A stored chunk of a task's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// Position in the task's log. Real output starts at 1; seq 0 is reserved for the
    /// system marker that says how many bytes of older output were dropped.
    pub seq: u64,
    /// The attempt that wrote it.
    pub attempt: u32,
    /// Where it came from.
    pub stream: LogStream,
    /// When it was written.
    pub time: DateTime<Utc>,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Counts for `cloudai queue stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Number of tasks per status; statuses with no task may be absent.
    pub counts: BTreeMap<TaskStatus, u64>,
    /// Creation time of the oldest queued task.
    pub oldest_queued_at: Option<DateTime<Utc>>,
    /// Tasks that reached a terminal status in the minute before `now`.
    pub finished_last_minute: u64,
}

/// Health of a worker, from its heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerHealth {
    /// Heartbeats arrive on time.
    Healthy,
    /// One heartbeat interval missed.
    Suspect,
    /// Several missed; its attempts are lost.
    Dead,
}

impl WorkerHealth {
    /// Lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            WorkerHealth::Healthy => "healthy",
            WorkerHealth::Suspect => "suspect",
            WorkerHealth::Dead => "dead",
        }
    }
}

/// A worker as the registry keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Its id (defaults to the hostname).
    pub id: String,
    /// Operator labels.
    pub labels: BTreeMap<String, String>,
    /// What it offers in total.
    pub capacity: Resources,
    /// GPU model, when it has GPUs.
    pub gpu_model: Option<String>,
    /// Host name it reported.
    pub hostname: String,
    /// Health as last decided by the master.
    pub health: WorkerHealth,
    /// First registration.
    pub registered_at: DateTime<Utc>,
    /// Last heartbeat or registration.
    pub last_heartbeat: DateTime<Utc>,
    /// An operator cordoned it: no new task is placed on it (running ones go on).
    #[serde(default)]
    pub cordoned: bool,
    /// Being drained: cordoned, and what still runs on it at this time is stopped and
    /// retried elsewhere.
    #[serde(default)]
    pub drain_deadline: Option<DateTime<Utc>>,
    /// Built-in attributes it discovered (`constraint::BUILTIN_ATTRIBUTES`); with the
    /// labels, what constraints match.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl WorkerRecord {
    /// What constraints and preferences see: the labels and the built-in attributes
    /// (a built-in wins over a label of the same name, which workers refuse anyway).
    pub fn placement_attributes(&self) -> BTreeMap<String, String> {
        let mut a = self.labels.clone();
        a.extend(self.attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_knows_when_it_was_made() {
        let before = Utc::now() - chrono::Duration::milliseconds(1);
        let t = TaskId::new().created_at().unwrap();
        assert!(t >= before && t <= Utc::now(), "{t}");
        assert_eq!(TaskId(Uuid::nil()).created_at(), None);
    }

    #[test]
    fn a_spec_stored_before_entrypoint_existed_loads_with_the_images_own() {
        let mut s = TaskSpec::new("busybox");
        s.command = vec!["echo".into(), "hi".into()];
        let mut json = serde_json::to_value(&s).unwrap();
        json.as_object_mut().unwrap().remove("entrypoint");
        let old: TaskSpec = serde_json::from_value(json).unwrap();
        assert_eq!(old, s);
        assert!(old.entrypoint.is_empty());
    }

    #[test]
    fn reservation_raises_unsized_cpu_and_memory_only() {
        let mut s = TaskSpec::new("busybox");
        let r = s.reservation();
        assert_eq!(r.cpu_millis, MIN_RESERVED_CPU_MILLIS);
        assert_eq!(r.memory_bytes, DEFAULT_TASK_MEMORY_BYTES);
        assert_eq!((r.gpus, r.disk_bytes), (0, 0));
        s.resources.cpu_millis = 2500;
        s.resources.memory_bytes = 1;
        s.resources.gpus = 1;
        assert_eq!(
            s.reservation(),
            s.resources,
            "explicit requests are kept as given"
        );
    }
}
