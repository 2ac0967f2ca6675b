//! The worker registry (`WORKER_REGISTRY`) and queue statistics.

use bson::{doc, Document};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::options::{Hint, ReplaceOptions};

use super::doc::{bdate, worker_doc, worker_of};
use super::exec::retry;
use super::{indexes, MongoStore};
use crate::error::{QueueError, Result};
use crate::model::{QueueStats, TaskStatus, WorkerHealth, WorkerRecord};
use crate::validate::validate_worker_id;

impl MongoStore {
    pub(super) async fn put_worker(&self, w: &WorkerRecord) -> Result<()> {
        validate_worker_id(&w.id)?;
        let d = worker_doc(w);
        retry("upsert worker", || async {
            self.workers
                .replace_one(doc! { "_id": &w.id }, d.clone())
                .with_options(ReplaceOptions::builder().upsert(true).build())
                .await?;
            Ok(())
        })
        .await
    }

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
        let matched = retry("set worker health", || async {
            Ok(self
                .workers
                .update_one(doc! { "_id": id }, doc! { "$set": set.clone() })
                .await?
                .matched_count)
        })
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
}
