//! What the runtime remembers across reconnects: the attempts it runs and the `Finished`
//! results the master has not acknowledged yet.

use std::collections::{BTreeMap, HashMap};

use cloudai_proto::pb;

use crate::attempt::Stopper;

/// An attempt: (task id, fencing token).
pub(crate) type AttemptKey = (String, u64);

/// A running attempt.
pub(crate) struct Running {
    pub(crate) stopper: Stopper,
    /// False once revoked or shut down: its end is not reported to the master.
    pub(crate) report: bool,
}

/// A finished attempt whose result is not yet durable at the master.
pub(crate) struct Unacked {
    pub(crate) event: pb::TaskEvent,
    /// The session (connection epoch) it was last sent on; 0 = never sent.
    pub(crate) sent_epoch: u64,
}

/// Shared between the session loop and the attempt tasks, behind one mutex that is never
/// held across an await.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) running: HashMap<AttemptKey, Running>,
    pub(crate) unacked: BTreeMap<AttemptKey, Unacked>,
}

impl State {
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

    /// True when this attempt is known (running or finished but unacked): a second
    /// `Assign` for it is a duplicate.
    pub(crate) fn knows(&self, key: &AttemptKey) -> bool {
        self.running.contains_key(key) || self.unacked.contains_key(key)
    }

    /// Marks the unacked result as sent on `epoch` and returns it, unless it already was
    /// (or was acked meanwhile).
    pub(crate) fn take_to_send(&mut self, key: &AttemptKey, epoch: u64) -> Option<pb::TaskEvent> {
        let u = self.unacked.get_mut(key)?;
        if u.sent_epoch == epoch {
            return None;
        }
        u.sent_epoch = epoch;
        Some(u.event.clone())
    }

    /// Every unacked result not yet sent on `epoch`, marked as sent: the re-send after a
    /// reconnect.
    pub(crate) fn all_to_send(&mut self, epoch: u64) -> Vec<pb::TaskEvent> {
        self.unacked
            .values_mut()
            .filter(|u| u.sent_epoch != epoch)
            .map(|u| {
                u.sent_epoch = epoch;
                u.event.clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::stop_signal;

    fn unacked(state: &mut State, task: &str) -> AttemptKey {
        let key = (task.to_string(), 1);
        state.unacked.insert(
            key.clone(),
            Unacked {
                event: pb::TaskEvent {
                    task_id: task.into(),
                    token: 1,
                    ..Default::default()
                },
                sent_epoch: 0,
            },
        );
        key
    }

    #[test]
    fn unacked_results_are_sent_once_per_connection() {
        let mut s = State::default();
        let a = unacked(&mut s, "a");
        assert!(s.take_to_send(&a, 1).is_some());
        assert!(
            s.take_to_send(&a, 1).is_none(),
            "already sent on this connection"
        );
        let b = unacked(&mut s, "b");
        assert_eq!(s.all_to_send(1).len(), 1, "only b is new on epoch 1");
        assert_eq!(s.all_to_send(2).len(), 2, "a reconnect re-sends both");
        s.unacked.remove(&b);
        assert!(
            s.take_to_send(&b, 3).is_none(),
            "acked results are forgotten"
        );
        assert!(s.knows(&a) && !s.knows(&b));
    }

    #[test]
    fn revoked_attempts_are_not_reported() {
        let mut s = State::default();
        for (task, report) in [("x", true), ("y", false)] {
            let (stopper, _) = stop_signal();
            s.running
                .insert((task.into(), 2), Running { stopper, report });
        }
        assert_eq!(s.reported_running(), vec![("x".to_string(), 2)]);
    }
}
