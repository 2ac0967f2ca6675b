//! `AdminService`: a task that ended run again ([`retry`]), and cancels or retries of
//! every task a filter matches, with a dry run that changes nothing. It runs on the
//! client handlers' store access, limits and cancel path, so a bulk action behaves as the
//! same calls one by one would (PROTOCOL.md, "AdminService").

use std::sync::Arc;

use chrono::Utc;
use cloudai_proto::{convert, pb};
use cloudai_queue::{NewTask, QueueError, Task, TaskId, TaskQuery, TaskStatus};
use tonic::{Request, Response, Status};

use crate::client_service::ClientSvc;
use crate::error::convert_status;
use crate::limits::client_key;

/// The label a retried task carries: the id of the task it repeats.
pub const RETRY_OF_LABEL: &str = "cloudai.retry-of";
/// Tasks one bulk call acts on when the request gives no limit.
pub const DEFAULT_MATCH_LIMIT: usize = 1000;
/// Most tasks one bulk call acts on.
pub const MAX_MATCH_LIMIT: usize = 10_000;
/// Tasks read per page while matching.
const PAGE: usize = 500;

/// The admin service over the client handlers.
pub struct AdminSvc {
    client: Arc<ClientSvc>,
}

impl AdminSvc {
    /// A service sharing `client`'s store access and limits.
    pub fn new(client: Arc<ClientSvc>) -> Self {
        AdminSvc { client }
    }
}

/// The statuses a bulk action looks at when the filter names none.
fn default_statuses(cancel: bool) -> Vec<TaskStatus> {
    if cancel {
        TaskStatus::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect()
    } else {
        vec![
            TaskStatus::Failed,
            TaskStatus::TimedOut,
            TaskStatus::Lost,
            TaskStatus::Cancelled,
        ]
    }
}

/// A filter in domain terms.
struct Filter {
    statuses: Vec<TaskStatus>,
    worker_id: Option<String>,
    submitted_by: Option<String>,
    image: Option<String>,
}

impl Filter {
    fn from_pb(f: Option<pb::TaskFilter>, cancel: bool) -> Result<Filter, Status> {
        let f = f.unwrap_or_default();
        let keep = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        let (worker_id, submitted_by, image) =
            (keep(f.worker_id), keep(f.submitted_by), keep(f.image));
        if f.statuses.is_empty() && worker_id.is_none() && submitted_by.is_none() && image.is_none()
        {
            return Err(Status::invalid_argument(
                "give a filter (statuses, worker, submitter or image): an empty one would \
                 match every task",
            ));
        }
        let statuses = f
            .statuses
            .iter()
            .map(|s| convert::task_status("statuses", *s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(convert_status)?;
        Ok(Filter {
            statuses: if statuses.is_empty() {
                default_statuses(cancel)
            } else {
                statuses
            },
            worker_id,
            submitted_by,
            image,
        })
    }

    fn image_matches(&self, image: &str) -> bool {
        match self.image.as_deref() {
            None => true,
            Some(p) => match p.strip_suffix('*') {
                Some(prefix) => image.starts_with(prefix),
                None => image == p,
            },
        }
    }
}

impl AdminSvc {
    /// Up to `limit` tasks matching `f`, newest first, and whether more matched.
    async fn matching(&self, f: &Filter, limit: usize) -> Result<(Vec<Task>, bool), Status> {
        let store = &self.client.shared.store;
        let mut found = Vec::new();
        let mut before: Option<TaskId> = None;
        loop {
            let query = TaskQuery {
                statuses: f.statuses.clone(),
                worker_id: f.worker_id.clone(),
                submitted_by: f.submitted_by.clone(),
                limit: PAGE,
                before,
            };
            let page = self.client.store_call("list", store.list(&query)).await?;
            let full = page.len() == PAGE;
            before = page.last().map(|t| t.id);
            for t in page {
                if f.image_matches(&t.spec.image) {
                    if found.len() == limit {
                        return Ok((found, true));
                    }
                    found.push(t);
                }
            }
            if !full {
                return Ok((found, false));
            }
        }
    }

    /// Enqueues `old` again for `submitted_by`; the new task's id.
    async fn enqueue_again(
        &self,
        old: &Task,
        submitted_by: Option<String>,
    ) -> Result<TaskId, Status> {
        let mut spec = old.spec.clone();
        spec.labels
            .insert(RETRY_OF_LABEL.to_string(), old.id.to_string());
        // A key names one task: the retry is another.
        spec.idempotency_key = None;
        let shared = &self.client.shared;
        let e = self
            .client
            .store_call(
                "enqueue",
                shared.store.enqueue(NewTask { spec, submitted_by }),
            )
            .await?;
        shared.metrics.enqueued.inc();
        shared.wake_dispatcher();
        tracing::info!(task_id = %e.task.id, retry_of = %old.id, "task retried");
        Ok(e.task.id)
    }
}

fn limit_of(n: u32) -> usize {
    match n as usize {
        0 => DEFAULT_MATCH_LIMIT,
        n => n.min(MAX_MATCH_LIMIT),
    }
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for AdminSvc {
    async fn cordon_worker(
        &self,
        request: Request<pb::WorkerRequest>,
    ) -> Result<Response<pb::WorkerInfo>, Status> {
        let id = request.into_inner().worker_id;
        Ok(Response::new(self.cordon(&id, true, None)?))
    }

    async fn drain_worker(
        &self,
        request: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::WorkerInfo>, Status> {
        let r = request.into_inner();
        let after = match r.deadline {
            None => std::time::Duration::ZERO,
            Some(d) => std::time::Duration::try_from(d)
                .map_err(|_| Status::invalid_argument("the drain deadline must not be negative"))?,
        };
        let deadline = Utc::now()
            + chrono::Duration::from_std(after)
                .map_err(|_| Status::invalid_argument("the drain deadline is too far"))?;
        Ok(Response::new(self.cordon(
            &r.worker_id,
            true,
            Some(deadline),
        )?))
    }

    async fn uncordon_worker(
        &self,
        request: Request<pb::WorkerRequest>,
    ) -> Result<Response<pb::WorkerInfo>, Status> {
        let id = request.into_inner().worker_id;
        Ok(Response::new(self.cordon(&id, false, None)?))
    }

    async fn retry_task(
        &self,
        request: Request<pb::RetryTaskRequest>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
        self.client
            .limits
            .check_rate(&client_key(&request), 1)
            .inspect_err(|_| self.client.refused("rate"))?;
        let submitted_by = crate::auth::submitter(&request);
        let id = self.client.resolve(&request.into_inner().id).await?;
        let old = self
            .client
            .store_call("get", self.client.shared.store.get(id))
            .await?;
        if !old.status.is_terminal() {
            return Err(Status::failed_precondition(format!(
                "task {id} has not ended ({}): only an ended task is retried; cancel it first",
                old.status
            )));
        }
        let new = self.enqueue_again(&old, submitted_by).await?;
        Ok(Response::new(pb::EnqueueResponse {
            task_id: new.to_string(),
            created: true,
        }))
    }

    async fn cancel_matching(
        &self,
        request: Request<pb::MatchRequest>,
    ) -> Result<Response<pb::MatchResponse>, Status> {
        let r = request.into_inner();
        let filter = Filter::from_pb(r.filter, true)?;
        let (tasks, truncated) = self.matching(&filter, limit_of(r.limit)).await?;
        let mut out = pb::MatchResponse {
            truncated,
            ..Default::default()
        };
        let shared = &self.client.shared;
        for t in tasks {
            if r.dry_run {
                out.task_ids.push(t.id.to_string());
                continue;
            }
            match shared.store.request_cancel(t.id, Utc::now()).await {
                Ok(task) => {
                    if task.status.is_active() {
                        shared.send_cancel(t.id);
                    }
                    shared.logs.notify(t.id);
                    out.task_ids.push(t.id.to_string());
                }
                // It ended between the read and the cancel.
                Err(e @ QueueError::IllegalTransition { .. }) => {
                    out.skipped.push(format!("{}: {e}", t.id))
                }
                Err(e) => return Err(crate::error::status(e)),
            }
        }
        if !r.dry_run {
            tracing::info!(
                cancelled = out.task_ids.len(),
                skipped = out.skipped.len(),
                truncated,
                "bulk cancel"
            );
        }
        Ok(Response::new(out))
    }

    async fn retry_matching(
        &self,
        request: Request<pb::MatchRequest>,
    ) -> Result<Response<pb::MatchResponse>, Status> {
        let submitted_by = crate::auth::submitter(&request);
        let key = client_key(&request);
        let r = request.into_inner();
        let filter = Filter::from_pb(r.filter, false)?;
        let (tasks, truncated) = self.matching(&filter, limit_of(r.limit)).await?;
        let mut out = pb::MatchResponse {
            truncated,
            ..Default::default()
        };
        let (ended, open): (Vec<Task>, Vec<Task>) =
            tasks.into_iter().partition(|t| t.status.is_terminal());
        for t in open {
            out.skipped
                .push(format!("{}: has not ended ({})", t.id, t.status));
        }
        if !r.dry_run {
            self.client
                .limits
                .check_rate(&key, ended.len())
                .inspect_err(|_| self.client.refused("rate"))?;
        }
        for t in ended {
            out.task_ids.push(t.id.to_string());
            if !r.dry_run {
                let new = self.enqueue_again(&t, submitted_by.clone()).await?;
                out.new_task_ids.push(new.to_string());
            }
        }
        Ok(Response::new(out))
    }
}

impl AdminSvc {
    /// Sets `worker_id`'s cordon (and drain deadline) on the leader, and has it stored.
    fn cordon(
        &self,
        worker_id: &str,
        cordoned: bool,
        drain_deadline: Option<chrono::DateTime<Utc>>,
    ) -> Result<pb::WorkerInfo, Status> {
        let shared = &self.client.shared;
        // The leader holds the workers' streams: only it can place or stop their tasks.
        if !shared.leading() {
            return Err(crate::error::not_leader(&shared.role()));
        }
        let info = {
            let mut c = shared.cluster();
            c.set_cordon(worker_id, cordoned, drain_deadline)
                .ok_or_else(|| {
                    crate::error::status(QueueError::UnknownWorker(worker_id.to_string()))
                })?;
            c.worker(worker_id).map(crate::wire::worker_info)
        };
        shared.persist_worker(worker_id);
        // A lifted cordon may place queued tasks at once.
        shared.wake_dispatcher();
        tracing::info!(worker_id, cordoned, drain_deadline = ?drain_deadline, "worker cordon set");
        info.ok_or_else(|| Status::internal("the worker vanished while cordoned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_need_a_criterion_and_match_images_exactly_or_by_prefix() {
        assert!(Filter::from_pb(None, true).is_err());
        let f = Filter::from_pb(
            Some(pb::TaskFilter {
                image: Some("registry.example/ml/*".into()),
                ..Default::default()
            }),
            true,
        )
        .unwrap();
        assert!(f.image_matches("registry.example/ml/train:1"));
        assert!(!f.image_matches("registry.example/web:1"));
        assert!(
            f.statuses.iter().all(|s| !s.is_terminal()),
            "a cancel looks at unfinished tasks"
        );
        let f = Filter::from_pb(
            Some(pb::TaskFilter {
                image: Some("busybox".into()),
                ..Default::default()
            }),
            false,
        )
        .unwrap();
        assert!(f.image_matches("busybox") && !f.image_matches("busybox:1"));
        assert!(
            !f.statuses.contains(&TaskStatus::Succeeded),
            "a retry skips successes"
        );
        assert_eq!(limit_of(0), DEFAULT_MATCH_LIMIT);
        assert_eq!(limit_of(50_000), MAX_MATCH_LIMIT);
    }
}
