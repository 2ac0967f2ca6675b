//! Task output in `LOGS`, one document per chunk, bounded per task by
//! [`crate::retention`] (the rule the SQLite store applies too).
//!
//! The task document keeps the counters `log.seq` (last seq written), `log.bytes` (bytes of
//! output currently kept) and `log.dropped` (bytes dropped so far). Output is appended by
//! a report, inside its transaction: the chunks, the deletions of the oldest and the
//! counters change together with the task.

use bson::{doc, Document};
use futures::TryStreamExt;
use mongodb::options::{Hint, ReplaceOptions};
use mongodb::ClientSession;

use super::doc::{i64_of, log_doc, log_of, ms, Fields, LogCounters};
use super::exec::{retry, Fail};
use super::{indexes, MongoStore};
use crate::error::{QueueError, Result};
use crate::model::{LogChunk, LogStream, NewLogChunk, TaskId};
use crate::retention::{dropped_marker, Budget, Fate};

impl MongoStore {
    /// Appends `chunks` of attempt number `attempt` in the caller's transaction, starting
    /// from the task's counters `log`; returns the new counters (the caller writes them
    /// with the task).
    pub(super) async fn append_chunks(
        &self,
        s: &mut ClientSession,
        id: TaskId,
        attempt: u32,
        chunks: &[NewLogChunk],
        log: LogCounters,
    ) -> Result<LogCounters, Fail> {
        let Some(last) = chunks.last() else {
            return Ok(log);
        };
        let mut new: Vec<LogChunk> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| LogChunk {
                seq: log.seq + 1 + i as u64,
                attempt,
                stream: c.stream,
                time: ms(c.time),
                data: c.data.clone(),
            })
            .collect();
        let added = new.iter().map(|c| c.data.len() as u64).sum();
        let mut budget = Budget::new(
            log.bytes,
            log.dropped,
            added,
            self.opts.max_log_bytes_per_task,
        );
        if budget.over() {
            self.trim_stored(s, id, &mut budget).await?;
            // Then the new chunks, oldest first.
            let mut skip = 0;
            while budget.over() && skip < new.len() {
                match budget.take(new[skip].data.len() as u64) {
                    Fate::Drop => skip += 1,
                    Fate::Cut(n) => {
                        new[skip].data.drain(..n as usize);
                    }
                }
            }
            new.drain(..skip);
            let marker = LogChunk {
                seq: 0,
                attempt,
                stream: LogStream::System,
                time: ms(last.time),
                data: dropped_marker(budget.dropped).into_bytes(),
            };
            let m = log_doc(id, &marker);
            self.logs
                .replace_one(doc! { "_id": m.get("_id").cloned() }, m)
                .with_options(ReplaceOptions::builder().upsert(true).build())
                .session(&mut *s)
                .await?;
        }
        if !new.is_empty() {
            let docs: Vec<Document> = new.iter().map(|c| log_doc(id, c)).collect();
            self.logs.insert_many(docs).session(&mut *s).await?;
        }
        Ok(LogCounters {
            seq: log.seq + chunks.len() as u64,
            bytes: budget.kept,
            dropped: budget.dropped,
        })
    }

    /// Drops (or cuts the head of) stored chunks, oldest first, while over the budget.
    async fn trim_stored(
        &self,
        s: &mut ClientSession,
        id: TaskId,
        budget: &mut Budget,
    ) -> Result<(), Fail> {
        let mut cursor = self
            .logs
            .find(doc! { "task_id": id.to_string(), "seq": { "$gte": 1_i64 } })
            .projection(doc! { "seq": 1, "len": 1 })
            .sort(doc! { "seq": 1 })
            .hint(Hint::Name(indexes::LOGS_BY_TASK.into()))
            .session(&mut *s)
            .await?;
        let mut upto = None;
        let mut cut = None;
        while budget.over() {
            let Some(c) = cursor.next(&mut *s).await.transpose()? else {
                break;
            };
            let c = Fields(&c);
            let seq = c.int("seq")?;
            match budget.take(c.uint("len")?) {
                Fate::Drop => upto = Some(seq),
                Fate::Cut(n) => cut = Some((seq, n)),
            }
        }
        drop(cursor);
        if let Some(upto) = upto {
            self.logs
                .delete_many(doc! {
                    "task_id": id.to_string(),
                    "seq": { "$gte": 1_i64, "$lte": upto },
                })
                .session(&mut *s)
                .await?;
        }
        if let Some((seq, n)) = cut {
            let key = format!("{id}/{seq}");
            let d = self
                .logs
                .find_one(doc! { "_id": &key })
                .session(&mut *s)
                .await?
                .ok_or(Fail::Conflict)?;
            let mut chunk = log_of(&d)?;
            chunk.data.drain(..n as usize);
            self.logs
                .replace_one(doc! { "_id": &key }, log_doc(id, &chunk))
                .session(&mut *s)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn read(
        &self,
        id: TaskId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogChunk>> {
        let exists = retry("read logs", || async {
            Ok(self
                .tasks
                .find_one(doc! { "_id": id.to_string() })
                .projection(doc! { "_id": 1 })
                .await?
                .is_some())
        })
        .await?;
        if !exists {
            return Err(QueueError::NotFound(id));
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let seq = match after {
            Some(a) => doc! { "$gt": i64_of(a) },
            None => doc! { "$gte": 0_i64 },
        };
        let filter = doc! { "task_id": id.to_string(), "seq": seq };
        let docs: Vec<Document> = retry("read logs", || async {
            let c = self
                .logs
                .find(filter.clone())
                .sort(doc! { "seq": 1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .hint(Hint::Name(indexes::LOGS_BY_TASK.into()))
                .await?;
            Ok(c.try_collect().await?)
        })
        .await?;
        docs.iter().map(log_of).collect()
    }
}
