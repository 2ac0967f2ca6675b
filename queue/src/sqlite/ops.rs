//! Write operations on tasks and workers. Each runs on the writer's connection inside
//! its own savepoint: returning `Err` rolls back everything it wrote.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::body::decode_task;
use super::logs;
use super::schema::{count_new, encode, insert_task, int, load_task, ts, update_task};
use crate::error::{QueueError, Result};
use crate::lifecycle;
use crate::model::{
    ClaimRequest, Enqueued, NewTask, Task, TaskId, TaskStatus, WorkerHealth, WorkerRecord,
};
use crate::report::{Applied, LostCause, ReportEvent};
use crate::validate::{validate_spec, validate_worker_id};

/// Enqueues one task, honouring its idempotency key and the queue cap.
pub(crate) fn enqueue(
    conn: &Connection,
    new: NewTask,
    now: DateTime<Utc>,
    max_queued: Option<u64>,
) -> Result<Enqueued> {
    let e = enqueue_uncounted(conn, new, now, max_queued, 0)?;
    if e.created {
        count_new(conn, e.task.status, 1)?;
    }
    Ok(e)
}

/// [`enqueue`] without counting the new row in `task_counts`; `pending` tasks the caller
/// has made `queued` but not counted yet count against the cap.
fn enqueue_uncounted(
    conn: &Connection,
    new: NewTask,
    now: DateTime<Utc>,
    max_queued: Option<u64>,
    pending: u64,
) -> Result<Enqueued> {
    validate_spec(&new.spec)?;
    if let Some(key) = &new.spec.idempotency_key {
        let existing: Option<(String, Option<String>)> = conn
            .prepare_cached("SELECT body, placement FROM tasks WHERE idempotency_key = ?1")?
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((body, placement)) = existing {
            let task = decode_task(&body, placement.as_deref())?;
            if task.spec != new.spec {
                return Err(QueueError::IdempotencyConflict {
                    key: key.clone(),
                    existing: task.id,
                });
            }
            return Ok(Enqueued {
                task,
                created: false,
            });
        }
    }
    if let Some(max) = max_queued {
        // Counted in this write's own transaction on the one writer: atomic with the
        // insert. `task_counts` is kept with every row write, so this is one row read.
        let queued = queued_count(conn)? + pending;
        if queued >= max {
            return Err(QueueError::QueueFull { queued, max });
        }
    }
    let task = lifecycle::new_task(new, now);
    insert_task(conn, &task)?;
    Ok(Enqueued {
        task,
        created: true,
    })
}

/// Enqueues each task in turn; the caller's savepoint makes the batch all-or-nothing
/// (a batch that would pass the cap is refused whole, with the count before it). The new
/// rows are counted once per status at the end.
pub(crate) fn enqueue_batch(
    conn: &Connection,
    tasks: Vec<NewTask>,
    now: DateTime<Utc>,
    max_queued: Option<u64>,
) -> Result<Vec<Enqueued>> {
    let mut out = Vec::with_capacity(tasks.len());
    enqueue_each(conn, tasks, now, max_queued, |e| out.push(e))?;
    Ok(out)
}

/// [`enqueue_batch`] of tasks made as they are written, each handed to `each` once
/// stored: an array's 100,000 elements are never all held at once.
pub(crate) fn enqueue_each(
    conn: &Connection,
    tasks: impl IntoIterator<Item = NewTask>,
    now: DateTime<Utc>,
    max_queued: Option<u64>,
    mut each: impl FnMut(Enqueued),
) -> Result<()> {
    let before = max_queued.map(|_| queued_count(conn)).transpose()?;
    let mut made: BTreeMap<TaskStatus, u64> = BTreeMap::new();
    for t in tasks {
        let pending = made.get(&TaskStatus::Queued).copied().unwrap_or(0);
        let e = enqueue_uncounted(conn, t, now, max_queued, pending).map_err(|e| {
            match (e, before) {
                (QueueError::QueueFull { max, .. }, Some(queued)) => {
                    QueueError::QueueFull { queued, max }
                }
                (e, _) => e,
            }
        })?;
        if e.created {
            *made.entry(e.task.status).or_default() += 1;
        }
        each(e);
    }
    for (status, n) in made {
        count_new(conn, status, int(n))?;
    }
    Ok(())
}

/// Tasks in `queued` now, from the counts kept with every row write.
pub(crate) fn queued_count(conn: &Connection) -> Result<u64> {
    let n: Option<i64> = conn
        .prepare_cached("SELECT n FROM task_counts WHERE status = 'queued'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

/// Loads a task, applies `change`, and writes it back when the change is accepted.
pub(crate) fn modify(
    conn: &Connection,
    id: TaskId,
    change: impl FnOnce(&mut Task) -> Result<()>,
) -> Result<Task> {
    let mut task = load_task(conn, id)?;
    let was = task.status;
    change(&mut task)?;
    update_task(conn, was, &task)?;
    Ok(task)
}

/// Assigns a specific queued task.
pub(crate) fn assign(
    conn: &Connection,
    id: TaskId,
    worker_id: &str,
    now: DateTime<Utc>,
) -> Result<Task> {
    modify(conn, id, |t| lifecycle::assign(t, worker_id, now))
}

/// Takes the first eligible queued task in dispatch order, if any.
pub(crate) fn claim(conn: &Connection, req: &ClaimRequest) -> Result<Option<Task>> {
    validate_worker_id(&req.worker_id)?;
    let f = &req.free;
    // Walks tasks_dispatch in order and stops at the first row that fits.
    let row: Option<(String, Option<String>)> = conn
        .prepare_cached(
            "SELECT body, placement FROM tasks
             WHERE status = 'queued' AND not_before <= ?1
               AND (pinned_worker IS NULL OR pinned_worker = ?2)
               AND cpu_millis <= ?3 AND memory_bytes <= ?4 AND gpus <= ?5 AND disk_bytes <= ?6
             ORDER BY priority DESC, id
             LIMIT 1",
        )?
        .query_row(
            params![
                ts(req.now),
                req.worker_id,
                int(f.cpu_millis),
                int(f.memory_bytes),
                f.gpus,
                int(f.disk_bytes),
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((body, placement)) = row else {
        return Ok(None);
    };
    let mut task = decode_task(&body, placement.as_deref())?;
    let was = task.status;
    lifecycle::assign(&mut task, &req.worker_id, req.now)?;
    update_task(conn, was, &task)?;
    Ok(Some(task))
}

/// A worker's report: the task change and its output, in the caller's savepoint.
pub(crate) fn report(
    conn: &Connection,
    id: TaskId,
    token: u64,
    worker_id: &str,
    events: &[ReportEvent],
    now: DateTime<Utc>,
    max_log_bytes: u64,
) -> Result<Applied> {
    let mut task = load_task(conn, id)?;
    let was = task.status;
    let plan = lifecycle::apply_report(&mut task, token, worker_id, events, now)?;
    if plan.changed {
        update_task(conn, was, &task)?;
        logs::append(conn, id, plan.attempt, &plan.chunks, max_log_bytes)?;
    }
    Ok(Applied {
        task,
        through: plan.through,
        changed: plan.changed,
        late: plan.late,
    })
}

/// The master's `lost` verdict.
pub(crate) fn lose(
    conn: &Connection,
    id: TaskId,
    token: u64,
    cause: &LostCause,
    now: DateTime<Utc>,
) -> Result<Task> {
    modify(conn, id, |t| lifecycle::lose(t, token, cause, now))
}

/// A user's cancel.
pub(crate) fn settle_waiting(
    conn: &Connection,
    id: TaskId,
    res: &crate::deps::Resolution,
    now: DateTime<Utc>,
) -> Result<Task> {
    modify(conn, id, |t| lifecycle::settle_waiting(t, res, now))
}

pub(crate) fn request_cancel(conn: &Connection, id: TaskId, now: DateTime<Utc>) -> Result<Task> {
    modify(conn, id, |t| lifecycle::request_cancel(t, now))
}

/// Inserts or replaces a worker record.
pub(crate) fn upsert_worker(conn: &Connection, worker: &WorkerRecord) -> Result<()> {
    validate_worker_id(&worker.id)?;
    conn.prepare_cached(
        "INSERT INTO workers (id, body) VALUES (?1, ?2)
         ON CONFLICT (id) DO UPDATE SET body = excluded.body",
    )?
    .execute(params![worker.id, encode(worker)?])?;
    Ok(())
}

/// Updates a known worker's health and heartbeat time.
pub(crate) fn set_worker_health(
    conn: &Connection,
    id: &str,
    health: WorkerHealth,
    last_heartbeat: Option<DateTime<Utc>>,
) -> Result<()> {
    let Some(mut worker) = super::queries::get_worker(conn, id)? else {
        return Err(QueueError::UnknownWorker(id.to_string()));
    };
    worker.health = health;
    if let Some(t) = last_heartbeat {
        worker.last_heartbeat = t;
    }
    conn.prepare_cached("UPDATE workers SET body = ?2 WHERE id = ?1")?
        .execute(params![id, encode(&worker)?])?;
    Ok(())
}
