//! The commands this store's client sends, counted by name through the driver's command
//! monitoring: what a task costs in round trips, whatever the server's speed. The master
//! shows them as `cloudai_store_commands_total`; the bench divides them by tasks drained.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;

/// Commands started, by command name (`find`, `update`, `commitTransaction` ...).
#[derive(Debug, Default)]
pub(crate) struct CommandCounts(Mutex<BTreeMap<String, u64>>);

impl CommandCounts {
    /// The handler to set as the client's `command_event_handler`: counts each start (a
    /// retried command counts again: it is another round trip).
    pub(crate) fn handler(self: &Arc<Self>) -> EventHandler<CommandEvent> {
        let counts = Arc::clone(self);
        EventHandler::callback(move |event| {
            if let CommandEvent::Started(started) = event {
                counts.add(&started.command_name);
            }
        })
    }

    fn add(&self, name: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                map.insert(name.to_string(), 1);
            }
        }
    }

    /// Every name seen and its count, in name order.
    pub(crate) fn snapshot(&self) -> Vec<(String, u64)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_name_in_name_order() {
        let c = CommandCounts::default();
        for name in ["update", "find", "update", "commitTransaction"] {
            c.add(name);
        }
        assert_eq!(
            c.snapshot(),
            vec![
                ("commitTransaction".to_string(), 1),
                ("find".to_string(), 1),
                ("update".to_string(), 2)
            ]
        );
    }
}
