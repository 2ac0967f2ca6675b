//! Enqueueing (idempotent by key, batches in one transaction), reading and listing tasks.

use std::collections::HashMap;
use std::time::Duration;

use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};
use futures::{FutureExt, TryStreamExt};
use mongodb::options::Hint;
use mongodb::ClientSession;

use super::doc::{bdate, ms, task_doc, task_of};
use super::exec::{in_txn, is_duplicate_key, retry, Fail};
use super::{indexes, MongoStore};
use crate::error::{QueueError, Result};
use crate::model::{Enqueued, NewTask, Task, TaskId, TaskSpec, TaskStatus};
use crate::query::TaskQuery;
use crate::validate::validate_spec;

/// `_id` of the `SETTINGS` document every capped enqueue writes (see `admit`).
const QUEUE_GATE: &str = "queue_gate";

/// A fresh queued task for `new`, with times at the millisecond precision BSON keeps.
fn fresh(mut new: NewTask) -> Result<Task> {
    validate_spec(&new.spec)?;
    // BSON keeps milliseconds; round now so the stored spec equals the returned one.
    new.spec.timeout = new
        .spec
        .timeout
        .map(|t| Duration::from_millis((t.as_millis() as u64).max(1)));
    Ok(crate::lifecycle::new_task(new, ms(Utc::now())))
}

/// The answer for a key that `existing` already holds: that task, or a conflict.
fn reuse(key: &str, existing: Task, spec: &TaskSpec) -> Result<Enqueued> {
    if existing.spec == *spec {
        Ok(Enqueued {
            task: existing,
            created: false,
        })
    } else {
        Err(QueueError::IdempotencyConflict {
            key: key.to_string(),
            existing: existing.id,
        })
    }
}

impl MongoStore {
    pub(super) async fn find_task(
        &self,
        id: TaskId,
        session: Option<&mut ClientSession>,
    ) -> Result<Task, Fail> {
        let q = self.tasks.find_one(doc! { "_id": id.to_string() });
        let found = match session {
            Some(s) => q.session(s).await?,
            None => q.await?,
        };
        match found {
            Some(d) => Ok(task_of(&d)?),
            None => Err(QueueError::NotFound(id).into()),
        }
    }

    pub(super) async fn enqueue_one(&self, new: NewTask) -> Result<Enqueued> {
        if self.opts.max_queued.is_some() {
            // The cap needs the count and the insert in one transaction.
            let mut one = self.enqueue_many(vec![new]).await?;
            return Ok(one.remove(0));
        }
        let task = fresh(new)?;
        let d = task_doc(&task);
        retry("enqueue", || async {
            match self.tasks.insert_one(d.clone()).await {
                Ok(_) => Ok(Enqueued {
                    task: task.clone(),
                    created: true,
                }),
                Err(e) if is_duplicate_key(&e) => {
                    // Either a retried insert that had landed, or the key is taken.
                    if let Ok(mine) = self.find_task(task.id, None).await {
                        return Ok(Enqueued {
                            task: mine,
                            created: true,
                        });
                    }
                    let Some(key) = &task.spec.idempotency_key else {
                        return Err(e.into());
                    };
                    match self.tasks.find_one(doc! { "idempotency_key": key }).await? {
                        Some(existing) => Ok(reuse(key, task_of(&existing)?, &task.spec)?),
                        // The holder vanished between the insert and the read: try again.
                        None => Err(Fail::Conflict),
                    }
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    pub(super) async fn enqueue_many(&self, news: Vec<NewTask>) -> Result<Vec<Enqueued>> {
        if news.is_empty() {
            return Ok(Vec::new());
        }
        let fresh: Vec<Task> = news.into_iter().map(fresh).collect::<Result<_>>()?;
        in_txn(
            &self.client,
            "enqueue batch",
            (self, &fresh),
            |s, (store, fresh)| {
                async move {
                    let fresh: &Vec<Task> = fresh;
                    // Which task each key resolves to: one already stored, or the first
                    // task of this batch that carries it.
                    let mut by_key: HashMap<&str, (Task, bool)> = HashMap::new();
                    let mut out = Vec::with_capacity(fresh.len());
                    let mut inserts = Vec::new();
                    for task in fresh {
                        let Some(key) = task.spec.idempotency_key.as_deref() else {
                            inserts.push(task_doc(task));
                            out.push(Enqueued {
                                task: task.clone(),
                                created: true,
                            });
                            continue;
                        };
                        if !by_key.contains_key(key) {
                            let stored = store
                                .tasks
                                .find_one(doc! { "idempotency_key": key })
                                .session(&mut *s)
                                .await?;
                            let entry = match stored {
                                Some(d) => (task_of(&d)?, false),
                                None => {
                                    inserts.push(task_doc(task));
                                    out.push(Enqueued {
                                        task: task.clone(),
                                        created: true,
                                    });
                                    by_key.insert(key, (task.clone(), true));
                                    continue;
                                }
                            };
                            by_key.insert(key, entry);
                        }
                        let (holder, _) = &by_key[key];
                        out.push(reuse(key, holder.clone(), &task.spec)?);
                    }
                    if let (Some(max), false) = (store.opts.max_queued, inserts.is_empty()) {
                        store.admit(s, inserts.len() as u64, max).await?;
                    }
                    if !inserts.is_empty() {
                        // A concurrent enqueue took one of the keys: run again to reuse it.
                        store
                            .tasks
                            .insert_many(inserts)
                            .session(&mut *s)
                            .await
                            .map_err(|e| {
                                if is_duplicate_key(&e) {
                                    Fail::Conflict
                                } else {
                                    Fail::Db(e)
                                }
                            })?;
                    }
                    Ok(out)
                }
                .boxed()
            },
        )
        .await
    }

    /// The queue cap, in the enqueue's transaction: every capped enqueue first writes the
    /// `queue_gate` document of `SETTINGS`, so two of them conflict and run one after the
    /// other (snapshot isolation alone would let both count the same tasks), then counts
    /// the queued tasks, at most `max + 1` of them, on the status index.
    async fn admit(&self, s: &mut ClientSession, adding: u64, max: u64) -> Result<(), Fail> {
        self.settings
            .update_one(
                doc! { "_id": QUEUE_GATE },
                doc! { "$inc": { "enqueues": 1_i64 } },
            )
            .upsert(true)
            .session(&mut *s)
            .await?;
        let queued = self
            .tasks
            .count_documents(doc! { "status": TaskStatus::Queued.as_str() })
            .limit(i64::try_from(max.saturating_add(1)).unwrap_or(i64::MAX) as u64)
            .hint(Hint::Name(indexes::STATUS_ID.into()))
            .session(&mut *s)
            .await?;
        if queued.saturating_add(adding) > max {
            return Err(QueueError::QueueFull { queued, max }.into());
        }
        Ok(())
    }

    pub(super) async fn get_task(&self, id: TaskId) -> Result<Task> {
        retry("get", || self.find_task(id, None)).await
    }

    pub(super) async fn resolve(&self, prefix: &str) -> Result<TaskId> {
        let p = prefix.to_ascii_lowercase();
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(QueueError::NoMatch(prefix.to_string()));
        }
        // Ids are lowercase hex and '-', all below 'g': this range is exactly the prefix.
        let filter = doc! { "_id": { "$gte": &p, "$lt": format!("{p}g") } };
        let ids: Vec<Document> = retry("resolve prefix", || async {
            let c = self
                .tasks
                .find(filter.clone())
                .projection(doc! { "_id": 1 })
                .sort(doc! { "_id": 1 })
                .limit(2)
                .hint(Hint::Name(indexes::ID.into()))
                .await?;
            Ok(c.try_collect().await?)
        })
        .await?;
        match ids.len() {
            0 => Err(QueueError::NoMatch(prefix.to_string())),
            1 => ids[0]
                .get_str("_id")
                .map_err(|e| QueueError::invalid("task id", e.to_string()))?
                .parse(),
            _ => {
                let count = retry("resolve prefix", || async {
                    Ok(self
                        .tasks
                        .count_documents(filter.clone())
                        .hint(Hint::Name(indexes::ID.into()))
                        .await?)
                })
                .await?;
                Err(QueueError::AmbiguousPrefix {
                    prefix: prefix.to_string(),
                    count: count as usize,
                })
            }
        }
    }

    /// The filter, sort and index hint of a `list` query (also used by the explain test).
    pub fn list_plan(query: &TaskQuery) -> (Document, Document, String) {
        let mut filter = Document::new();
        if !query.statuses.is_empty() {
            let s: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
            filter.insert("status", doc! { "$in": s });
        }
        if let Some(w) = &query.worker_id {
            filter.insert("worker_id", w);
        }
        if let Some(who) = &query.submitted_by {
            filter.insert("submitted_by", who);
        }
        if let Some(image) = &query.image {
            match query.image_prefix() {
                Some(prefix) => {
                    let pattern = format!("^{}", regex_escape(prefix));
                    filter.insert("spec.image", doc! { "$regex": pattern });
                }
                None => {
                    filter.insert("spec.image", image);
                }
            }
        }
        let mut all = Vec::new();
        for (k, v) in &query.labels {
            // Labels are `{k, v}` pairs (doc.rs): one pair must hold both.
            all.push(doc! { "spec.labels": { "$elemMatch": { "k": k, "v": v } } });
        }
        if let Some(text) = &query.text {
            let re = doc! { "$regex": regex_escape(text), "$options": "i" };
            all.push(doc! { "$or": [
                { "_id": re.clone() }, { "spec.image": re.clone() }, { "spec.command": re },
            ] });
        }
        if let Some(parent) = query.depends_on {
            all.push(doc! { "spec.after.task": parent.to_string() });
        }
        if let Some(array) = &query.array {
            filter.insert("spec.array.id", array);
        }
        if !all.is_empty() {
            filter.insert("$and", all);
        }
        let mut created = Document::new();
        if let Some(a) = query.created_after {
            created.insert("$gte", bdate(a));
        }
        if let Some(b) = query.created_before {
            created.insert("$lt", bdate(b));
        }
        if !created.is_empty() {
            filter.insert("created_at", created);
        }
        let (cmp, order) = if query.oldest_first {
            ("$gt", 1)
        } else {
            ("$lt", -1)
        };
        if let Some(b) = query.before {
            filter.insert("_id", doc! { cmp: b.to_string() });
        }
        let hint = if query.depends_on.is_some() {
            indexes::DEPENDS_ON
        } else if query.array.is_some() {
            indexes::ARRAY
        } else if query.worker_id.is_some() {
            indexes::WORKER_ID
        } else if query.submitted_by.is_some() {
            indexes::SUBMITTER_ID
        } else if !query.statuses.is_empty() {
            indexes::STATUS_ID
        } else {
            indexes::ID
        };
        (filter, doc! { "_id": order }, hint.to_string())
    }

    pub(super) async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<Task>> {
        let limit = query.page_size();
        let (filter, sort, hint) = Self::list_plan(query);
        self.find_tasks("list", filter, sort, hint, limit).await
    }

    /// The filter, sort and index hint of the dispatch-order query (`queued`, `claim`).
    pub fn queued_plan(now: DateTime<Utc>) -> (Document, Document, String) {
        (
            doc! { "status": TaskStatus::Queued.as_str(), "not_before": { "$lte": bdate(now) } },
            doc! { "priority": -1, "created_at": 1, "_id": 1 },
            indexes::CLAIM.to_string(),
        )
    }

    pub(super) async fn queued_tasks(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Task>> {
        let (filter, sort, hint) = Self::queued_plan(now);
        self.find_tasks("queued", filter, sort, hint, limit).await
    }

    /// Each submitter with queued tasks once: `distinct` over the `FAIR` index (which
    /// the server walks one submitter at a time), plus whether any queued task has none.
    pub(super) async fn queued_submitter_names(&self) -> Result<Vec<Option<String>>> {
        let queued = TaskStatus::Queued.as_str();
        let names: Vec<Bson> = retry("queued submitters", || async {
            Ok(self
                .tasks
                .distinct("submitted_by", doc! { "status": queued })
                .await?)
        })
        .await?;
        let mut out: Vec<Option<String>> = names
            .into_iter()
            .filter_map(|b| match b {
                Bson::String(s) => Some(Some(s)),
                _ => None,
            })
            .collect();
        // `distinct` need not list a null value: ask for such a task directly.
        let anonymous = retry("queued without submitter", || async {
            Ok(self
                .tasks
                .find_one(doc! { "status": queued, "submitted_by": Bson::Null })
                .projection(doc! { "_id": 1 })
                .hint(Hint::Name(indexes::FAIR.to_string()))
                .await?)
        })
        .await?;
        if anonymous.is_some() {
            out.push(None);
        }
        Ok(out)
    }

    async fn find_tasks(
        &self,
        op: &'static str,
        filter: Document,
        sort: Document,
        hint: String,
        limit: usize,
    ) -> Result<Vec<Task>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let docs: Vec<Document> = retry(op, || async {
            let c = self
                .tasks
                .find(filter.clone())
                .sort(sort.clone())
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .hint(Hint::Name(hint.clone()))
                .await?;
            Ok(c.try_collect().await?)
        })
        .await?;
        docs.iter().map(task_of).collect()
    }
}

/// `s` as a regular expression that matches it literally: every ASCII character other
/// than a letter or digit escaped (PCRE takes `\\` before any of them as the character).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
