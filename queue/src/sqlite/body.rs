//! The `tasks.body` column (schema 8): a task as compact JSON. A field is written only
//! when it differs from what reading it back assumes (no nulls, empty lists or maps,
//! zero priority or resources, `false`; `updated_at` and `not_before` only when not the creation
//! time), times are integer nanoseconds, and what another column or the task's array
//! membership already says is left out: the constraints and preferences (`placement`
//! column), and an array element's `CLOUDAI_ARRAY_INDEX`/`CLOUDAI_ARRAY_ID` env, which
//! its [`ArrayMember`] gives back (`array_env`). Its `cloudai.array` label stays, since
//! label queries read the body's labels.
//!
//! Why: every transition rewrites the body on the one writer thread, and the bytes it
//! writes (the row, its pages in the WAL, their checkpoint) are what that thread spends
//! most of its time on; a 100,000-element array was 824 bytes a body (BENCHMARKS.md).
//! A body of schema 7 or before (every field, RFC 3339 times) reads the same: the
//! reader takes either form of each field.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::schema::{backend_error, decode_placement, from_ts};
use crate::array::{ArrayMember, ID_ENV, INDEX_ENV};
use crate::error::Result;
use crate::model::{Attempt, Resources, Task, TaskId, TaskSpec, TaskStatus};

/// A task's body. Its constraints and preferences are not in it (see the module doc).
pub(crate) fn encode_task(t: &Task) -> Result<String> {
    serde_json::to_string(&Compact(t))
        .map_err(|e| backend_error(format!("cannot encode task {}: {e}", t.id)))
}

/// A task from its stored row: the body, with the constraints and preferences of its
/// `placement` column (bodies written before version 7 hold them too: theirs are kept).
pub(crate) fn decode_task(body: &str, placement: Option<&str>) -> Result<Task> {
    let stored: Stored =
        serde_json::from_str(body).map_err(|e| backend_error(format!("corrupt task row: {e}")))?;
    let mut t = stored.into_task();
    if placement.is_some() && t.spec.constraints.is_empty() && t.spec.prefer.is_empty() {
        let p = decode_placement(placement)?;
        t.spec.constraints = p.constraints;
        t.spec.prefer = p.prefer;
    }
    Ok(t)
}

/// True when `spec`'s env holds exactly the array entries its membership gives, so the
/// body can leave them out.
fn array_env_derived(spec: &TaskSpec) -> bool {
    spec.array.as_ref().is_some_and(|m| {
        spec.env
            .get(INDEX_ENV)
            .is_some_and(|v| *v == m.index.to_string())
            && spec.env.get(ID_ENV).is_some_and(|v| *v == m.id)
    })
}

/// The entries the body writes of an array element's env.
fn array_env(m: &ArrayMember) -> [(&'static str, String); 2] {
    [(INDEX_ENV, m.index.to_string()), (ID_ENV, m.id.clone())]
}

struct Compact<'a>(&'a Task);

impl Serialize for Compact<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let t = self.0;
        let derived = array_env_derived(&t.spec);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &t.id)?;
        m.serialize_entry("spec", &CompactSpec(&t.spec, derived))?;
        m.serialize_entry("status", &t.status)?;
        m.serialize_entry("created_at", &At(t.created_at))?;
        if t.updated_at != t.created_at {
            m.serialize_entry("updated_at", &At(t.updated_at))?;
        }
        if t.not_before != t.created_at {
            m.serialize_entry("not_before", &At(t.not_before))?;
        }
        if let Some(f) = t.finished_at {
            m.serialize_entry("finished_at", &At(f))?;
        }
        if !t.attempts.is_empty() {
            let attempts: Vec<_> = t.attempts.iter().map(CompactAttempt).collect();
            m.serialize_entry("attempts", &attempts)?;
        }
        if t.cancel_requested {
            m.serialize_entry("cancel_requested", &true)?;
        }
        some_entry(&mut m, "exit_code", &t.exit_code)?;
        some_entry(&mut m, "error", &t.error)?;
        some_entry(&mut m, "submitted_by", &t.submitted_by)?;
        if derived {
            m.serialize_entry("array_env", &true)?;
        }
        m.end()
    }
}

/// Writes `key` only when `value` is `Some`.
fn some_entry<M: SerializeMap, T: Serialize>(
    m: &mut M,
    key: &'static str,
    value: &Option<T>,
) -> std::result::Result<(), M::Error> {
    match value {
        Some(v) => m.serialize_entry(key, v),
        None => Ok(()),
    }
}

/// The spec without its constraints and preferences, and, when `.1`, without the array
/// entries of its env. Read back by `TaskSpec`'s own `Deserialize` (its defaults).
struct CompactSpec<'a>(&'a TaskSpec, bool);

impl Serialize for CompactSpec<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let (spec, derived) = (self.0, self.1);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("image", &spec.image)?;
        if !spec.command.is_empty() {
            m.serialize_entry("command", &spec.command)?;
        }
        if !spec.entrypoint.is_empty() {
            m.serialize_entry("entrypoint", &spec.entrypoint)?;
        }
        let own_env = |k: &&String| !derived || (k.as_str() != INDEX_ENV && k.as_str() != ID_ENV);
        if spec.env.keys().any(|k| own_env(&k)) {
            let env: BTreeMap<_, _> = spec.env.iter().filter(|(k, _)| own_env(k)).collect();
            m.serialize_entry("env", &env)?;
        }
        if spec.resources != Resources::default() {
            m.serialize_entry("resources", &spec.resources)?;
        }
        if spec.priority != 0 {
            m.serialize_entry("priority", &spec.priority)?;
        }
        m.serialize_entry("max_attempts", &spec.max_attempts)?;
        m.serialize_entry("max_lost_retries", &spec.max_lost_retries)?;
        if let Some(d) = spec.timeout {
            m.serialize_entry("timeout", &(d.as_millis() as u64))?;
        }
        some_entry(&mut m, "pinned_worker", &spec.pinned_worker)?;
        if !spec.labels.is_empty() {
            m.serialize_entry("labels", &spec.labels)?;
        }
        some_entry(&mut m, "idempotency_key", &spec.idempotency_key)?;
        if !spec.after.is_empty() {
            m.serialize_entry("after", &spec.after)?;
        }
        some_entry(&mut m, "not_before", &spec.not_before)?;
        some_entry(&mut m, "array", &spec.array)?;
        m.end()
    }
}

struct CompactAttempt<'a>(&'a Attempt);

impl Serialize for CompactAttempt<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let a = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("number", &a.number)?;
        m.serialize_entry("token", &a.token)?;
        m.serialize_entry("worker_id", &a.worker_id)?;
        m.serialize_entry("assigned_at", &At(a.assigned_at))?;
        some_entry(&mut m, "started_at", &a.started_at.map(At))?;
        some_entry(&mut m, "finished_at", &a.finished_at.map(At))?;
        some_entry(&mut m, "outcome", &a.outcome)?;
        some_entry(&mut m, "exit_code", &a.exit_code)?;
        some_entry(&mut m, "error", &a.error)?;
        if a.reported_seq != 0 {
            m.serialize_entry("reported_seq", &a.reported_seq)?;
        }
        if a.lost_to_silence {
            m.serialize_entry("lost_to_silence", &true)?;
        }
        m.end()
    }
}

/// A body as read: either form (see the module doc).
#[derive(Deserialize)]
struct Stored {
    id: TaskId,
    spec: TaskSpec,
    status: TaskStatus,
    created_at: Time,
    #[serde(default)]
    updated_at: Option<Time>,
    #[serde(default)]
    not_before: Option<Time>,
    #[serde(default)]
    finished_at: Option<Time>,
    #[serde(default)]
    attempts: Vec<StoredAttempt>,
    #[serde(default)]
    cancel_requested: bool,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    submitted_by: Option<String>,
    #[serde(default)]
    array_env: bool,
}

impl Stored {
    fn into_task(self) -> Task {
        let created_at = self.created_at.0;
        let mut spec = self.spec;
        if self.array_env {
            if let Some(m) = &spec.array {
                for (k, v) in array_env(m) {
                    spec.env.insert(k.to_string(), v);
                }
            }
        }
        Task {
            id: self.id,
            spec,
            status: self.status,
            created_at,
            updated_at: self.updated_at.map_or(created_at, |t| t.0),
            not_before: self.not_before.map_or(created_at, |t| t.0),
            finished_at: self.finished_at.map(|t| t.0),
            attempts: self
                .attempts
                .into_iter()
                .map(StoredAttempt::into_attempt)
                .collect(),
            cancel_requested: self.cancel_requested,
            exit_code: self.exit_code,
            error: self.error,
            submitted_by: self.submitted_by,
        }
    }
}

#[derive(Deserialize)]
struct StoredAttempt {
    number: u32,
    token: u64,
    worker_id: String,
    assigned_at: Time,
    #[serde(default)]
    started_at: Option<Time>,
    #[serde(default)]
    finished_at: Option<Time>,
    #[serde(default)]
    outcome: Option<TaskStatus>,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    reported_seq: u64,
    #[serde(default)]
    lost_to_silence: bool,
}

impl StoredAttempt {
    fn into_attempt(self) -> Attempt {
        Attempt {
            number: self.number,
            token: self.token,
            worker_id: self.worker_id,
            assigned_at: self.assigned_at.0,
            started_at: self.started_at.map(|t| t.0),
            finished_at: self.finished_at.map(|t| t.0),
            outcome: self.outcome,
            exit_code: self.exit_code,
            error: self.error,
            reported_seq: self.reported_seq,
            lost_to_silence: self.lost_to_silence,
        }
    }
}

/// A time as the body writes it: integer nanoseconds, or RFC 3339 text for a time
/// nanoseconds cannot hold (outside 1677..2262), so that none is clamped.
struct At(DateTime<Utc>);

impl Serialize for At {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0.timestamp_nanos_opt() {
            Some(n) => s.serialize_i64(n),
            None => self.0.serialize(s),
        }
    }
}

/// A stored time: integer nanoseconds (schema 8), or RFC 3339 text (before, or out of
/// the nanoseconds' range).
struct Time(DateTime<Utc>);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Time;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("nanoseconds since the epoch or an RFC 3339 time")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Time, E> {
                Ok(Time(from_ts(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Time, E> {
                i64::try_from(v)
                    .map(|v| Time(from_ts(v)))
                    .map_err(|_| E::custom(format!("time {v} is out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Time, E> {
                rfc3339(v).map(Time).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

fn rfc3339(v: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("time {v:?}: {e}"))
}

/// A time SQL read out of a body (`json_extract`): either form; `None` when the field is
/// absent or null.
pub(crate) fn body_time(
    v: rusqlite::types::Value,
) -> std::result::Result<Option<DateTime<Utc>>, String> {
    use rusqlite::types::Value as V;
    match v {
        V::Integer(n) => Ok(Some(from_ts(n))),
        V::Text(s) => rfc3339(&s).map(Some),
        _ => Ok(None),
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
