//! Assigns and reports under group commit (see `crate::group`): the concurrent calls of a
//! dispatch pass, or of many workers' reports, share one transaction, so its fence read
//! and commit are paid once per batch. A batch of assigns takes its tasks in one
//! multi-statement `update` (one conditional take each) and reads them back in one `find`;
//! a batch of reports reads its tasks in one `find` and writes them in one `update`.
//!
//! Each request in a batch gets its own answer: a task that is not queued, a stale token,
//! a gap are that request's error and the others go on (an assign batch where some task
//! was not queued runs again one take at a time, to find which). A conditional write that
//! matched nothing (another master's cancel moved the task) runs the whole batch again, as
//! a single change does.

use std::collections::HashMap;

use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};
use futures::{FutureExt, TryStreamExt};
use mongodb::ClientSession;

use super::doc::{assignment_doc, attempt_changed, i64_of, ms, state_doc, task_of, LogCounters};
use super::exec::{in_txn, Fail};
use super::transitions::{result_doc, take_pipeline};
use super::{names, MongoStore};
use crate::error::{QueueError, Result};
use crate::group::{abandoned, share};
use crate::lifecycle;
use crate::model::{Task, TaskId, TaskStatus};
use crate::report::{Applied, ReportEvent};
use crate::state;
use crate::validate::validate_worker_id;

/// Most requests in one batch.
pub(super) const MAX_BATCH: usize = 256;

/// One `assign` call.
pub(super) struct AssignReq {
    id: TaskId,
    worker: String,
    now: DateTime<Utc>,
}

/// One `report` call.
pub(super) struct ReportReq {
    id: TaskId,
    token: u64,
    worker: String,
    events: Vec<ReportEvent>,
    now: DateTime<Utc>,
}

/// A task of a report batch: as read, as the batch's reports left it, its log counters.
struct Touched {
    doc: Document,
    before: Task,
    after: Task,
    log: Option<LogCounters>,
}

impl MongoStore {
    pub(super) async fn assign_task(
        &self,
        id: TaskId,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<Task> {
        validate_worker_id(worker)?;
        let req = AssignReq {
            id,
            worker: worker.to_string(),
            now: ms(now),
        };
        self.assign_group
            .submit(req, |reqs| self.assign_batch(reqs).boxed())
            .await
            .unwrap_or_else(|| Err(abandoned("mongodb")))
    }

    async fn assign_batch(&self, reqs: Vec<AssignReq>) -> Vec<Result<Task>> {
        let ctx = (self, &reqs, false);
        let r = in_txn(&self.client, "assign", ctx, |s, (store, reqs, slow)| {
            async move {
                store.check_fence(s).await?;
                if !*slow && reqs.len() > 1 {
                    let Some(tasks) = store.take_all(s, reqs).await? else {
                        // Some task was not queued: run again, one take at a time, so each
                        // gets its own answer.
                        *slow = true;
                        return Err(Fail::Conflict);
                    };
                    store.copy_attempts(s, &tasks).await?;
                    return Ok(tasks.into_iter().map(Ok).collect());
                }
                let mut out = Vec::with_capacity(reqs.len());
                let mut taken = Vec::new();
                for r in reqs.iter() {
                    let filter =
                        doc! { "_id": r.id.to_string(), "status": TaskStatus::Queued.as_str() };
                    if let Some(t) = store.take(s, filter, None, &r.worker, r.now).await? {
                        taken.push(t.clone());
                        out.push(Ok(t));
                        continue;
                    }
                    // Not queued (or absent): say precisely why.
                    match store.find_task(r.id, Some(&mut *s)).await {
                        Ok(t) => match state::check(r.id, t.status, TaskStatus::Assigned) {
                            Err(e) => out.push(Err(e)),
                            // Queued after all: it moved under us; run the batch again.
                            Ok(()) => return Err(Fail::Conflict),
                        },
                        Err(Fail::Domain(e)) => out.push(Err(e)),
                        Err(e) => return Err(e),
                    }
                }
                store.copy_attempts(s, &taken).await?;
                Ok(out)
            }
            .boxed()
        })
        .await;
        r.unwrap_or_else(|e| reqs.iter().map(|_| Err(share(&e))).collect())
    }

    /// Takes every task of `reqs` in one multi-statement `update` (each statement the
    /// conditional update pipeline of a take) and reads them back in one `find`. `None`
    /// when some statement matched nothing (that task was not queued, or came twice):
    /// the caller's transaction must then be abandoned, as it holds the other takes.
    async fn take_all(
        &self,
        s: &mut ClientSession,
        reqs: &[AssignReq],
    ) -> Result<Option<Vec<Task>>, Fail> {
        let statements: Vec<Document> = reqs
            .iter()
            .map(|r| {
                doc! {
                    "q": { "_id": r.id.to_string(), "status": TaskStatus::Queued.as_str() },
                    "u": take_pipeline(&r.worker, r.now),
                }
            })
            .collect();
        if self.update_all(s, names::TASKS, statements).await? != reqs.len() as i64 {
            return Ok(None);
        }
        let docs = self.find_ids(s, reqs.iter().map(|r| r.id)).await?;
        let mut by_id = HashMap::with_capacity(docs.len());
        for d in &docs {
            let t = task_of(d)?;
            by_id.insert(t.id, t);
        }
        reqs.iter()
            .map(|r| match by_id.remove(&r.id) {
                Some(t)
                    if t.attempts
                        .last()
                        .is_some_and(|a| a.token == t.token() && a.worker_id == r.worker) =>
                {
                    Ok(t)
                }
                _ => Err(QueueError::Backend {
                    backend: "mongodb",
                    message: format!("task {}: taken, but not read back as taken", r.id),
                    retryable: false,
                }
                .into()),
            })
            .collect::<Result<Vec<_>, Fail>>()
            .map(Some)
    }

    /// Inserts the `ASSIGNMENTS` copy of each task's newest attempt, in one command.
    pub(super) async fn copy_attempts(
        &self,
        s: &mut ClientSession,
        tasks: &[Task],
    ) -> Result<(), Fail> {
        let docs: Vec<Document> = tasks
            .iter()
            .filter_map(|t| t.attempts.last().map(|a| assignment_doc(t.id, a)))
            .collect();
        if !docs.is_empty() {
            self.assignments.insert_many(docs).session(&mut *s).await?;
        }
        Ok(())
    }

    pub(super) async fn report_attempt(
        &self,
        id: TaskId,
        token: u64,
        worker_id: &str,
        mut events: Vec<ReportEvent>,
        now: DateTime<Utc>,
    ) -> Result<Applied> {
        for e in &mut events {
            e.time = ms(e.time);
        }
        let req = ReportReq {
            id,
            token,
            worker: worker_id.to_string(),
            events,
            now: ms(now),
        };
        self.report_group
            .submit(req, |reqs| self.report_batch(reqs).boxed())
            .await
            .unwrap_or_else(|| Err(abandoned("mongodb")))
    }

    async fn report_batch(&self, reqs: Vec<ReportReq>) -> Vec<Result<Applied>> {
        let r = in_txn(&self.client, "report", (self, &reqs), |s, (store, reqs)| {
            async move {
                store.check_fence(s).await?;
                let mut touched = store.read_for_reports(s, reqs).await?;
                let mut out = Vec::with_capacity(reqs.len());
                for r in reqs.iter() {
                    let Some(t) = touched.get_mut(&r.id) else {
                        out.push(Err(QueueError::NotFound(r.id)));
                        continue;
                    };
                    let mut next = t.after.clone();
                    let plan = match lifecycle::apply_report(
                        &mut next, r.token, &r.worker, &r.events, r.now,
                    ) {
                        Ok(p) => p,
                        Err(e) => {
                            out.push(Err(e));
                            continue;
                        }
                    };
                    if plan.changed {
                        next.not_before = ms(next.not_before);
                        if !plan.chunks.is_empty() {
                            let counters = match t.log {
                                Some(c) => c,
                                None => LogCounters::of(&t.doc)?,
                            };
                            let c = store
                                .append_chunks(s, r.id, plan.attempt, &plan.chunks, counters)
                                .await?;
                            t.log = Some(c);
                        }
                        t.after = next.clone();
                    }
                    out.push(Ok(Applied {
                        task: next,
                        through: plan.through,
                        changed: plan.changed,
                        late: plan.late,
                    }));
                }
                store.write_reports(s, touched.values()).await?;
                Ok(out)
            }
            .boxed()
        })
        .await;
        r.unwrap_or_else(|e| reqs.iter().map(|_| Err(share(&e))).collect())
    }

    /// The tasks a batch of reports is about, in one `find`.
    async fn read_for_reports(
        &self,
        s: &mut ClientSession,
        reqs: &[ReportReq],
    ) -> Result<HashMap<TaskId, Touched>, Fail> {
        let docs = self.find_ids(s, reqs.iter().map(|r| r.id)).await?;
        let mut out = HashMap::with_capacity(docs.len());
        for d in docs {
            let before = task_of(&d)?;
            out.insert(
                before.id,
                Touched {
                    after: before.clone(),
                    before,
                    doc: d,
                    log: None,
                },
            );
        }
        Ok(out)
    }

    /// The `TASKS` documents of `ids` (each once, whatever the repeats), in one `find` in
    /// the session's transaction.
    async fn find_ids(
        &self,
        s: &mut ClientSession,
        ids: impl Iterator<Item = TaskId>,
    ) -> Result<Vec<Document>, Fail> {
        let mut ids: Vec<String> = ids.map(|id| id.to_string()).collect();
        ids.sort();
        ids.dedup();
        let docs = self
            .tasks
            .find(doc! { "_id": { "$in": ids } })
            .session(&mut *s)
            .await?
            .stream(&mut *s)
            .try_collect()
            .await?;
        Ok(docs)
    }

    /// Writes every task a batch changed, conditional on the status and token read, in one
    /// `update`; then the changed attempts' `ASSIGNMENTS` copies and the `RESULTS` of the
    /// tasks that finished, one command each.
    async fn write_reports<'t>(
        &self,
        s: &mut ClientSession,
        touched: impl Iterator<Item = &'t Touched>,
    ) -> Result<(), Fail> {
        let (mut tasks, mut copies, mut results) = (Vec::new(), Vec::new(), Vec::new());
        for t in touched.filter(|t| t.after != t.before || t.log.is_some()) {
            let (before, after) = (&t.before, &t.after);
            // Only what changes: the spec and the other fields fixed at enqueue stay as written.
            let mut set = state_doc(after);
            if let Some(log) = t.log {
                set.insert("log", log.doc());
            }
            tasks.push(doc! {
                "q": {
                    "_id": after.id.to_string(),
                    "status": before.status.as_str(),
                    "token": i64_of(before.token()),
                },
                "u": { "$set": set },
            });
            if let Some(a) = after.attempts.last() {
                if attempt_changed(before.attempts.last(), a) {
                    let d = assignment_doc(after.id, a);
                    copies.push(
                        doc! { "q": { "_id": d.get("_id").cloned() }, "u": d, "upsert": true },
                    );
                }
            }
            if after.status.is_terminal() && !before.status.is_terminal() {
                let d = result_doc(after);
                results.push(doc! { "q": { "_id": after.id.to_string() }, "u": d, "upsert": true });
            }
        }
        let want = tasks.len() as i64;
        if self.update_all(s, names::TASKS, tasks).await? != want {
            return Err(Fail::Conflict);
        }
        self.update_all(s, names::ASSIGNMENTS, copies).await?;
        self.update_all(s, names::RESULTS, results).await?;
        Ok(())
    }

    /// Runs one `update` command of `statements` (`{q, u, upsert}`) in order, in the
    /// session's transaction; returns how many documents they matched or upserted.
    async fn update_all(
        &self,
        s: &mut ClientSession,
        collection: &str,
        statements: Vec<Document>,
    ) -> Result<i64, Fail> {
        if statements.is_empty() {
            return Ok(0);
        }
        let r = self
            .db
            .run_command(doc! { "update": collection, "updates": statements, "ordered": true })
            .session(&mut *s)
            .await?;
        if let Ok(errors) = r.get_array("writeErrors") {
            if !errors.is_empty() {
                return Err(QueueError::Backend {
                    backend: "mongodb",
                    message: format!("update of {collection} failed: {errors:?}"),
                    retryable: false,
                }
                .into());
            }
        }
        Ok(match r.get("n") {
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            other => {
                return Err(QueueError::Backend {
                    backend: "mongodb",
                    message: format!("update of {collection} answered n = {other:?}"),
                    retryable: false,
                }
                .into())
            }
        })
    }
}
