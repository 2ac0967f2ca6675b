//! The indexes the backend needs, created idempotently at connect, and the names the
//! queries pass as hints so that the claim and list paths never scan a collection.
//!
//! `createIndexes` with an existing name and the same definition is a no-op; a same-named
//! index with a different definition fails with MongoDB's `IndexOptionsConflict` and the
//! store refuses to start (drop the old index by hand).

use bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

use super::exec::{retry, Fail};
use super::names;
use crate::error::Result;

/// Dispatch order of queued tasks: `{status, priority desc, created_at, _id}`.
pub const CLAIM: &str = "claim";
/// Each submitter's queued tasks in dispatch order, and who has any (fair share):
/// `{status, submitted_by, priority desc, created_at, _id}`.
pub const FAIR: &str = "submitter_claim";
/// Tasks pinned to a worker: `{pinned_worker, status, priority desc, created_at}`.
pub const PINNED: &str = "pinned_worker";
/// Unique idempotency keys; partial, so tasks without a key are not indexed.
pub const IDEMPOTENCY: &str = "idempotency_key";
/// Listing by status, newest first: `{status, _id desc}`.
pub const STATUS_ID: &str = "status_id";
/// Listing by current worker, newest first: `{worker_id, _id desc}`.
pub const WORKER_ID: &str = "worker_id";
/// Listing by submitting user, newest first: `{submitted_by, _id desc}`.
pub const SUBMITTER_ID: &str = "submitted_by";
/// An array's elements by status, newest first: `{spec.array.id, status, _id desc}`.
pub const ARRAY: &str = "array_status_id";
/// A parent's dependents (`spec.after.task`, multikey), newest first: `{spec.after.task, _id desc}`.
pub const DEPENDS_ON: &str = "depends_on_id";
/// Queued tasks by when they become due, to arm the dispatcher's timers:
/// `{not_before}`, partial on `status: "queued"`.
pub const DELAYED: &str = "queued_not_before";
/// Recently finished tasks, for stats: `{finished_at}`.
pub const FINISHED: &str = "finished_at";
/// The default index on `_id`.
pub const ID: &str = "_id_";
/// Attempts of a task in order (`ASSIGNMENTS`): `{task_id, number}`, unique.
pub const ATTEMPTS_BY_TASK: &str = "task_attempts";
/// Attempts run by a worker (`ASSIGNMENTS`): `{worker_id, assigned_at desc}`.
pub const ATTEMPTS_BY_WORKER: &str = "worker_attempts";
/// A task's log in order (`LOGS`): `{task_id, seq}`, unique.
pub const LOGS_BY_TASK: &str = "task_seq";
/// Users by the keyed hash of their API token (`USERS`): `{token_hash}`, unique.
pub const USERS_BY_TOKEN: &str = "token_hash";

fn index(keys: Document, name: &str) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_string()).build())
        .build()
}

fn partial(keys: Document, name: &str, filter: Document) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .name(name.to_string())
                .partial_filter_expression(filter)
                .build(),
        )
        .build()
}

fn unique(keys: Document, name: &str, partial: Option<Document>) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .name(name.to_string())
                .unique(true)
                .partial_filter_expression(partial)
                .build(),
        )
        .build()
}

/// Every index, per collection.
pub fn all() -> Vec<(&'static str, Vec<IndexModel>)> {
    vec![
        (
            names::TASKS,
            vec![
                index(
                    doc! { "status": 1, "priority": -1, "created_at": 1, "_id": 1 },
                    CLAIM,
                ),
                index(
                    doc! { "status": 1, "submitted_by": 1, "priority": -1, "created_at": 1, "_id": 1 },
                    FAIR,
                ),
                index(
                    doc! { "pinned_worker": 1, "status": 1, "priority": -1, "created_at": 1 },
                    PINNED,
                ),
                unique(
                    doc! { "idempotency_key": 1 },
                    IDEMPOTENCY,
                    Some(doc! { "idempotency_key": { "$type": "string" } }),
                ),
                index(doc! { "status": 1, "_id": -1 }, STATUS_ID),
                index(doc! { "worker_id": 1, "_id": -1 }, WORKER_ID),
                index(doc! { "submitted_by": 1, "_id": -1 }, SUBMITTER_ID),
                index(doc! { "finished_at": 1 }, FINISHED),
                partial(
                    doc! { "not_before": 1 },
                    DELAYED,
                    doc! { "status": "queued" },
                ),
                index(doc! { "spec.array.id": 1, "status": 1, "_id": -1 }, ARRAY),
                index(doc! { "spec.after.task": 1, "_id": -1 }, DEPENDS_ON),
            ],
        ),
        (
            names::ASSIGNMENTS,
            vec![
                unique(doc! { "task_id": 1, "number": 1 }, ATTEMPTS_BY_TASK, None),
                index(
                    doc! { "worker_id": 1, "assigned_at": -1 },
                    ATTEMPTS_BY_WORKER,
                ),
            ],
        ),
        (
            names::LOGS,
            vec![unique(doc! { "task_id": 1, "seq": 1 }, LOGS_BY_TASK, None)],
        ),
        (
            names::USERS,
            vec![unique(doc! { "token_hash": 1 }, USERS_BY_TOKEN, None)],
        ),
    ]
}

/// Creates every index that does not exist yet.
pub(crate) async fn ensure(db: &Database) -> Result<()> {
    for (coll, models) in all() {
        let c = db.collection::<Document>(coll);
        retry("create indexes", || async {
            c.create_indexes(models.clone()).await.map_err(Fail::from)?;
            Ok(())
        })
        .await?;
    }
    Ok(())
}
