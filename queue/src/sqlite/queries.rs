//! Read operations. They run on the reader pool (and a few on the writer, for
//! read-modify-write); each multi-statement read runs in one transaction so it sees one
//! snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::body::{body_time, decode_task};
use super::schema::{backend_error, decode_status, from_ts, int, ts};
use crate::constraint::{Constraint, Preference};
use crate::error::{QueueError, Result};
use crate::history::TaskTimes;
use crate::model::{QueueStats, Resources, Task, TaskId, TaskStatus, WorkerRecord};
use crate::query::TaskQuery;
use crate::store::QueuedTask;

/// A task's constraints and preferences, as `QueuedTask` shares them.
type Shape = (Arc<[Constraint]>, Arc<[Preference]>);

/// Decodes every task a statement returns (its columns: `body, placement`).
fn bodies(stmt: &mut rusqlite::Statement<'_>, params: impl rusqlite::Params) -> Result<Vec<Task>> {
    let rows = stmt.query_map(params, |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    rows.map(|row| {
        let (body, placement) = row?;
        decode_task(&body, placement.as_deref())
    })
    .collect()
}

/// The task whose id starts with `prefix`.
pub(crate) fn resolve_prefix(conn: &Connection, prefix: &str) -> Result<TaskId> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() {
        return Err(QueueError::invalid("task id", "empty id prefix"));
    }
    if !prefix.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(QueueError::NoMatch(prefix));
    }
    // Ids are lowercase hex and '-', all below '~': a range scan over the primary key.
    let upper = format!("{prefix}~");
    let mut stmt =
        conn.prepare_cached("SELECT id FROM tasks WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT 2")?;
    let ids: Vec<String> = stmt
        .query_map(params![prefix, upper], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    match ids.as_slice() {
        [] => Err(QueueError::NoMatch(prefix)),
        [one] => one
            .parse()
            .map_err(|_| backend_error(format!("corrupt task id {one:?}"))),
        _ => {
            let count: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM tasks WHERE id >= ?1 AND id < ?2")?
                .query_row(params![prefix, upper], |r| r.get(0))?;
            Err(QueueError::AmbiguousPrefix {
                prefix,
                count: count as usize,
            })
        }
    }
}

/// Tasks matching `query`, in its order (`TaskQuery::matches` is the rule).
pub(crate) fn list(conn: &Connection, query: &TaskQuery) -> Result<Vec<Task>> {
    let mut sql = String::from("SELECT body, placement FROM tasks WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    if !query.statuses.is_empty() {
        let marks = vec!["?"; query.statuses.len()].join(", ");
        sql.push_str(&format!(" AND status IN ({marks})"));
        args.extend(
            query
                .statuses
                .iter()
                .map(|s| Value::Text(s.as_str().into())),
        );
    }
    if let Some(w) = &query.worker_id {
        sql.push_str(" AND worker_id = ?");
        args.push(Value::Text(w.clone()));
    }
    if let Some(who) = &query.submitted_by {
        // The column holds '' for a task without a submitter; the rule matches only
        // `Some("")` for an empty name, so that rare query reads the body.
        sql.push_str(if who.is_empty() {
            " AND json_extract(body, '$.submitted_by') = ?"
        } else {
            " AND submitter = ?"
        });
        args.push(Value::Text(who.clone()));
    }
    if let Some(image) = &query.image {
        let image_of = "json_extract(body, '$.spec.image')";
        match query.image_prefix() {
            Some(prefix) => {
                sql.push_str(&format!(" AND substr({image_of}, 1, ?) = ?"));
                args.push(Value::Integer(int(prefix.chars().count() as u64)));
                args.push(Value::Text(prefix.to_string()));
            }
            None => {
                sql.push_str(&format!(" AND {image_of} = ?"));
                args.push(Value::Text(image.clone()));
            }
        }
    }
    for (k, v) in &query.labels {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM json_each(body, '$.spec.labels') l \
             WHERE l.key = ? AND l.value = ?)",
        );
        args.push(Value::Text(k.clone()));
        args.push(Value::Text(v.clone()));
    }
    if let Some(after) = query.created_after {
        sql.push_str(" AND created_at >= ?");
        args.push(Value::Integer(ts(after)));
    }
    if let Some(before) = query.created_before {
        sql.push_str(" AND created_at < ?");
        args.push(Value::Integer(ts(before)));
    }
    if let Some(text) = &query.text {
        // First the whole body, cheaply, without parsing it: text that JSON writes as it
        // is (no quote, backslash or control character) and that the body lacks is in
        // none of its fields. A search that matches little then reads each row once.
        if !text
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            sql.push_str(" AND body LIKE ? ESCAPE '\\'");
            args.push(Value::Text(format!("%{}%", like_escape(text))));
        }
        // LIKE ignores ASCII case, as the rule does (`TaskQuery::matches`).
        sql.push_str(
            " AND (id LIKE ? ESCAPE '\\' OR json_extract(body, '$.spec.image') LIKE ? ESCAPE '\\' \
             OR EXISTS (SELECT 1 FROM json_each(body, '$.spec.command') c \
             WHERE c.value LIKE ? ESCAPE '\\'))",
        );
        let pattern = Value::Text(format!("%{}%", like_escape(text)));
        args.extend([pattern.clone(), pattern.clone(), pattern]);
    }
    if let Some(parent) = query.depends_on {
        // By the `task_deps` key: a parent's dependents without reading other bodies.
        sql.push_str(" AND id IN (SELECT child FROM task_deps WHERE parent = ?)");
        args.push(Value::Text(parent.to_string()));
    }
    if let Some(array) = &query.array {
        sql.push_str(" AND array_id = ?");
        args.push(Value::Text(array.clone()));
    }
    let (cmp, order) = if query.oldest_first {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some(cursor) = query.before {
        sql.push_str(&format!(" AND id {cmp} ?"));
        args.push(Value::Text(cursor.to_string()));
    }
    sql.push_str(&format!(" ORDER BY id {order} LIMIT ?"));
    args.push(Value::Integer(int(query.page_size() as u64)));
    let mut stmt = conn.prepare_cached(&sql)?;
    bodies(&mut stmt, params_from_iter(args))
}

/// `s` with LIKE's wildcards (and the escape character, a backslash) escaped.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Eligible queued tasks in dispatch order.
pub(crate) fn queued(conn: &Connection, now: DateTime<Utc>, limit: usize) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(
        "SELECT body, placement FROM tasks WHERE status = 'queued' AND not_before <= ?1
         ORDER BY priority DESC, id LIMIT ?2",
    )?;
    bodies(&mut stmt, params![ts(now), int(limit as u64)])
}

/// `TaskStore::delayed_times`, by the partial index `tasks_delayed` (only queued tasks
/// whose `not_before` lies after their creation are in it).
pub(crate) fn delayed_times(
    conn: &Connection,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<DateTime<Utc>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT not_before FROM tasks INDEXED BY tasks_delayed
         WHERE status = 'queued' AND not_before > created_at
           AND not_before > ?1 AND not_before <= ?2
         ORDER BY not_before LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![ts(now), ts(until), int(limit as u64)], |r| {
        r.get::<_, i64>(0)
    })?;
    rows.map(|r| Ok(from_ts(r?))).collect()
}

/// `queued` from the indexed columns alone: no task body is read or decoded. With `of`,
/// only that submitter's tasks (`""`: those without one), by the `tasks_fair` index.
pub(crate) fn queued_asks_of(
    conn: &Connection,
    now: DateTime<Utc>,
    of: Option<&str>,
    limit: usize,
) -> Result<Vec<QueuedTask>> {
    const COLUMNS: &str =
        "id, cpu_millis, memory_bytes, gpus, disk_bytes, pinned_worker, placement, priority, \
         submitter";
    let mut stmt = match of {
        None => conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE status = 'queued' AND not_before <= ?1
             ORDER BY priority DESC, id LIMIT ?2"
        ))?,
        Some(_) => conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tasks INDEXED BY tasks_fair
             WHERE status = 'queued' AND submitter = ?3 AND not_before <= ?1
             ORDER BY priority DESC, id LIMIT ?2"
        ))?,
    };
    let (t, n) = (ts(now), int(limit as u64));
    let map = |r: &rusqlite::Row<'_>| {
        let id: String = r.get(0)?;
        let n = |i: usize| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
        Ok((
            id,
            Resources {
                cpu_millis: n(1)?,
                memory_bytes: n(2)?,
                gpus: u32::try_from(n(3)?).unwrap_or(u32::MAX),
                disk_bytes: n(4)?,
            },
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, i32>(7)?,
            r.get::<_, String>(8)?,
        ))
    };
    let rows: Vec<_> = match of {
        None => stmt.query_map(params![t, n], map)?.collect(),
        Some(of) => stmt.query_map(params![t, n, of], map)?.collect(),
    };
    let mut out = Vec::with_capacity(rows.len());
    // Each distinct `placement` once: the tasks of a read mostly share a few shapes, and
    // decoding, copying and dropping every task's constraints was a fifth of the cost
    // of a constrained dispatch (BENCHMARKS.md).
    let mut shapes: HashMap<Option<String>, Shape> = HashMap::new();
    for row in rows {
        let (id, resources, pinned_worker, placement, priority, submitter) = row?;
        let id = id
            .parse()
            .map_err(|_| backend_error(format!("corrupt task id column {id:?}")))?;
        let (constraints, prefer) = match shapes.get(&placement) {
            Some(shape) => shape.clone(),
            None => {
                let p = super::schema::decode_placement(placement.as_deref())?;
                let shape: Shape = (p.constraints.into(), p.prefer.into());
                shapes.insert(placement, shape.clone());
                shape
            }
        };
        out.push(QueuedTask {
            id,
            resources,
            pinned_worker,
            constraints,
            prefer,
            priority,
            submitter: Some(submitter).filter(|s| !s.is_empty()),
        });
    }
    Ok(out)
}

/// Each submitter with queued tasks once (`None`: tasks without one): a walk of the
/// `tasks_fair` index that jumps from one submitter to the next, so it costs one index
/// seek per submitter however many tasks each has queued.
pub(crate) fn queued_submitters(conn: &Connection) -> Result<Vec<Option<String>>> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE s(sub) AS (
             SELECT MIN(submitter) FROM tasks INDEXED BY tasks_fair WHERE status = 'queued'
             UNION ALL
             SELECT (SELECT MIN(submitter) FROM tasks INDEXED BY tasks_fair
                     WHERE status = 'queued' AND submitter > s.sub)
             FROM s WHERE s.sub IS NOT NULL
         )
         SELECT sub FROM s WHERE sub IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|s| Ok(Some(s?).filter(|s| !s.is_empty())))
        .collect()
}

/// Counts per status, oldest queued, finished in the minute before `now`.
pub(crate) fn stats(conn: &Connection, now: DateTime<Utc>) -> Result<QueueStats> {
    let tx = conn.unchecked_transaction()?;
    let mut counts = BTreeMap::new();
    {
        // Kept by triggers on `tasks` (see schema.rs): no scan of the tasks.
        let mut stmt = tx.prepare_cached("SELECT status, n FROM task_counts WHERE n > 0")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (status, n) = row?;
            counts.insert(decode_status(&status)?, n as u64);
        }
    }
    // Ids and creation times rise together (both are taken in the writer thread).
    let oldest: Option<i64> = tx
        .prepare_cached("SELECT created_at FROM tasks WHERE status = 'queued' ORDER BY id LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let minute_ago = now - chrono::Duration::minutes(1);
    let finished: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM tasks WHERE finished_at > ?1 AND finished_at <= ?2")?
        .query_row(params![ts(minute_ago), ts(now)], |r| r.get(0))?;
    tx.finish()?;
    Ok(QueueStats {
        counts,
        oldest_queued_at: oldest.map(from_ts),
        finished_last_minute: finished as u64,
    })
}

/// An array's elements per status, by the `tasks_by_array` index alone.
pub(crate) fn array_counts(conn: &Connection, id: &str) -> Result<BTreeMap<TaskStatus, u64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT status, COUNT(*) FROM tasks WHERE array_id = ?1 \
         GROUP BY status",
    )?;
    let rows = stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut counts = BTreeMap::new();
    for row in rows {
        let (status, n) = row?;
        counts.insert(decode_status(&status)?, n as u64);
    }
    Ok(counts)
}

/// One worker record.
pub(crate) fn get_worker(conn: &Connection, id: &str) -> Result<Option<WorkerRecord>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM workers WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    body.map(|b| decode_worker(&b)).transpose()
}

/// Every worker, by id.
pub(crate) fn list_workers(conn: &Connection) -> Result<Vec<WorkerRecord>> {
    let mut stmt = conn.prepare_cached("SELECT body FROM workers ORDER BY id")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|b| decode_worker(&b?)).collect()
}

fn decode_worker(body: &str) -> Result<WorkerRecord> {
    serde_json::from_str(body).map_err(|e| backend_error(format!("corrupt worker row: {e}")))
}

/// `TaskStore::recent_times`: ended since `since` by the `tasks_finished` index (most
/// recent first, at most `limit`), then the live ones by the status index. Only the
/// first attempt's start is read from the body.
pub(crate) fn recent_times(
    conn: &Connection,
    since: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<TaskTimes>> {
    const COLUMNS: &str =
        "SELECT status, created_at, finished_at, json_extract(body, '$.attempts[0].started_at')";
    let mut out = Vec::new();
    let mut row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(String, i64, Option<i64>, Value)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    };
    let mut ended = conn.prepare_cached(&format!(
        "{COLUMNS} FROM tasks WHERE finished_at >= ?1 ORDER BY finished_at DESC LIMIT ?2"
    ))?;
    let mut rows: Vec<_> = ended
        .query_map(params![ts(since), int(limit as u64)], &mut row)?
        .collect::<rusqlite::Result<_>>()?;
    let mut live = conn.prepare_cached(&format!(
        "{COLUMNS} FROM tasks WHERE status IN ('assigned', 'running')"
    ))?;
    rows.extend(
        live.query_map([], &mut row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    );
    for (status, created, finished, start) in rows {
        let first_start =
            body_time(start).map_err(|e| backend_error(format!("corrupt attempt start: {e}")))?;
        out.push(TaskTimes {
            status: decode_status(&status)?,
            created_at: from_ts(created),
            first_start,
            finished_at: finished.map(from_ts),
        });
    }
    Ok(out)
}
