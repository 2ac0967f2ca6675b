//! The worker's lease on its attempts (PROTOCOL.md, "The lease").
//!
//! The master grants a lease at registration (`Registered.lease_ms`) and renews it with
//! every heartbeat it acknowledges. The worker measures from when it *sent* the last
//! acknowledged heartbeat (the master saw the worker alive no earlier than that), on its
//! own monotonic clock, so a cut link, a master that stopped answering, or a worker frozen
//! for a while all end the lease at the same safe moment: `lease` after that send. Then the
//! worker stops its containers, each within `stop_within`, which the master leaves it before
//! it may declare the worker dead and run the attempts elsewhere. So two copies of an
//! attempt never run at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::lock;
use super::state::State;

/// Heartbeats remembered while their acknowledgement is awaited.
const MAX_PENDING: usize = 64;

/// What the master granted, and until when it holds.
#[derive(Debug, Default)]
pub(crate) struct Lease {
    /// Length of the lease from an acknowledged send; `None`: the master grants none.
    term: Option<Duration>,
    /// Time allowed to stop containers once the lease ends.
    stop_within: Duration,
    /// The lease holds until then.
    until: Option<Instant>,
    /// Heartbeats sent on this stream and not yet acknowledged: (seq, sent at).
    pending: VecDeque<(u64, Instant)>,
}

impl Lease {
    /// A registration sent at `sent` was answered with this grant (0 ms: no lease).
    pub(crate) fn granted(&mut self, sent: Instant, term_ms: u32, stop_within_ms: u32) {
        self.pending.clear();
        if term_ms == 0 {
            self.term = None;
            self.until = None;
            return;
        }
        let term = Duration::from_millis(u64::from(term_ms));
        self.term = Some(term);
        self.stop_within = Duration::from_millis(u64::from(stop_within_ms));
        self.extend(sent + term);
    }

    /// Heartbeat `seq` left at `at`.
    pub(crate) fn sent(&mut self, seq: u64, at: Instant) {
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back((seq, at));
    }

    /// The master acknowledged heartbeat `seq`: the lease runs from when it was sent.
    pub(crate) fn acked(&mut self, seq: u64) {
        let Some(term) = self.term else { return };
        while let Some(&(s, at)) = self.pending.front() {
            if s > seq {
                break;
            }
            self.pending.pop_front();
            if s == seq {
                self.extend(at + term);
            }
        }
    }

    fn extend(&mut self, to: Instant) {
        self.until = Some(self.until.map_or(to, |u| u.max(to)));
    }

    /// True when heartbeat `seq` was sent and is still unacknowledged (only tracked
    /// while the master grants a lease).
    pub(crate) fn unacked_before(&self, seq: u64) -> bool {
        self.term.is_some() && self.pending.iter().any(|&(s, _)| s <= seq)
    }

    /// When the lease ends, if one is held.
    pub(crate) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// How long containers may take to stop once it ended.
    pub(crate) fn stop_within(&self) -> Duration {
        self.stop_within
    }

    /// True when a lease was granted and has ended by `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now >= u)
    }
}

/// Stops every running attempt when the lease ends, each within half the time the master
/// leaves for it (the rest is slack for the daemon), then wakes `ended` so that the
/// session registers again (and the master learns at once that they are gone);
/// `changed` wakes it when the lease is granted or renewed. Runs until aborted.
pub(crate) async fn watchdog(state: Arc<Mutex<State>>, changed: Arc<Notify>, ended: Arc<Notify>) {
    loop {
        let Some(until) = lock(&state).lease.until() else {
            changed.notified().await;
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = changed.notified() => continue,
        }
        {
            let mut s = lock(&state);
            if !s.lease.expired(Instant::now()) {
                continue;
            }
            let within = s.lease.stop_within() / 2;
            let n = s.stop_unreported(
                "the master's lease ended (no heartbeat acknowledged in time)",
                Some(within),
            );
            if n > 0 {
                tracing::warn!(
                    attempts = n,
                    stop_within_ms = within.as_millis() as u64,
                    "lease ended: stopped every attempt, the master may run them elsewhere"
                );
            }
        }
        ended.notify_one();
        // Nothing more to do until a new lease is granted.
        changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_runs_from_the_send_of_the_last_acknowledged_heartbeat() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = Lease::default();
        assert_eq!(l.until(), None, "no lease before registering");
        l.granted(t0, 10_000, 5_000);
        assert_eq!(l.until(), Some(t0 + 10 * s));
        assert_eq!(l.stop_within(), 5 * s);
        l.sent(1, t0 + 5 * s);
        l.sent(2, t0 + 10 * s);
        assert!(l.expired(t0 + 10 * s), "sending is not enough");
        // The ack of heartbeat 1 arrives late: the lease counts from its send, not now.
        l.acked(1);
        assert_eq!(l.until(), Some(t0 + 15 * s));
        l.acked(2);
        assert_eq!(l.until(), Some(t0 + 20 * s));
        // A stale or repeated ack never shortens it.
        l.acked(1);
        assert_eq!(l.until(), Some(t0 + 20 * s));
        assert!(!l.expired(t0 + 19 * s) && l.expired(t0 + 20 * s));
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_stops_attempts_when_the_lease_ends_not_before() {
        use crate::attempt::stop_signal;
        use crate::runtime::journal::Limits;
        use crate::runtime::state::Running;
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(Mutex::new(State::new(Limits {
            memory: 1 << 20,
            spill: 1 << 20,
            window: 1 << 20,
            dir: dir.path().to_path_buf(),
        })));
        let (stopper, signal) = stop_signal();
        let t0 = Instant::now();
        {
            let mut s = lock(&state);
            s.running.insert(
                ("t".into(), 1),
                Running {
                    stopper,
                    report: true,
                    devices: Vec::new(),
                },
            );
            s.lease.granted(t0, 1_000, 500);
        }
        let (changed, ended) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let dog = tokio::spawn(watchdog(state.clone(), changed.clone(), ended.clone()));
        // Renewed at 0.8 s from a heartbeat sent at 0.6 s: it now holds until 1.6 s.
        tokio::time::sleep(Duration::from_millis(800)).await;
        lock(&state).lease.sent(1, t0 + Duration::from_millis(600));
        lock(&state).lease.acked(1);
        changed.notify_one();
        tokio::time::sleep(Duration::from_millis(750)).await;
        assert!(!signal.is_stopped(), "stopped before the lease ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(signal.is_stopped(), "still running after the lease ended");
        assert_eq!(
            signal.grace(Duration::from_secs(10)),
            Duration::from_millis(250)
        );
        assert!(
            lock(&state).reported_running().is_empty(),
            "stopped unreported"
        );
        tokio::time::timeout(Duration::from_secs(1), ended.notified())
            .await
            .expect("the session is told to register again");
        dog.abort();
    }

    #[test]
    fn a_master_without_leases_grants_none() {
        let mut l = Lease::default();
        l.granted(Instant::now(), 0, 0);
        l.sent(1, Instant::now());
        l.acked(1);
        assert_eq!(l.until(), None);
        assert!(!l.expired(Instant::now() + Duration::from_secs(3600)));
    }
}
