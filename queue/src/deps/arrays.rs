//! An array's waiting elements, decided together ([`fill`]): the rule of dependencies
//! for each (cancelled when a parent can no longer do as needed), and the array's cap
//! (`%8`) for the release: an element leaves `waiting` only while fewer than the cap of
//! its array are queued, assigned or running. Elements go in index order (their ids rise
//! with it: they are made in one write, in order).
//!
//! Only the leader decides, one pass at a time, so the count and the releases after it
//! cannot race another release; a master that stopped leading is fenced off by the store.

use chrono::{DateTime, Utc};

use super::{verdict_of, write, Parents, Resolution};
use crate::error::Result;
use crate::model::{Task, TaskStatus};
use crate::query::TaskQuery;
use crate::store::QueueStore;

/// Waiting elements read per step.
const PAGE: usize = 256;

/// Elements of array `id` that hold a slot of its cap: queued (a retry's backoff too),
/// assigned or running; counted up to `cap`.
async fn active(store: &dyn QueueStore, id: &str, cap: u32) -> Result<u32> {
    let query = TaskQuery {
        statuses: vec![
            TaskStatus::Queued,
            TaskStatus::Assigned,
            TaskStatus::Running,
        ],
        array: Some(id.to_string()),
        limit: cap as usize,
        ..TaskQuery::default()
    };
    Ok(store.list(&query).await?.len() as u32)
}

/// Decides the waiting elements of array `id`: each whose parents can never do as needed
/// is cancelled, and those whose parents have are released while the cap allows (all,
/// without a cap). Every task changed.
pub async fn fill(store: &dyn QueueStore, id: &str, now: DateTime<Utc>) -> Result<Vec<Task>> {
    let mut changed = Vec::new();
    let mut parents = Parents::new();
    // Slots left under the cap, once counted.
    let mut free: Option<u32> = None;
    let mut cursor = None;
    loop {
        let query = TaskQuery {
            statuses: vec![TaskStatus::Waiting],
            array: Some(id.to_string()),
            oldest_first: true,
            limit: PAGE,
            before: cursor,
            ..TaskQuery::default()
        };
        let page = store.list(&query).await?;
        let Some(last) = page.last() else {
            return Ok(changed);
        };
        cursor = Some(last.id);
        let more = page.len() == PAGE;
        for w in page {
            let Some(res) = verdict_of(store, &w, &mut parents).await? else {
                continue;
            };
            let cap = w.spec.array.as_ref().map_or(0, |a| a.max_running);
            let releases = res == Resolution::Release && cap > 0;
            if releases {
                let left = match free {
                    Some(n) => n,
                    None => cap.saturating_sub(active(store, id, cap).await?),
                };
                free = Some(left);
                if left == 0 {
                    return Ok(changed);
                }
            }
            if let Some(t) = write(store, w.id, res, now).await? {
                if releases {
                    free = free.map(|n| n - 1);
                }
                changed.push(t);
            }
        }
        if !more {
            return Ok(changed);
        }
    }
}
