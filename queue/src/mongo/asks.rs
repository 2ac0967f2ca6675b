//! The dispatcher's reads of queued tasks, projected to what placement needs (id, the
//! request, pin, constraints, preferences, priority, submitter) and decoded from the raw
//! reply without building a `Document` per task. A pass reads up to hundreds of queued
//! tasks; decoding whole documents was most of what a pass cost the master (BENCHMARKS.md).
//! Also the read that arms the dispatcher's timers (`delayed_due`), of one field.

use std::sync::Arc;

use bson::raw::{RawBsonRef, RawDocument, RawDocumentBuf};
use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::options::Hint;

use super::doc::{bdate, corrupt};
use super::exec::retry;
use super::indexes;
use super::MongoStore;
use crate::constraint::{Constraint, Preference};
use crate::error::Result;
use crate::model::{Resources, TaskStatus};
use crate::store::QueuedTask;

/// The fields of a `TASKS` document a [`QueuedTask`] is made of: the indexed copies of the
/// request, pin and priority, and the spec's constraints and preferences.
fn projection() -> Document {
    doc! {
        "_id": 1, "req": 1, "pinned_worker": 1, "priority": 1, "submitted_by": 1,
        "spec.constraints": 1, "spec.prefer": 1,
    }
}

impl MongoStore {
    /// `queued_asks` (with `submitter`, `queued_asks_of`): the dispatch-order query of
    /// `queued_plan`, projected. `submitter: Some(None)` reads the tasks without one.
    pub(super) async fn queued_asks_by(
        &self,
        now: DateTime<Utc>,
        submitter: Option<Option<&str>>,
        limit: usize,
    ) -> Result<Vec<QueuedTask>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (mut filter, sort, mut hint) = Self::queued_plan(now);
        if let Some(of) = submitter {
            let of = of.map(|s| Bson::String(s.into())).unwrap_or(Bson::Null);
            filter.insert("submitted_by", of);
            hint = indexes::FAIR.to_string();
        }
        let raw = self.tasks.clone_with_type::<RawDocumentBuf>();
        let docs: Vec<RawDocumentBuf> = retry("queued asks", || async {
            let c = raw
                .find(filter.clone())
                .sort(sort.clone())
                .projection(projection())
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .hint(Hint::Name(hint.clone()))
                .await?;
            Ok(c.try_collect().await?)
        })
        .await?;
        let mut shapes = Shapes::default();
        docs.iter().map(|d| ask_of(d, &mut shapes)).collect()
    }

    /// The filter, sort and index hint of `delayed_times`: queued tasks delayed past their
    /// creation whose `not_before` is in `(now, until]`, by the `DELAYED` index.
    pub fn delayed_plan(now: DateTime<Utc>, until: DateTime<Utc>) -> (Document, Document, String) {
        (
            doc! {
                "status": TaskStatus::Queued.as_str(),
                "not_before": { "$gt": bdate(now), "$lte": bdate(until) },
                // Delayed ones only (as on SQLite): a task enqueued to run at once is due
                // at its creation, which may fall after `now`.
                "$expr": { "$gt": ["$not_before", "$created_at"] },
            },
            doc! { "not_before": 1 },
            indexes::DELAYED.to_string(),
        )
    }

    /// `delayed_times`: `delayed_plan`'s query, projected to the one field.
    pub(super) async fn delayed_due(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DateTime<Utc>>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (filter, sort, hint) = Self::delayed_plan(now, until);
        let raw = self.tasks.clone_with_type::<RawDocumentBuf>();
        let docs: Vec<RawDocumentBuf> = retry("delayed tasks", || async {
            let c = raw
                .find(filter.clone())
                .sort(sort.clone())
                .projection(doc! { "_id": 0, "not_before": 1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .hint(Hint::Name(hint.clone()))
                .await?;
            Ok(c.try_collect().await?)
        })
        .await?;
        let mut out: Vec<DateTime<Utc>> = Vec::with_capacity(docs.len());
        for d in &docs {
            let t = d.get_datetime("not_before").map_err(corrupt)?.to_chrono();
            if out.last() != Some(&t) {
                out.push(t);
            }
        }
        Ok(out)
    }
}

/// The constraints and preferences seen in one read, each distinct value decoded once:
/// the tasks of a read mostly share a few (usually none).
#[derive(Default)]
struct Shapes {
    constraints: Vec<(Bson, Arc<[Constraint]>)>,
    prefer: Vec<(Bson, Arc<[Preference]>)>,
}

/// `key` of `spec` decoded through `seen`; absent, null or empty is the empty list.
fn shared<T: serde::de::DeserializeOwned>(
    spec: Option<&RawDocument>,
    key: &str,
    seen: &mut Vec<(Bson, Arc<[T]>)>,
) -> Result<Arc<[T]>> {
    let value = match spec.map(|s| s.get(key)).transpose().map_err(corrupt)? {
        Some(Some(RawBsonRef::Array(a))) if !a.is_empty() => RawBsonRef::Array(a),
        Some(None | Some(RawBsonRef::Null | RawBsonRef::Array(_))) | None => {
            return Ok(Arc::from(Vec::new()))
        }
        Some(Some(other)) => {
            return Err(corrupt(format!("spec.{key} is {:?}", other.element_type())))
        }
    };
    let value = Bson::try_from(value.to_raw_bson()).map_err(corrupt)?;
    if let Some((_, v)) = seen.iter().find(|(b, _)| *b == value) {
        return Ok(v.clone());
    }
    let list: Vec<T> =
        bson::from_bson(value.clone()).map_err(|e| corrupt(format!("spec.{key}: {e}")))?;
    let list: Arc<[T]> = list.into();
    seen.push((value, list.clone()));
    Ok(list)
}

/// A non-negative integer field of `d` (int64, int32, or a whole double as a shell
/// writes it, as `doc::Fields` reads them).
fn uint(d: &RawDocument, key: &str) -> Result<u64> {
    let v = match d.get(key).map_err(corrupt)? {
        Some(RawBsonRef::Int64(v)) => v,
        Some(RawBsonRef::Int32(v)) => i64::from(v),
        Some(RawBsonRef::Double(v)) if v.fract() == 0.0 => v as i64,
        other => return Err(corrupt(format!("{key} is {other:?}, not an integer"))),
    };
    u64::try_from(v).map_err(|_| corrupt(format!("{key} is negative")))
}

/// A string field of `d` that may be null.
fn opt_str(d: &RawDocument, key: &str) -> Result<Option<String>> {
    match d.get(key).map_err(corrupt)? {
        Some(RawBsonRef::String(s)) => Ok(Some(s.to_string())),
        None | Some(RawBsonRef::Null) => Ok(None),
        Some(other) => Err(corrupt(format!(
            "{key} is {:?}, not a string",
            other.element_type()
        ))),
    }
}

/// One projected document as the dispatcher's view of the task.
fn ask_of(d: &RawDocument, shapes: &mut Shapes) -> Result<QueuedTask> {
    let id = d.get_str("_id").map_err(corrupt)?.parse()?;
    let req = d.get_document("req").map_err(corrupt)?;
    let resources = Resources {
        cpu_millis: uint(req, "cpu_millis")?,
        memory_bytes: uint(req, "memory_bytes")?,
        gpus: u32::try_from(uint(req, "gpus")?).map_err(corrupt)?,
        disk_bytes: uint(req, "disk_bytes")?,
    };
    let priority = match d.get("priority").map_err(corrupt)? {
        Some(RawBsonRef::Int32(p)) => p,
        Some(RawBsonRef::Int64(p)) => i32::try_from(p).map_err(corrupt)?,
        other => return Err(corrupt(format!("priority is {other:?}"))),
    };
    let spec = match d.get("spec").map_err(corrupt)? {
        Some(RawBsonRef::Document(s)) => Some(s),
        _ => None,
    };
    Ok(QueuedTask {
        id,
        resources,
        pinned_worker: opt_str(d, "pinned_worker")?,
        constraints: shared(spec, "constraints", &mut shapes.constraints)?,
        prefer: shared(spec, "prefer", &mut shapes.prefer)?,
        priority,
        submitter: opt_str(d, "submitted_by")?,
    })
}
