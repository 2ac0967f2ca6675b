//! `Enqueue` and `EnqueueBatch`: rate limit, spec checks, the store's one write, then the
//! dispatcher's wake-up. A task that no registered worker could ever take is accepted with
//! a warning that names the closest worker and what it lacks ([`crate::reasons`]); with
//! `strict` it is refused instead (FAILED_PRECONDITION).

use cloudai_proto::pb;
use cloudai_queue::NewTask;
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
    let warning = crate::reasons::unplaceable(&svc.shared, &spec);
    if let (true, Some(w)) = (req.strict, &warning) {
        svc.refused("strict");
        return Err(Status::failed_precondition(format!(
            "refused (strict): {w}"
        )));
    }
    let e = svc
        .store_call(
            "enqueue",
            svc.shared.store.enqueue(NewTask { spec, submitted_by }),
        )
        .await
        .inspect_err(|s| svc.refused_by_store(s))?;
    if e.created {
        svc.shared.metrics.enqueued.inc();
        crate::workflow::enqueued(&svc.shared, &e.task);
        svc.shared.wake_dispatcher();
    }
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
    let warnings: Vec<Option<String>> = tasks
        .iter()
        .map(|t| crate::reasons::unplaceable(&svc.shared, &t.spec))
        .collect();
    let done = svc
        .store_call("enqueue_batch", svc.shared.store.enqueue_batch(tasks))
        .await
        .inspect_err(|s| svc.refused_by_store(s))?;
    let created = done.iter().filter(|e| e.created).count();
    svc.shared.metrics.enqueued.inc_by(created as u64);
    for e in done.iter().filter(|e| e.created) {
        crate::workflow::enqueued(&svc.shared, &e.task);
    }
    svc.shared.wake_dispatcher();
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
