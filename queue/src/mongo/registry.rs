//! The worker registry (`WORKER_REGISTRY`), queue statistics and the history's times.

use std::collections::BTreeMap;

use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::options::{Hint, ReplaceOptions};

use super::doc::{bdate, worker_doc, worker_of, Fields};
use super::exec::{in_txn, retry};
use super::{indexes, MongoStore};
use crate::error::{QueueError, Result};
use crate::history::TaskTimes;
use crate::model::{QueueStats, TaskStatus, WorkerHealth, WorkerRecord};
use crate::validate::validate_worker_id;
use futures::FutureExt;

impl MongoStore {
    /// Writes a worker's record; the leader's write, so fenced by its epoch.
    pub(super) async fn put_worker(&self, w: &WorkerRecord) -> Result<()> {
        validate_worker_id(&w.id)?;
        let d = worker_doc(w);
        in_txn(
            &self.client,
            "upsert worker",
            (self, &d),
            |s, (store, d)| {
                async move {
                    store.check_fence(s).await?;
                    store
                        .workers
                        .replace_one(
                            doc! { "_id": d.get_str("_id").unwrap_or_default() },
                            (*d).clone(),
                        )
                        .with_options(ReplaceOptions::builder().upsert(true).build())
                        .session(&mut *s)
                        .await?;
                    Ok(())
                }
                .boxed()
            },
        )
        .await
    }

    /// Sets a worker's health; the leader's write, so fenced by its epoch.
    pub(super) async fn set_health(
        &self,
        id: &str,
        health: WorkerHealth,
        last_heartbeat: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let mut set = doc! { "health": health.as_str() };
        if let Some(t) = last_heartbeat {
            set.insert("last_heartbeat", bdate(t));
        }
        let matched = in_txn(
            &self.client,
            "set worker health",
            (self, &set),
            |s, (store, set)| {
                async move {
                    store.check_fence(s).await?;
                    Ok(store
                        .workers
                        .update_one(doc! { "_id": id }, doc! { "$set": (*set).clone() })
                        .session(&mut *s)
                        .await?
                        .matched_count)
                }
                .boxed()
            },
        )
        .await?;
        if matched == 0 {
            return Err(QueueError::UnknownWorker(id.to_string()));
        }
        Ok(())
    }

    pub(super) async fn find_worker(&self, id: &str) -> Result<Option<WorkerRecord>> {
        let d = retry("get worker", || async {
            Ok(self.workers.find_one(doc! { "_id": id }).await?)
        })
        .await?;
        d.as_ref().map(worker_of).transpose()
    }

    pub(super) async fn all_workers(&self) -> Result<Vec<WorkerRecord>> {
        let docs: Vec<Document> = retry("list workers", || async {
            let c = self.workers.find(doc! {}).sort(doc! { "_id": 1 }).await?;
            Ok(c.try_collect().await?)
        })
        .await?;
        docs.iter().map(worker_of).collect()
    }

    pub(super) async fn queue_stats(&self, now: DateTime<Utc>) -> Result<QueueStats> {
        let mut stats = QueueStats::default();
        for status in TaskStatus::ALL {
            let n = retry("stats", || async {
                Ok(self
                    .tasks
                    .count_documents(doc! { "status": status.as_str() })
                    .hint(Hint::Name(indexes::STATUS_ID.into()))
                    .await?)
            })
            .await?;
            if n > 0 {
                stats.counts.insert(status, n);
            }
        }
        // Ids are UUID v7, so the smallest queued id is the oldest queued task.
        let oldest = retry("stats", || async {
            Ok(self
                .tasks
                .find_one(doc! { "status": TaskStatus::Queued.as_str() })
                .projection(doc! { "created_at": 1 })
                .sort(doc! { "_id": 1 })
                .hint(Hint::Name(indexes::STATUS_ID.into()))
                .await?)
        })
        .await?;
        stats.oldest_queued_at = match oldest {
            Some(d) => Some(super::doc::Fields(&d).date("created_at")?),
            None => None,
        };
        let from = now - chrono::Duration::minutes(1);
        stats.finished_last_minute = retry("stats", || async {
            Ok(self
                .tasks
                .count_documents(doc! { "finished_at": { "$gt": bdate(from), "$lte": bdate(now) } })
                .hint(Hint::Name(indexes::FINISHED.into()))
                .await?)
        })
        .await?;
        Ok(stats)
    }

    /// `TaskStore::array_counts`: one count per status by the array index.
    pub(super) async fn count_array(&self, id: &str) -> Result<BTreeMap<TaskStatus, u64>> {
        let mut counts = BTreeMap::new();
        for status in TaskStatus::ALL {
            let n = retry("array counts", || async {
                Ok(self
                    .tasks
                    .count_documents(doc! { "spec.array.id": id, "status": status.as_str() })
                    .hint(Hint::Name(indexes::ARRAY.into()))
                    .await?)
            })
            .await?;
            if n > 0 {
                counts.insert(status, n);
            }
        }
        Ok(counts)
    }

    /// `TaskStore::recent_times`: ended since `since` by the `finished_at` index (most
    /// recent first, at most `limit`), then the live ones by the status index; each
    /// document projected to its times.
    pub(super) async fn times_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<TaskTimes>> {
        let projection = doc! {
            "status": 1, "created_at": 1, "finished_at": 1, "attempts.started_at": 1,
        };
        let live = [TaskStatus::Assigned.as_str(), TaskStatus::Running.as_str()];
        let reads = [
            (
                doc! { "finished_at": { "$gte": bdate(since) } },
                doc! { "finished_at": -1 },
                indexes::FINISHED,
                i64::try_from(limit).unwrap_or(i64::MAX),
            ),
            (
                doc! { "status": { "$in": live.as_slice() } },
                doc! { "_id": -1 },
                indexes::STATUS_ID,
                0,
            ),
        ];
        let mut out = Vec::new();
        for (filter, sort, hint, limit) in reads {
            let docs: Vec<Document> = retry("recent times", || async {
                let c = self
                    .tasks
                    .find(filter.clone())
                    .projection(projection.clone())
                    .sort(sort.clone())
                    .limit(limit)
                    .hint(Hint::Name(hint.into()))
                    .await?;
                Ok(c.try_collect().await?)
            })
            .await?;
            for d in &docs {
                let f = Fields(d);
                let first_start = match d.get_array("attempts").ok().and_then(|a| a.first()) {
                    Some(Bson::Document(a)) => Fields(a).opt_date("started_at")?,
                    _ => None,
                };
                out.push(TaskTimes {
                    status: f.status("status")?,
                    created_at: f.date("created_at")?,
                    first_start,
                    finished_at: f.opt_date("finished_at")?,
                });
            }
        }
        Ok(out)
    }

    /// Live tasks with a cancel requested, by the status index (ids only).
    pub(super) async fn pending_cancels(&self) -> Result<Vec<crate::model::TaskId>> {
        let filter = doc! {
            "status": { "$in": [TaskStatus::Assigned.as_str(), TaskStatus::Running.as_str()] },
            "cancel_requested": true,
        };
        let docs: Vec<Document> = retry("cancel requests", || async {
            let c = self
                .tasks
                .find(filter.clone())
                .projection(doc! { "_id": 1 })
                .hint(Hint::Name(indexes::STATUS_ID.into()))
                .await?;
            Ok(c.try_collect().await?)
        })
        .await?;
        docs.iter()
            .map(|d| {
                d.get_str("_id")
                    .map_err(|e| QueueError::invalid("task id", e.to_string()))?
                    .parse()
            })
            .collect()
    }
}
