//! What each submitter's live reservations hold together: the running share that fair
//! share orders by and the usage a quota is checked against. Kept by the cluster with
//! every reservation taken and released, so a pass reads it without a scan.

use std::collections::HashMap;

use cloudai_queue::quota::Usage;
use cloudai_queue::Resources;

/// Usage per submitter; tasks without one are counted under `""` (no user has that name).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shares {
    by: HashMap<String, Usage>,
}

fn key(who: Option<&str>) -> &str {
    who.unwrap_or("")
}

impl Shares {
    /// One more live attempt of `who` reserving `r`.
    pub fn add(&mut self, who: Option<&str>, r: &Resources) {
        // The name is copied only for a submitter's first live attempt.
        match self.by.get_mut(key(who)) {
            Some(u) => *u = u.plus(r),
            None => {
                self.by
                    .insert(key(who).to_string(), Usage::default().plus(r));
            }
        }
    }

    /// One attempt of `who` reserving `r` ended; a submitter with none left is forgotten.
    pub fn remove(&mut self, who: Option<&str>, r: &Resources) {
        let k = key(who);
        if let Some(u) = self.by.get_mut(k) {
            *u = u.minus(r);
            if u.running == 0 {
                self.by.remove(k);
            }
        }
    }

    /// What `who`'s live attempts hold now.
    pub fn of(&self, who: Option<&str>) -> Usage {
        self.by.get(key(who)).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(m: u64) -> Resources {
        Resources {
            cpu_millis: m,
            memory_bytes: 1,
            ..Resources::default()
        }
    }

    #[test]
    fn adds_and_removes_per_submitter() {
        let mut s = Shares::default();
        s.add(Some("a"), &cpu(500));
        s.add(Some("a"), &cpu(250));
        s.add(None, &cpu(100));
        assert_eq!(s.of(Some("a")).running, 2);
        assert_eq!(s.of(Some("a")).reserved.cpu_millis, 750);
        assert_eq!(s.of(None).reserved.cpu_millis, 100);
        assert_eq!(s.of(Some("b")), Usage::default());
        s.remove(Some("a"), &cpu(500));
        s.remove(Some("a"), &cpu(250));
        s.remove(None, &cpu(100));
        assert_eq!(s, Shares::default(), "nothing left behind");
        // A release of what was never added changes nothing.
        s.remove(Some("b"), &cpu(1));
        assert_eq!(s, Shares::default());
    }
}
