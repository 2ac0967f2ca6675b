//! Users (`users` table) and the join token hash (`settings` table). Writes run on the
//! writer's connection, reads on the reader pool; only keyed hashes of tokens are stored.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use super::schema::{backend_error, encode};
use crate::error::{QueueError, Result};
use crate::users::{validate_token_hash, validate_user_name, UserRecord};

/// Key of the join token's hash in `settings`.
const JOIN_TOKEN_KEY: &str = "join_token_hash";
/// The replaced join token: `HASH UNTIL_MS` (the end of its grace, Unix milliseconds).
const PREVIOUS_JOIN_TOKEN_KEY: &str = "join_token_previous";

fn decode(body: &str) -> Result<UserRecord> {
    serde_json::from_str(body).map_err(|e| backend_error(format!("corrupt user row: {e}")))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
}

/// Inserts a user; a taken name or token hash is `Invalid`.
pub(crate) fn add(conn: &Connection, user: &UserRecord) -> Result<()> {
    validate_user_name(&user.name)?;
    validate_token_hash(&user.token_hash)?;
    let taken: bool = conn
        .prepare_cached("SELECT 1 FROM users WHERE name = ?1")?
        .query_row([&user.name], |_| Ok(()))
        .optional()?
        .is_some();
    if taken {
        return Err(QueueError::UserExists(user.name.clone()));
    }
    conn.prepare_cached("INSERT INTO users (name, token_hash, body) VALUES (?1, ?2, ?3)")?
        .execute(params![user.name, user.token_hash, encode(user)?])
        .map_err(|e| {
            if is_unique_violation(&e) {
                QueueError::invalid("token hash", "already used by another user")
            } else {
                e.into()
            }
        })?;
    Ok(())
}

/// One user by name.
pub(crate) fn get(conn: &Connection, name: &str) -> Result<Option<UserRecord>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM users WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    body.map(|b| decode(&b)).transpose()
}

/// The user holding this token hash.
pub(crate) fn by_token_hash(conn: &Connection, hash: &str) -> Result<Option<UserRecord>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM users WHERE token_hash = ?1")?
        .query_row([hash], |r| r.get(0))
        .optional()?;
    body.map(|b| decode(&b)).transpose()
}

/// Every user by name.
pub(crate) fn list(conn: &Connection) -> Result<Vec<UserRecord>> {
    let mut stmt = conn.prepare_cached("SELECT body FROM users ORDER BY name")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|b| decode(&b?)).collect()
}

/// Deletes a user; false when absent.
pub(crate) fn remove(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM users WHERE name = ?1")?
        .execute([name])?
        == 1)
}

/// Replaces a user's token hash; false when the user is unknown.
pub(crate) fn set_token_hash(conn: &Connection, name: &str, hash: &str) -> Result<bool> {
    validate_token_hash(hash)?;
    let Some(mut user) = get(conn, name)? else {
        return Ok(false);
    };
    user.token_hash = hash.to_string();
    conn.prepare_cached("UPDATE users SET token_hash = ?2, body = ?3 WHERE name = ?1")?
        .execute(params![name, hash, encode(&user)?])
        .map_err(|e| {
            if is_unique_violation(&e) {
                QueueError::invalid("token hash", "already used by another user")
            } else {
                e.into()
            }
        })?;
    Ok(true)
}

/// Sets or removes a user's quota; false when the user is unknown.
pub(crate) fn set_quota(
    conn: &Connection,
    name: &str,
    quota: Option<crate::quota::Quota>,
) -> Result<bool> {
    let Some(mut user) = get(conn, name)? else {
        return Ok(false);
    };
    user.quota = quota;
    conn.prepare_cached("UPDATE users SET body = ?2 WHERE name = ?1")?
        .execute(params![name, encode(&user)?])?;
    Ok(true)
}

/// The join token's hash.
pub(crate) fn join_token_hash(conn: &Connection) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row([JOIN_TOKEN_KEY], |r| r.get(0))
        .optional()?)
}

/// Stores the join token's hash; with `only_if_absent`, keeps an existing one.
pub(crate) fn set_join_token_hash(
    conn: &Connection,
    hash: &str,
    only_if_absent: bool,
) -> Result<bool> {
    validate_token_hash(hash)?;
    let sql = if only_if_absent {
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING"
    } else {
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    };
    Ok(conn
        .prepare_cached(sql)?
        .execute(params![JOIN_TOKEN_KEY, hash])?
        == 1)
}

/// The replaced join token's hash and the end of its grace.
pub(crate) fn previous_join_token(conn: &Connection) -> Result<Option<(String, DateTime<Utc>)>> {
    let value: Option<String> = conn
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row([PREVIOUS_JOIN_TOKEN_KEY], |r| r.get(0))
        .optional()?;
    Ok(value.and_then(|v| {
        let (hash, until) = v.split_once(' ')?;
        let until = DateTime::from_timestamp_millis(until.parse().ok()?)?;
        Some((hash.to_string(), until))
    }))
}

/// Keeps the replaced join token's hash accepted until `until`.
pub(crate) fn set_previous_join_token(
    conn: &Connection,
    hash: &str,
    until: DateTime<Utc>,
) -> Result<()> {
    validate_token_hash(hash)?;
    conn.prepare_cached(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![
        PREVIOUS_JOIN_TOKEN_KEY,
        format!("{hash} {}", until.timestamp_millis())
    ])?;
    Ok(())
}
