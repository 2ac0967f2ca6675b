//! Schedules (`schedules` table: the name, the version for compare-and-set, the record
//! as JSON). Writes run on the writer's connection, reads on the reader pool.

use rusqlite::{params, Connection, OptionalExtension};

use super::schema::{backend_error, encode};
use crate::error::{QueueError, Result};
use crate::schedule::Schedule;

fn decode(body: &str) -> Result<Schedule> {
    serde_json::from_str(body).map_err(|e| backend_error(format!("corrupt schedule row: {e}")))
}

/// Inserts a schedule; a taken name is `ScheduleExists`.
pub(crate) fn add(conn: &Connection, s: &Schedule) -> Result<()> {
    crate::schedule::validate_name(&s.name)?;
    let n = conn
        .prepare_cached(
            "INSERT INTO schedules (name, version, body) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO NOTHING",
        )?
        .execute(params![s.name, s.version as i64, encode(s)?])?;
    if n == 0 {
        return Err(QueueError::ScheduleExists(s.name.clone()));
    }
    Ok(())
}

/// One schedule.
pub(crate) fn get(conn: &Connection, name: &str) -> Result<Option<Schedule>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM schedules WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    body.as_deref().map(decode).transpose()
}

/// Every schedule, by name.
pub(crate) fn list(conn: &Connection) -> Result<Vec<Schedule>> {
    let mut stmt = conn.prepare_cached("SELECT body FROM schedules ORDER BY name")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|b| decode(&b?)).collect()
}

/// Compare-and-set on the version.
pub(crate) fn replace(conn: &Connection, s: &Schedule, expected: u64) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE schedules SET version = ?2, body = ?3 WHERE name = ?1 AND version = ?4",
        )?
        .execute(params![
            s.name,
            s.version as i64,
            encode(s)?,
            expected as i64
        ])?;
    Ok(n == 1)
}

/// Removes one; false when there was none.
pub(crate) fn remove(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM schedules WHERE name = ?1")?
        .execute([name])?
        == 1)
}
