//! Claim, assign and every later status change.
//!
//! Taking a queued task is one `findAndModify` (filter, dispatch-order sort, an update
//! pipeline that increments the fencing token and appends the attempt), so two masters
//! never take the same task; `batch` runs concurrent assigns and reports together. Later
//! changes (the `lost` verdict, a cancel) are read, decided by the pure `lifecycle`
//! functions (tokens, the state table, report seqs), then written with an update
//! conditional on the status and token that were read: a change that raced with another is
//! rejected by the database and the operation runs again, and then gets the precise typed
//! error. Each runs in a transaction with its `ASSIGNMENTS`, `RESULTS` and `LOGS` writes.

use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use mongodb::options::{Hint, ReplaceOptions, ReturnDocument};
use mongodb::ClientSession;

use super::doc::{
    assignment_doc, attempt_changed, attempt_doc, bdate, i64_of, ms, state_doc, task_of,
};
use super::exec::{in_txn, Fail};
use super::MongoStore;
use crate::error::{QueueError, Result};
use crate::lifecycle;
use crate::model::{Attempt, ClaimRequest, Task, TaskId, TaskStatus};
use crate::report::LostCause;
use crate::state;
use crate::validate::validate_worker_id;

/// How a conditional change alters a task; it may refuse with a typed error.
type Change = dyn Fn(&mut Task, DateTime<Utc>) -> Result<()> + Send + Sync;

impl MongoStore {
    /// The filter, sort and index hint of a claim: queued, eligible at `req.now`, pinned to
    /// this worker or nobody, fitting the worker's free resources, in dispatch order.
    pub fn claim_plan(req: &ClaimRequest) -> (Document, Document, String) {
        let (mut filter, sort, hint) = MongoStore::queued_plan(ms(req.now));
        filter.insert(
            "pinned_worker",
            doc! { "$in": [Bson::Null, req.worker_id.as_str()] },
        );
        filter.insert(
            "req.cpu_millis",
            doc! { "$lte": i64_of(req.free.cpu_millis) },
        );
        filter.insert(
            "req.memory_bytes",
            doc! { "$lte": i64_of(req.free.memory_bytes) },
        );
        filter.insert("req.gpus", doc! { "$lte": i64::from(req.free.gpus) });
        filter.insert(
            "req.disk_bytes",
            doc! { "$lte": i64_of(req.free.disk_bytes) },
        );
        (filter, sort, hint)
    }

    /// Takes the first task matching `filter` (in `sort` order) for `worker`, inside the
    /// caller's transaction, in one `findAndModify`: an update pipeline increments the
    /// token and appends the attempt numbered and fenced from the document's own fields.
    /// The caller writes the attempt's `ASSIGNMENTS` copy.
    pub(super) async fn take(
        &self,
        s: &mut ClientSession,
        filter: Document,
        sort: Option<(Document, String)>,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, Fail> {
        let mut q = self
            .tasks
            .find_one_and_update(filter, take_pipeline(worker, now))
            .return_document(ReturnDocument::After);
        if let Some((sort, hint)) = sort {
            q = q.sort(sort).hint(Hint::Name(hint));
        }
        let Some(d) = q.session(&mut *s).await? else {
            return Ok(None);
        };
        let task = task_of(&d)?;
        match task.attempts.last() {
            Some(a) if a.token == task.token() && a.worker_id == worker => Ok(Some(task)),
            _ => Err(QueueError::Backend {
                backend: "mongodb",
                message: format!("task {}: the assign pipeline left no attempt", task.id),
                retryable: false,
            }
            .into()),
        }
    }

    pub(super) async fn claim_task(&self, req: &ClaimRequest) -> Result<Option<Task>> {
        validate_worker_id(&req.worker_id)?;
        state::check(TaskId::default(), TaskStatus::Queued, TaskStatus::Assigned)?;
        let now = ms(req.now);
        let (filter, sort, hint) = Self::claim_plan(req);
        in_txn(
            &self.client,
            "claim",
            (self, filter, sort, hint, req.worker_id.as_str()),
            |s, (store, filter, sort, hint, worker)| {
                async move {
                    store.check_fence(s).await?;
                    let t = store
                        .take(
                            s,
                            filter.clone(),
                            Some((sort.clone(), hint.clone())),
                            worker,
                            now,
                        )
                        .await?;
                    if let Some(t) = &t {
                        store.copy_attempts(s, std::slice::from_ref(t)).await?;
                    }
                    Ok(t)
                }
                .boxed()
            },
        )
        .await
    }

    /// Reads the task, applies `change` (a pure lifecycle function, which checks tokens
    /// and transitions itself), and writes the result back with [`Self::write_back`].
    async fn modify(
        &self,
        op: &'static str,
        id: TaskId,
        now: DateTime<Utc>,
        leader_only: bool,
        change: &Change,
    ) -> Result<Task> {
        let now = ms(now);
        in_txn(&self.client, op, (self, change), |s, (store, change)| {
            async move {
                if leader_only {
                    store.check_fence(s).await?;
                }
                let before = store.find_task(id, Some(&mut *s)).await?;
                let mut after = before.clone();
                change(&mut after, now)?;
                // BSON keeps milliseconds; round so the returned task equals a later read.
                after.not_before = ms(after.not_before);
                store.write_back(s, &before, &after).await?;
                Ok(after)
            }
            .boxed()
        })
        .await
    }

    /// Writes `after` over `before` in the caller's transaction, conditional on the status
    /// and token read (a concurrent change makes it a [`Fail::Conflict`] and the operation
    /// runs again), with the attempt's `ASSIGNMENTS` copy when the attempt changed and the
    /// `RESULTS` document once the task is final.
    async fn write_back(
        &self,
        s: &mut ClientSession,
        before: &Task,
        after: &Task,
    ) -> Result<(), Fail> {
        let id = after.id;
        // Only what changes: the spec and the other fields fixed at enqueue stay as written.
        let set = state_doc(after);
        let r = self
            .tasks
            .update_one(
                doc! {
                    "_id": id.to_string(),
                    "status": before.status.as_str(),
                    "token": i64_of(before.token()),
                },
                doc! { "$set": set },
            )
            .session(&mut *s)
            .await?;
        if r.matched_count != 1 {
            return Err(Fail::Conflict);
        }
        if let Some(a) = after.attempts.last() {
            if attempt_changed(before.attempts.last(), a) {
                let d = assignment_doc(id, a);
                self.assignments
                    .replace_one(doc! { "_id": d.get("_id").cloned() }, d)
                    .with_options(ReplaceOptions::builder().upsert(true).build())
                    .session(&mut *s)
                    .await?;
            }
        }
        if after.status.is_terminal() && !before.status.is_terminal() {
            let d = result_doc(after);
            self.results
                .replace_one(doc! { "_id": id.to_string() }, d)
                .with_options(ReplaceOptions::builder().upsert(true).build())
                .session(&mut *s)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn lose_attempt(
        &self,
        id: TaskId,
        token: u64,
        cause: LostCause,
        now: DateTime<Utc>,
    ) -> Result<Task> {
        self.modify("lose attempt", id, now, true, &move |t, now| {
            lifecycle::lose(t, token, &cause, now)
        })
        .await
    }

    pub(super) async fn cancel(&self, id: TaskId, now: DateTime<Utc>) -> Result<Task> {
        self.modify("request cancel", id, now, false, &lifecycle::request_cancel)
            .await
    }

    /// `waiting` ends as the dependency rule decided; the leader's.
    pub(super) async fn end_waiting(
        &self,
        id: TaskId,
        res: crate::deps::Resolution,
        now: DateTime<Utc>,
    ) -> Result<Task> {
        let change = move |t: &mut Task, now| lifecycle::settle_waiting(t, &res, now);
        self.modify("settle waiting", id, now, true, &change).await
    }
}

/// The update pipeline of [`MongoStore::take`]: `token + 1`, `assigned` to `worker`, and
/// the new attempt (number `len + 1`, the new token) appended. Values given by us are
/// `$literal`, so no string is read as a field path.
pub(super) fn take_pipeline(worker: &str, now: DateTime<Utc>) -> Vec<Document> {
    let mut fresh = attempt_doc(&Attempt::new(0, 0, worker, now));
    fresh.remove("number");
    fresh.remove("token");
    vec![
        doc! { "$set": {
            "token": { "$add": ["$token", 1_i64] },
            "status": { "$literal": TaskStatus::Assigned.as_str() },
            "worker_id": { "$literal": worker },
            "updated_at": bdate(now),
        } },
        doc! { "$set": { "attempts": { "$concatArrays": ["$attempts", [{ "$mergeObjects": [
            {
                "number": { "$add": [{ "$toLong": { "$size": "$attempts" } }, 1_i64] },
                "token": "$token",
            },
            { "$literal": fresh },
        ] }]] } } },
    ]
}

/// The `RESULTS` document of a finished task.
pub(super) fn result_doc(t: &Task) -> Document {
    let opt = |v: Option<Bson>| v.unwrap_or(Bson::Null);
    doc! {
        "_id": t.id.to_string(),
        "status": t.status.as_str(),
        "exit_code": opt(t.exit_code.map(Bson::Int32)),
        "error": opt(t.error.clone().map(Bson::String)),
        "finished_at": opt(t.finished_at.map(|f| Bson::DateTime(bdate(f)))),
        "attempts": t.attempts.len() as i64,
        "worker_id": opt(t.worker_id().map(|w| Bson::String(w.into()))),
        "submitted_by": opt(t.submitted_by.clone().map(Bson::String)),
    }
}
