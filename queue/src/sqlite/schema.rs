//! The on-disk layout: schema, connection settings, and the mapping between rows and the
//! model. Tasks are stored whole as compact JSON (`body`, its form in `body.rs`), with the
//! fields the query paths filter and sort on copied into indexed columns; timestamps are
//! nanoseconds since the epoch.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use super::body::{decode_task, encode_task};
use crate::error::{QueueError, Result};
use crate::model::{Task, TaskId, TaskStatus};

/// Backend name in errors and logs.
pub(crate) const BACKEND: &str = "sqlite";

/// How long a connection waits for another process's lock before `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements each connection keeps: more than the distinct statements the
/// store uses, so none is evicted and parsed again (rusqlite's default is 16).
const STATEMENT_CACHE: usize = 128;

/// The writer's page cache, in KiB (SQLite's `cache_size` takes a negative count of KiB).
const WRITER_CACHE_KIB: i64 = -256 * 1024;

/// Bumped when the layout changes; stored in `PRAGMA user_version`.
/// 2: `task_counts` and its triggers. 3: `task_deps`. 4: `tasks.placement`.
/// 5: `tasks.submitter` and the `tasks_fair` index. 6: `tasks.array_id`, the submitter
/// and array indexes on columns instead of on the body's JSON, and `task_counts` kept by
/// the writes of task rows ([`count_new`], [`update_task`]) instead of by triggers.
/// 7: a task's constraints
/// and preferences only in `placement`, no longer also in the body;
/// the `tasks_delayed` index. A version-6 body that still holds them reads the same.
/// 8: the compact body (`body.rs`); an older build cannot read it, so refuses the file.
const SCHEMA_VERSION: i64 = 8;

const SCHEMA: &str = "
-- placement: the spec's constraints and preferences as JSON (`Placement`), NULL when it
-- has none: what the dispatcher's read needs besides the resources, without the body;
-- submitter: who enqueued it ('' without auth), for fair share, quotas, `--submitter`
-- array_id: the array it is an element of (`TaskSpec::array`), NULL when none
CREATE TABLE IF NOT EXISTS tasks (
    id              TEXT PRIMARY KEY,
    status          TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    not_before      INTEGER NOT NULL,
    finished_at     INTEGER,
    pinned_worker   TEXT,
    idempotency_key TEXT UNIQUE,
    worker_id       TEXT,
    cpu_millis      INTEGER NOT NULL,
    memory_bytes    INTEGER NOT NULL,
    gpus            INTEGER NOT NULL,
    disk_bytes      INTEGER NOT NULL,
    body            TEXT NOT NULL,
    placement       TEXT,
    submitter       TEXT NOT NULL DEFAULT '',
    array_id        TEXT
);
-- dispatch order: claim and queued() walk this index and stop at the first fit
CREATE INDEX IF NOT EXISTS tasks_dispatch ON tasks (status, priority DESC, id);
-- list by status newest first, counts per status, the oldest queued task
CREATE INDEX IF NOT EXISTS tasks_status_id ON tasks (status, id);
-- fair share: each submitter's queued tasks in dispatch order, and who has any (partial,
-- so only queued tasks cost it anything)
CREATE INDEX IF NOT EXISTS tasks_fair ON tasks (submitter, priority DESC, id)
    WHERE status = 'queued';
-- the delayed queued tasks (a retry's backoff, `--at`/`--in`), so arming the
-- dispatcher's timers reads only them; partial, so a task enqueued to run now costs it
-- nothing. Older files gain it at open, like every `IF NOT EXISTS` here
CREATE INDEX IF NOT EXISTS tasks_delayed ON tasks (not_before)
    WHERE status = 'queued' AND not_before > created_at;
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_worker ON tasks (worker_id, id) WHERE worker_id IS NOT NULL;
-- list by submitter newest first (`tasks --submitter`). On columns, not on the body's
-- JSON: an index on an expression of the body parses the body again at every write
CREATE INDEX IF NOT EXISTS tasks_by_submitter ON tasks (submitter, id);
-- an array's elements by status (`tasks --array`, the cap's count of running elements);
-- partial, so tasks that are no element cost it nothing
CREATE INDEX IF NOT EXISTS tasks_by_array ON tasks (array_id, status, id)
    WHERE array_id IS NOT NULL;

-- who runs after whom (`TaskSpec::after`), written with the task: a parent's end finds
-- its dependents by this key, not by reading every waiting task's body
CREATE TABLE IF NOT EXISTS task_deps (
    parent TEXT NOT NULL,
    child  TEXT NOT NULL,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS logs (
    task_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    stream  TEXT NOT NULL,
    time    INTEGER NOT NULL,
    data    BLOB NOT NULL,
    PRIMARY KEY (task_id, seq)
);
-- per-task log accounting: the next seq, bytes kept, bytes dropped so far
CREATE TABLE IF NOT EXISTS log_state (
    task_id       TEXT PRIMARY KEY,
    next_seq      INTEGER NOT NULL,
    kept_bytes    INTEGER NOT NULL,
    dropped_bytes INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS workers (
    id   TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

-- API users (auth): only a keyed hash of each token is stored
CREATE TABLE IF NOT EXISTS users (
    name       TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    body       TEXT NOT NULL
);
-- cron schedules (`schedule.rs`): version for the compare-and-set of each fire
CREATE TABLE IF NOT EXISTS schedules (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body    TEXT NOT NULL
);
-- cluster-wide settings, e.g. the worker join token's hash
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- tasks per status, kept in the same transaction as every change by the writes of task
-- rows (an enqueue's `count_new`, `update_task`; tasks are never deleted): queue
-- stats and the --max-queued check read one row instead of counting tasks. Not by
-- triggers: a table with a trigger makes each write to it keep a statement journal,
-- which doubled the cost of inserting a row (BENCHMARKS.md)
CREATE TABLE IF NOT EXISTS task_counts (
    status TEXT PRIMARY KEY,
    n      INTEGER NOT NULL
);
";

/// The triggers that kept `task_counts` before schema 6.
const DROP_COUNT_TRIGGERS: &str = "
DROP TRIGGER IF EXISTS task_counts_insert;
DROP TRIGGER IF EXISTS task_counts_update;
DROP TRIGGER IF EXISTS task_counts_delete;
";

/// Fills `task_deps` from the tasks' specs, for a file made before the table existed.
const DEPS_EXISTING: &str = "
INSERT OR IGNORE INTO task_deps (parent, child)
    SELECT json_extract(d.value, '$.task'), t.id FROM tasks t, json_each(t.body, '$.spec.after') d;
";

/// Fills `task_counts` from the tasks, for a file made before the table existed.
const COUNT_EXISTING: &str = "
DELETE FROM task_counts;
INSERT INTO task_counts (status, n) SELECT status, COUNT(*) FROM tasks GROUP BY status;
";

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        let retryable = matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        );
        QueueError::Backend {
            backend: BACKEND,
            message: e.to_string(),
            retryable,
        }
    }
}

/// A permanent backend error with our own message.
pub(crate) fn backend_error(message: impl Into<String>) -> QueueError {
    QueueError::Backend {
        backend: BACKEND,
        message: message.into(),
        retryable: false,
    }
}

/// Opens the connection the writer thread owns, creating the file and schema if needed.
pub(crate) fn open_writer(path: &Path) -> Result<Connection> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            backend_error(format!("cannot create directory {}: {e}", parent.display()))
        })?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(backend_error(format!(
            "{} cannot use WAL mode (journal mode is {mode})",
            path.display()
        )));
    }
    // FULL: an acknowledged commit survives power loss, not only a process crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // A batch runs in a savepoint inside the writer's transaction: its sub-journal in
    // memory, not a temporary file, and a page cache large enough that a big batch (an
    // array of 100,000 tasks) does not spill to the WAL before its commit. Measured on
    // that array: 4.8 s before, most of it writing the sub-journal file (BENCHMARKS.md).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
    // The writer checkpoints after it has replied (`writer.rs`), never inside a COMMIT.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(backend_error(format!(
            "{} has schema version {version}, newer than this build's {SCHEMA_VERSION}",
            path.display()
        )));
    }
    let mut backfill = String::new();
    if version < 4 && has_table(&conn, "tasks")? && !has_column(&conn, "tasks", "placement")? {
        // Tasks stored before constraints existed have none: NULL is their value.
        conn.execute_batch("ALTER TABLE tasks ADD COLUMN placement TEXT;")?;
    }
    if version < 5 && has_table(&conn, "tasks")? && !has_column(&conn, "tasks", "submitter")? {
        conn.execute_batch(
            "ALTER TABLE tasks ADD COLUMN submitter TEXT NOT NULL DEFAULT '';
             UPDATE tasks SET submitter = json_extract(body, '$.submitted_by')
                 WHERE json_extract(body, '$.submitted_by') IS NOT NULL;",
        )?;
    }
    if version < 6 && has_table(&conn, "tasks")? && !has_column(&conn, "tasks", "array_id")? {
        // The indexes of version 5 and before were on the body's JSON: their columns now.
        // One transaction: a crash midway leaves no column without its values (the next
        // open sees the column and would not fill it again).
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             ALTER TABLE tasks ADD COLUMN array_id TEXT;
             UPDATE tasks SET array_id = json_extract(body, '$.spec.array.id')
                 WHERE json_extract(body, '$.spec.array.id') IS NOT NULL;
             DROP INDEX IF EXISTS tasks_submitter;
             DROP INDEX IF EXISTS tasks_array;
             COMMIT;",
        )?;
    }
    if version < 2 {
        backfill.push_str(COUNT_EXISTING);
    }
    if version < 3 {
        backfill.push_str(DEPS_EXISTING);
    }
    if version < 6 {
        backfill.push_str(DROP_COUNT_TRIGGERS);
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} {backfill} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))?;
    Ok(conn)
}

fn has_table(conn: &Connection, table: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    for n in names {
        if n? == column {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The `placement` column of a spec: its constraints and preferences, NULL when none.
pub(crate) fn placement_column(spec: &crate::model::TaskSpec) -> Result<Option<String>> {
    if spec.constraints.is_empty() && spec.prefer.is_empty() {
        return Ok(None);
    }
    encode(&Placement {
        constraints: spec.constraints.clone(),
        prefer: spec.prefer.clone(),
    })
    .map(Some)
}

/// What the `placement` column holds.
#[derive(serde::Serialize, serde::Deserialize, Default)]
pub(crate) struct Placement {
    #[serde(default)]
    pub constraints: Vec<crate::constraint::Constraint>,
    #[serde(default)]
    pub prefer: Vec<crate::constraint::Preference>,
}

/// Parses a `placement` column.
pub(crate) fn decode_placement(column: Option<&str>) -> Result<Placement> {
    match column {
        None => Ok(Placement::default()),
        Some(s) => serde_json::from_str(s)
            .map_err(|e| backend_error(format!("corrupt placement column: {e}"))),
    }
}

/// Opens a read-only connection for the reader pool.
pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

/// A timestamp as stored: nanoseconds since the epoch, saturating outside 1677..2262.
pub(crate) fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// The inverse of [`ts`].
pub(crate) fn from_ts(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

/// A u64 quantity as an SQLite integer, saturating.
pub(crate) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Serializes any model value for a `body` column.
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| backend_error(format!("cannot encode row: {e}")))
}

/// Parses a stored status column.
pub(crate) fn decode_status(s: &str) -> Result<TaskStatus> {
    s.parse()
        .map_err(|_| backend_error(format!("corrupt status column {s:?}")))
}

/// The task with this id, `NotFound` when absent.
pub(crate) fn load_task(conn: &Connection, id: TaskId) -> Result<Task> {
    let row: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT body, placement FROM tasks WHERE id = ?1")?
        .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((body, placement)) => decode_task(&body, placement.as_deref()),
        None => Err(QueueError::NotFound(id)),
    }
}

/// True when a task with this id exists.
pub(crate) fn task_exists(conn: &Connection, id: TaskId) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM tasks WHERE id = ?1")?
        .query_row([id.to_string()], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Inserts a new task row. Its caller counts it in `task_counts` ([`count_new`]): a
/// batch's rows at once, a statement instead of one per row.
pub(crate) fn insert_task(conn: &Connection, t: &Task) -> Result<()> {
    let body = encode_task(t)?;
    let r = &t.spec.resources;
    conn.prepare_cached(
        "INSERT INTO tasks (id, status, priority, created_at, not_before, finished_at,
            pinned_worker, idempotency_key, worker_id, cpu_millis, memory_bytes, gpus,
            disk_bytes, body, placement, submitter, array_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        t.id.to_string(),
        t.status.as_str(),
        t.spec.priority,
        ts(t.created_at),
        ts(t.not_before),
        t.finished_at.map(ts),
        t.spec.pinned_worker,
        t.spec.idempotency_key,
        t.worker_id(),
        int(r.cpu_millis),
        int(r.memory_bytes),
        r.gpus,
        int(r.disk_bytes),
        body,
        placement_column(&t.spec)?,
        t.submitted_by.as_deref().unwrap_or_default(),
        t.spec.array.as_ref().map(|a| a.id.as_str()),
    ])?;
    if !t.spec.after.is_empty() {
        let mut stmt =
            conn.prepare_cached("INSERT OR IGNORE INTO task_deps (parent, child) VALUES (?1, ?2)")?;
        for d in &t.spec.after {
            stmt.execute(params![d.task.to_string(), t.id.to_string()])?;
        }
    }
    Ok(())
}

/// Writes back a changed task: the columns that can change, and the body. `was` is its
/// status as loaded, before the change.
pub(crate) fn update_task(conn: &Connection, was: TaskStatus, t: &Task) -> Result<()> {
    let body = encode_task(t)?;
    let n = conn
        .prepare_cached(
            "UPDATE tasks SET status = ?2, not_before = ?3, finished_at = ?4, worker_id = ?5,
                body = ?6
             WHERE id = ?1",
        )?
        .execute(params![
            t.id.to_string(),
            t.status.as_str(),
            ts(t.not_before),
            t.finished_at.map(ts),
            t.worker_id(),
            body,
        ])?;
    if n != 1 {
        return Err(QueueError::NotFound(t.id));
    }
    if was != t.status {
        conn.prepare_cached("UPDATE task_counts SET n = n - 1 WHERE status = ?1")?
            .execute([was.as_str()])?;
        count_new(conn, t.status, 1)?;
    }
    Ok(())
}

/// Adds `n` tasks to `status`'s count in `task_counts`.
pub(crate) fn count_new(conn: &Connection, status: TaskStatus, n: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO task_counts (status, n) VALUES (?1, ?2)
         ON CONFLICT (status) DO UPDATE SET n = n + excluded.n",
    )?
    .execute(params![status.as_str(), n])?;
    Ok(())
}
