//! Schedules (`SCHEDULES`, one document per schedule: `_id` = name, `version` for the
//! compare-and-set of each fire, `body` = the record).

use bson::{doc, Document};
use futures::TryStreamExt;

use super::doc::corrupt;
use super::exec::{is_duplicate_key, retry};
use super::MongoStore;
use crate::error::{QueueError, Result};
use crate::schedule::Schedule;

fn schedule_doc(s: &Schedule) -> Result<Document> {
    let body = bson::to_document(s)
        .map_err(|e| QueueError::invalid("schedule", format!("cannot store it: {e}")))?;
    Ok(doc! { "_id": &s.name, "version": s.version as i64, "body": body })
}

fn schedule_of(d: &Document) -> Result<Schedule> {
    let body = d
        .get_document("body")
        .map_err(|e| corrupt(format!("schedule without a body: {e}")))?;
    bson::from_document(body.clone()).map_err(|e| corrupt(format!("corrupt schedule: {e}")))
}

impl MongoStore {
    pub(super) async fn insert_schedule(&self, s: &Schedule) -> Result<()> {
        crate::schedule::validate_name(&s.name)?;
        let d = schedule_doc(s)?;
        let tries = std::sync::atomic::AtomicU32::new(0);
        retry("add schedule", || async {
            let retried = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0;
            match self.schedules.insert_one(d.clone()).await {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate_key(&e) => {
                    // A retry whose earlier try had landed is ours; anything else is taken.
                    match self.schedules.find_one(doc! { "_id": &s.name }).await? {
                        Some(existing) if retried && existing == d => Ok(()),
                        _ => Err(QueueError::ScheduleExists(s.name.clone()).into()),
                    }
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    pub(super) async fn schedule_named(&self, name: &str) -> Result<Option<Schedule>> {
        let d = retry("get schedule", || async {
            Ok(self.schedules.find_one(doc! { "_id": name }).await?)
        })
        .await?;
        d.as_ref().map(schedule_of).transpose()
    }

    pub(super) async fn all_schedules(&self) -> Result<Vec<Schedule>> {
        let docs: Vec<Document> = retry("list schedules", || async {
            let c = self.schedules.find(doc! {}).sort(doc! { "_id": 1 }).await?;
            Ok(c.try_collect().await?)
        })
        .await?;
        docs.iter().map(schedule_of).collect()
    }

    pub(super) async fn cas_schedule(&self, s: &Schedule, expected: u64) -> Result<bool> {
        let d = schedule_doc(s)?;
        let filter = doc! { "_id": &s.name, "version": expected as i64 };
        // A retry whose earlier try had landed answers false: the caller then treats its
        // fire as another master's, which only leaves its own report out.
        retry("replace schedule", || async {
            let r = self
                .schedules
                .replace_one(filter.clone(), d.clone())
                .await?;
            Ok(r.matched_count == 1)
        })
        .await
    }

    pub(super) async fn delete_schedule(&self, name: &str) -> Result<bool> {
        retry("remove schedule", || async {
            Ok(self
                .schedules
                .delete_one(doc! { "_id": name })
                .await?
                .deleted_count
                == 1)
        })
        .await
    }
}
