//! What the CLI shows: stable, snake_case views of tasks, workers and queue stats, built
//! from the master's answers at the boundary (via `cloudai_proto::convert`). These are the
//! documents `--output json` prints; tables are rendered from them in `output`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cloudai_proto::{convert, pb};
use cloudai_queue as q;
use serde::Serialize;

use crate::exit::{CliError, Kind};

fn bad_answer(e: impl std::fmt::Display) -> CliError {
    CliError::new(
        Kind::Other,
        format!("unexpected answer from the master: {e}"),
    )
}

/// Resources in explicit units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ResourcesView {
    /// Thousandths of a core.
    pub cpu_millis: u64,
    /// Bytes.
    pub memory_bytes: u64,
    /// Whole GPUs.
    pub gpus: u32,
}

impl From<q::Resources> for ResourcesView {
    fn from(r: q::Resources) -> Self {
        ResourcesView {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            gpus: r.gpus,
        }
    }
}

/// One attempt of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptView {
    /// 1 for the first.
    pub number: u32,
    /// Worker it ran on.
    pub worker: String,
    /// When it was assigned.
    pub assigned_at: DateTime<Utc>,
    /// When the container started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// How it ended (a task status); null while live.
    pub outcome: Option<q::TaskStatus>,
    /// Container exit code.
    pub exit_code: Option<i32>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A task as `cloudai task` and `cloudai tasks --output json` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskView {
    /// Full id.
    pub id: String,
    /// Docker image.
    pub image: String,
    /// The container's command (Docker's Cmd, passed to the entrypoint); empty means the
    /// image's own.
    pub command: Vec<String>,
    /// Entrypoint replacing the image's; empty means the image's own, `[""]` none.
    pub entrypoint: Vec<String>,
    /// Current status.
    pub status: q::TaskStatus,
    /// Worker of the current or last attempt.
    pub worker: Option<String>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptView>,
    /// Exit code of the last attempt that exited.
    pub exit_code: Option<i32>,
    /// Error of the last attempt that failed.
    pub error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When its current or last attempt's container started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// Run time of the current or last attempt, in milliseconds.
    pub duration_ms: Option<u64>,
    /// Requested resources.
    pub resources: ResourcesView,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts allowed for failures of the task itself.
    pub max_attempts: u32,
    /// Wall-clock limit of one attempt, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Worker it is pinned to.
    pub pinned_worker: Option<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Idempotency key it was enqueued with.
    pub idempotency_key: Option<String>,
    /// The tasks it runs after, as `ID:condition` (`ok`, `notok`, `any`).
    pub after: Vec<String>,
    /// Not dispatched before this time (a delayed start, or a retry's backoff).
    pub not_before: DateTime<Utc>,
    /// The job array it is an element of: id, index, size and cap (`max_running`).
    pub array: Option<cloudai_queue::array::ArrayMember>,
    /// The user who enqueued it; null when the master did not require auth.
    pub submitted_by: Option<String>,
    /// A cancel was asked for and is in progress.
    pub cancel_requested: bool,
}

impl TaskView {
    /// Converts the master's answer.
    pub fn from_pb(t: pb::Task) -> Result<Self, CliError> {
        let t: q::Task = t.try_into().map_err(bad_answer)?;
        Ok(Self::from_domain(t))
    }

    /// Builds the view of a domain task.
    pub fn from_domain(t: q::Task) -> Self {
        let worker = t.worker_id().map(str::to_string);
        let last = t.current_attempt();
        let started_at = last.and_then(|a| a.started_at);
        let duration_ms = started_at.map(|s| {
            let end = last
                .and_then(|a| a.finished_at)
                .or(t.finished_at)
                .unwrap_or_else(Utc::now);
            (end - s).num_milliseconds().max(0) as u64
        });
        TaskView {
            id: t.id.to_string(),
            image: t.spec.image,
            command: t.spec.command,
            entrypoint: t.spec.entrypoint,
            status: t.status,
            worker,
            attempts: t
                .attempts
                .into_iter()
                .map(|a| AttemptView {
                    number: a.number,
                    worker: a.worker_id,
                    assigned_at: a.assigned_at,
                    started_at: a.started_at,
                    finished_at: a.finished_at,
                    outcome: a.outcome,
                    exit_code: a.exit_code,
                    error: a.error,
                })
                .collect(),
            exit_code: t.exit_code,
            error: t.error,
            created_at: t.created_at,
            updated_at: t.updated_at,
            started_at,
            finished_at: t.finished_at,
            duration_ms,
            resources: t.spec.resources.into(),
            priority: t.spec.priority,
            max_attempts: t.spec.max_attempts,
            timeout_ms: t.spec.timeout.map(|d| d.as_millis() as u64),
            pinned_worker: t.spec.pinned_worker,
            env: t.spec.env,
            labels: t.spec.labels,
            idempotency_key: t.spec.idempotency_key,
            after: t
                .spec
                .after
                .iter()
                .map(|d| format!("{}:{}", d.task, d.condition))
                .collect(),
            not_before: t.not_before,
            array: t.spec.array.clone(),
            submitted_by: t.submitted_by,
            cancel_requested: t.cancel_requested,
        }
    }
}

/// The masters sharing a store, as `cloudai master status` shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupView {
    /// The leading master's id; null when none leads.
    pub leader: Option<String>,
    /// Its URL.
    pub leader_url: Option<String>,
    /// The lease's epoch: raised at every change of leader.
    pub epoch: u64,
    /// Every master seen, by id.
    pub masters: Vec<MemberView>,
    /// The master that answered.
    pub answered_by: String,
}

/// One master of the group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    /// Its id.
    pub id: String,
    /// Its URL.
    pub url: String,
    /// `leader` or `standby`.
    pub role: String,
    /// Its last campaign (renewal or watch).
    pub last_seen: Option<DateTime<Utc>>,
}

impl GroupView {
    /// From the wire.
    pub fn from_pb(r: pb::MasterStatusResponse) -> GroupView {
        GroupView {
            leader: Some(r.leader_id).filter(|l| !l.is_empty()),
            leader_url: Some(r.leader_url).filter(|l| !l.is_empty()),
            epoch: r.epoch,
            masters: r
                .masters
                .into_iter()
                .map(|m| MemberView {
                    role: if m.leader { "leader" } else { "standby" }.into(),
                    last_seen: m
                        .last_seen
                        .as_ref()
                        .and_then(|t| convert::from_timestamp("last_seen", t).ok()),
                    id: m.id,
                    url: m.url,
                })
                .collect(),
            answered_by: r.answered_by,
        }
    }
}

/// A worker as `cloudai workers` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerView {
    /// Its id.
    pub id: String,
    /// healthy, suspect or dead.
    pub health: q::WorkerHealth,
    /// Host name it reported.
    pub hostname: String,
    /// What it offers in total.
    pub capacity: ResourcesView,
    /// Capacity minus the reservations of its running attempts.
    pub free: ResourcesView,
    /// Tasks it runs now.
    pub running_task_ids: Vec<String>,
    /// Last heartbeat or registration.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// GPU model, when it has GPUs.
    pub gpu_model: Option<String>,
    /// Host CPU busy, 0..100.
    pub cpu_percent: Option<f64>,
    /// Host memory in use, bytes.
    pub memory_used_bytes: Option<u64>,
    /// Operator labels.
    pub labels: BTreeMap<String, String>,
    /// Worker version.
    pub version: String,
    /// Cordoned: no new tasks.
    pub cordoned: bool,
    /// Being drained: what runs there at this time is stopped and retried elsewhere.
    pub drain_deadline: Option<DateTime<Utc>>,
}

impl WorkerView {
    /// Converts the master's answer.
    pub fn from_pb(w: pb::WorkerInfo) -> Result<Self, CliError> {
        let res = |r: Option<pb::Resources>| {
            ResourcesView::from(q::Resources::from(r.unwrap_or_default()))
        };
        Ok(WorkerView {
            health: convert::worker_health(w.health).map_err(bad_answer)?,
            last_heartbeat: w
                .last_heartbeat
                .as_ref()
                .map(|t| convert::from_timestamp("last_heartbeat", t))
                .transpose()
                .map_err(bad_answer)?,
            id: w.id,
            hostname: w.hostname,
            capacity: res(w.capacity),
            free: res(w.free),
            running_task_ids: w.running_task_ids,
            gpu_model: w.gpu.map(|g| g.model).filter(|m| !m.is_empty()),
            cpu_percent: w.usage.as_ref().map(|u| u.cpu_percent),
            memory_used_bytes: w.usage.as_ref().map(|u| u.memory_used_bytes),
            labels: w.labels.into_iter().collect(),
            version: w.version,
            cordoned: w.cordoned,
            drain_deadline: w
                .drain_deadline
                .as_ref()
                .map(|t| convert::from_timestamp("drain_deadline", t))
                .transpose()
                .map_err(bad_answer)?,
        })
    }
}

/// `cloudai queue stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsView {
    /// Tasks per status; every status is present.
    pub counts: BTreeMap<String, u64>,
    /// Total of all counts.
    pub total: u64,
    /// Creation time of the oldest queued task.
    pub oldest_queued_at: Option<DateTime<Utc>>,
    /// Age of the oldest queued task, in milliseconds.
    pub oldest_queued_age_ms: Option<u64>,
    /// Tasks that ended in the last minute.
    pub finished_last_minute: u64,
}

impl StatsView {
    /// Converts the master's answer; `now` computes the age.
    pub fn from_pb(s: pb::QueueStatsResponse, now: DateTime<Utc>) -> Result<Self, CliError> {
        let mut counts: BTreeMap<String, u64> = q::TaskStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for c in s.counts {
            let st = convert::task_status("counts.status", c.status).map_err(bad_answer)?;
            *counts.entry(st.as_str().to_string()).or_default() += c.count;
        }
        let oldest = s
            .oldest_queued_at
            .as_ref()
            .map(|t| convert::from_timestamp("oldest_queued_at", t))
            .transpose()
            .map_err(bad_answer)?;
        Ok(StatsView {
            total: counts.values().sum(),
            counts,
            oldest_queued_age_ms: oldest.map(|t| (now - t).num_milliseconds().max(0) as u64),
            oldest_queued_at: oldest,
            finished_last_minute: s.finished_last_minute,
        })
    }

    /// Count of one status.
    pub fn count(&self, s: q::TaskStatus) -> u64 {
        self.counts.get(s.as_str()).copied().unwrap_or(0)
    }
}

/// One chunk of output, for `cloudai logs --output json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogView {
    /// Position in the task's log.
    pub seq: u64,
    /// Attempt that wrote it.
    pub attempt: u32,
    /// stdout, stderr or system.
    pub stream: q::LogStream,
    /// When it was written.
    pub time: DateTime<Utc>,
    /// The bytes, as UTF-8 (invalid sequences replaced).
    pub data: String,
}

impl From<q::LogChunk> for LogView {
    fn from(c: q::LogChunk) -> Self {
        LogView {
            seq: c.seq,
            attempt: c.attempt,
            stream: c.stream,
            time: c.time,
            data: String::from_utf8_lossy(&c.data).into_owned(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use chrono::TimeZone;

    /// A finished task with one attempt.
    pub(crate) fn sample_task() -> q::Task {
        let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let mut spec = q::TaskSpec::new("cloudai/busybox:test");
        spec.command = vec!["echo".into(), "hi".into()];
        q::Task {
            id: q::TaskId::new(),
            spec,
            status: q::TaskStatus::Succeeded,
            created_at: t0,
            updated_at: t0,
            not_before: t0,
            finished_at: Some(t0 + chrono::Duration::seconds(5)),
            attempts: vec![q::Attempt {
                number: 1,
                token: 1,
                worker_id: "w1".into(),
                assigned_at: t0,
                started_at: Some(t0 + chrono::Duration::seconds(1)),
                finished_at: Some(t0 + chrono::Duration::seconds(4)),
                outcome: Some(q::TaskStatus::Succeeded),
                exit_code: Some(0),
                error: None,
                reported_seq: 0,
                lost_to_silence: false,
            }],
            cancel_requested: false,
            exit_code: Some(0),
            error: None,
            submitted_by: None,
        }
    }

    /// Its view.
    pub(crate) fn sample_view() -> TaskView {
        TaskView::from_domain(sample_task())
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::sample_task;
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn task_json_has_stable_snake_case_fields() {
        let t = sample_task();
        let v = TaskView::from_pb(t.clone().into()).unwrap();
        assert_eq!(v.duration_ms, Some(3000));
        let j = serde_json::to_value(&v).unwrap();
        for f in [
            "id",
            "image",
            "status",
            "worker",
            "attempts",
            "exit_code",
            "created_at",
            "entrypoint",
            "submitted_by",
        ] {
            assert!(j.get(f).is_some(), "missing {f}");
        }
        assert_eq!(j["submitted_by"], serde_json::Value::Null);
        let mut alices = t.clone();
        alices.submitted_by = Some("alice".into());
        let j = serde_json::to_value(TaskView::from_domain(alices)).unwrap();
        assert_eq!(j["submitted_by"], "alice");
        assert_eq!(j["status"], "succeeded");
        assert_eq!(j["worker"], "w1");
        assert_eq!(j["id"], t.id.to_string());
        assert_eq!(j["attempts"][0]["outcome"], "succeeded");
    }

    #[test]
    fn stats_fill_every_status() {
        let now = Utc.timestamp_opt(1_700_000_060, 0).unwrap();
        let s = pb::QueueStatsResponse {
            counts: vec![pb::StatusCount {
                status: pb::TaskStatus::Queued as i32,
                count: 3,
            }],
            oldest_queued_at: Some(convert::timestamp(
                Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            )),
            finished_last_minute: 2,
        };
        let v = StatsView::from_pb(s, now).unwrap();
        assert_eq!(v.counts.len(), q::TaskStatus::ALL.len());
        assert_eq!(v.count(q::TaskStatus::Queued), 3);
        assert_eq!(v.total, 3);
        assert_eq!(v.oldest_queued_age_ms, Some(60_000));
    }

    #[test]
    fn worker_view_from_wire() {
        let w = pb::WorkerInfo {
            id: "w1".into(),
            health: pb::WorkerHealth::Suspect as i32,
            capacity: Some(pb::Resources {
                cpu_millis: 2000,
                memory_bytes: 1 << 30,
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = WorkerView::from_pb(w).unwrap();
        assert_eq!(v.health, q::WorkerHealth::Suspect);
        assert_eq!(v.capacity.cpu_millis, 2000);
        assert_eq!(v.free, ResourcesView::default());
        let bad = pb::WorkerInfo::default();
        assert!(WorkerView::from_pb(bad).is_err());
    }
}
