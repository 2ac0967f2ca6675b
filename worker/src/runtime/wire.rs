//! Worker domain values → `cloudai.v1` messages. Report events convert in
//! `cloudai_proto::convert::report`; these are the few the runtime builds itself.

use cloudai_proto::pb;

use super::state::AttemptKey;
use crate::capacity::Usage;

/// Wraps a worker message body.
pub(crate) fn message(msg: pb::worker_message::Msg) -> pb::WorkerMessage {
    pb::WorkerMessage { msg: Some(msg) }
}

/// Heartbeat usage.
pub(crate) fn usage(u: Usage) -> pb::Usage {
    pb::Usage {
        cpu_percent: u.cpu_percent,
        memory_used_bytes: u.memory_used_bytes,
        memory_total_bytes: u.memory_total_bytes,
    }
}

/// An attempt reference.
pub(crate) fn attempt_ref(key: &AttemptKey) -> pb::AttemptRef {
    pb::AttemptRef {
        task_id: key.0.clone(),
        token: key.1,
        devices: Vec::new(),
    }
}

/// The host's GPUs as Register carries them.
pub(crate) fn gpu_info(g: &crate::capacity::GpuInfo) -> pb::GpuInfo {
    pb::GpuInfo {
        count: g.count,
        model: g.model.clone(),
        devices: g
            .devices
            .iter()
            .map(|d| pb::GpuDevice {
                index: d.index,
                uuid: d.uuid.clone(),
                model: d.model.clone(),
                memory_mib: d.memory_mib,
                task_id: String::new(),
            })
            .collect(),
    }
}
