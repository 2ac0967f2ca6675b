//! Task output, bounded per task by [`crate::retention`]. Real chunks get seq 1, 2, 3…;
//! when a task's kept bytes pass the cap, its oldest output is dropped and the seq-0
//! `system` chunk is rewritten to say how many bytes were dropped in total.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::schema::{backend_error, from_ts, int, task_exists, ts};
use crate::error::{QueueError, Result};
use crate::model::{LogChunk, LogStream, NewLogChunk, TaskId};
use crate::retention::{dropped_marker, Budget, Fate};

/// Per-task accounting row.
struct LogState {
    next_seq: i64,
    kept: i64,
    dropped: i64,
}

/// Appends `chunks` of attempt number `attempt` inside the caller's savepoint; returns the
/// last seq written. The caller has checked the attempt's token.
pub(crate) fn append(
    conn: &Connection,
    id: TaskId,
    attempt: u32,
    chunks: &[NewLogChunk],
    max_bytes: u64,
) -> Result<u64> {
    let key = id.to_string();
    let mut st = conn
        .prepare_cached(
            "SELECT next_seq, kept_bytes, dropped_bytes FROM log_state WHERE task_id = ?1",
        )?
        .query_row([&key], |r| {
            Ok(LogState {
                next_seq: r.get(0)?,
                kept: r.get(1)?,
                dropped: r.get(2)?,
            })
        })
        .optional()?
        .unwrap_or(LogState {
            next_seq: 1,
            kept: 0,
            dropped: 0,
        });
    if chunks.is_empty() {
        return Ok((st.next_seq - 1) as u64);
    }
    let dropped_before = st.dropped;
    let added: u64 = chunks.iter().map(|c| c.data.len() as u64).sum();
    {
        let mut insert = conn.prepare_cached(
            "INSERT INTO logs (task_id, seq, attempt, stream, time, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for c in chunks {
            insert.execute(params![
                key,
                st.next_seq,
                attempt,
                c.stream.as_str(),
                ts(c.time),
                c.data
            ])?;
            st.next_seq += 1;
        }
    }
    let mut budget = Budget::new(st.kept as u64, st.dropped as u64, added, max_bytes);
    if budget.over() {
        trim(conn, &key, &mut budget)?;
    }
    st.kept = int(budget.kept);
    st.dropped = int(budget.dropped);
    if st.dropped != dropped_before {
        let time = chunks.last().map(|c| c.time).unwrap_or_else(Utc::now);
        write_marker(conn, &key, attempt, time, st.dropped as u64)?;
    }
    conn.prepare_cached(
        "INSERT INTO log_state (task_id, next_seq, kept_bytes, dropped_bytes)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (task_id) DO UPDATE SET next_seq = excluded.next_seq,
             kept_bytes = excluded.kept_bytes, dropped_bytes = excluded.dropped_bytes",
    )?
    .execute(params![key, st.next_seq, st.kept, st.dropped])?;
    Ok((st.next_seq - 1) as u64)
}

/// Drops or cuts the oldest chunks (new ones included) as the budget says.
fn trim(conn: &Connection, key: &str, budget: &mut Budget) -> Result<()> {
    let sizes: Vec<(i64, i64)> = conn
        .prepare_cached(
            "SELECT seq, length(data) FROM logs WHERE task_id = ?1 AND seq > 0 ORDER BY seq",
        )?
        .query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut last_deleted = None;
    for (seq, len) in sizes {
        if !budget.over() {
            break;
        }
        match budget.take(len as u64) {
            Fate::Drop => last_deleted = Some(seq),
            Fate::Cut(n) => {
                conn.prepare_cached(
                    "UPDATE logs SET data = substr(data, ?3) WHERE task_id = ?1 AND seq = ?2",
                )?
                .execute(params![key, seq, int(n) + 1])?;
            }
        }
    }
    if let Some(seq) = last_deleted {
        conn.prepare_cached("DELETE FROM logs WHERE task_id = ?1 AND seq > 0 AND seq <= ?2")?
            .execute(params![key, seq])?;
    }
    Ok(())
}

fn write_marker(
    conn: &Connection,
    key: &str,
    attempt: u32,
    time: DateTime<Utc>,
    dropped: u64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO logs (task_id, seq, attempt, stream, time, data)
         VALUES (?1, 0, ?2, ?3, ?4, ?5)
         ON CONFLICT (task_id, seq) DO UPDATE SET attempt = excluded.attempt,
             time = excluded.time, data = excluded.data",
    )?
    .execute(params![
        key,
        attempt,
        LogStream::System.as_str(),
        ts(time),
        dropped_marker(dropped).into_bytes()
    ])?;
    Ok(())
}

/// Chunks with `seq > after` (all when `after` is `None`), in seq order.
pub(crate) fn read(
    conn: &Connection,
    id: TaskId,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<LogChunk>> {
    let tx = conn.unchecked_transaction()?;
    if !task_exists(&tx, id)? {
        return Err(QueueError::NotFound(id));
    }
    let after = after.map(int).unwrap_or(-1);
    let chunks = {
        let mut stmt = tx.prepare_cached(
            "SELECT seq, attempt, stream, time, data FROM logs
             WHERE task_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![id.to_string(), after, int(limit as u64)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })?;
        rows.map(|row| {
            let (seq, attempt, stream, time, data) = row?;
            Ok(LogChunk {
                seq: seq as u64,
                attempt,
                stream: decode_stream(&stream)?,
                time: from_ts(time),
                data,
            })
        })
        .collect::<Result<Vec<_>>>()?
    };
    tx.finish()?;
    Ok(chunks)
}

fn decode_stream(s: &str) -> Result<LogStream> {
    match s {
        "stdout" => Ok(LogStream::Stdout),
        "stderr" => Ok(LogStream::Stderr),
        "system" => Ok(LogStream::System),
        other => Err(backend_error(format!("corrupt log stream {other:?}"))),
    }
}
