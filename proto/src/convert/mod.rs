//! Conversions between wire messages ([`crate::pb`]) and domain types (`cloudai_queue`).
//! The only module that knows both; servers and clients convert here at the boundary.
//!
//! - this module: tasks, specs, attempts, logs, workers, stats, times.
//! - [`report`]: the worker stream's reports (`TaskEvent`, `Finished`, attempt refs).
//! - [`users`]: users' quotas.

pub mod report;
pub mod users;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use cloudai_queue as q;

use crate::pb;

/// A wire message that does not make a valid domain value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    /// A required field is absent.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// A field has a value outside its domain.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// chrono → protobuf timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// protobuf timestamp → chrono; out-of-range values are an error, not a panic.
pub fn from_timestamp(
    field: &'static str,
    t: &prost_types::Timestamp,
) -> Result<DateTime<Utc>, ConvertError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(invalid(field, format!("nanos {} out of range", t.nanos)));
    }
    Utc.timestamp_opt(t.seconds, t.nanos as u32)
        .single()
        .ok_or_else(|| invalid(field, format!("seconds {} out of range", t.seconds)))
}

fn opt_ts(
    field: &'static str,
    t: &Option<prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, ConvertError> {
    t.as_ref().map(|t| from_timestamp(field, t)).transpose()
}

fn req_ts(
    field: &'static str,
    t: &Option<prost_types::Timestamp>,
) -> Result<DateTime<Utc>, ConvertError> {
    opt_ts(field, t)?.ok_or(ConvertError::Missing(field))
}

/// std duration → protobuf duration.
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs().min(i64::MAX as u64) as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// protobuf duration → std; negative values are an error.
pub fn from_duration(
    field: &'static str,
    d: &prost_types::Duration,
) -> Result<Duration, ConvertError> {
    if d.seconds < 0 || !(0..1_000_000_000).contains(&d.nanos) {
        return Err(invalid(field, "negative or malformed duration"));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

impl From<q::Resources> for pb::Resources {
    fn from(r: q::Resources) -> Self {
        pb::Resources {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            gpus: r.gpus,
            disk_bytes: r.disk_bytes,
        }
    }
}

impl From<pb::Resources> for q::Resources {
    fn from(r: pb::Resources) -> Self {
        q::Resources {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            gpus: r.gpus,
            disk_bytes: r.disk_bytes,
        }
    }
}

impl From<q::TaskSpec> for pb::TaskSpec {
    fn from(s: q::TaskSpec) -> Self {
        pb::TaskSpec {
            image: s.image,
            command: s.command,
            entrypoint: s.entrypoint,
            env: s.env.into_iter().collect(),
            resources: Some(s.resources.into()),
            priority: s.priority,
            max_attempts: s.max_attempts,
            timeout: s.timeout.map(duration),
            pinned_worker: s.pinned_worker,
            labels: s.labels.into_iter().collect(),
            idempotency_key: s.idempotency_key,
            max_lost_retries: Some(s.max_lost_retries),
            after: s
                .after
                .into_iter()
                .map(|d| pb::Dependency {
                    task_id: d.task.to_string(),
                    condition: pb::DependencyCondition::from(d.condition) as i32,
                })
                .collect(),
            not_before: s.not_before.map(timestamp),
            array: s.array.map(|a| pb::ArrayMember {
                id: a.id,
                index: a.index,
                size: a.size,
                max_running: a.max_running,
            }),
            constraints: s.constraints.iter().map(constraint).collect(),
            prefer: s.prefer.iter().map(preference).collect(),
        }
    }
}

/// A domain constraint on the wire.
pub fn constraint(c: &q::constraint::Constraint) -> pb::Constraint {
    use q::constraint::Op;
    let op = match c.op {
        Op::Eq => pb::ConstraintOp::Eq,
        Op::Ne => pb::ConstraintOp::Ne,
        Op::In => pb::ConstraintOp::In,
        Op::NotIn => pb::ConstraintOp::NotIn,
        Op::Exists => pb::ConstraintOp::Exists,
    };
    pb::Constraint {
        key: c.key.clone(),
        op: op as i32,
        values: c.values.clone(),
    }
}

/// A domain preference on the wire.
pub fn preference(p: &q::constraint::Preference) -> pb::Preference {
    pb::Preference {
        key: p.key.clone(),
        value: p.value.clone(),
    }
}

/// A wire constraint (its operator known; arity and grammar are `validate`'s).
pub fn constraint_of(c: &pb::Constraint) -> Result<q::constraint::Constraint, ConvertError> {
    use q::constraint::Op;
    let op = match pb::ConstraintOp::try_from(c.op) {
        Ok(pb::ConstraintOp::Eq) => Op::Eq,
        Ok(pb::ConstraintOp::Ne) => Op::Ne,
        Ok(pb::ConstraintOp::In) => Op::In,
        Ok(pb::ConstraintOp::NotIn) => Op::NotIn,
        Ok(pb::ConstraintOp::Exists) => Op::Exists,
        _ => {
            return Err(invalid(
                "constraints",
                format!("constraint on {:?} has no known operator ({})", c.key, c.op),
            ))
        }
    };
    Ok(q::constraint::Constraint {
        key: c.key.clone(),
        op,
        values: c.values.clone(),
    })
}

/// A wait reason's name as people see it (`cloudai tasks` REASON, the HTTP API): Slurm's
/// spelling, e.g. `Resources`, `NoWorkerFits`; empty for an unknown code.
pub fn wait_reason_name(code: i32) -> &'static str {
    use pb::WaitReasonCode as C;
    match C::try_from(code) {
        Ok(C::Priority) => "Priority",
        Ok(C::Resources) => "Resources",
        Ok(C::NoWorkerFits) => "NoWorkerFits",
        Ok(C::PinnedWorkerUnavailable) => "PinnedWorkerUnavailable",
        Ok(C::Quota) => "Quota",
        Ok(C::Backoff) => "Backoff",
        Ok(C::Dependency) => "Dependency",
        Ok(C::BeginTime) => "BeginTime",
        Ok(C::Unspecified) | Err(_) => "",
    }
}

impl From<q::DependencyCondition> for pb::DependencyCondition {
    fn from(c: q::DependencyCondition) -> Self {
        match c {
            q::DependencyCondition::Ok => pb::DependencyCondition::Ok,
            q::DependencyCondition::NotOk => pb::DependencyCondition::NotOk,
            q::DependencyCondition::Any => pb::DependencyCondition::Any,
        }
    }
}

/// A wire dependency (its id whole: the master resolves prefixes first).
pub fn dependency(d: &pb::Dependency) -> Result<q::Dependency, ConvertError> {
    let task = d
        .task_id
        .parse::<q::TaskId>()
        .map_err(|_| invalid("after", format!("{:?} is not a task id", d.task_id)))?;
    let condition = match pb::DependencyCondition::try_from(d.condition) {
        Ok(pb::DependencyCondition::Ok) => q::DependencyCondition::Ok,
        Ok(pb::DependencyCondition::NotOk) => q::DependencyCondition::NotOk,
        Ok(pb::DependencyCondition::Any) => q::DependencyCondition::Any,
        Err(_) => {
            return Err(invalid(
                "after",
                format!("unknown dependency condition {}", d.condition),
            ))
        }
    };
    Ok(q::Dependency { task, condition })
}

impl TryFrom<pb::TaskSpec> for q::TaskSpec {
    type Error = ConvertError;
    /// Shape only; `cloudai_queue::validate` checks bounds and grammar afterwards.
    fn try_from(s: pb::TaskSpec) -> Result<Self, ConvertError> {
        Ok(q::TaskSpec {
            image: s.image,
            command: s.command,
            entrypoint: s.entrypoint,
            env: s.env.into_iter().collect(),
            resources: s.resources.map(Into::into).unwrap_or_default(),
            priority: s.priority,
            max_attempts: if s.max_attempts == 0 {
                q::DEFAULT_MAX_ATTEMPTS
            } else {
                s.max_attempts
            },
            max_lost_retries: s.max_lost_retries.unwrap_or(q::DEFAULT_MAX_LOST_RETRIES),
            timeout: s
                .timeout
                .as_ref()
                .map(|d| from_duration("timeout", d))
                .transpose()?,
            pinned_worker: s.pinned_worker.filter(|w| !w.is_empty()),
            labels: s.labels.into_iter().collect(),
            idempotency_key: s.idempotency_key.filter(|k| !k.is_empty()),
            after: s.after.iter().map(dependency).collect::<Result<_, _>>()?,
            not_before: opt_ts("not_before", &s.not_before)?,
            array: s.array.map(|a| q::array::ArrayMember {
                id: a.id,
                index: a.index,
                size: a.size,
                max_running: a.max_running,
            }),
            constraints: s
                .constraints
                .iter()
                .map(constraint_of)
                .collect::<Result<_, _>>()?,
            prefer: s
                .prefer
                .into_iter()
                .map(|p| q::constraint::Preference {
                    key: p.key,
                    value: p.value,
                })
                .collect(),
        })
    }
}

impl From<q::TaskStatus> for pb::TaskStatus {
    fn from(s: q::TaskStatus) -> Self {
        use q::TaskStatus as S;
        match s {
            S::Waiting => pb::TaskStatus::Waiting,
            S::Queued => pb::TaskStatus::Queued,
            S::Assigned => pb::TaskStatus::Assigned,
            S::Running => pb::TaskStatus::Running,
            S::Succeeded => pb::TaskStatus::Succeeded,
            S::Failed => pb::TaskStatus::Failed,
            S::Cancelled => pb::TaskStatus::Cancelled,
            S::TimedOut => pb::TaskStatus::TimedOut,
            S::Lost => pb::TaskStatus::Lost,
        }
    }
}

/// Wire enum value → domain status; unspecified or unknown values are an error.
pub fn task_status(field: &'static str, v: i32) -> Result<q::TaskStatus, ConvertError> {
    use q::TaskStatus as S;
    match pb::TaskStatus::try_from(v) {
        Ok(pb::TaskStatus::Waiting) => Ok(S::Waiting),
        Ok(pb::TaskStatus::Queued) => Ok(S::Queued),
        Ok(pb::TaskStatus::Assigned) => Ok(S::Assigned),
        Ok(pb::TaskStatus::Running) => Ok(S::Running),
        Ok(pb::TaskStatus::Succeeded) => Ok(S::Succeeded),
        Ok(pb::TaskStatus::Failed) => Ok(S::Failed),
        Ok(pb::TaskStatus::Cancelled) => Ok(S::Cancelled),
        Ok(pb::TaskStatus::TimedOut) => Ok(S::TimedOut),
        Ok(pb::TaskStatus::Lost) => Ok(S::Lost),
        _ => Err(invalid(field, format!("unknown task status {v}"))),
    }
}

impl From<q::Attempt> for pb::Attempt {
    fn from(a: q::Attempt) -> Self {
        pb::Attempt {
            number: a.number,
            token: a.token,
            worker_id: a.worker_id,
            assigned_at: Some(timestamp(a.assigned_at)),
            started_at: a.started_at.map(timestamp),
            finished_at: a.finished_at.map(timestamp),
            outcome: a
                .outcome
                .map(|s| pb::TaskStatus::from(s) as i32)
                .unwrap_or(0),
            exit_code: a.exit_code,
            error: a.error.unwrap_or_default(),
            reported_seq: a.reported_seq,
            lost_to_silence: a.lost_to_silence,
        }
    }
}

impl TryFrom<pb::Attempt> for q::Attempt {
    type Error = ConvertError;
    fn try_from(a: pb::Attempt) -> Result<Self, ConvertError> {
        Ok(q::Attempt {
            number: a.number,
            token: a.token,
            worker_id: a.worker_id,
            assigned_at: req_ts("attempt.assigned_at", &a.assigned_at)?,
            started_at: opt_ts("attempt.started_at", &a.started_at)?,
            finished_at: opt_ts("attempt.finished_at", &a.finished_at)?,
            outcome: if a.outcome == 0 {
                None
            } else {
                Some(task_status("attempt.outcome", a.outcome)?)
            },
            exit_code: a.exit_code,
            error: Some(a.error).filter(|e| !e.is_empty()),
            reported_seq: a.reported_seq,
            lost_to_silence: a.lost_to_silence,
        })
    }
}

impl From<q::Task> for pb::Task {
    fn from(t: q::Task) -> Self {
        let worker_id = t.worker_id().unwrap_or_default().to_string();
        pb::Task {
            id: t.id.to_string(),
            spec: Some(t.spec.into()),
            status: pb::TaskStatus::from(t.status) as i32,
            created_at: Some(timestamp(t.created_at)),
            updated_at: Some(timestamp(t.updated_at)),
            not_before: Some(timestamp(t.not_before)),
            attempts: t.attempts.into_iter().map(Into::into).collect(),
            worker_id,
            exit_code: t.exit_code,
            error: t.error.unwrap_or_default(),
            cancel_requested: t.cancel_requested,
            submitted_by: t.submitted_by.unwrap_or_default(),
            finished_at: t.finished_at.map(timestamp),
            // The master's to fill in: it knows why a task waits, the store does not.
            wait_reason: None,
        }
    }
}

impl TryFrom<pb::Task> for q::Task {
    type Error = ConvertError;
    fn try_from(t: pb::Task) -> Result<Self, ConvertError> {
        Ok(q::Task {
            id: t
                .id
                .parse()
                .map_err(|e: q::QueueError| invalid("task.id", e.to_string()))?,
            spec: t
                .spec
                .ok_or(ConvertError::Missing("task.spec"))?
                .try_into()?,
            status: task_status("task.status", t.status)?,
            created_at: req_ts("task.created_at", &t.created_at)?,
            updated_at: req_ts("task.updated_at", &t.updated_at)?,
            not_before: req_ts("task.not_before", &t.not_before)?,
            finished_at: opt_ts("task.finished_at", &t.finished_at)?,
            attempts: t
                .attempts
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
            cancel_requested: t.cancel_requested,
            exit_code: t.exit_code,
            error: Some(t.error).filter(|e| !e.is_empty()),
            submitted_by: Some(t.submitted_by).filter(|s| !s.is_empty()),
        })
    }
}

impl From<q::LogStream> for pb::LogStream {
    fn from(s: q::LogStream) -> Self {
        match s {
            q::LogStream::Stdout => pb::LogStream::Stdout,
            q::LogStream::Stderr => pb::LogStream::Stderr,
            q::LogStream::System => pb::LogStream::System,
        }
    }
}

/// Wire enum value → domain log stream.
pub fn log_stream(v: i32) -> Result<q::LogStream, ConvertError> {
    match pb::LogStream::try_from(v) {
        Ok(pb::LogStream::Stdout) => Ok(q::LogStream::Stdout),
        Ok(pb::LogStream::Stderr) => Ok(q::LogStream::Stderr),
        Ok(pb::LogStream::System) => Ok(q::LogStream::System),
        _ => Err(invalid("log stream", format!("unknown log stream {v}"))),
    }
}

impl From<q::LogChunk> for pb::LogChunk {
    fn from(c: q::LogChunk) -> Self {
        pb::LogChunk {
            seq: c.seq,
            stream: pb::LogStream::from(c.stream) as i32,
            time: Some(timestamp(c.time)),
            data: c.data,
            attempt: c.attempt,
        }
    }
}

impl TryFrom<pb::LogChunk> for q::LogChunk {
    type Error = ConvertError;
    fn try_from(c: pb::LogChunk) -> Result<Self, ConvertError> {
        Ok(q::LogChunk {
            seq: c.seq,
            attempt: c.attempt,
            stream: log_stream(c.stream)?,
            time: req_ts("log.time", &c.time)?,
            data: c.data,
        })
    }
}

impl From<q::WorkerHealth> for pb::WorkerHealth {
    fn from(h: q::WorkerHealth) -> Self {
        match h {
            q::WorkerHealth::Healthy => pb::WorkerHealth::Healthy,
            q::WorkerHealth::Suspect => pb::WorkerHealth::Suspect,
            q::WorkerHealth::Dead => pb::WorkerHealth::Dead,
        }
    }
}

/// Wire enum value → domain worker health.
pub fn worker_health(v: i32) -> Result<q::WorkerHealth, ConvertError> {
    match pb::WorkerHealth::try_from(v) {
        Ok(pb::WorkerHealth::Healthy) => Ok(q::WorkerHealth::Healthy),
        Ok(pb::WorkerHealth::Suspect) => Ok(q::WorkerHealth::Suspect),
        Ok(pb::WorkerHealth::Dead) => Ok(q::WorkerHealth::Dead),
        _ => Err(invalid(
            "worker health",
            format!("unknown worker health {v}"),
        )),
    }
}

impl From<q::QueueStats> for pb::QueueStatsResponse {
    fn from(s: q::QueueStats) -> Self {
        pb::QueueStatsResponse {
            counts: s
                .counts
                .into_iter()
                .map(|(status, count)| pb::StatusCount {
                    status: pb::TaskStatus::from(status) as i32,
                    count,
                })
                .collect(),
            oldest_queued_at: s.oldest_queued_at.map(timestamp),
            finished_last_minute: s.finished_last_minute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_task() -> q::Task {
        let now = Utc.timestamp_opt(1_700_000_000, 123_000_000).unwrap();
        let mut spec = q::TaskSpec::new("busybox:latest");
        spec.command = vec!["-c".into(), "echo hi".into()];
        spec.entrypoint = vec!["sh".into()];
        spec.env.insert("A".into(), "1".into());
        spec.resources.cpu_millis = 500;
        spec.resources.memory_bytes = 256 << 20;
        spec.timeout = Some(Duration::from_millis(1500));
        spec.pinned_worker = Some("w1".into());
        spec.idempotency_key = Some("k".into());
        spec.max_lost_retries = 0;
        q::Task {
            id: q::TaskId::new(),
            spec,
            status: q::TaskStatus::Failed,
            created_at: now,
            updated_at: now,
            not_before: now,
            finished_at: Some(now),
            attempts: vec![q::Attempt {
                number: 1,
                token: 1,
                worker_id: "w1".into(),
                assigned_at: now,
                started_at: Some(now),
                finished_at: Some(now),
                outcome: Some(q::TaskStatus::Failed),
                exit_code: Some(3),
                error: Some("exit 3".into()),
                reported_seq: 4,
                lost_to_silence: false,
            }],
            cancel_requested: false,
            exit_code: Some(3),
            error: Some("exit 3".into()),
            submitted_by: Some("alice".into()),
        }
    }

    #[test]
    fn task_round_trips_through_the_wire() {
        let t = sample_task();
        let wire: pb::Task = t.clone().into();
        assert_eq!(wire.worker_id, "w1");
        let back: q::Task = wire.try_into().unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn unset_retry_fields_take_domain_defaults() {
        let spec: q::TaskSpec = pb::TaskSpec {
            image: "busybox".into(),
            ..Default::default()
        }
        .try_into()
        .unwrap();
        assert_eq!(spec.max_attempts, q::DEFAULT_MAX_ATTEMPTS);
        assert_eq!(spec.max_lost_retries, q::DEFAULT_MAX_LOST_RETRIES);
        assert_eq!(spec.timeout, None);
        assert!(
            spec.entrypoint.is_empty() && spec.command.is_empty(),
            "unset: the image's own entrypoint and command"
        );
    }

    #[test]
    fn malformed_wire_values_are_errors_not_panics() {
        let bad_timeout = pb::TaskSpec {
            image: "busybox".into(),
            timeout: Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            }),
            ..Default::default()
        };
        assert!(matches!(
            q::TaskSpec::try_from(bad_timeout),
            Err(ConvertError::Invalid {
                field: "timeout",
                ..
            })
        ));
        assert!(task_status("s", 0).is_err());
        assert!(task_status("s", 99).is_err());
        assert!(log_stream(-5).is_err());
        let ts = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert!(from_timestamp("t", &ts).is_err());
        let mut wire: pb::Task = sample_task().into();
        wire.id = "nope".into();
        assert!(q::Task::try_from(wire).is_err());
    }
}
