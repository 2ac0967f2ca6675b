//! `AgentService`: an external scheduling agent reads the cluster and proposes
//! assignments; each is validated like the dispatcher's own (task queued and eligible,
//! worker healthy and connected, pin respected, constraints met, request fits free) and
//! answered alone, with a machine-readable code (`AssignmentCode`) for each refusal.

use std::sync::Arc;

use chrono::Utc;
use cloudai_proto::{convert, pb};
use cloudai_queue::{QueueError, TaskStatus};
use tonic::{Request, Response, Status};

use crate::dispatcher::{self, AssignError};
use crate::error::status;
use crate::placement::Reject;
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

    async fn submit_one(&self, a: &pb::Assignment) -> Result<(), Refusal> {
        use pb::AssignmentCode as C;
        let id = a
            .task_id
            .parse()
            .map_err(|e: QueueError| Refusal::new(C::UnknownTask, e.to_string()))?;
        if self.shared.cluster().worker(&a.worker_id).is_none() {
            return Err(Refusal::new(
                C::UnknownWorker,
                format!("unknown worker {:?}", a.worker_id),
            ));
        }
        let task = self.shared.store.get(id).await.map_err(store_refusal)?;
        if task.status != TaskStatus::Queued {
            return Err(Refusal::new(
                C::NotQueued,
                format!("task is {}, not queued", task.status),
            ));
        }
        if task.not_before > Utc::now() {
            return Err(Refusal::new(
                C::InBackoff,
                format!(
                    "task is not due before {} (a retry's backoff or its --at time)",
                    task.not_before.to_rfc3339()
                ),
            ));
        }
        dispatcher::assign(&self.shared, &task, &a.worker_id)
            .await
            .map_err(|e| match e {
                AssignError::Rejected(r) => rejected(r, self.shared.config.agent_only),
                AssignError::Store(QueueError::IllegalTransition { from, .. }) => {
                    Refusal::new(C::NotQueued, format!("task is {from}, not queued"))
                }
                AssignError::Store(e) => store_refusal(e),
            })
    }
}

/// Why one assignment was refused, as `AssignmentResult` carries it.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    code: pb::AssignmentCode,
    reason: String,
    resource: String,
    requested: u64,
    free: u64,
}

impl Refusal {
    fn new(code: pb::AssignmentCode, reason: impl Into<String>) -> Refusal {
        Refusal {
            code,
            reason: reason.into(),
            resource: String::new(),
            requested: 0,
            free: 0,
        }
    }
}

/// A store error: an unknown task, or the store unavailable (try again).
fn store_refusal(e: QueueError) -> Refusal {
    let code = match e {
        QueueError::NotFound(_) => pb::AssignmentCode::UnknownTask,
        _ => pb::AssignmentCode::Unavailable,
    };
    Refusal::new(code, e.to_string())
}

/// Placement's refusal as a code. A task already held is the master's own dispatcher's
/// (or an earlier assignment's) when the dispatcher runs.
fn rejected(r: Reject, agent_only: bool) -> Refusal {
    use pb::AssignmentCode as C;
    let reason = r.to_string();
    match r {
        Reject::AlreadyPlaced if agent_only => Refusal::new(
            C::HeldByDispatcher,
            "task is being assigned already (by an earlier assignment)",
        ),
        Reject::AlreadyPlaced => Refusal::new(
            C::HeldByDispatcher,
            "task is being assigned by the master's own dispatcher",
        ),
        Reject::PinnedElsewhere(_) => Refusal::new(C::PinnedElsewhere, reason),
        Reject::Unschedulable(_) => Refusal::new(C::WorkerUnschedulable, reason),
        Reject::PinnedWorkerUnknown(_) => Refusal::new(C::UnknownWorker, reason),
        Reject::ConstraintUnmet { constraint, .. } => Refusal {
            resource: constraint,
            ..Refusal::new(C::ConstraintUnmet, reason)
        },
        Reject::DoesNotFit { short, .. } => Refusal {
            resource: short.resource.to_string(),
            requested: short.requested,
            free: short.available,
            ..Refusal::new(C::DoesNotFit, reason)
        },
        Reject::NoWorkerFits => Refusal::new(C::DoesNotFit, reason),
    }
}

/// A queued task as an agent sees it: what placement needs (the effective reservation,
/// pin, constraints) and what a policy may weigh (labels, submitter, age, attempts, the
/// dispatcher's reason).
fn queued_task(t: cloudai_queue::Task, reason: Option<pb::WaitReason>) -> pb::QueuedTask {
    pb::QueuedTask {
        task_id: t.id.to_string(),
        request: Some(t.spec.reservation().into()),
        priority: t.spec.priority,
        constraints: t.spec.constraints.iter().map(convert::constraint).collect(),
        prefer: t.spec.prefer.iter().map(convert::preference).collect(),
        pinned_worker: t.spec.pinned_worker,
        image: t.spec.image,
        labels: t.spec.labels.into_iter().collect(),
        submitted_by: t.submitted_by.unwrap_or_default(),
        created_at: Some(convert::timestamp(t.created_at)),
        attempts: t.attempts.len() as u32,
        not_before: Some(convert::timestamp(t.not_before)),
        reason,
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
        let now = Utc::now();
        let board = self.shared.reasons.view(true);
        let queued = self
            .shared
            .store
            .queued(now, limit)
            .await
            .map_err(status)?
            .into_iter()
            .map(|t| {
                let reason = board.reason(&t, now);
                queued_task(t, reason.map(|r| r.to_wire()))
            })
            .collect();
        Ok(Response::new(pb::ClusterState {
            workers,
            queued,
            dispatcher_running: !self.shared.config.agent_only,
        }))
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
            let result = match self.submit_one(a).await {
                Ok(()) => pb::AssignmentResult {
                    task_id: a.task_id.clone(),
                    worker_id: a.worker_id.clone(),
                    accepted: true,
                    code: pb::AssignmentCode::Accepted as i32,
                    ..Default::default()
                },
                Err(r) => pb::AssignmentResult {
                    task_id: a.task_id.clone(),
                    worker_id: a.worker_id.clone(),
                    accepted: false,
                    reason: r.reason,
                    code: r.code as i32,
                    resource: r.resource,
                    requested: r.requested,
                    free: r.free,
                },
            };
            results.push(result);
        }
        Ok(Response::new(pb::SubmitAssignmentsResponse { results }))
    }
}
