//! What fair share and quotas read each dispatch pass, and the step that applies them
//! (the rule itself is [`placement::fair`], pure).
//!
//! - Who has queued work: the store's `queued_submitters`, cached for [`REFRESH`] so a
//!   pass on a busy queue costs no extra store read; a submitter this master enqueues
//!   for is added at once. With one submitter (or fair share off) a pass reads the queue
//!   in plain dispatch order; with several it reads each one's head, so a submitter with
//!   5,000 tasks ahead does not hide another's (with quotas it does so with fair share
//!   off too: a submitter held at its quota must not hide the others).
//! - Users' quotas: the store's user records, cached for [`REFRESH`]; a change made
//!   through this master is seen by its next pass, one made through another master
//!   within [`REFRESH`].

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cloudai_queue::quota::{OverQuota, Quota};
use cloudai_queue::{QueueError, QueuedTask, Resources, TaskId};

use crate::config::FairShare;
use crate::placement::fair::{self, Candidate, Group};
use crate::placement::WorkerSlot;
use crate::shared::Shared;

/// How long what the store said about submitters and quotas is reused.
pub const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Cached<T> {
    value: T,
    read_at: Option<Instant>,
}

impl<T> Cached<T> {
    fn fresh(&self) -> bool {
        self.read_at.is_some_and(|t| t.elapsed() < REFRESH)
    }
}

/// The cached reads.
#[derive(Debug, Default)]
pub struct Book {
    submitters: Mutex<Cached<BTreeSet<Option<String>>>>,
    quotas: Mutex<Cached<Arc<HashMap<String, Quota>>>>,
    /// A pass is due in [`REFRESH`] for tasks held by a quota.
    recheck_armed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Book {
    /// A task of `who` was enqueued through this master: it has queued work now.
    pub fn enqueued_by(&self, who: Option<&str>) {
        let mut s = lock(&self.submitters);
        if !s.value.contains(&who.map(str::to_string)) {
            s.value.insert(who.map(str::to_string));
        }
    }

    /// A user's quota changed through this master: read them again next pass.
    pub fn quotas_changed(&self) {
        lock(&self.quotas).read_at = None;
    }

    async fn submitters(&self, shared: &Shared) -> Result<BTreeSet<Option<String>>, QueueError> {
        if let Some(s) = Some(lock(&self.submitters)).filter(|s| s.fresh()) {
            return Ok(s.value.clone());
        }
        let read: BTreeSet<_> = shared
            .store
            .queued_submitters()
            .await?
            .into_iter()
            .collect();
        let mut s = lock(&self.submitters);
        s.value = read.clone();
        s.read_at = Some(Instant::now());
        Ok(read)
    }

    async fn quotas(&self, shared: &Shared) -> Arc<HashMap<String, Quota>> {
        if let Some(q) = Some(lock(&self.quotas)).filter(|q| q.fresh()) {
            return q.value.clone();
        }
        let read = match shared.store.list_users().await {
            Ok(users) => Arc::new(
                users
                    .into_iter()
                    .filter_map(|u| u.quota.and_then(Quota::limited).map(|q| (u.name, q)))
                    .collect(),
            ),
            Err(e) => {
                // Keep applying the quotas last read rather than none.
                tracing::warn!(error = %e, "could not read users' quotas");
                return lock(&self.quotas).value.clone();
            }
        };
        let mut q = lock(&self.quotas);
        q.value = Arc::clone(&read);
        q.read_at = Some(Instant::now());
        read
    }
}

/// Tasks wait for a quota: wake the dispatcher once the cached quotas are due for a
/// refresh, so a quota raised or removed through another master (or straight in the
/// store) lets them start within about [`REFRESH`]. One timer at a time.
pub fn recheck_later(shared: &Arc<Shared>) {
    if shared.fair.recheck_armed.swap(true, Ordering::AcqRel) {
        return;
    }
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = shared.until_shutdown() => return,
        }
        shared.fair.recheck_armed.store(false, Ordering::Release);
        shared.wake_dispatcher();
    });
}

/// Users' quotas by name (only those that set a limit).
pub type Quotas = Arc<HashMap<String, Quota>>;

/// One step's read of the queue.
pub struct Read {
    /// At most `limit` eligible tasks, shared out evenly between submitters (with fair
    /// share and several of them).
    pub tasks: Vec<QueuedTask>,
    /// That was every eligible task.
    pub saw_all: bool,
    /// The quotas the step applies ([`arrange`]).
    pub quotas: Quotas,
}

/// Reads one step's tasks, and the quotas to apply to them.
pub async fn read(shared: &Shared, now: DateTime<Utc>, limit: usize) -> Result<Read, QueueError> {
    let quotas = shared.fair.quotas(shared).await;
    // Several submitters are read one by one with fair share on, and with quotas either
    // way: else one submitter's tasks held at its quota could hide everyone else's.
    if shared.config.fair_share == FairShare::Drf || !quotas.is_empty() {
        let who = shared.fair.submitters(shared).await?;
        if who.len() > 1 {
            // The step's read size shared out, so a pass reads no more than with one
            // submitter (a share that comes back full grows the next step's).
            let each = limit.div_ceil(who.len());
            let mut tasks = Vec::new();
            let mut saw_all = true;
            for s in &who {
                let mine = shared.store.queued_asks_of(now, s.as_deref(), each).await?;
                saw_all &= mine.len() < each;
                tasks.extend(mine);
            }
            return Ok(Read {
                tasks,
                saw_all,
                quotas,
            });
        }
    }
    let tasks = shared.store.queued_asks(now, limit).await?;
    Ok(Read {
        saw_all: tasks.len() < limit,
        tasks,
        quotas,
    })
}

/// `tasks` (as [`read`] gave them, less those already reserved) in the order to offer
/// them to placement, and the ones left out for their submitter's quota.
pub fn arrange(
    shared: &Shared,
    quotas: &Quotas,
    tasks: Vec<QueuedTask>,
    slots: &[WorkerSlot],
) -> (Vec<QueuedTask>, Vec<(TaskId, OverQuota)>) {
    let first = tasks.first().map(|t| t.submitter.as_deref());
    if quotas.is_empty() && tasks.iter().all(|t| Some(t.submitter.as_deref()) == first) {
        // One submitter, no quota: the read's order is already the rule's.
        return (tasks, Vec::new());
    }
    let mut index: HashMap<Option<&str>, usize> = HashMap::new();
    for t in &tasks {
        let n = index.len();
        index.entry(t.submitter.as_deref()).or_insert(n);
    }
    let mut groups = vec![Group::default(); index.len()];
    {
        let c = shared.cluster();
        for (who, &g) in &index {
            groups[g] = Group {
                used: c.shares().of(*who),
                quota: who.and_then(|w| quotas.get(w)).copied().unwrap_or_default(),
            };
        }
    }
    let candidates: Vec<Candidate> = tasks
        .iter()
        .map(|t| Candidate {
            id: t.id,
            priority: t.priority,
            request: t.reservation(),
            group: index[&t.submitter.as_deref()],
        })
        .collect();
    let total = slots
        .iter()
        .filter(|s| s.schedulable)
        .fold(Resources::default(), |sum, s| {
            sum.saturating_add(&s.capacity)
        });
    let fair = shared.config.fair_share == FairShare::Drf;
    let ordered = fair::order(&candidates, &groups, &total, fair);
    let over = ordered
        .over_quota
        .iter()
        .map(|(i, e)| (tasks[*i].id, *e))
        .collect();
    let mut slots: Vec<Option<QueuedTask>> = tasks.into_iter().map(Some).collect();
    let arranged = ordered
        .order
        .iter()
        .filter_map(|&i| slots[i].take())
        .collect();
    (arranged, over)
}
