//! What the runtime remembers across reconnects: the attempts it runs, the journal of
//! their unacknowledged events, and the lease the master granted.

use std::collections::HashMap;

use super::journal::{Journal, Limits};
use super::lease::Lease;
use crate::attempt::Stopper;

/// An attempt: (task id, fencing token).
pub(crate) type AttemptKey = (String, u64);

/// A running attempt.
pub(crate) struct Running {
    pub(crate) stopper: Stopper,
    /// False once revoked, shut down or past the lease: its end is not reported.
    pub(crate) report: bool,
    /// The GPU devices (UUIDs) the master gave it, reported with it.
    pub(crate) devices: Vec<String>,
}

/// Shared between the session loop, the attempt tasks and the lease watchdog, behind one
/// mutex that is never held across an await.
pub(crate) struct State {
    pub(crate) running: HashMap<AttemptKey, Running>,
    pub(crate) journal: Journal,
    pub(crate) lease: Lease,
    /// The worker is shutting down: nothing more is recorded.
    pub(crate) closing: bool,
}

impl State {
    /// Empty state with a journal under these limits.
    pub(crate) fn new(limits: Limits) -> Self {
        State {
            running: HashMap::new(),
            journal: Journal::new(limits),
            lease: Lease::default(),
            closing: false,
        }
    }

    /// Attempts to report as running (in Register and Heartbeat).
    pub(crate) fn reported_running(&self) -> Vec<AttemptKey> {
        let mut keys: Vec<AttemptKey> = self
            .running
            .iter()
            .filter(|(_, r)| r.report)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// The running attempts as Register and Heartbeat report them: each with the
    /// devices it holds.
    pub(crate) fn running_refs(&self) -> Vec<cloudai_proto::pb::AttemptRef> {
        self.reported_running()
            .iter()
            .map(|k| cloudai_proto::pb::AttemptRef {
                devices: self.running[k].devices.clone(),
                ..super::wire::attempt_ref(k)
            })
            .collect()
    }

    /// True when this attempt is known (running, or with events not yet acknowledged): a
    /// second `Assign` for it is a duplicate.
    pub(crate) fn knows(&self, key: &AttemptKey) -> bool {
        self.running.contains_key(key) || self.journal.knows(key)
    }

    /// Stops every attempt without reporting its end, within `limit` when given; returns
    /// how many were still reported. Their events so far stay in the journal.
    pub(crate) fn stop_unreported(
        &mut self,
        why: &str,
        limit: Option<std::time::Duration>,
    ) -> usize {
        let mut n = 0;
        for (key, running) in self.running.iter_mut() {
            if running.report {
                n += 1;
                tracing::warn!(task_id = %key.0, token = key.1, reason = why, "stopping attempt");
            }
            running.report = false;
            match limit {
                Some(d) => running.stopper.stop_within(d),
                None => running.stopper.stop(),
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::stop_signal;

    #[test]
    fn revoked_attempts_are_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::new(Limits {
            memory: 1 << 20,
            spill: 1 << 20,
            window: 1 << 20,
            dir: dir.path().to_path_buf(),
        });
        let mut signals = Vec::new();
        for (task, report) in [("x", true), ("y", false)] {
            let (stopper, signal) = stop_signal();
            signals.push(signal);
            s.running.insert(
                (task.into(), 2),
                Running {
                    stopper,
                    report,
                    devices: vec![format!("GPU-{task}")],
                },
            );
        }
        assert_eq!(s.reported_running(), vec![("x".to_string(), 2)]);
        let refs = s.running_refs();
        assert_eq!(refs.len(), 1);
        assert_eq!(
            (refs[0].task_id.as_str(), refs[0].devices.as_slice()),
            ("x", ["GPU-x".to_string()].as_slice()),
            "a running attempt is reported with its devices"
        );
        assert_eq!(s.stop_unreported("test", None), 1);
        assert!(s.reported_running().is_empty());
        assert!(signals.iter().all(|sig| sig.is_stopped()));
    }
}
