//! Task output in `LOGS`, one document per chunk, bounded per task.
//!
//! The task document keeps the counters `log.seq` (last seq written), `log.bytes` (bytes of
//! output currently kept) and `log.dropped` (bytes dropped so far). When an append takes
//! `log.bytes` over `max_log_bytes_per_task`, the oldest chunks are deleted until it fits,
//! and the seq-0 system chunk is rewritten to say how many bytes were dropped in total.
//! The append, the deletions and the counters change in one transaction.

use bson::{doc, Document};
use chrono::Utc;
use futures::{FutureExt, TryStreamExt};
use mongodb::options::{Hint, ReplaceOptions};

use super::doc::{i64_of, log_doc, log_of, ms, Fields};
use super::exec::{in_txn, retry, Fail};
use super::{indexes, MongoStore};
use crate::error::{QueueError, Result};
use crate::model::{LogChunk, LogStream, NewLogChunk, TaskId};

/// The text of the seq-0 marker.
pub(crate) fn dropped_marker(bytes: u64) -> Vec<u8> {
    format!("[cloudai: {bytes} bytes of older output dropped]").into_bytes()
}

impl MongoStore {
    pub(super) async fn append(
        &self,
        id: TaskId,
        token: u64,
        chunks: Vec<NewLogChunk>,
    ) -> Result<u64> {
        let max = self.opts.max_log_bytes_per_task;
        in_txn(&self.client, "append logs", (self, &chunks), |s, (store, chunks)| {
            async move {
                let d = store
                    .tasks
                    .find_one(doc! { "_id": id.to_string() })
                    .projection(doc! { "token": 1, "log": 1, "attempts.number": 1 })
                    .session(&mut *s)
                    .await?
                    .ok_or(QueueError::NotFound(id))?;
                let f = Fields(&d);
                let current = f.uint("token")?;
                let attempts = f.array("attempts")?.len() as u32;
                if token != current || attempts == 0 {
                    return Err(QueueError::StaleToken {
                        task: id,
                        got: token,
                        current,
                    }
                    .into());
                }
                let log = Fields(f.doc("log")?);
                let (last_seq, mut kept, mut dropped) =
                    (log.uint("seq")?, log.uint("bytes")?, log.uint("dropped")?);
                if chunks.is_empty() {
                    return Ok(last_seq);
                }
                let mut new: Vec<LogChunk> = chunks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| LogChunk {
                        seq: last_seq + 1 + i as u64,
                        attempt: attempts,
                        stream: c.stream,
                        time: ms(c.time),
                        data: c.data.clone(),
                    })
                    .collect();
                let new_last = last_seq + new.len() as u64;
                kept += new.iter().map(|c| c.data.len() as u64).sum::<u64>();
                if kept > max {
                    // Drop stored chunks oldest first, then the oldest of the new ones.
                    let mut cursor = store
                        .logs
                        .find(doc! { "task_id": id.to_string(), "seq": { "$gte": 1_i64 } })
                        .projection(doc! { "seq": 1, "len": 1 })
                        .sort(doc! { "seq": 1 })
                        .hint(Hint::Name(indexes::LOGS_BY_TASK.into()))
                        .session(&mut *s)
                        .await?;
                    let mut upto = None;
                    while kept > max {
                        let Some(c) = cursor.next(&mut *s).await.transpose()? else {
                            break;
                        };
                        let c = Fields(&c);
                        let len = c.uint("len")?;
                        kept -= len;
                        dropped += len;
                        upto = Some(c.int("seq")?);
                    }
                    drop(cursor);
                    if let Some(upto) = upto {
                        store
                            .logs
                            .delete_many(doc! {
                                "task_id": id.to_string(),
                                "seq": { "$gte": 1_i64, "$lte": upto },
                            })
                            .session(&mut *s)
                            .await?;
                    }
                    let mut skip = 0;
                    while kept > max && skip < new.len() {
                        let len = new[skip].data.len() as u64;
                        kept -= len;
                        dropped += len;
                        skip += 1;
                    }
                    new.drain(..skip);
                    let marker = LogChunk {
                        seq: 0,
                        attempt: attempts,
                        stream: LogStream::System,
                        time: ms(Utc::now()),
                        data: dropped_marker(dropped),
                    };
                    let m = log_doc(id, &marker);
                    store
                        .logs
                        .replace_one(doc! { "_id": m.get("_id").cloned() }, m)
                        .with_options(ReplaceOptions::builder().upsert(true).build())
                        .session(&mut *s)
                        .await?;
                }
                let r = store
                    .tasks
                    .update_one(
                        doc! { "_id": id.to_string(), "token": i64_of(token), "log.seq": i64_of(last_seq) },
                        doc! { "$set": {
                            "log.seq": i64_of(new_last),
                            "log.bytes": i64_of(kept),
                            "log.dropped": i64_of(dropped),
                        } },
                    )
                    .session(&mut *s)
                    .await?;
                if r.matched_count != 1 {
                    return Err(Fail::Conflict);
                }
                if !new.is_empty() {
                    let docs: Vec<Document> = new.iter().map(|c| log_doc(id, c)).collect();
                    store.logs.insert_many(docs).session(&mut *s).await?;
                }
                Ok(new_last)
            }
            .boxed()
        })
        .await
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
