//! Whether a task could ever run: some registered worker meets its constraints and its
//! capacity (not its free capacity: what runs now ends) holds the request, health and
//! cordons aside. Used at enqueue (a warning, or a refusal with `--strict`) and for the
//! `NoWorkerFits` wait reason. Pure.

use std::collections::BTreeMap;

use cloudai_queue::Resources;

use super::{shortfall, TaskAsk, WorkerSlot};

/// What feasibility reads of a registered worker, borrowed: its id, capacity and
/// attributes (not its free room, health or cordon).
#[derive(Clone, Copy, Debug)]
pub struct Registered<'a> {
    /// Worker id.
    pub id: &'a str,
    /// Everything it offers.
    pub capacity: Resources,
    /// Its labels and built-in attributes.
    pub attributes: &'a BTreeMap<String, String>,
}

impl WorkerSlot {
    /// This slot as feasibility reads it.
    pub fn registered(&self) -> Registered<'_> {
        Registered {
            id: &self.id,
            capacity: self.capacity,
            attributes: &self.attributes,
        }
    }
}

/// The registered worker closest to taking a task none can, and what it lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lack {
    /// The worker (the pinned one, for a pinned task).
    pub worker: String,
    /// Each thing it lacks, for people: `cpu_millis 8000 requested, 4000 available`,
    /// `zone=b (it has zone=a)`, `is not registered`.
    pub missing: Vec<String>,
}

impl std::fmt::Display for Lack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "closest worker {} lacks {}",
            self.worker,
            self.missing.join("; ")
        )
    }
}

/// What `worker` lacks to ever take `task` (empty: nothing).
fn lacks(worker: &Registered<'_>, task: &TaskAsk<'_>) -> Vec<String> {
    let mut missing: Vec<String> = task
        .constraints
        .iter()
        .filter(|c| !c.matches(worker.attributes))
        .map(|c| match worker.attributes.get(&c.key) {
            Some(v) => format!("{c} (it has {}={v})", c.key),
            None => format!("{c} (it has no {})", c.key),
        })
        .collect();
    let mut left = worker.capacity;
    while let Some(s) = shortfall(&task.request, &left) {
        missing.push(s.to_string());
        // Look at the next dimension too: every shortage is named, not only the first.
        match s.resource {
            "cpu_millis" => left.cpu_millis = u64::MAX,
            "memory_bytes" => left.memory_bytes = u64::MAX,
            "gpus" => left.gpus = u32::MAX,
            _ => left.disk_bytes = u64::MAX,
        }
    }
    missing
}

/// `Ok` when some registered worker could ever take `task`, and also when no worker is
/// registered at all (nothing to judge by: a cluster starting up). Otherwise the closest
/// worker: the one lacking fewest things, ties to the lowest id; for a pinned task, the
/// pinned worker (or that it is not registered). One pass, nothing copied.
pub fn feasible<'a>(
    workers: impl IntoIterator<Item = Registered<'a>>,
    task: &TaskAsk<'_>,
) -> Result<(), Lack> {
    let mut any = false;
    let mut closest: Option<Lack> = None;
    for w in workers {
        any = true;
        if task.pinned.is_some_and(|pin| pin != w.id) {
            continue;
        }
        let missing = lacks(&w, task);
        if missing.is_empty() {
            return Ok(());
        }
        let closer = match &closest {
            None => true,
            Some(c) => (missing.len(), w.id) < (c.missing.len(), c.worker.as_str()),
        };
        if closer {
            closest = Some(Lack {
                worker: w.id.to_string(),
                missing,
            });
        }
    }
    match (any, task.pinned, closest) {
        (false, _, _) => Ok(()),
        (true, _, Some(lack)) => Err(lack),
        (true, Some(pin), None) => Err(Lack {
            worker: pin.to_string(),
            missing: vec!["is not registered".into()],
        }),
        (true, None, None) => Ok(()),
    }
}
