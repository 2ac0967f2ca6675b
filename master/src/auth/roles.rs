//! The permission matrix: which role may do what, and which action each RPC is.
//!
//! | action            | viewer | submitter | admin |
//! |-------------------|--------|-----------|-------|
//! | read (tasks, workers, logs, stats) | yes | yes | yes |
//! | enqueue           | no     | yes       | yes   |
//! | cancel own task   | no     | yes       | yes   |
//! | cancel any task   | no     | no        | yes   |
//! | agent API         | no     | no        | yes   |
//! | manage users and the join token | no | no | yes |
//!
//! Unknown methods of `cloudai.v1` need admin (deny by default). Health checking and
//! reflection are public, so standard gRPC tools keep working; workers authenticate with
//! the join token in `Register`, not with a user token.

use cloudai_queue::Role;

/// Something a client asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read tasks, workers, logs or queue statistics.
    Read,
    /// Add tasks to the queue.
    Enqueue,
    /// Cancel a task the caller submitted.
    CancelOwn,
    /// Cancel a task someone else submitted (or nobody recorded).
    CancelAny,
    /// Read cluster state and place tasks through `AgentService`.
    Agent,
    /// Add, remove or rotate users and the join token.
    ManageUsers,
    /// Cancel or retry every task a filter matches; cordon, drain, uncordon workers.
    Bulk,
}

impl Action {
    /// How the action reads in a denial message.
    pub fn describe(self) -> &'static str {
        match self {
            Action::Read => "read tasks, workers and logs",
            Action::Enqueue => "enqueue tasks",
            Action::CancelOwn => "cancel tasks",
            Action::CancelAny => "cancel tasks submitted by other users",
            Action::Agent => "use the agent API",
            Action::ManageUsers => "manage users and the join token",
            Action::Bulk => "act on many tasks at once, or cordon and drain workers",
        }
    }
}

/// True when `role` may do `action`.
pub fn allowed(role: Role, action: Action) -> bool {
    match action {
        Action::Read => true,
        Action::Enqueue | Action::CancelOwn => role >= Role::Submitter,
        Action::CancelAny | Action::Agent | Action::ManageUsers | Action::Bulk => {
            role == Role::Admin
        }
    }
}

/// The least role that may do `action` (for messages).
pub fn least_role(action: Action) -> Role {
    Role::ALL
        .into_iter()
        .find(|r| allowed(*r, action))
        .unwrap_or(Role::Admin)
}

/// Which cancel action cancelling a task submitted by `submitted_by` is, for `caller`.
pub fn cancel_action(caller: &str, submitted_by: Option<&str>) -> Action {
    if submitted_by == Some(caller) {
        Action::CancelOwn
    } else {
        Action::CancelAny
    }
}

/// How the master authenticates a call to a gRPC method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcRule {
    /// No credentials (health checking, reflection).
    Public,
    /// The worker stream: the join token travels in `Register` (and, with mTLS, the client
    /// certificate is required).
    Worker,
    /// A user's bearer token, and a role that may do this action. `CancelTask` is
    /// `CancelOwn` here; the handler checks ownership once it has read the task.
    Client(Action),
}

/// The rule for a gRPC request path such as `/cloudai.v1.ClientService/Enqueue`.
pub fn rpc_rule(path: &str) -> RpcRule {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    match service {
        "grpc.health.v1.Health"
        | "grpc.reflection.v1.ServerReflection"
        | "grpc.reflection.v1alpha.ServerReflection" => RpcRule::Public,
        "cloudai.v1.WorkerService" => RpcRule::Worker,
        "cloudai.v1.ClientService" => RpcRule::Client(match method {
            "GetTask" | "ListTasks" | "StreamLogs" | "ListWorkers" | "QueueStats"
            | "MasterStatus" | "GetArray" | "ListSchedules" | "GetSchedule" => Action::Read,
            "Enqueue" | "EnqueueBatch" | "EnqueueArray" | "AddSchedule" | "PauseSchedule"
            | "ResumeSchedule" | "RemoveSchedule" | "RunSchedule" => Action::Enqueue,
            "CancelTask" => Action::CancelOwn,
            _ => Action::ManageUsers,
        }),
        "cloudai.v1.AgentService" => RpcRule::Client(Action::Agent),
        "cloudai.v1.AdminService" => RpcRule::Client(match method {
            // The new task is the caller's, as an enqueue's.
            "RetryTask" => Action::Enqueue,
            "AddUser" | "ListUsers" | "RemoveUser" | "SetUserQuota" | "RotateJoinToken" => {
                Action::ManageUsers
            }
            _ => Action::Bulk,
        }),
        _ => RpcRule::Client(Action::ManageUsers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    #[test]
    fn the_matrix_exhaustively() {
        let expect = [
            (Read, [true, true, true]),
            (Enqueue, [false, true, true]),
            (CancelOwn, [false, true, true]),
            (CancelAny, [false, false, true]),
            (Agent, [false, false, true]),
            (ManageUsers, [false, false, true]),
            (Bulk, [false, false, true]),
        ];
        for (action, by_role) in expect {
            for (role, want) in Role::ALL.into_iter().zip(by_role) {
                assert_eq!(allowed(role, action), want, "{role} {action:?}");
            }
        }
        assert_eq!(least_role(Enqueue), Role::Submitter);
        assert_eq!(least_role(Read), Role::Viewer);
        assert_eq!(least_role(CancelAny), Role::Admin);
    }

    #[test]
    fn a_submitter_cancels_only_its_own() {
        assert_eq!(cancel_action("bob", Some("bob")), CancelOwn);
        assert_eq!(cancel_action("bob", Some("alice")), CancelAny);
        assert_eq!(cancel_action("bob", None), CancelAny);
        assert!(allowed(Role::Submitter, cancel_action("bob", Some("bob"))));
        assert!(!allowed(
            Role::Submitter,
            cancel_action("bob", Some("alice"))
        ));
        assert!(allowed(Role::Admin, cancel_action("root", Some("alice"))));
    }

    #[test]
    fn rpc_paths_map_to_rules() {
        let c = |m: &str| rpc_rule(&format!("/cloudai.v1.ClientService/{m}"));
        for m in [
            "GetTask",
            "ListTasks",
            "StreamLogs",
            "ListWorkers",
            "QueueStats",
            "MasterStatus",
        ] {
            assert_eq!(c(m), RpcRule::Client(Read), "{m}");
        }
        assert_eq!(c("Enqueue"), RpcRule::Client(Enqueue));
        assert_eq!(c("EnqueueBatch"), RpcRule::Client(Enqueue));
        assert_eq!(c("CancelTask"), RpcRule::Client(CancelOwn));
        assert_eq!(c("SomethingNew"), RpcRule::Client(ManageUsers));
        assert_eq!(
            rpc_rule("/cloudai.v1.AgentService/SubmitAssignments"),
            RpcRule::Client(Agent)
        );
        assert_eq!(
            rpc_rule("/cloudai.v1.WorkerService/Connect"),
            RpcRule::Worker
        );
        assert_eq!(rpc_rule("/grpc.health.v1.Health/Check"), RpcRule::Public);
        assert_eq!(
            rpc_rule("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            RpcRule::Public
        );
        assert_eq!(rpc_rule("/evil.Service/X"), RpcRule::Client(ManageUsers));
        assert_eq!(
            rpc_rule("/cloudai.v1.AdminService/RetryTask"),
            RpcRule::Client(Enqueue)
        );
        for m in [
            "AddUser",
            "ListUsers",
            "RemoveUser",
            "SetUserQuota",
            "RotateJoinToken",
        ] {
            assert_eq!(
                rpc_rule(&format!("/cloudai.v1.AdminService/{m}")),
                RpcRule::Client(ManageUsers),
                "{m}"
            );
        }
        for m in ["CancelMatching", "RetryMatching", "Unknown"] {
            assert_eq!(
                rpc_rule(&format!("/cloudai.v1.AdminService/{m}")),
                RpcRule::Client(Bulk)
            );
        }
        assert_eq!(rpc_rule(""), RpcRule::Client(ManageUsers));
    }
}
