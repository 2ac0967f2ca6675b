//! The BSON shapes of cloudai's documents (see `database/schema.md`) and the conversions
//! between them and the model. Dates are BSON dates (millisecond precision), ids strings,
//! unsigned counters `i64`. Maps (env, labels) are arrays of `{k, v}` pairs, because their
//! keys are user input and may contain `.` or start with `$`.

use std::collections::BTreeMap;
use std::time::Duration;

use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};

use crate::array::ArrayMember;
use crate::error::{QueueError, Result};
use crate::model::{
    Attempt, Dependency, LogChunk, LogStream, Resources, Task, TaskId, TaskSpec, TaskStatus,
    WorkerHealth, WorkerRecord,
};

/// A chrono time as a BSON date (truncated to milliseconds).
pub(crate) fn bdate(t: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_chrono(t)
}

/// `t` truncated to what a BSON date keeps, so values returned before and after a round
/// trip through the database compare equal.
pub(crate) fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    bdate(t).to_chrono()
}

/// Saturating `u64 -> i64`, for counters and resource sizes stored as BSON int64.
pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn opt_date(t: Option<DateTime<Utc>>) -> Bson {
    t.map(|t| Bson::DateTime(bdate(t))).unwrap_or(Bson::Null)
}

fn opt_str(s: &Option<String>) -> Bson {
    s.as_ref()
        .map(|s| Bson::String(s.clone()))
        .unwrap_or(Bson::Null)
}

fn opt_i32(v: Option<i32>) -> Bson {
    v.map(Bson::Int32).unwrap_or(Bson::Null)
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> QueueError {
    QueueError::Backend {
        backend: "mongodb",
        message: format!("malformed document: {what}"),
        retryable: false,
    }
}

/// Typed field access that turns a missing or mistyped field into a clear error.
pub(crate) struct Fields<'a>(pub &'a Document);

impl Fields<'_> {
    fn get(&self, k: &str) -> Option<&Bson> {
        match self.0.get(k) {
            None | Some(Bson::Null) => None,
            Some(v) => Some(v),
        }
    }
    pub(crate) fn str(&self, k: &str) -> Result<String> {
        self.opt_str(k)?
            .ok_or_else(|| corrupt(format!("{k} missing")))
    }
    pub(crate) fn opt_str(&self, k: &str) -> Result<Option<String>> {
        match self.get(k) {
            None => Ok(None),
            Some(Bson::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(corrupt(format!("{k} is {v}, not a string"))),
        }
    }
    pub(crate) fn opt_int(&self, k: &str) -> Result<Option<i64>> {
        match self.get(k) {
            None => Ok(None),
            Some(Bson::Int32(v)) => Ok(Some(i64::from(*v))),
            Some(Bson::Int64(v)) => Ok(Some(*v)),
            Some(Bson::Double(v)) if v.fract() == 0.0 => Ok(Some(*v as i64)),
            Some(v) => Err(corrupt(format!("{k} is {v}, not an integer"))),
        }
    }
    pub(crate) fn int(&self, k: &str) -> Result<i64> {
        self.opt_int(k)?
            .ok_or_else(|| corrupt(format!("{k} missing")))
    }
    pub(crate) fn uint(&self, k: &str) -> Result<u64> {
        u64::try_from(self.int(k)?).map_err(|_| corrupt(format!("{k} is negative")))
    }
    pub(crate) fn opt_date(&self, k: &str) -> Result<Option<DateTime<Utc>>> {
        match self.get(k) {
            None => Ok(None),
            Some(Bson::DateTime(d)) => Ok(Some(d.to_chrono())),
            Some(v) => Err(corrupt(format!("{k} is {v}, not a date"))),
        }
    }
    pub(crate) fn date(&self, k: &str) -> Result<DateTime<Utc>> {
        self.opt_date(k)?
            .ok_or_else(|| corrupt(format!("{k} missing")))
    }
    pub(crate) fn bool(&self, k: &str) -> Result<bool> {
        Ok(matches!(self.get(k), Some(Bson::Boolean(true))))
    }
    pub(crate) fn doc(&self, k: &str) -> Result<&Document> {
        match self.get(k) {
            Some(Bson::Document(d)) => Ok(d),
            _ => Err(corrupt(format!("{k} is not a document"))),
        }
    }
    pub(crate) fn array(&self, k: &str) -> Result<&Vec<Bson>> {
        match self.get(k) {
            Some(Bson::Array(a)) => Ok(a),
            None => Err(corrupt(format!("{k} missing"))),
            Some(v) => Err(corrupt(format!("{k} is {v}, not an array"))),
        }
    }
    pub(crate) fn strings(&self, k: &str) -> Result<Vec<String>> {
        self.array(k)?
            .iter()
            .map(|v| match v {
                Bson::String(s) => Ok(s.clone()),
                v => Err(corrupt(format!("{k} holds {v}, not a string"))),
            })
            .collect()
    }
    /// Like [`Fields::strings`], but an absent or null field is empty.
    pub(crate) fn opt_strings(&self, k: &str) -> Result<Vec<String>> {
        match self.get(k) {
            None => Ok(Vec::new()),
            Some(_) => self.strings(k),
        }
    }
    pub(crate) fn map(&self, k: &str) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for pair in self.array(k)? {
            let Bson::Document(d) = pair else {
                return Err(corrupt(format!("{k} holds a non-document")));
            };
            let f = Fields(d);
            out.insert(f.str("k")?, f.str("v")?);
        }
        Ok(out)
    }
    pub(crate) fn status(&self, k: &str) -> Result<TaskStatus> {
        self.str(k)?.parse().map_err(corrupt)
    }
    pub(crate) fn bytes(&self, k: &str) -> Result<Vec<u8>> {
        match self.get(k) {
            Some(Bson::Binary(b)) => Ok(b.bytes.clone()),
            _ => Err(corrupt(format!("{k} is not binary"))),
        }
    }
}

/// A string map as an array of `{k, v}` pairs.
pub(crate) fn map_bson(m: &BTreeMap<String, String>) -> Bson {
    Bson::Array(
        m.iter()
            .map(|(k, v)| Bson::Document(doc! { "k": k, "v": v }))
            .collect(),
    )
}

/// Resources as a subdocument of int64 fields.
pub(crate) fn resources_doc(r: &Resources) -> Document {
    doc! {
        "cpu_millis": i64_of(r.cpu_millis),
        "memory_bytes": i64_of(r.memory_bytes),
        "gpus": i64::from(r.gpus),
        "disk_bytes": i64_of(r.disk_bytes),
    }
}

fn resources_of(d: &Document) -> Result<Resources> {
    let f = Fields(d);
    Ok(Resources {
        cpu_millis: f.uint("cpu_millis")?,
        memory_bytes: f.uint("memory_bytes")?,
        gpus: u32::try_from(f.uint("gpus")?).map_err(corrupt)?,
        disk_bytes: f.uint("disk_bytes")?,
    })
}

/// The immutable spec subdocument of a task.
pub(crate) fn spec_doc(s: &TaskSpec) -> Document {
    doc! {
        "image": &s.image,
        "command": s.command.clone(),
        "entrypoint": s.entrypoint.clone(),
        "env": map_bson(&s.env),
        "resources": resources_doc(&s.resources),
        "priority": s.priority,
        "max_attempts": i64::from(s.max_attempts),
        "max_lost_retries": i64::from(s.max_lost_retries),
        "timeout_ms": s.timeout.map(|t| Bson::Int64(i64_of(t.as_millis() as u64))).unwrap_or(Bson::Null),
        "pinned_worker": opt_str(&s.pinned_worker),
        "labels": map_bson(&s.labels),
        "idempotency_key": opt_str(&s.idempotency_key),
        "after": s.after.iter().map(|d| Bson::Document(doc! {
            "task": d.task.to_string(), "condition": d.condition.as_str(),
        })).collect::<Vec<_>>(),
        "not_before": opt_date(s.not_before),
        "array": match &s.array {
            Some(a) => Bson::Document(doc! {
                "id": &a.id, "index": i64::from(a.index), "size": i64::from(a.size),
                "max_running": i64::from(a.max_running),
            }),
            None => Bson::Null,
        },
        "constraints": bson::to_bson(&s.constraints).unwrap_or(Bson::Null),
        "prefer": bson::to_bson(&s.prefer).unwrap_or(Bson::Null),
    }
}

/// `constraints` or `prefer`: absent in documents written before the fields existed.
fn serde_list<T: serde::de::DeserializeOwned>(f: &Fields<'_>, key: &str) -> Result<Vec<T>> {
    match f.0.get(key) {
        None | Some(Bson::Null) => Ok(Vec::new()),
        Some(b) => bson::from_bson(b.clone()).map_err(|e| corrupt(format!("{key}: {e}"))),
    }
}

/// `array`: absent in documents written before the field existed, null for a task that
/// is no element.
fn array_of(f: &Fields<'_>) -> Result<Option<ArrayMember>> {
    let Some(Bson::Document(d)) = f.0.get("array") else {
        return Ok(None);
    };
    let g = Fields(d);
    let small = |k: &str| u32::try_from(g.uint(k)?).map_err(corrupt);
    Ok(Some(ArrayMember {
        id: g.str("id")?,
        index: small("index")?,
        size: small("size")?,
        max_running: small("max_running")?,
    }))
}

/// `after`: absent in documents written before the field existed.
fn after_of(f: &Fields<'_>) -> Result<Vec<Dependency>> {
    let Some(Bson::Array(items)) = f.0.get("after") else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|b| {
            let Bson::Document(d) = b else {
                return Err(corrupt("after holds a non-document"));
            };
            let g = Fields(d);
            Ok(Dependency {
                task: g.str("task")?.parse().map_err(corrupt)?,
                condition: g.str("condition")?.parse().map_err(corrupt)?,
            })
        })
        .collect()
}

fn spec_of(d: &Document) -> Result<TaskSpec> {
    let f = Fields(d);
    Ok(TaskSpec {
        image: f.str("image")?,
        command: f.strings("command")?,
        // Absent in documents written before the field existed: the image's own.
        entrypoint: f.opt_strings("entrypoint")?,
        env: f.map("env")?,
        resources: resources_of(f.doc("resources")?)?,
        priority: i32::try_from(f.int("priority")?).map_err(corrupt)?,
        max_attempts: u32::try_from(f.uint("max_attempts")?).map_err(corrupt)?,
        max_lost_retries: u32::try_from(f.uint("max_lost_retries")?).map_err(corrupt)?,
        timeout: f
            .opt_int("timeout_ms")?
            .map(|v| Duration::from_millis(v.max(0) as u64)),
        pinned_worker: f.opt_str("pinned_worker")?,
        labels: f.map("labels")?,
        idempotency_key: f.opt_str("idempotency_key")?,
        after: after_of(&f)?,
        not_before: f.opt_date("not_before")?,
        array: array_of(&f)?,
        constraints: serde_list(&f, "constraints")?,
        prefer: serde_list(&f, "prefer")?,
    })
}

/// One attempt, as embedded in `TASKS.attempts` (and, with `task_id`, in `ASSIGNMENTS`).
pub(crate) fn attempt_doc(a: &Attempt) -> Document {
    doc! {
        "number": i64::from(a.number),
        "token": i64_of(a.token),
        "worker_id": &a.worker_id,
        "assigned_at": bdate(a.assigned_at),
        "started_at": opt_date(a.started_at),
        "finished_at": opt_date(a.finished_at),
        "outcome": a.outcome.map(|s| Bson::String(s.as_str().into())).unwrap_or(Bson::Null),
        "exit_code": opt_i32(a.exit_code),
        "error": opt_str(&a.error),
        "reported_seq": i64_of(a.reported_seq),
        "lost_to_silence": a.lost_to_silence,
    }
}

/// True when two versions of an attempt differ in more than how far its report is stored
/// (the `ASSIGNMENTS` copy is rewritten only then).
pub(crate) fn attempt_changed(before: Option<&Attempt>, after: &Attempt) -> bool {
    match before {
        None => true,
        Some(b) => {
            let mut b = b.clone();
            b.reported_seq = after.reported_seq;
            b != *after
        }
    }
}

fn attempt_of(d: &Document) -> Result<Attempt> {
    let f = Fields(d);
    Ok(Attempt {
        number: u32::try_from(f.uint("number")?).map_err(corrupt)?,
        token: f.uint("token")?,
        worker_id: f.str("worker_id")?,
        assigned_at: f.date("assigned_at")?,
        started_at: f.opt_date("started_at")?,
        finished_at: f.opt_date("finished_at")?,
        outcome: match f.opt_str("outcome")? {
            Some(s) => Some(s.parse().map_err(corrupt)?),
            None => None,
        },
        exit_code: f.opt_int("exit_code")?.map(|v| v as i32),
        error: f.opt_str("error")?,
        // Absent in documents written before reports were numbered.
        reported_seq: f.opt_int("reported_seq")?.unwrap_or(0).max(0) as u64,
        lost_to_silence: f.bool("lost_to_silence")?,
    })
}

/// A task's output counters, `TASKS.log`: last seq written, bytes kept, bytes dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogCounters {
    pub seq: u64,
    pub bytes: u64,
    pub dropped: u64,
}

impl LogCounters {
    /// The counters of a `TASKS` document.
    pub(crate) fn of(task: &Document) -> Result<LogCounters> {
        let fields = Fields(task);
        let log = Fields(fields.doc("log")?);
        Ok(LogCounters {
            seq: log.uint("seq")?,
            bytes: log.uint("bytes")?,
            dropped: log.uint("dropped")?,
        })
    }

    /// As stored.
    pub(crate) fn doc(&self) -> Document {
        doc! { "seq": i64_of(self.seq), "bytes": i64_of(self.bytes), "dropped": i64_of(self.dropped) }
    }
}

/// The `ASSIGNMENTS` document of one attempt: `_id` is `<task id>/<attempt number>`.
pub(crate) fn assignment_doc(task: TaskId, a: &Attempt) -> Document {
    let mut d = doc! { "_id": format!("{task}/{}", a.number), "task_id": task.to_string() };
    d.extend(attempt_doc(a));
    d
}

/// A whole task as stored in `TASKS`. Besides the model's fields it carries copies used by
/// indexes and filters (`priority`, `pinned_worker`, `req`, `idempotency_key`, `worker_id`,
/// `token`) and the per-task log counters (`log`).
pub(crate) fn task_doc(t: &Task) -> Document {
    let mut d = doc! {
        "_id": t.id.to_string(),
        "spec": spec_doc(&t.spec),
        "priority": t.spec.priority,
        "pinned_worker": opt_str(&t.spec.pinned_worker),
        "req": resources_doc(&t.spec.resources),
        "created_at": bdate(t.created_at),
        "submitted_by": opt_str(&t.submitted_by),
        "log": { "seq": 0_i64, "bytes": 0_i64, "dropped": 0_i64 },
    };
    d.extend(state_doc(t));
    // Present only when set, so the partial unique index ignores tasks without a key.
    if let Some(k) = &t.spec.idempotency_key {
        d.insert("idempotency_key", k);
    }
    d
}

/// The fields of a task's document that change after enqueue (status, times, token,
/// attempts, outcome): what a transition `$set`s. The rest (the spec and its indexed
/// copies, the creation time, the submitter) is written once, by the insert.
pub(crate) fn state_doc(t: &Task) -> Document {
    doc! {
        "status": t.status.as_str(),
        "updated_at": bdate(t.updated_at),
        "not_before": bdate(t.not_before),
        "finished_at": opt_date(t.finished_at),
        "token": i64_of(t.token()),
        "worker_id": t.worker_id().map(|w| Bson::String(w.into())).unwrap_or(Bson::Null),
        "attempts": t.attempts.iter().map(|a| Bson::Document(attempt_doc(a))).collect::<Vec<_>>(),
        "cancel_requested": t.cancel_requested,
        "exit_code": opt_i32(t.exit_code),
        "error": opt_str(&t.error),
    }
}

/// A task from its `TASKS` document.
pub(crate) fn task_of(d: &Document) -> Result<Task> {
    let f = Fields(d);
    let id: TaskId = f.str("_id")?.parse()?;
    let attempts = f
        .array("attempts")?
        .iter()
        .map(|a| match a {
            Bson::Document(a) => attempt_of(a),
            _ => Err(corrupt("attempt is not a document")),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Task {
        id,
        spec: spec_of(f.doc("spec")?)?,
        status: f.status("status")?,
        created_at: f.date("created_at")?,
        updated_at: f.date("updated_at")?,
        not_before: f.date("not_before")?,
        finished_at: f.opt_date("finished_at")?,
        attempts,
        cancel_requested: f.bool("cancel_requested")?,
        exit_code: f.opt_int("exit_code")?.map(|v| v as i32),
        error: f.opt_str("error")?,
        submitted_by: f.opt_str("submitted_by")?,
    })
}

/// A worker's `WORKER_REGISTRY` document; `_id` is the worker id.
pub(crate) fn worker_doc(w: &WorkerRecord) -> Document {
    doc! {
        "_id": &w.id,
        "labels": map_bson(&w.labels),
        "capacity": resources_doc(&w.capacity),
        "gpu_model": opt_str(&w.gpu_model),
        "hostname": &w.hostname,
        "health": w.health.as_str(),
        "registered_at": bdate(w.registered_at),
        "last_heartbeat": bdate(w.last_heartbeat),
        "cordoned": w.cordoned,
        "drain_deadline": opt_date(w.drain_deadline),
        "attributes": map_bson(&w.attributes),
    }
}

/// A worker from its document.
pub(crate) fn worker_of(d: &Document) -> Result<WorkerRecord> {
    let f = Fields(d);
    let health = match f.str("health")?.as_str() {
        "healthy" => WorkerHealth::Healthy,
        "suspect" => WorkerHealth::Suspect,
        "dead" => WorkerHealth::Dead,
        other => return Err(corrupt(format!("unknown health {other:?}"))),
    };
    Ok(WorkerRecord {
        id: f.str("_id")?,
        labels: f.map("labels")?,
        capacity: resources_of(f.doc("capacity")?)?,
        gpu_model: f.opt_str("gpu_model")?,
        hostname: f.str("hostname")?,
        health,
        registered_at: f.date("registered_at")?,
        last_heartbeat: f.date("last_heartbeat")?,
        // Absent in documents written before cordons existed.
        cordoned: d.get_bool("cordoned").unwrap_or(false),
        drain_deadline: f.opt_date("drain_deadline")?,
        // Absent in documents written before attributes existed.
        attributes: if d.contains_key("attributes") {
            f.map("attributes")?
        } else {
            BTreeMap::new()
        },
    })
}

/// A log chunk from its `LOGS` document.
pub(crate) fn log_of(d: &Document) -> Result<LogChunk> {
    let f = Fields(d);
    let stream = match f.str("stream")?.as_str() {
        "stdout" => LogStream::Stdout,
        "stderr" => LogStream::Stderr,
        "system" => LogStream::System,
        other => return Err(corrupt(format!("unknown log stream {other:?}"))),
    };
    Ok(LogChunk {
        seq: f.uint("seq")?,
        attempt: u32::try_from(f.uint("attempt")?).map_err(corrupt)?,
        stream,
        time: f.date("time")?,
        data: f.bytes("data")?,
    })
}

/// A log chunk's `LOGS` document; `_id` is `<task id>/<seq>`.
pub(crate) fn log_doc(task: TaskId, c: &LogChunk) -> Document {
    doc! {
        "_id": format!("{task}/{}", c.seq),
        "task_id": task.to_string(),
        "seq": i64_of(c.seq),
        "attempt": i64::from(c.attempt),
        "stream": c.stream.as_str(),
        "time": bdate(c.time),
        "len": i64_of(c.data.len() as u64),
        "data": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: c.data.clone() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_round_trips_through_its_document() {
        let now = ms(Utc::now());
        let mut spec = TaskSpec::new("busybox");
        spec.env.insert("A.B".into(), "$x".into());
        spec.labels.insert("$team".into(), "ml".into());
        spec.timeout = Some(Duration::from_millis(1500));
        spec.pinned_worker = Some("w1".into());
        spec.idempotency_key = Some("k".into());
        spec.resources.memory_bytes = 1 << 40;
        spec.command = vec!["-c".into(), "echo hi".into()];
        spec.entrypoint = vec!["/bin/sh".into()];
        let task = Task {
            id: TaskId::new(),
            spec,
            status: TaskStatus::Running,
            created_at: now,
            updated_at: now,
            not_before: now,
            finished_at: None,
            attempts: vec![Attempt {
                number: 1,
                token: 7,
                worker_id: "w1".into(),
                assigned_at: now,
                started_at: Some(now),
                finished_at: None,
                outcome: None,
                exit_code: Some(-1),
                error: Some("e".into()),
                reported_seq: 3,
                lost_to_silence: false,
            }],
            cancel_requested: true,
            exit_code: None,
            error: None,
            submitted_by: Some("alice".into()),
        };
        let d = task_doc(&task);
        assert_eq!(d.get_str("idempotency_key").unwrap(), "k");
        assert_eq!(d.get_i64("token").unwrap(), 7);
        assert_eq!(task_of(&d).unwrap(), task);

        // A document written before `spec.entrypoint` existed loads with the image's own.
        let mut old = d.clone();
        old.get_document_mut("spec").unwrap().remove("entrypoint");
        let loaded = task_of(&old).unwrap();
        assert!(loaded.spec.entrypoint.is_empty());
        assert_eq!(loaded.spec.command, task.spec.command);
    }

    #[test]
    fn worker_round_trips_and_bad_documents_are_typed_errors() {
        let now = ms(Utc::now());
        let w = WorkerRecord {
            id: "w1".into(),
            labels: BTreeMap::from([("zone".into(), "a".into())]),
            capacity: Resources {
                cpu_millis: 4000,
                memory_bytes: 1 << 30,
                gpus: 1,
                disk_bytes: 0,
            },
            gpu_model: None,
            hostname: "h".into(),
            health: WorkerHealth::Suspect,
            registered_at: now,
            last_heartbeat: now,
            cordoned: false,
            drain_deadline: None,
            attributes: Default::default(),
        };
        assert_eq!(worker_of(&worker_doc(&w)).unwrap(), w);
        let err = task_of(&doc! { "_id": "nope" }).unwrap_err();
        assert!(matches!(err, QueueError::Invalid { .. }), "{err}");
        let err = worker_of(&doc! { "_id": "w" }).unwrap_err();
        assert!(matches!(err, QueueError::Backend { .. }), "{err}");
    }
}
