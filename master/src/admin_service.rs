//! `AdminService`: a task that ended run again ([`retry`]), and cancels or retries of
//! every task a filter matches, with a dry run that changes nothing. It runs on the
//! client handlers' store access, limits and cancel path, so a bulk action behaves as the
//! same calls one by one would (PROTOCOL.md, "AdminService").

use std::sync::Arc;

use chrono::Utc;
use cloudai_proto::pb;
use cloudai_queue::{NewTask, QueueError, Task, TaskId, TaskQuery, TaskStatus};
use tonic::{Request, Response, Status};

use crate::client_service::ClientSvc;
use crate::limits::client_key;

/// The label a retried task carries: the id of the task it repeats.
pub const RETRY_OF_LABEL: &str = "cloudai.retry-of";
/// Tasks one bulk call acts on when the request gives no limit.
pub const DEFAULT_MATCH_LIMIT: usize = 1000;
/// Most tasks one bulk call acts on.
pub const MAX_MATCH_LIMIT: usize = 10_000;

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

/// The query a bulk action's filter means: at least one criterion, and with no status
/// named, the statuses the action can change (`default_statuses`).
fn bulk_query(f: Option<pb::TaskFilter>, cancel: bool) -> Result<TaskQuery, Status> {
    let mut q = crate::task_filter::query_of(f.unwrap_or_default())?;
    if crate::task_filter::is_empty(&q) {
        return Err(Status::invalid_argument(
            "give a filter (statuses, worker, submitter, image, labels, creation time or \
             text): an empty one would match every task",
        ));
    }
    if q.statuses.is_empty() {
        q.statuses = default_statuses(cancel);
    }
    Ok(q)
}

impl AdminSvc {
    /// Up to `limit` tasks matching `q`, newest first, and whether more matched.
    async fn matching(&self, q: &TaskQuery, limit: usize) -> Result<(Vec<Task>, bool), Status> {
        let query = TaskQuery {
            // One more than asked: whether more matched.
            limit: limit + 1,
            before: None,
            oldest_first: false,
            ..q.clone()
        };
        let store = &self.client.shared.store;
        let mut found = self.client.store_call("list", store.list(&query)).await?;
        let truncated = found.len() > limit;
        found.truncate(limit);
        Ok((found, truncated))
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
        crate::workflow::enqueued(shared, &e.task);
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
        let deadline = chrono::Duration::from_std(after)
            .ok()
            .and_then(|d| Utc::now().checked_add_signed(d))
            .ok_or_else(|| Status::invalid_argument("the drain deadline is too far"))?;
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

    async fn add_user(
        &self,
        request: Request<pb::AddUserRequest>,
    ) -> Result<Response<pb::AddUserResponse>, Status> {
        crate::admin_users::add_user(&self.client, request)
            .await
            .map(Response::new)
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        crate::admin_users::list_users(&self.client, request)
            .await
            .map(Response::new)
    }

    async fn remove_user(
        &self,
        request: Request<pb::RemoveUserRequest>,
    ) -> Result<Response<pb::RemoveUserResponse>, Status> {
        crate::admin_users::remove_user(&self.client, request)
            .await
            .map(Response::new)
    }

    async fn set_user_quota(
        &self,
        request: Request<pb::SetUserQuotaRequest>,
    ) -> Result<Response<pb::UserInfo>, Status> {
        crate::admin_users::set_user_quota(&self.client, request)
            .await
            .map(Response::new)
    }

    async fn rotate_join_token(
        &self,
        request: Request<pb::RotateJoinTokenRequest>,
    ) -> Result<Response<pb::RotateJoinTokenResponse>, Status> {
        crate::admin_users::rotate_join_token(&self.client, request)
            .await
            .map(Response::new)
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
            warning: String::new(),
        }))
    }

    async fn cancel_matching(
        &self,
        request: Request<pb::MatchRequest>,
    ) -> Result<Response<pb::MatchResponse>, Status> {
        let r = request.into_inner();
        let filter = bulk_query(r.filter, true)?;
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
                    if task.status.is_terminal() {
                        shared.task_ended(&t);
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
        let filter = bulk_query(r.filter, false)?;
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
    fn filters_need_a_criterion_and_default_to_what_the_action_changes() {
        assert!(bulk_query(None, true).is_err());
        let f = bulk_query(
            Some(pb::TaskFilter {
                image: Some("registry.example/ml/*".into()),
                ..Default::default()
            }),
            true,
        )
        .unwrap();
        assert_eq!(f.image_prefix(), Some("registry.example/ml/"));
        assert!(
            f.statuses.iter().all(|s| !s.is_terminal()),
            "a cancel looks at unfinished tasks"
        );
        let f = bulk_query(
            Some(pb::TaskFilter {
                text: Some("train".into()),
                ..Default::default()
            }),
            false,
        )
        .unwrap();
        assert!(
            !f.statuses.contains(&TaskStatus::Succeeded)
                && f.statuses.contains(&TaskStatus::Failed),
            "a retry skips successes"
        );
        assert_eq!(limit_of(0), DEFAULT_MATCH_LIMIT);
        assert_eq!(limit_of(50_000), MAX_MATCH_LIMIT);
    }
}
