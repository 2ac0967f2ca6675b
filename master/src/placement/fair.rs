//! The order in which a pass offers queued tasks to [`super::plan`] when several
//! submitters compete, and which tasks wait for their submitter's quota. Pure.
//!
//! The rule (PLACEMENT.md, "Fair share and quotas"): priority first, always. Among the
//! heads of equal priority, the submitter with the smallest *dominant share* goes next:
//! the largest of its CPU, memory and GPU holdings, each as a fraction of what the
//! schedulable workers offer (DRF, as Kueue and Armada use). Each task taken counts
//! toward its submitter's share as if placed, so equal submitters alternate. Equal shares
//! go to the older head. With fair share off, equal priorities go oldest first, whoever
//! enqueued them. A task that would take its submitter past a quota is left out (it
//! waits, reason `Quota`); smaller tasks of the same submitter behind it may still go.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use cloudai_queue::quota::{OverQuota, Quota, Usage};
use cloudai_queue::{Resources, TaskId};

/// One queued task as the ordering sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its id (ids rise with enqueue time: the older head wins a tie).
    pub id: TaskId,
    /// Higher goes first.
    pub priority: i32,
    /// What it reserves.
    pub request: Resources,
    /// Its submitter, as an index into the groups.
    pub group: usize,
}

/// One submitter: what its live attempts hold, and its quota.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// Its live attempts' reservations.
    pub used: Usage,
    /// Its limits (unlimited by default).
    pub quota: Quota,
}

/// What [`order`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ordered {
    /// Indices into the candidates, in the order to offer them to placement.
    pub order: Vec<usize>,
    /// Candidates left out, each with the quota limit it would pass.
    pub over_quota: Vec<(usize, OverQuota)>,
}

/// `usage`'s dominant share of `total`: its largest fraction over CPU, memory and GPUs
/// (a resource the cluster does not offer counts as no share).
pub fn dominant_share(usage: &Resources, total: &Resources) -> f64 {
    let frac = |used: u64, of: u64| {
        if of == 0 {
            0.0
        } else {
            used as f64 / of as f64
        }
    };
    frac(usage.cpu_millis, total.cpu_millis)
        .max(frac(usage.memory_bytes, total.memory_bytes))
        .max(frac(u64::from(usage.gpus), u64::from(total.gpus)))
}

/// A group's place in the heap: its head's priority, then (with fair share) its share,
/// then its head's age.
#[derive(Debug)]
struct Turn {
    priority: i32,
    share: f64,
    head: TaskId,
    group: usize,
}

impl PartialEq for Turn {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Turn {}
impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Turn {
    /// Greater goes first (the heap is a max-heap).
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.share.total_cmp(&self.share))
            .then_with(|| other.head.cmp(&self.head))
            .then_with(|| other.group.cmp(&self.group))
    }
}

/// Orders `candidates` (each group's own tasks in dispatch order, groups interleaved in
/// any way) by the rule above over the cluster's schedulable capacity `total`, and
/// leaves out what is over quota. `groups[c.group]` must exist for each candidate.
pub fn order(candidates: &[Candidate], groups: &[Group], total: &Resources, fair: bool) -> Ordered {
    let mut queues: Vec<VecDeque<usize>> = vec![VecDeque::new(); groups.len()];
    for (i, c) in candidates.iter().enumerate() {
        queues[c.group].push_back(i);
    }
    let mut used: Vec<Usage> = groups.iter().map(|g| g.used).collect();
    let turn = |g: usize, head: usize, used: &[Usage]| Turn {
        priority: candidates[head].priority,
        share: if fair {
            dominant_share(&used[g].reserved, total)
        } else {
            0.0
        },
        head: candidates[head].id,
        group: g,
    };
    let mut heap: BinaryHeap<Turn> = queues
        .iter()
        .enumerate()
        .filter_map(|(g, q)| q.front().map(|&h| turn(g, h, &used)))
        .collect();
    let mut out = Ordered {
        order: Vec::with_capacity(candidates.len()),
        over_quota: Vec::new(),
    };
    while let Some(Turn { group: g, .. }) = heap.pop() {
        let i = queues[g]
            .pop_front()
            .expect("a group in the heap has a head");
        let c = &candidates[i];
        match groups[g].quota.check(&used[g], &c.request) {
            Ok(()) => {
                out.order.push(i);
                used[g] = used[g].plus(&c.request);
            }
            Err(e) => out.over_quota.push((i, e)),
        }
        if let Some(&h) = queues[g].front() {
            heap.push(turn(g, h, &used));
        }
    }
    out
}

#[cfg(test)]
#[path = "fair_tests.rs"]
mod tests;
