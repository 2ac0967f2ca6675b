//! The passes that fire schedules through any [`QueueStore`]: [`fire_due`] (the leader,
//! every second) and [`run_now`]; one fire is the run's idempotent enqueue, then the
//! history's compare-and-set (see the module above for why that is exactly once).

use chrono::{DateTime, Utc};

use super::{
    decide, due, record, run_key, run_spec, Decision, Fire, Schedule, When, MAX_MISSED_COUNT,
};
use crate::error::{QueueError, Result};
use crate::model::{NewTask, Task};
use crate::store::QueueStore;

/// What one fire did.
#[derive(Clone, Debug)]
pub struct Fired {
    /// The schedule.
    pub name: String,
    /// Its history entry.
    pub fire: Fire,
    /// The run enqueued (new, or the one an earlier try of the same fire made).
    pub task: Option<Task>,
}

/// Fires every schedule due at `now` (the leader's pass). A schedule another master
/// changed meanwhile is left to the next pass.
pub async fn fire_due(store: &dyn QueueStore, now: DateTime<Utc>) -> Result<Vec<Fired>> {
    let mut out = Vec::new();
    for s in store.list_schedules().await? {
        let Ok(when) = When::parse(&s.cron, &s.tz) else {
            continue;
        };
        let Some((tick, missed)) = due(&s, &when, now) else {
            continue;
        };
        let note = match missed {
            0 => String::new(),
            n if n >= MAX_MISSED_COUNT => {
                format!("started once for at least {n} missed ticks (no master fired them)")
            }
            n => format!("started once for {n} missed tick(s) (no master fired them)"),
        };
        if let Some(f) = fire(store, &s, &when, tick, note, true, now).await? {
            out.push(f);
        }
    }
    Ok(out)
}

/// Fires schedule `name` now, outside its pattern (`schedule run-now`); its next tick
/// stays as it was.
pub async fn run_now(store: &dyn QueueStore, name: &str, now: DateTime<Utc>) -> Result<Fired> {
    for _ in 0..5 {
        let s = store
            .get_schedule(name)
            .await?
            .ok_or_else(|| QueueError::NoSchedule(name.to_string()))?;
        let when = When::parse(&s.cron, &s.tz)?;
        if let Some(f) = fire(store, &s, &when, now, "run-now".into(), false, now).await? {
            return Ok(f);
        }
    }
    Err(QueueError::Backend {
        backend: store.backend_name(),
        message: format!("schedule {name} kept changing concurrently; try again"),
        retryable: true,
    })
}

/// One fire of `s` at `tick`; `None` when another master changed the schedule first.
async fn fire(
    store: &dyn QueueStore,
    s: &Schedule,
    when: &When,
    tick: DateTime<Utc>,
    note: String,
    advance: bool,
    now: DateTime<Utc>,
) -> Result<Option<Fired>> {
    let previous = match s.last_task {
        Some(id) => match store.get(id).await {
            Ok(t) => Some((id, t.status)),
            Err(QueueError::NotFound(_)) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let join = |a: String, b: String| match (a.is_empty(), b.is_empty()) {
        (true, _) => b,
        (_, true) => a,
        _ => format!("{a}; {b}"),
    };
    let (task, note) = match decide(s.overlap, previous) {
        Decision::Skip(why) => (None, join(note, why)),
        d => {
            let mut note = note;
            if let Decision::CancelThenStart(prev) = d {
                match store.request_cancel(prev, now).await {
                    Ok(_) | Err(QueueError::IllegalTransition { .. }) => {}
                    Err(e) => return Err(e),
                }
                note = join(note, format!("cancelled the previous run {prev}"));
            }
            let spec = run_spec(s, tick, run_key(&s.name, tick));
            let e = store
                .enqueue(NewTask {
                    spec,
                    submitted_by: s.created_by.clone(),
                })
                .await?;
            (Some(e.task), note)
        }
    };
    let entry = Fire {
        tick,
        at: now,
        task: task.as_ref().map(|t| t.id),
        note,
    };
    let next = record(s, when, entry.clone(), advance);
    if !store.replace_schedule(&next, s.version).await? {
        return Ok(None);
    }
    Ok(Some(Fired {
        name: s.name.clone(),
        fire: entry,
        task,
    }))
}
