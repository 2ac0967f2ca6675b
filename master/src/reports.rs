//! Applying a worker's reports (PROTOCOL.md, "Ordered reports"): the stream's reader hands
//! each group of events to this stream's applier, which stores each attempt's events in
//! order, one write per attempt per group (start, output and end together), different
//! attempts concurrently, and acknowledges each write. A failing write is retried until
//! stored ([`crate::ledger::report`]), so the reader never waits on the store: heartbeats
//! keep flowing (and leases renewed) while the store is down.
//!
//! A start that is the last event of its attempt in a group is held back for a moment
//! ([`HOLD_START`]): when the attempt's end comes in the next group, as it does for a short
//! task, start and end are stored in one write. Holding is lossless: nothing is
//! acknowledged before it is stored, and the worker sends unacknowledged events again
//! after a reconnect.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cloudai_queue::{ReportBody, ReportEvent, TaskId};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ledger::{self, Settled};
use crate::shared::Shared;

/// Longest a lone start is held back waiting for its attempt's end.
pub const HOLD_START: std::time::Duration = std::time::Duration::from_millis(5);

/// Bytes of reports one stream may have waiting for the store before the master ends the
/// stream: far above what a worker sends unacknowledged (its window), so only a worker
/// that ignores the window meets it.
pub const MAX_PENDING_BYTES: usize = 64 << 20;

/// One report event of one attempt, as the reader hands it over.
pub type Incoming = (TaskId, u64, ReportEvent);

/// Events of one attempt, in order.
type Key = (TaskId, u64);

/// Attempts with events to apply, in the order they first appeared.
#[derive(Default)]
struct Chains {
    order: Vec<Key>,
    events: HashMap<Key, Vec<ReportEvent>>,
}

impl Chains {
    fn push(&mut self, key: Key, e: ReportEvent) {
        self.events
            .entry(key)
            .or_insert_with(|| {
                self.order.push(key);
                Vec::new()
            })
            .push(e);
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The applier of one worker stream: runs until the reader drops its sender and every
/// report received is settled. `pending` counts the bytes waiting, shared with the reader.
pub async fn apply(
    shared: Arc<Shared>,
    worker_id: String,
    conn_id: u64,
    mut rx: mpsc::UnboundedReceiver<Vec<Incoming>>,
    pending: Arc<AtomicUsize>,
) {
    let mut held = Chains::default();
    let mut held_until: Option<Instant> = None;
    let mut open = true;
    while open || !held.is_empty() {
        let first = match (open, held_until) {
            (true, Some(until)) => tokio::select! {
                b = rx.recv() => b,
                _ = tokio::time::sleep_until(until) => Some(Vec::new()),
            },
            (true, None) => rx.recv().await,
            (false, _) => None,
        };
        let mut chains = std::mem::take(&mut held);
        let was_held: Vec<Key> = chains.order.clone();
        held_until = None;
        let mut batches = Vec::new();
        match first {
            Some(b) => batches.push(b),
            None => open = false,
        }
        while let Ok(b) = rx.try_recv() {
            batches.push(b);
        }
        for (task, token, e) in batches.into_iter().flatten() {
            pending.fetch_sub(e.weight(), Ordering::Relaxed);
            chains.push((task, token), e);
        }
        // Hold a lone trailing start once, while the stream is open.
        let mut apply_now = Chains::default();
        for key in chains.order {
            let events = chains
                .events
                .remove(&key)
                .expect("ordered keys have events");
            let lone_start = matches!(
                events.last().map(|e| &e.body),
                Some(ReportBody::Started { .. })
            );
            if open && lone_start && !was_held.contains(&key) {
                for e in events {
                    held.push(key, e);
                }
            } else {
                for e in events {
                    apply_now.push(key, e);
                }
            }
        }
        if !held.is_empty() {
            held_until = Some(Instant::now() + HOLD_START);
        }
        let writes = apply_now.order.into_iter().map(|key| {
            let events = apply_now.events.remove(&key).unwrap_or_default();
            let (shared, worker_id) = (&shared, worker_id.as_str());
            async move {
                match ledger::report(shared, worker_id, key.0, key.1, events).await {
                    Settled::Ack(seq) => ledger::ack(shared, worker_id, key.0, key.1, seq),
                    Settled::Gap => {
                        // Ending the stream makes the worker reconnect and send again from
                        // what was acknowledged.
                        shared.cluster().disconnect(worker_id, conn_id);
                    }
                    Settled::Unsettled => {}
                }
            }
        });
        futures::future::join_all(writes).await;
    }
}
