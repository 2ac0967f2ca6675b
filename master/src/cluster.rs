//! The master's in-memory view of the cluster: workers (record, health, connection,
//! last heartbeat) and the reservations of live attempts. Synchronous and IO-free; the
//! caller holds it under a mutex, does store calls outside the lock, and passes the clock
//! in, so every rule here is unit-tested.
//!
//! Reservations are taken and released here only, each step exactly once:
//! `try_reserve` (pending, before `store.assign`) → `confirm` (token known, `Assign` sent)
//! → released by [`Cluster::settle`] once a store write returns the task with that
//! attempt over (finished, lost), or by `release` when the assign itself failed. Memory
//! never runs ahead of the store: a dead worker's attempts keep their reservations until
//! their `lost` is stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cloudai_queue::store::live_attempt;
use cloudai_queue::{Resources, Task, TaskId, WorkerHealth, WorkerRecord};
use tokio::time::{Duration, Instant};

mod entry;
mod restore;
mod shares;

pub use crate::conn::Conn;
use crate::placement::{self, Reject, Shortfall, TaskAsk, WorkerSlot};
pub use entry::{Beat, Usage, WorkerEntry};
pub use shares::Shares;

/// Resources held on a worker by one live attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Where.
    pub worker_id: String,
    /// How much.
    pub resources: Resources,
    /// The attempt's token; `None` until `store.assign` returned it.
    pub token: Option<u64>,
    /// A cancel arrived before the token was known: send it right after `Assign`.
    pub cancel_pending: bool,
    /// The GPU devices (UUIDs) it holds; empty without GPUs or named devices.
    pub devices: Vec<String>,
    /// Who enqueued the task (fair share, quotas).
    pub submitter: Option<String>,
}

/// What `confirm` found about the worker that the attempt was assigned to.
#[derive(Debug)]
pub enum Confirmed {
    /// Send `Assign` (then `Cancel` when `cancel` is true) on this stream.
    Send {
        /// The worker's stream.
        conn: Conn,
        /// A cancel is pending for this task.
        cancel: bool,
        /// The GPU devices the attempt is given.
        devices: Vec<String>,
    },
    /// The worker died or disconnected meanwhile: the caller finishes the attempt as lost.
    WorkerGone,
}

/// A health change decided by [`Cluster::tick`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthChange {
    /// The worker.
    pub worker_id: String,
    /// Its new health.
    pub health: WorkerHealth,
    /// For `Dead`: its confirmed attempts; the caller records each as lost, and their
    /// reservations are released once that is stored.
    pub lost: Vec<(TaskId, u64)>,
}

/// A healthy worker with this id already has a live stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlreadyConnected;

/// Workers and reservations.
#[derive(Debug, Default)]
pub struct Cluster {
    workers: BTreeMap<String, WorkerEntry>,
    reservations: HashMap<TaskId, Reservation>,
    shares: Shares,
}

impl Cluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// One worker.
    pub fn worker(&self, id: &str) -> Option<&WorkerEntry> {
        self.workers.get(id)
    }

    /// Every worker, by id.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerEntry> {
        self.workers.values()
    }

    /// The reservation of a task, if it holds one.
    pub fn reservation(&self, task: &TaskId) -> Option<&Reservation> {
        self.reservations.get(task)
    }

    /// Registers a connection. Refused when another stream of this id is live and the
    /// worker is healthy (a suspect worker's old stream is presumed dead and replaced).
    /// Returns the replaced stream, if any.
    pub fn connect(
        &mut self,
        mut record: WorkerRecord,
        version: String,
        conn: Conn,
        now: Instant,
    ) -> Result<Option<Conn>, AlreadyConnected> {
        if let Some(w) = self.workers.get_mut(&record.id) {
            if w.conn.is_some() && w.record.health == WorkerHealth::Healthy {
                return Err(AlreadyConnected);
            }
            record.registered_at = w.record.registered_at;
            record.health = WorkerHealth::Healthy;
            // An operator's cordon or drain outlives reconnects (and, through the store,
            // master restarts).
            record.cordoned = w.record.cordoned;
            record.drain_deadline = w.record.drain_deadline;
            w.attrs = Arc::new(record.placement_attributes());
            w.record = record;
            w.version = version;
            w.last_seen = now;
            w.not_dead_before = now;
            return Ok(w.conn.replace(conn));
        }
        record.health = WorkerHealth::Healthy;
        let w = WorkerEntry::new(record, version, Some(conn), now);
        self.workers.insert(w.record.id.clone(), w);
        Ok(None)
    }

    /// Cordons `worker_id` (no new tasks) or lifts it; with `drain_deadline`, what
    /// still runs there at that time is stopped and retried elsewhere. The updated
    /// record, or `None` for an unknown worker.
    pub fn set_cordon(
        &mut self,
        worker_id: &str,
        cordoned: bool,
        drain_deadline: Option<DateTime<Utc>>,
    ) -> Option<WorkerRecord> {
        let w = self.workers.get_mut(worker_id)?;
        w.record.cordoned = cordoned;
        w.record.drain_deadline = if cordoned { drain_deadline } else { None };
        Some(w.record.clone())
    }

    /// Attempts running past their worker's drain deadline at `now`: (worker, task,
    /// token), each to be stopped and retried elsewhere.
    pub fn drain_overdue(&self, now: DateTime<Utc>) -> Vec<(String, TaskId, u64)> {
        let mut out = Vec::new();
        for w in self.workers.values() {
            if w.record.drain_deadline.is_some_and(|d| d <= now) {
                for (task, token) in self.attempts_on(&w.record.id) {
                    out.push((w.record.id.clone(), task, token));
                }
            }
        }
        out
    }

    /// Marks whether a worker's reported attempts are still being checked (see
    /// [`WorkerEntry::reconciling`]).
    pub fn set_reconciling(&mut self, worker_id: &str, on: bool) {
        if let Some(w) = self.workers.get_mut(worker_id) {
            w.reconciling = on;
        }
    }

    /// Forgets stream `conn_id` of a worker (a newer stream is left alone).
    pub fn disconnect(&mut self, worker_id: &str, conn_id: u64) {
        if let Some(w) = self.workers.get_mut(worker_id) {
            if w.conn.as_ref().is_some_and(|c| c.id == conn_id) {
                w.conn = None;
            }
        }
    }

    /// Any message on stream `conn_id` proves the worker alive (health changes only with
    /// heartbeats).
    pub fn touch(&mut self, worker_id: &str, conn_id: u64, now: Instant) {
        if let Some(w) = self.workers.get_mut(worker_id) {
            if w.conn.as_ref().is_some_and(|c| c.id == conn_id) {
                w.last_seen = now;
            }
        }
    }

    /// Records a heartbeat on stream `conn_id` (see [`Beat`]).
    pub fn heartbeat(
        &mut self,
        worker_id: &str,
        conn_id: u64,
        usage: Usage,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Beat {
        let Some(w) = self.workers.get_mut(worker_id) else {
            return Beat::Ignored;
        };
        if w.conn.as_ref().is_none_or(|c| c.id != conn_id) {
            return Beat::Ignored;
        }
        w.last_seen = now;
        w.usage = usage;
        w.record.last_heartbeat = wall;
        let revived = w.record.health != WorkerHealth::Healthy;
        w.record.health = WorkerHealth::Healthy;
        Beat::Accepted { revived }
    }

    /// Applies the health rules at `now`: `suspect` after one missed interval, `dead`
    /// after `dead_after` (and not before the worker's reconnect window ends). A worker
    /// that turns dead loses its stream; its confirmed attempts are listed for the caller
    /// to record as lost (their reservations stay until that is stored).
    pub fn tick(&mut self, now: Instant, interval: Duration, dead_after: u32) -> Vec<HealthChange> {
        let mut changes = Vec::new();
        for w in self.workers.values_mut() {
            if w.record.health == WorkerHealth::Dead {
                continue;
            }
            let silent = now.saturating_duration_since(w.last_seen);
            let health =
                if silent >= interval.saturating_mul(dead_after) && now >= w.not_dead_before {
                    WorkerHealth::Dead
                } else if silent >= interval {
                    WorkerHealth::Suspect
                } else {
                    w.record.health
                };
            if health != w.record.health {
                w.record.health = health;
                changes.push(HealthChange {
                    worker_id: w.record.id.clone(),
                    health,
                    lost: Vec::new(),
                });
            }
        }
        for c in &mut changes {
            if c.health == WorkerHealth::Dead {
                if let Some(w) = self.workers.get_mut(&c.worker_id) {
                    w.conn = None;
                }
                c.lost = self.attempts_on(&c.worker_id);
            }
        }
        changes
    }

    /// The confirmed attempts holding reservations on a worker.
    pub fn attempts_on(&self, worker_id: &str) -> Vec<(TaskId, u64)> {
        let Some(w) = self.workers.get(worker_id) else {
            return Vec::new();
        };
        w.tasks
            .iter()
            .filter_map(|t| Some((*t, self.reservations.get(t)?.token?)))
            .collect()
    }

    /// True when `task` holds a confirmed reservation with `token` on `worker_id`.
    pub fn holds(&self, task: TaskId, worker_id: &str, token: u64) -> bool {
        self.reservations
            .get(&task)
            .is_some_and(|r| r.worker_id == worker_id && r.token == Some(token))
    }

    /// Makes `task`'s reservation agree with the task as a store write (or read) returned
    /// it: a confirmed reservation whose attempt is over there (no live attempt, or a
    /// newer one) is released. A reservation newer than the task read is left alone (the
    /// read is older than what memory saw), and so is a pending one (its assign settles
    /// it). Returns true when it released.
    pub fn settle(&mut self, task: &Task) -> bool {
        let Some(token) = self.reservations.get(&task.id).and_then(|r| r.token) else {
            return false;
        };
        let live = live_attempt(task).map(|a| a.token);
        if live != Some(token) && task.token() >= token {
            self.release(task.id, Some(token))
        } else {
            false
        }
    }

    /// The store answered that attempt `token` of `task` is over (a stale token, an
    /// ended attempt): releases its reservation if memory still holds it.
    pub fn release_over(&mut self, task: TaskId, token: u64) -> bool {
        self.release(task, Some(token))
    }

    /// Placement's view of the workers, by id.
    pub fn slots(&self) -> Vec<WorkerSlot> {
        self.workers.values().map(WorkerEntry::slot).collect()
    }

    /// The registered workers as feasibility reads them, borrowed (nothing copied).
    pub fn registered(&self) -> impl Iterator<Item = placement::Registered<'_>> {
        self.workers.values().map(|w| placement::Registered {
            id: &w.record.id,
            capacity: w.record.capacity,
            attributes: &w.attrs,
        })
    }

    /// Reserves `ask.request` on `worker_id` for `task` (pending until `confirm`), after
    /// checking the pin, health, connection and free capacity.
    pub fn try_reserve(
        &mut self,
        task: TaskId,
        worker_id: &str,
        ask: &TaskAsk<'_>,
    ) -> Result<(), Reject> {
        self.try_reserve_for(task, worker_id, ask, None)
    }

    /// [`Cluster::try_reserve`] for a task enqueued by `submitter`, counted in its share.
    pub fn try_reserve_for(
        &mut self,
        task: TaskId,
        worker_id: &str,
        ask: &TaskAsk<'_>,
        submitter: Option<&str>,
    ) -> Result<(), Reject> {
        if self.reservations.contains_key(&task) {
            return Err(Reject::AlreadyPlaced);
        }
        let w = self
            .workers
            .get_mut(worker_id)
            .ok_or_else(|| Reject::Unschedulable(worker_id.to_string()))?;
        placement::check(&w.slot(), ask)?;
        let devices = w
            .gpus
            .take(task, ask.request.gpus)
            .map_err(|free| Reject::DoesNotFit {
                worker: worker_id.to_string(),
                short: Shortfall {
                    resource: "gpus",
                    requested: u64::from(ask.request.gpus),
                    available: free,
                },
            })?;
        w.reserved = w.reserved.saturating_add(&ask.request);
        w.tasks.insert(task);
        self.reservations.insert(
            task,
            Reservation {
                worker_id: worker_id.to_string(),
                resources: ask.request,
                token: None,
                cancel_pending: false,
                devices,
                submitter: submitter.map(str::to_string),
            },
        );
        self.shares.add(submitter, &ask.request);
        Ok(())
    }

    /// Records the token `store.assign` gave a pending reservation and says where to send
    /// `Assign`. `WorkerGone` when the worker died or disconnected meanwhile (the
    /// reservation then stays, confirmed, for the caller to finish as lost and release).
    pub fn confirm(&mut self, task: TaskId, token: u64) -> Confirmed {
        let Some(r) = self.reservations.get_mut(&task) else {
            return Confirmed::WorkerGone;
        };
        r.token = Some(token);
        let cancel = r.cancel_pending;
        match self.workers.get(&r.worker_id) {
            Some(w) if w.record.health != WorkerHealth::Dead => match &w.conn {
                Some(conn) => Confirmed::Send {
                    conn: conn.clone(),
                    cancel,
                    devices: r.devices.clone(),
                },
                None => Confirmed::WorkerGone,
            },
            _ => Confirmed::WorkerGone,
        }
    }

    /// Where to send a cancel for `task`: the stream and token of its confirmed
    /// reservation. The reservation remembers the cancel either way, so `confirm` (for a
    /// pending one) and [`Cluster::pending_cancels`] (after a reconnect) deliver it later.
    pub fn cancel_target(&mut self, task: TaskId) -> Option<(Conn, u64)> {
        let r = self.reservations.get_mut(&task)?;
        r.cancel_pending = true;
        let token = r.token?;
        let conn = self.workers.get(&r.worker_id)?.conn.clone()?;
        Some((conn, token))
    }

    /// Confirmed attempts on a worker whose cancel is pending.
    pub fn pending_cancels(&self, worker_id: &str) -> Vec<(TaskId, u64)> {
        let Some(w) = self.workers.get(worker_id) else {
            return Vec::new();
        };
        w.tasks
            .iter()
            .filter_map(|t| {
                let r = self.reservations.get(t)?;
                r.cancel_pending.then_some((*t, r.token?))
            })
            .collect()
    }

    /// Releases `task`'s reservation if it is held with `token` (`None`: still pending).
    /// Returns true when it was released by this call, so release happens exactly once.
    pub fn release(&mut self, task: TaskId, token: Option<u64>) -> bool {
        match self.reservations.get(&task) {
            Some(r) if r.token == token => {}
            _ => return false,
        }
        let r = self.reservations.remove(&task).expect("checked above");
        self.shares.remove(r.submitter.as_deref(), &r.resources);
        if let Some(w) = self.workers.get_mut(&r.worker_id) {
            w.reserved = w.reserved.saturating_sub(&r.resources);
            w.tasks.remove(&task);
            w.gpus.release(task, &r.devices);
        }
        true
    }

    /// What each submitter's live attempts hold.
    pub fn shares(&self) -> &Shares {
        &self.shares
    }

    /// The stream of a worker, if connected.
    pub fn conn(&self, worker_id: &str) -> Option<Conn> {
        self.workers.get(worker_id)?.conn.clone()
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
