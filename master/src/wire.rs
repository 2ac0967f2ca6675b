//! Conversions between the master's own types and the wire. Task-level conversions live
//! in `cloudai_proto::convert`; these are the ones only the master needs.

use std::collections::HashMap;

use chrono::Utc;
use cloudai_proto::convert::timestamp;
use cloudai_proto::pb;
use cloudai_queue::{validate, TaskId, WorkerHealth, WorkerRecord};
use tonic::Status;

use crate::cluster::{Usage, WorkerEntry};
use crate::conn::Outbound;
use crate::placement::devices::Device;

/// A duration in whole milliseconds for a `uint32` field (saturating).
fn ms32(d: std::time::Duration) -> u32 {
    d.as_millis().min(u32::MAX as u128) as u32
}

/// Domain message → wire message.
pub fn outbound(m: Outbound) -> pb::MasterMessage {
    use pb::master_message::Msg;
    let msg = match m {
        Outbound::Registered {
            worker_id,
            heartbeat_interval,
            lease,
            stop_within,
        } => Msg::Registered(pb::Registered {
            worker_id,
            heartbeat_interval_ms: ms32(heartbeat_interval),
            lease_ms: ms32(lease),
            stop_within_ms: ms32(stop_within),
        }),
        Outbound::HeartbeatAck { seq } => Msg::HeartbeatAck(pb::HeartbeatAck { seq }),
        Outbound::Assign {
            task_id,
            token,
            attempt,
            spec,
            devices,
        } => Msg::Assign(pb::Assign {
            task_id: task_id.to_string(),
            token,
            attempt,
            spec: Some((*spec).into()),
            devices,
        }),
        Outbound::Cancel { task_id, token } => Msg::Cancel(pb::Cancel {
            task_id: task_id.to_string(),
            token,
        }),
        Outbound::Ack {
            task_id,
            token,
            seq,
        } => Msg::Ack(pb::Ack {
            task_id: task_id.to_string(),
            token,
            seq,
        }),
        Outbound::Revoke { attempts, reason } => Msg::Revoke(pb::Revoke {
            attempts: attempts
                .into_iter()
                .map(|(t, token)| pb::AttemptRef {
                    task_id: t.to_string(),
                    token,
                    devices: Vec::new(),
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
            devices: w
                .gpus
                .devices()
                .map(|(d, holder)| pb::GpuDevice {
                    index: d.index,
                    uuid: d.uuid.clone(),
                    model: d.model.clone(),
                    memory_mib: d.memory_mib,
                    task_id: holder.map(|t| t.to_string()).unwrap_or_default(),
                })
                .collect(),
        }),
        hostname: r.hostname.clone(),
        version: w.version.clone(),
        cordoned: r.cordoned,
        drain_deadline: r.drain_deadline.map(timestamp),
        attributes: r.attributes.clone().into_iter().collect(),
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
    /// Attempts that ended there whose report is on its way.
    pub finished: Vec<(TaskId, u64)>,
    /// Its GPU devices, when it named one per GPU (else none: count only).
    pub devices: Vec<Device>,
    /// The devices its running attempts hold.
    pub held: HashMap<TaskId, Vec<String>>,
}

/// Checks a worker's `Register`.
pub fn register(reg: pb::Register) -> Result<Registration, Status> {
    validate::validate_worker_id(&reg.worker_id)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    if reg.labels.len() > validate::MAX_LABELS {
        return Err(Status::invalid_argument("too many worker labels"));
    }
    if reg.attributes.len() > validate::MAX_LABELS {
        return Err(Status::invalid_argument("too many worker attributes"));
    }
    let running = attempt_refs(&reg.running)?;
    let held = held_devices(&reg.running);
    let finished = attempt_refs(&reg.finished)?;
    let now = Utc::now();
    let gpu = reg.gpu.unwrap_or_default();
    let mut capacity: cloudai_queue::Resources = reg.capacity.unwrap_or_default().into();
    capacity.gpus = capacity.gpus.max(gpu.count);
    let devices = devices(&gpu.devices, capacity.gpus)?;
    let record = WorkerRecord {
        id: reg.worker_id,
        labels: reg.labels.into_iter().collect(),
        capacity,
        gpu_model: Some(gpu.model).filter(|m| !m.is_empty()),
        hostname: reg.hostname,
        health: WorkerHealth::Healthy,
        registered_at: now,
        last_heartbeat: now,
        cordoned: false,
        drain_deadline: None,
        attributes: reg.attributes.into_iter().collect(),
    };
    Ok(Registration {
        record,
        version: reg.version,
        running,
        finished,
        devices,
        held,
    })
}

/// Most GPU devices one worker may name.
const MAX_DEVICES: usize = 256;

/// A worker's GPU devices, checked: each UUID given once. Kept only when there is one
/// per GPU of its capacity; otherwise its GPUs are counted but not named.
fn devices(wire: &[pb::GpuDevice], gpus: u32) -> Result<Vec<Device>, Status> {
    if wire.len() > MAX_DEVICES {
        return Err(Status::invalid_argument(format!(
            "{} GPU devices named: at most {MAX_DEVICES}",
            wire.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for d in wire {
        if d.uuid.trim().is_empty() || d.uuid.len() > 128 {
            return Err(Status::invalid_argument(format!(
                "GPU device {} has no usable uuid",
                d.index
            )));
        }
        if !seen.insert(d.uuid.as_str()) {
            return Err(Status::invalid_argument(format!(
                "GPU device uuid {} is named twice",
                d.uuid
            )));
        }
    }
    if wire.len() != gpus as usize {
        return Ok(Vec::new());
    }
    Ok(wire
        .iter()
        .map(|d| Device {
            index: d.index,
            uuid: d.uuid.clone(),
            model: d.model.clone(),
            memory_mib: d.memory_mib,
        })
        .collect())
}

/// The devices reported with running attempts (refs already checked by `attempt_refs`).
pub fn held_devices(refs: &[pb::AttemptRef]) -> HashMap<TaskId, Vec<String>> {
    refs.iter()
        .filter(|r| !r.devices.is_empty())
        .filter_map(|r| Some((r.task_id.parse().ok()?, r.devices.clone())))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_checks_gpu_devices() {
        let dev = |i: u32, uuid: &str| pb::GpuDevice {
            index: i,
            uuid: uuid.into(),
            ..Default::default()
        };
        let reg = |devices: Vec<pb::GpuDevice>| pb::Register {
            worker_id: "g".into(),
            gpu: Some(pb::GpuInfo {
                count: 2,
                model: "A100".into(),
                devices,
            }),
            ..Default::default()
        };
        let ok = register(reg(vec![dev(0, "GPU-a"), dev(1, "GPU-b")])).unwrap();
        assert_eq!(ok.devices.len(), 2);
        // One per GPU or none: a partial list counts the GPUs but names none.
        assert!(register(reg(vec![dev(0, "GPU-a")]))
            .unwrap()
            .devices
            .is_empty());
        for (bad, says) in [
            (vec![dev(0, "GPU-a"), dev(1, "GPU-a")], "named twice"),
            (vec![dev(0, "GPU-a"), dev(1, " ")], "no usable uuid"),
        ] {
            let e = register(reg(bad)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(says), "{}", e.message());
        }
    }

    #[test]
    fn register_rejects_bad_ids_and_refs() {
        let ok = pb::Register {
            worker_id: "w-1".into(),
            gpu: Some(pb::GpuInfo {
                count: 2,
                model: "A100".into(),
                devices: vec![],
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
            devices: vec![],
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
