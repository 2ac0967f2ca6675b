//! GPUs, one task per device: which of a worker's devices (by UUID) a task is given, and
//! which task holds each. Placement counts GPUs like any resource; once a task is placed
//! on a worker, [`Gpus::take`] names the devices: the free ones of lowest index. Pure
//! bookkeeping, kept per worker by the cluster and unit-tested here.
//!
//! A worker that could not name its devices (no UUIDs from `nvidia-smi`) has none here:
//! its GPU tasks get no device ids and Docker picks by count, as before devices existed.
//! After a master restart the holders are learned again from what workers report with
//! their running attempts (`AttemptRef.devices`): [`Gpus::report`], then [`Gpus::adopt`].

use std::collections::{BTreeMap, HashMap};

use cloudai_queue::TaskId;

/// One GPU of a worker, as it registered it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Device {
    /// Its index on the host.
    pub index: u32,
    /// Its `GPU-...` UUID.
    pub uuid: String,
    /// Model name.
    pub model: String,
    /// Memory in MiB (0 when unknown).
    pub memory_mib: u64,
}

/// One worker's devices and their holders.
#[derive(Clone, Debug, Default)]
pub struct Gpus {
    /// By index.
    devices: Vec<Device>,
    /// Device UUID → the task holding it.
    held: BTreeMap<String, TaskId>,
    /// What the worker last reported its running attempts hold.
    reported: HashMap<TaskId, Vec<String>>,
}

impl Gpus {
    /// The devices of a worker that (re)registered; who holds what is kept.
    pub fn set_devices(&mut self, mut devices: Vec<Device>) {
        devices.sort_by_key(|d| d.index);
        self.devices = devices;
    }

    /// Each device by index, with the task holding it.
    pub fn devices(&self) -> impl Iterator<Item = (&Device, Option<TaskId>)> {
        self.devices
            .iter()
            .map(|d| (d, self.held.get(&d.uuid).copied()))
    }

    /// Gives `task` `n` devices: the free ones of lowest index. `Ok(vec![])` when it asks
    /// for none or the worker named no devices; `Err(free)` when fewer than `n` are free.
    pub fn take(&mut self, task: TaskId, n: u32) -> Result<Vec<String>, u64> {
        if n == 0 || self.devices.is_empty() {
            return Ok(Vec::new());
        }
        let free: Vec<String> = self
            .devices
            .iter()
            .filter(|d| !self.held.contains_key(&d.uuid))
            .map(|d| d.uuid.clone())
            .collect();
        if free.len() < n as usize {
            return Err(free.len() as u64);
        }
        let given: Vec<String> = free.into_iter().take(n as usize).collect();
        for uuid in &given {
            self.held.insert(uuid.clone(), task);
        }
        Ok(given)
    }

    /// `task` gave back `devices` (its attempt ended or was never sent). A device held
    /// by another task meanwhile stays that task's.
    pub fn release(&mut self, task: TaskId, devices: &[String]) {
        for uuid in devices {
            if self.held.get(uuid) == Some(&task) {
                self.held.remove(uuid);
            }
        }
        self.reported.remove(&task);
    }

    /// What the worker says its running attempts hold (Register, each heartbeat).
    pub fn report(&mut self, reported: HashMap<TaskId, Vec<String>>) {
        self.reported = reported;
    }

    /// Whether the last report named any device.
    pub fn any_reported(&self) -> bool {
        !self.reported.is_empty()
    }

    /// The devices the worker reported for `task`, now held by it: for a reservation
    /// restored from the store, which knows the attempt but not its devices. A device
    /// another task holds, or that the worker never registered, is left out.
    pub fn adopt(&mut self, task: TaskId) -> Vec<String> {
        let Some(reported) = self.reported.get(&task) else {
            return Vec::new();
        };
        let mut adopted = Vec::new();
        for uuid in reported {
            let known = self.devices.iter().any(|d| &d.uuid == uuid);
            let holder = self.held.get(uuid).copied();
            if known && holder.is_none_or(|h| h == task) {
                self.held.insert(uuid.clone(), task);
                adopted.push(uuid.clone());
            }
        }
        adopted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn four() -> Gpus {
        let mut g = Gpus::default();
        // Out of order on purpose: devices are kept by index.
        g.set_devices(
            [2, 0, 3, 1]
                .into_iter()
                .map(|i| Device {
                    index: i,
                    uuid: format!("GPU-{i}"),
                    ..Device::default()
                })
                .collect(),
        );
        g
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tasks_get_distinct_devices_lowest_index_first() {
        let mut g = four();
        let (a, b, c) = (TaskId::new(), TaskId::new(), TaskId::new());
        assert_eq!(g.take(a, 1), Ok(ids(&["GPU-0"])));
        assert_eq!(g.take(b, 2), Ok(ids(&["GPU-1", "GPU-2"])));
        assert_eq!(g.take(c, 2), Err(1), "one free, two asked");
        assert_eq!(g.take(c, 1), Ok(ids(&["GPU-3"])));
        let holders: Vec<Option<TaskId>> = g.devices().map(|(_, t)| t).collect();
        assert_eq!(holders, vec![Some(a), Some(b), Some(b), Some(c)]);
    }

    #[test]
    fn released_devices_are_given_again_and_only_by_their_holder() {
        let mut g = four();
        let (a, b) = (TaskId::new(), TaskId::new());
        let first = g.take(a, 2).unwrap();
        // b cannot give back what a holds.
        g.release(b, &first);
        assert_eq!(g.take(b, 3), Err(2));
        g.release(a, &first);
        assert_eq!(g.take(b, 3), Ok(ids(&["GPU-0", "GPU-1", "GPU-2"])));
    }

    #[test]
    fn no_devices_named_means_count_only() {
        let mut g = Gpus::default();
        assert_eq!(g.take(TaskId::new(), 8), Ok(Vec::new()));
        assert_eq!(four().take(TaskId::new(), 0), Ok(Vec::new()));
    }

    #[test]
    fn a_restarted_master_adopts_what_the_worker_reports() {
        let mut g = four();
        let (a, b, c) = (TaskId::new(), TaskId::new(), TaskId::new());
        g.report(HashMap::from([
            (a, ids(&["GPU-2"])),
            (b, ids(&["GPU-2", "GPU-3"])),
            (c, ids(&["GPU-9"])),
        ]));
        assert_eq!(g.adopt(a), ids(&["GPU-2"]));
        assert_eq!(
            g.adopt(a),
            ids(&["GPU-2"]),
            "adopting again changes nothing"
        );
        // b claims a's device too: it gets only its own; an unknown device is ignored.
        assert_eq!(g.adopt(b), ids(&["GPU-3"]));
        assert_eq!(g.adopt(c), Vec::<String>::new());
        assert_eq!(g.adopt(TaskId::new()), Vec::<String>::new());
        // A new task gets neither adopted device.
        assert_eq!(g.take(TaskId::new(), 2), Ok(ids(&["GPU-0", "GPU-1"])));
    }
}
