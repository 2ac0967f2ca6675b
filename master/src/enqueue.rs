//! `Enqueue` and `EnqueueBatch`: rate limit, spec checks, the store's one write, then the
//! dispatcher's wake-up. A task that no registered worker could ever take is accepted with
//! a warning that names the closest worker and what it lacks ([`crate::reasons`]); with
//! `strict` it is refused instead (FAILED_PRECONDITION).

use cloudai_proto::pb;
use cloudai_queue::{Enqueued, NewTask, QueueError, Task};
use tonic::{Request, Status};

use crate::client_service::ClientSvc;
use crate::error::missing;
use crate::limits::client_key;

/// One task.
pub async fn one(
    svc: &ClientSvc,
    request: Request<pb::EnqueueRequest>,
) -> Result<pb::EnqueueResponse, Status> {
    svc.limits
        .check_rate(&client_key(&request), 1)
        .inspect_err(|_| svc.refused("rate"))?;
    let submitted_by = crate::auth::submitter(&request);
    let req = request.into_inner();
    let mut wire = req.spec.ok_or_else(|| missing("spec"))?;
    crate::workflow::resolve_parents(svc, &mut wire).await?;
    let spec = svc.spec(Some(wire))?;
    svc.check_pinned(&[&spec]).await?;
    let warning = warn_or_refuse(svc, std::iter::once(&spec), req.strict)?
        .pop()
        .flatten();
    let e = store(svc, "enqueue", async {
        svc.shared
            .store
            .enqueue(NewTask { spec, submitted_by })
            .await
            .map(|e| vec![e])
    })
    .await?
    .remove(0);
    Ok(pb::EnqueueResponse {
        task_id: e.task.id.to_string(),
        created: e.created,
        warning: warning.unwrap_or_default(),
    })
}

/// Many tasks in one store write, all or none; each result carries its own warning.
pub async fn batch(
    svc: &ClientSvc,
    request: Request<pb::EnqueueBatchRequest>,
) -> Result<pb::EnqueueBatchResponse, Status> {
    let n = request.get_ref().specs.len();
    svc.limits
        .check_rate(&client_key(&request), n)
        .inspect_err(|_| svc.refused("rate"))?;
    let submitted_by = crate::auth::submitter(&request);
    let mut tasks = Vec::with_capacity(n);
    for mut wire in request.into_inner().specs {
        crate::workflow::resolve_parents(svc, &mut wire).await?;
        tasks.push(NewTask {
            spec: svc.spec(Some(wire))?,
            submitted_by: submitted_by.clone(),
        });
    }
    svc.check_pinned(&tasks.iter().map(|t| &t.spec).collect::<Vec<_>>())
        .await?;
    let warnings = crate::reasons::unplaceable(&svc.shared, tasks.iter().map(|t| &t.spec));
    let done = store(svc, "enqueue_batch", svc.shared.store.enqueue_batch(tasks)).await?;
    Ok(pb::EnqueueBatchResponse {
        results: done
            .into_iter()
            .zip(warnings)
            .map(|(e, warning)| pb::EnqueueResponse {
                task_id: e.task.id.to_string(),
                created: e.created,
                warning: warning.unwrap_or_default(),
            })
            .collect(),
    })
}

/// The enqueue check for specs about to be stored: their warnings, or with `strict` a
/// refusal naming the first (nothing stored).
pub fn warn_or_refuse<'s>(
    svc: &ClientSvc,
    specs: impl ExactSizeIterator<Item = &'s cloudai_queue::TaskSpec>,
    strict: bool,
) -> Result<Vec<Option<String>>, Status> {
    let warnings = crate::reasons::unplaceable(&svc.shared, specs);
    match warnings.iter().flatten().next() {
        Some(w) if strict => {
            svc.refused("strict");
            Err(Status::failed_precondition(format!(
                "refused (strict): {w}"
            )))
        }
        _ => Ok(warnings),
    }
}

/// The store's write of new tasks (`op` names it in the metrics), then what follows
/// it: a refusal is counted; for each task created, the metric, the workflow's
/// bookkeeping, and the dispatcher's wake-up.
pub async fn store(
    svc: &ClientSvc,
    op: &str,
    write: impl std::future::Future<Output = Result<Vec<Enqueued>, QueueError>>,
) -> Result<Vec<Enqueued>, Status> {
    let done = svc
        .store_call(op, write)
        .await
        .inspect_err(|s| svc.refused_by_store(s))?;
    let created: Vec<&Task> = done.iter().filter(|e| e.created).map(|e| &e.task).collect();
    made(svc, created.len(), created.into_iter());
    Ok(done)
}

/// What follows a store's write of `count` new tasks, given one or more of them: each
/// given one is told to the workflow and fair share (an array's elements are alike, so
/// one per status stands for all); the count goes to the metric; the dispatcher wakes.
pub fn made<'t>(svc: &ClientSvc, count: usize, tasks: impl Iterator<Item = &'t Task>) {
    let mut last_submitter = None;
    for t in tasks {
        crate::workflow::enqueued(&svc.shared, t);
        let who = Some(t.submitted_by.as_deref());
        if who != last_submitter {
            svc.shared.fair.enqueued_by(t.submitted_by.as_deref());
            last_submitter = who;
        }
    }
    if count > 0 {
        svc.shared.metrics.enqueued.inc_by(count as u64);
        svc.shared.wake_dispatcher();
    }
}
