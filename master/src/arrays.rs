//! `EnqueueArray` and `GetArray`: a job array is its elements, ordinary tasks made from
//! one spec in one store write (`cloudai_queue::array` makes them); nothing else is
//! stored for it. The cap is the leader's to keep (`workflow`, `deps::fill_array`). Its one
//! spec gets the enqueue check once (`enqueue::warn_or_refuse`).

use cloudai_proto::pb;
use cloudai_queue::array::{self, ArraySpec};
use cloudai_queue::TaskQuery;
use tonic::{Request, Status};

use crate::client_service::ClientSvc;
use crate::enqueue;
use crate::error::status;
use crate::limits::client_key;

/// Enqueues the elements of the request's array, all or none.
///
/// Against the enqueue rate an array counts as its size, but never as more than one
/// burst: any array up to [`array::MAX_ARRAY_SIZE`] is accepted from a client whose
/// budget is full, and takes all of it.
pub async fn enqueue(
    svc: &ClientSvc,
    request: Request<pb::EnqueueArrayRequest>,
) -> Result<pb::EnqueueArrayResponse, Status> {
    let indices: ArraySpec = request.get_ref().indices.parse().map_err(status)?;
    let n = indices.indices.len();
    let charge = svc.limits.burst().map_or(n, |b| n.min(b as usize));
    svc.limits
        .check_rate(&client_key(&request), charge)
        .inspect_err(|_| svc.refused("rate"))?;
    let submitted_by = crate::auth::submitter(&request);
    let req = request.into_inner();
    let mut wire = req.spec;
    if let Some(w) = wire.as_mut() {
        crate::workflow::resolve_parents(svc, w).await?;
    }
    let spec = svc.spec(wire)?;
    svc.check_pinned(&[&spec]).await?;
    // The elements differ only in their index's env: one check judges them all.
    let warning = enqueue::warn_or_refuse(svc, std::iter::once(&spec), req.strict)?
        .pop()
        .flatten();
    let cap = indices.max_running;
    let elements = array::Elements::new(spec, indices, submitted_by).map_err(status)?;
    let done = svc
        .store_call("enqueue_array", svc.shared.store.enqueue_array(elements))
        .await
        .inspect_err(|s| svc.refused_by_store(s))?;
    enqueue::made(svc, done.created, done.samples.iter());
    let created = done.created;
    tracing::info!(array_id = %done.id, size = n, created, cap, "array enqueued");
    Ok(pb::EnqueueArrayResponse {
        array_id: done.id,
        size: n as u32,
        created: created as u32,
        max_running: cap,
        first_task_id: done.first.map(|t| t.to_string()).unwrap_or_default(),
        warning: warning.unwrap_or_default(),
    })
}

/// Array `id`'s size, cap, shared spec and elements per status.
pub async fn summary(svc: &ClientSvc, id: &str) -> Result<pb::ArraySummary, Status> {
    let id = id.trim();
    if id.is_empty() {
        return Err(Status::invalid_argument("missing array id"));
    }
    let store = &svc.shared.store;
    let one = TaskQuery {
        array: Some(id.to_string()),
        limit: 1,
        ..TaskQuery::default()
    };
    let Some(element) = svc
        .store_call("list", store.list(&one))
        .await?
        .into_iter()
        .next()
    else {
        return Err(Status::not_found(format!(
            "no array {id} (give the whole id `enqueue --array` printed)"
        )));
    };
    let counts = svc
        .store_call("array_counts", store.array_counts(id))
        .await?;
    let member = element
        .spec
        .array
        .clone()
        .unwrap_or_else(|| array::ArrayMember {
            id: id.to_string(),
            index: 0,
            size: 0,
            max_running: 0,
        });
    Ok(pb::ArraySummary {
        id: id.to_string(),
        size: member.size,
        max_running: member.max_running,
        counts: counts
            .into_iter()
            .map(|(s, n)| pb::StatusCount {
                status: pb::TaskStatus::from(s) as i32,
                count: n,
            })
            .collect(),
        image: element.spec.image,
        command: element.spec.command,
    })
}
