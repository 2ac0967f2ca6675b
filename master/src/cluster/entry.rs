//! One worker as the cluster keeps it in memory: its record, connection, usage,
//! reservations' sum, and its GPU devices; and what placement sees of it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cloudai_queue::{Resources, TaskId, WorkerHealth, WorkerRecord};
use tokio::time::Instant;

use crate::conn::Conn;
use crate::placement::devices::Gpus;
use crate::placement::WorkerSlot;

/// Host usage a worker reported in its last heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// Host CPU busy, 0..100.
    pub cpu_percent: f64,
    /// Memory in use.
    pub memory_used_bytes: u64,
    /// Memory in total.
    pub memory_total_bytes: u64,
}

/// One worker in memory.
#[derive(Clone, Debug)]
pub struct WorkerEntry {
    /// What the store keeps about it (health and last heartbeat kept current here).
    pub record: WorkerRecord,
    /// Version string it reported.
    pub version: String,
    /// Last reported usage.
    pub usage: Usage,
    /// Sum of its reservations.
    pub reserved: Resources,
    /// Its live stream, if any.
    pub conn: Option<Conn>,
    /// Last heartbeat or registration, on the monotonic clock.
    pub last_seen: Instant,
    /// Not declared dead before this (the reconnect window after a master start).
    pub not_dead_before: Instant,
    /// Tasks holding a reservation on it.
    pub tasks: BTreeSet<TaskId>,
    /// It reported attempts this view lacks, still being checked against the store: no
    /// new work until then, so they cannot be over-committed.
    pub reconciling: bool,
    /// `record.placement_attributes()`, shared with every placement snapshot.
    pub(super) attrs: Arc<BTreeMap<String, String>>,
    /// Its GPU devices and which task holds each.
    pub gpus: Gpus,
}

impl WorkerEntry {
    pub(super) fn new(
        record: WorkerRecord,
        version: String,
        conn: Option<Conn>,
        now: Instant,
    ) -> Self {
        WorkerEntry {
            version,
            usage: Usage::default(),
            reserved: Resources::default(),
            conn,
            last_seen: now,
            not_dead_before: now,
            tasks: BTreeSet::new(),
            reconciling: false,
            attrs: Arc::new(record.placement_attributes()),
            gpus: Gpus::default(),
            record,
        }
    }

    /// Placement's view of it now.
    pub fn slot(&self) -> WorkerSlot {
        WorkerSlot {
            id: self.record.id.clone(),
            capacity: self.record.capacity,
            free: self.free(),
            schedulable: self.schedulable(),
            attributes: self.attrs.clone(),
        }
    }

    /// Capacity minus reservations.
    pub fn free(&self) -> Resources {
        self.record.capacity.saturating_sub(&self.reserved)
    }

    /// Healthy with a live stream, nothing left to check, not cordoned: may get new work.
    pub fn schedulable(&self) -> bool {
        self.record.health == WorkerHealth::Healthy
            && self.conn.is_some()
            && !self.reconciling
            && !self.record.cordoned
    }
}

/// What a heartbeat did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beat {
    /// On the worker's live stream: acknowledge it (this renews the worker's lease).
    /// `revived` when the worker was not healthy before.
    Accepted {
        /// The worker is healthy again.
        revived: bool,
    },
    /// Not the live stream of a known worker (a replaced stream, a dead worker): no ack.
    Ignored,
}
