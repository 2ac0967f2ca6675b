//! Conversions between the master's own types and the wire. Task-level conversions live
//! in `cloudai_proto::convert`; these are the ones only the master needs.

use chrono::Utc;
use cloudai_proto::convert::timestamp;
use cloudai_proto::pb;
use cloudai_queue::{validate, AttemptOutcome, TaskId, TaskStatus, WorkerHealth, WorkerRecord};
use tonic::Status;

use crate::cluster::{Outbound, Usage, WorkerEntry};

/// Domain message → wire message.
pub fn outbound(m: Outbound) -> pb::MasterMessage {
    use pb::master_message::Msg;
    let msg = match m {
        Outbound::Registered {
            worker_id,
            heartbeat_interval,
        } => Msg::Registered(pb::Registered {
            worker_id,
            heartbeat_interval_ms: heartbeat_interval.as_millis().min(u32::MAX as u128) as u32,
        }),
        Outbound::Assign {
            task_id,
            token,
            attempt,
            spec,
        } => Msg::Assign(pb::Assign {
            task_id: task_id.to_string(),
            token,
            attempt,
            spec: Some((*spec).into()),
        }),
        Outbound::Cancel { task_id, token } => Msg::Cancel(pb::Cancel {
            task_id: task_id.to_string(),
            token,
        }),
        Outbound::Ack { task_id, token } => Msg::Ack(pb::Ack {
            task_id: task_id.to_string(),
            token,
        }),
        Outbound::Revoke { attempts, reason } => Msg::Revoke(pb::Revoke {
            attempts: attempts
                .into_iter()
                .map(|(t, token)| pb::AttemptRef {
                    task_id: t.to_string(),
                    token,
                })
                .collect(),
            reason,
        }),
    };
    pb::MasterMessage { msg: Some(msg) }
}

/// A worker as clients and agents see it.
pub fn worker_info(w: &WorkerEntry) -> pb::WorkerInfo {
    let r = &w.record;
    pb::WorkerInfo {
        id: r.id.clone(),
        labels: r.labels.clone().into_iter().collect(),
        capacity: Some(r.capacity.into()),
        free: Some(w.free().into()),
        health: pb::WorkerHealth::from(r.health) as i32,
        last_heartbeat: Some(timestamp(r.last_heartbeat)),
        running_task_ids: w.tasks.iter().map(ToString::to_string).collect(),
        usage: Some(pb::Usage {
            cpu_percent: w.usage.cpu_percent,
            memory_used_bytes: w.usage.memory_used_bytes,
            memory_total_bytes: w.usage.memory_total_bytes,
        }),
        gpu: Some(pb::GpuInfo {
            count: r.capacity.gpus,
            model: r.gpu_model.clone().unwrap_or_default(),
        }),
        hostname: r.hostname.clone(),
        version: w.version.clone(),
    }
}

/// A worker's `Register`, checked.
#[derive(Clone, Debug)]
pub struct Registration {
    /// Its registry record (healthy, registered now).
    pub record: WorkerRecord,
    /// The version it reported.
    pub version: String,
    /// Attempts it still runs.
    pub running: Vec<(TaskId, u64)>,
}

/// Checks a worker's `Register`.
pub fn register(reg: pb::Register) -> Result<Registration, Status> {
    validate::validate_worker_id(&reg.worker_id)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    if reg.labels.len() > validate::MAX_LABELS {
        return Err(Status::invalid_argument("too many worker labels"));
    }
    let running = attempt_refs(&reg.running)?;
    let now = Utc::now();
    let gpu = reg.gpu.unwrap_or_default();
    let mut capacity: cloudai_queue::Resources = reg.capacity.unwrap_or_default().into();
    capacity.gpus = capacity.gpus.max(gpu.count);
    let record = WorkerRecord {
        id: reg.worker_id,
        labels: reg.labels.into_iter().collect(),
        capacity,
        gpu_model: Some(gpu.model).filter(|m| !m.is_empty()),
        hostname: reg.hostname,
        health: WorkerHealth::Healthy,
        registered_at: now,
        last_heartbeat: now,
    };
    Ok(Registration {
        record,
        version: reg.version,
        running,
    })
}

/// Attempt references with parsed ids; a malformed id is the worker's mistake.
pub fn attempt_refs(refs: &[pb::AttemptRef]) -> Result<Vec<(TaskId, u64)>, Status> {
    refs.iter()
        .map(|r| {
            r.task_id
                .parse::<TaskId>()
                .map(|t| (t, r.token))
                .map_err(|e| Status::invalid_argument(e.to_string()))
        })
        .collect()
}

/// Heartbeat usage.
pub fn usage(u: Option<pb::Usage>) -> Usage {
    let u = u.unwrap_or_default();
    Usage {
        cpu_percent: if u.cpu_percent.is_finite() {
            u.cpu_percent
        } else {
            0.0
        },
        memory_used_bytes: u.memory_used_bytes,
        memory_total_bytes: u.memory_total_bytes,
    }
}

/// How an attempt ended, from the worker's `Finished` (see PROTOCOL.md §3).
pub fn outcome(f: &pb::Finished) -> AttemptOutcome {
    let error = Some(f.error.clone()).filter(|e| !e.is_empty());
    let (status, exit_code, error) = match pb::FinishKind::try_from(f.kind) {
        Ok(pb::FinishKind::Exited) => match f.exit_code {
            Some(0) => (TaskStatus::Succeeded, Some(0), error),
            Some(code) => (
                TaskStatus::Failed,
                Some(code),
                error.or_else(|| Some(format!("exited with code {code}"))),
            ),
            None => (
                TaskStatus::Failed,
                None,
                error.or_else(|| Some("exited without an exit code".into())),
            ),
        },
        Ok(pb::FinishKind::TimedOut) => (
            TaskStatus::TimedOut,
            f.exit_code,
            error.or_else(|| Some("ran past its timeout".into())),
        ),
        Ok(pb::FinishKind::Cancelled) => (TaskStatus::Cancelled, f.exit_code, error),
        Ok(pb::FinishKind::Error) => (
            TaskStatus::Failed,
            None,
            error.or_else(|| Some("the worker could not run the task".into())),
        ),
        _ => (
            TaskStatus::Failed,
            f.exit_code,
            Some(format!("worker reported an unknown finish kind {}", f.kind)),
        ),
    };
    AttemptOutcome {
        status,
        exit_code,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fin(kind: pb::FinishKind, code: Option<i32>, error: &str) -> pb::Finished {
        pb::Finished {
            kind: kind as i32,
            exit_code: code,
            error: error.into(),
        }
    }

    #[test]
    fn finished_maps_per_protocol() {
        use pb::FinishKind as K;
        let o = outcome(&fin(K::Exited, Some(0), ""));
        assert_eq!(
            (o.status, o.exit_code, o.error),
            (TaskStatus::Succeeded, Some(0), None)
        );
        let o = outcome(&fin(K::Exited, Some(3), ""));
        assert_eq!((o.status, o.exit_code), (TaskStatus::Failed, Some(3)));
        assert_eq!(o.error.as_deref(), Some("exited with code 3"));
        assert_eq!(
            outcome(&fin(K::TimedOut, None, "")).status,
            TaskStatus::TimedOut
        );
        assert_eq!(
            outcome(&fin(K::Cancelled, None, "")).status,
            TaskStatus::Cancelled
        );
        let o = outcome(&fin(K::Error, None, "pull access denied"));
        assert_eq!(
            (o.status, o.error.as_deref()),
            (TaskStatus::Failed, Some("pull access denied"))
        );
        let o = outcome(&pb::Finished {
            kind: 42,
            exit_code: None,
            error: String::new(),
        });
        assert_eq!(o.status, TaskStatus::Failed);
        assert_eq!(
            outcome(&fin(K::Exited, None, "")).status,
            TaskStatus::Failed
        );
    }

    #[test]
    fn register_rejects_bad_ids_and_refs() {
        let ok = pb::Register {
            worker_id: "w-1".into(),
            gpu: Some(pb::GpuInfo {
                count: 2,
                model: "A100".into(),
            }),
            ..Default::default()
        };
        let r = register(ok.clone()).unwrap();
        assert_eq!(
            (r.record.capacity.gpus, r.record.gpu_model.as_deref()),
            (2, Some("A100"))
        );
        assert!(r.running.is_empty());
        let mut bad = ok.clone();
        bad.worker_id = "no spaces".into();
        assert!(register(bad).is_err());
        let mut bad = ok;
        bad.running.push(pb::AttemptRef {
            task_id: "zzz".into(),
            token: 1,
        });
        assert_eq!(
            register(bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn usage_ignores_non_finite_cpu() {
        let u = usage(Some(pb::Usage {
            cpu_percent: f64::NAN,
            ..Default::default()
        }));
        assert_eq!(u.cpu_percent, 0.0);
    }
}
