//! What the CLI shows: stable, snake_case views of tasks, workers and queue stats, built
//! from the master's answers at the boundary (via `cloudai_proto::convert`). These are the
//! documents `--output json` prints; tables are rendered from them in `output`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cloudai_proto::{convert, pb};
use cloudai_queue as q;
use serde::Serialize;

use crate::exit::{CliError, Kind};

mod task;
#[cfg(test)]
pub(crate) use task::tests_support;
pub use task::{AttemptView, TaskView};

pub(crate) fn bad_answer(e: impl std::fmt::Display) -> CliError {
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
    /// Each GPU device it named, with the task holding it (none: free).
    pub gpu_devices: Vec<GpuDeviceView>,
    /// Host CPU busy, 0..100.
    pub cpu_percent: Option<f64>,
    /// Host memory in use, bytes.
    pub memory_used_bytes: Option<u64>,
    /// Operator labels.
    pub labels: BTreeMap<String, String>,
    /// Built-in attributes it discovered (os, arch, hostname, docker.version, gpu.model,
    /// gpu.memory in MiB); constraints match these and the labels.
    pub attributes: BTreeMap<String, String>,
    /// Worker version.
    pub version: String,
    /// Cordoned: no new tasks.
    pub cordoned: bool,
    /// Being drained: what runs there at this time is stopped and retried elsewhere.
    pub drain_deadline: Option<DateTime<Utc>>,
}

/// One GPU device of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuDeviceView {
    /// Its index on the host.
    pub index: u32,
    /// Its UUID (what Docker's DeviceIDs take).
    pub uuid: String,
    /// Model name.
    pub model: String,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The task holding it; none when free.
    pub task_id: Option<String>,
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
            gpu_model: w
                .gpu
                .as_ref()
                .map(|g| g.model.clone())
                .filter(|m| !m.is_empty()),
            gpu_devices: w
                .gpu
                .map(|g| g.devices)
                .unwrap_or_default()
                .into_iter()
                .map(|d| GpuDeviceView {
                    index: d.index,
                    uuid: d.uuid,
                    model: d.model,
                    memory_mib: d.memory_mib,
                    task_id: Some(d.task_id).filter(|t| !t.is_empty()),
                })
                .collect(),
            cpu_percent: w.usage.as_ref().map(|u| u.cpu_percent),
            memory_used_bytes: w.usage.as_ref().map(|u| u.memory_used_bytes),
            labels: w.labels.into_iter().collect(),
            attributes: w.attributes.into_iter().collect(),
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
mod tests {
    use super::*;
    use chrono::TimeZone;

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
