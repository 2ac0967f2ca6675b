//! The views of a task: [`TaskView`] (what `cloudai task` and `tasks -o json` print),
//! its attempts and why it waits.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cloudai_proto::{convert, pb};
use cloudai_queue as q;
use serde::Serialize;

use super::{bad_answer, ResourcesView};
use crate::exit::CliError;

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
    /// What placement reserves for it, and its container's memory limit: the request
    /// with CPU and memory left at zero raised to the defaults (100m, 256 MiB).
    pub reserved: ResourcesView,
    /// Worker attributes it requires, as written (`zone=a`, `gpu.model in (a100)`).
    pub constraints: Vec<String>,
    /// Worker attributes it prefers (`KEY=VALUE`).
    pub prefer: Vec<String>,
    /// Why it is not running yet (waiting or queued); null otherwise, or when the master
    /// answering does not know (a standby).
    pub wait_reason: Option<WaitReasonView>,
    /// The user who enqueued it; null when the master did not require auth.
    pub submitted_by: Option<String>,
    /// A cancel was asked for and is in progress.
    pub cancel_requested: bool,
}

impl TaskView {
    /// Converts the master's answer.
    pub fn from_pb(mut t: pb::Task) -> Result<Self, CliError> {
        let reason = t.wait_reason.take();
        let t: q::Task = t.try_into().map_err(bad_answer)?;
        let mut v = Self::from_domain(t);
        v.wait_reason = reason
            .map(|r| {
                Ok::<_, CliError>(WaitReasonView {
                    code: convert::wait_reason_name(r.code).to_string(),
                    detail: r.detail,
                    until: r
                        .until
                        .as_ref()
                        .map(|u| convert::from_timestamp("wait_reason.until", u))
                        .transpose()
                        .map_err(bad_answer)?,
                })
            })
            .transpose()?
            .filter(|r| !r.code.is_empty());
        Ok(v)
    }

    /// Builds the view of a domain task.
    pub fn from_domain(t: q::Task) -> Self {
        let worker = t.worker_id().map(str::to_string);
        let reserved = t.spec.reservation();
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
            reserved: reserved.into(),
            constraints: t.spec.constraints.iter().map(ToString::to_string).collect(),
            prefer: t.spec.prefer.iter().map(ToString::to_string).collect(),
            wait_reason: None,
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

/// Why a task is not running yet (Slurm's REASON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitReasonView {
    /// `Priority`, `Resources`, `NoWorkerFits`, `PinnedWorkerUnavailable`, `Quota`,
    /// `Backoff`, `Dependency` or `BeginTime`.
    pub code: String,
    /// For people: e.g. the closest worker and what it lacks.
    pub detail: String,
    /// When the wait ends (`Backoff`, `BeginTime`).
    pub until: Option<DateTime<Utc>>,
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
    fn the_wait_reason_and_the_reservation_are_shown() {
        let mut t = sample_task();
        t.status = q::TaskStatus::Queued;
        t.spec.constraints = vec!["zone in (a,b)".parse().unwrap()];
        let mut wire: pb::Task = t.into();
        wire.wait_reason = Some(pb::WaitReason {
            code: pb::WaitReasonCode::NoWorkerFits as i32,
            detail: "closest worker w1 lacks gpus 1 requested, 0 available".into(),
            until: None,
        });
        let v = TaskView::from_pb(wire).unwrap();
        let r = v.wait_reason.as_ref().unwrap();
        assert_eq!(r.code, "NoWorkerFits");
        assert!(r.detail.contains("lacks gpus"));
        assert_eq!(v.constraints, ["zone in (a,b)"]);
        assert_eq!(v.resources.memory_bytes, 0, "as requested");
        assert_eq!(
            v.reserved.memory_bytes,
            q::DEFAULT_TASK_MEMORY_BYTES,
            "what it reserves and is limited to"
        );
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["wait_reason"]["code"], "NoWorkerFits");
        assert_eq!(j["reserved"]["cpu_millis"], q::MIN_RESERVED_CPU_MILLIS);
    }
}
