//! A worker's stream as the master holds it: [`Conn`], the sending half, and
//! [`Outbound`], the messages it carries in domain terms (converted to the wire in
//! `wire`).

use cloudai_queue::{TaskId, TaskSpec};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Duration;

/// A message for a worker's stream, in domain terms; converted to the wire when sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Outbound {
    /// Answer to Register.
    Registered {
        /// The worker's id.
        worker_id: String,
        /// Interval the worker must heartbeat at.
        heartbeat_interval: Duration,
        /// How long the worker may run attempts past its last acknowledged heartbeat.
        lease: Duration,
        /// How long it then has to stop them before it may be declared dead.
        stop_within: Duration,
    },
    /// The heartbeat with this seq arrived (renews the worker's lease).
    HeartbeatAck {
        /// The heartbeat's seq.
        seq: u64,
    },
    /// Run this attempt.
    Assign {
        /// The task.
        task_id: TaskId,
        /// The attempt's fencing token.
        token: u64,
        /// 1-based attempt number.
        attempt: u32,
        /// What to run.
        spec: Box<TaskSpec>,
        /// The GPU devices (UUIDs) it is given.
        devices: Vec<String>,
    },
    /// Stop this attempt and report it cancelled.
    Cancel {
        /// The task.
        task_id: TaskId,
        /// The attempt's token.
        token: u64,
    },
    /// The attempt's events up to `seq` are stored (or were refused for good): forget them.
    Ack {
        /// The task.
        task_id: TaskId,
        /// The attempt's token.
        token: u64,
        /// Last event seq settled.
        seq: u64,
    },
    /// Stop these attempts: they are no longer yours.
    Revoke {
        /// `(task, token)` pairs.
        attempts: Vec<(TaskId, u64)>,
        /// Why.
        reason: String,
    },
}

/// The sending half of a worker's live stream.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Distinguishes successive streams of one worker.
    pub id: u64,
    /// Messages to the worker.
    pub tx: UnboundedSender<Outbound>,
}
