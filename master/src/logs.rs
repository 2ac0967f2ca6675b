//! Task output on the master: [`LogHub`] wakes `StreamLogs` followers when a task's log
//! or status changes (they then read from the store, so memory stays bounded). Output is
//! written by the worker's reports ([`crate::reports`]).

use std::collections::HashMap;
use std::sync::Mutex;

use cloudai_queue::TaskId;
use tokio::sync::watch;

/// Per-task change signals for followers. Holds an entry only while someone follows.
#[derive(Debug, Default)]
pub struct LogHub {
    tasks: Mutex<HashMap<TaskId, watch::Sender<u64>>>,
}

/// A follower's subscription; dropping it forgets the task once nobody follows.
pub struct Subscription<'a> {
    hub: &'a LogHub,
    task: TaskId,
    /// Changes whenever the task's log or status changes.
    pub rx: watch::Receiver<u64>,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        let mut tasks = self.hub.tasks.lock().expect("log hub lock");
        if let Some(tx) = tasks.get(&self.task) {
            // Our own receiver is still alive here.
            if tx.receiver_count() <= 1 {
                tasks.remove(&self.task);
            }
        }
    }
}

impl LogHub {
    /// Starts following `task`. Subscribe before reading, so no change is missed.
    pub fn subscribe(&self, task: TaskId) -> Subscription<'_> {
        let mut tasks = self.tasks.lock().expect("log hub lock");
        let rx = tasks
            .entry(task)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Subscription {
            hub: self,
            task,
            rx,
        }
    }

    /// Wakes the followers of `task`, if any.
    pub fn notify(&self, task: TaskId) {
        let tasks = self.tasks.lock().expect("log hub lock");
        if let Some(tx) = tasks.get(&task) {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Tasks followed right now (for tests and metrics).
    pub fn followed(&self) -> usize {
        self.tasks.lock().expect("log hub lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hub_wakes_followers_and_forgets_unfollowed_tasks() {
        let hub = LogHub::default();
        let t = TaskId::new();
        hub.notify(t); // nobody follows: no entry is created
        assert_eq!(hub.followed(), 0);
        let mut s1 = hub.subscribe(t);
        let s2 = hub.subscribe(t);
        assert_eq!(hub.followed(), 1);
        hub.notify(t);
        s1.rx.changed().await.unwrap();
        drop(s2);
        assert_eq!(hub.followed(), 1);
        drop(s1);
        assert_eq!(hub.followed(), 0);
    }
}
