//! Rebuilding the cluster from the store at master start, and the GPU devices workers
//! report: the reservations memory holds for attempts it did not place itself.

use std::collections::HashMap;

use cloudai_queue::{Resources, TaskId, WorkerHealth, WorkerRecord};
use tokio::time::Instant;

use super::{Cluster, Reservation, WorkerEntry};
use crate::placement::devices::Device;

impl Cluster {
    /// Adds a worker known from the store at master start: disconnected, and not declared
    /// dead before `not_dead_before`.
    pub fn restore_worker(&mut self, record: WorkerRecord, now: Instant, not_dead_before: Instant) {
        let mut w = WorkerEntry::new(record, String::new(), None, now);
        w.not_dead_before = not_dead_before;
        self.workers.insert(w.record.id.clone(), w);
    }

    /// Restores a confirmed reservation found in the store at master start. The caller
    /// restores the worker first; for an unknown worker this does nothing.
    pub fn restore_reservation(
        &mut self,
        task: TaskId,
        worker_id: &str,
        req: Resources,
        token: u64,
        submitter: Option<&str>,
    ) {
        let Some(w) = self.workers.get_mut(worker_id) else {
            return;
        };
        // Stored as dead but still holding attempts (the master stopped between the two
        // writes): let the health rules declare it dead again so the attempts are lost.
        if w.record.health == WorkerHealth::Dead {
            w.record.health = WorkerHealth::Suspect;
        }
        w.reserved = w.reserved.saturating_add(&req);
        w.tasks.insert(task);
        // The store knows the attempt, not its devices: those the worker reported.
        let devices = w.gpus.adopt(task);
        let replaced = self.reservations.insert(
            task,
            Reservation {
                worker_id: worker_id.to_string(),
                resources: req,
                token: Some(token),
                cancel_pending: false,
                devices,
                submitter: submitter.map(str::to_string),
            },
        );
        if let Some(old) = replaced {
            self.shares.remove(old.submitter.as_deref(), &old.resources);
        }
        self.shares.add(submitter, &req);
    }

    /// A worker's GPU devices (at registration) and what its running attempts hold (at
    /// registration and each heartbeat): a restored reservation without devices adopts
    /// the ones reported for it.
    pub fn report_gpus(
        &mut self,
        worker_id: &str,
        devices: Option<Vec<Device>>,
        held: HashMap<TaskId, Vec<String>>,
    ) {
        let Some(w) = self.workers.get_mut(worker_id) else {
            return;
        };
        if let Some(d) = devices {
            w.gpus.set_devices(d);
        }
        w.gpus.report(held);
        // Most heartbeats report no devices (no GPU tasks): nothing to adopt.
        if !w.gpus.any_reported() {
            return;
        }
        for task in &w.tasks {
            if let Some(r) = self.reservations.get_mut(task) {
                if r.devices.is_empty() && r.resources.gpus > 0 {
                    r.devices = w.gpus.adopt(*task);
                }
            }
        }
    }
}
