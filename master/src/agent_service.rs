//! `AgentService`: an external scheduling agent reads the cluster and proposes
//! assignments; each is validated like the dispatcher's own (task queued and eligible,
//! worker healthy and connected, pin respected, request fits free) and answered alone.

use std::sync::Arc;

use chrono::Utc;
use cloudai_proto::pb;
use cloudai_queue::{QueueError, TaskStatus};
use tonic::{Request, Response, Status};

use crate::dispatcher::{self, AssignError};
use crate::error::status;
use crate::shared::Shared;
use crate::wire;

/// Queued tasks returned when the request gives no limit.
pub const DEFAULT_MAX_QUEUED: usize = 1000;
/// Most queued tasks one `FetchClusterState` returns.
pub const MAX_QUEUED: usize = 10_000;
/// Most assignments in one `SubmitAssignments`.
pub const MAX_ASSIGNMENTS: usize = 10_000;

/// The agent-facing service.
pub struct AgentSvc {
    shared: Arc<Shared>,
}

impl AgentSvc {
    /// A service over the master's shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        AgentSvc { shared }
    }

    async fn submit_one(&self, a: &pb::Assignment) -> Result<(), String> {
        let id = a.task_id.parse().map_err(|e: QueueError| e.to_string())?;
        if self.shared.cluster().worker(&a.worker_id).is_none() {
            return Err(format!("unknown worker {:?}", a.worker_id));
        }
        let task = self.shared.store.get(id).await.map_err(|e| e.to_string())?;
        if task.status != TaskStatus::Queued {
            return Err(format!("task is {}, not queued", task.status));
        }
        if task.not_before > Utc::now() {
            return Err("task is waiting for its retry backoff".into());
        }
        dispatcher::assign(&self.shared, &task, &a.worker_id)
            .await
            .map_err(|e| match e {
                AssignError::Store(QueueError::IllegalTransition { from, .. }) => {
                    format!("task is {from}, not queued")
                }
                other => other.to_string(),
            })
    }
}

#[tonic::async_trait]
impl pb::agent_service_server::AgentService for AgentSvc {
    async fn fetch_cluster_state(
        &self,
        request: Request<pb::FetchClusterStateRequest>,
    ) -> Result<Response<pb::ClusterState>, Status> {
        if !self.shared.leading() {
            return Err(crate::error::not_leader(&self.shared.role()));
        }
        let limit = match request.into_inner().max_queued as usize {
            0 => DEFAULT_MAX_QUEUED,
            n => n.min(MAX_QUEUED),
        };
        let workers = self
            .shared
            .cluster()
            .workers()
            .map(wire::worker_info)
            .collect();
        let queued = self
            .shared
            .store
            .queued(Utc::now(), limit)
            .await
            .map_err(status)?
            .into_iter()
            .map(|t| pb::QueuedTask {
                task_id: t.id.to_string(),
                request: Some(t.spec.reservation().into()),
                priority: t.spec.priority,
                pinned_worker: t.spec.pinned_worker,
                image: t.spec.image,
            })
            .collect();
        Ok(Response::new(pb::ClusterState { workers, queued }))
    }

    async fn submit_assignments(
        &self,
        request: Request<pb::SubmitAssignmentsRequest>,
    ) -> Result<Response<pb::SubmitAssignmentsResponse>, Status> {
        if !self.shared.leading() {
            return Err(crate::error::not_leader(&self.shared.role()));
        }
        let assignments = request.into_inner().assignments;
        if assignments.len() > MAX_ASSIGNMENTS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_ASSIGNMENTS} assignments per call"
            )));
        }
        let mut results = Vec::with_capacity(assignments.len());
        for a in &assignments {
            let outcome = self.submit_one(a).await;
            results.push(pb::AssignmentResult {
                task_id: a.task_id.clone(),
                worker_id: a.worker_id.clone(),
                accepted: outcome.is_ok(),
                reason: outcome.err().unwrap_or_default(),
            });
        }
        Ok(Response::new(pb::SubmitAssignmentsResponse { results }))
    }
}
