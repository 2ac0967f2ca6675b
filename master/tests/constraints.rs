//! Constraints, preferences, the could-it-ever-run check at enqueue, wait reasons and the
//! memory a task gets, over real gRPC against a master with raw workers.

mod common;

use cloudai_proto::pb;
use common::*;

fn worker(
    id: &str,
    capacity: pb::Resources,
    labels: &[(&str, &str)],
    gpu: &str,
) -> pb::WorkerMessage {
    let mut m = register(id, capacity, vec![]);
    if let Some(pb::worker_message::Msg::Register(r)) = &mut m.msg {
        r.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        r.attributes = [("os", "linux"), ("hostname", id)]
            .into_iter()
            .chain((!gpu.is_empty()).then_some(("gpu.model", gpu)))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }
    m
}

fn constrained(cpu: u64, constraints: &[&str], prefer: &[&str]) -> pb::TaskSpec {
    let mut s = spec("cloudai/busybox:test");
    s.resources = Some(res(cpu, 0));
    s.constraints = constraints
        .iter()
        .map(|c| cloudai_proto::convert::constraint(&c.parse().unwrap()))
        .collect();
    s.prefer = prefer
        .iter()
        .map(|p| cloudai_proto::convert::preference(&p.parse().unwrap()))
        .collect();
    s
}

async fn count(c: &mut ClientSvc) -> usize {
    c.list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks
        .len()
}

async fn reason(c: &mut ClientSvc, id: &str, code: pb::WaitReasonCode) -> pb::WaitReason {
    eventually(&format!("{id} to wait for {code:?}"), 10, || {
        let mut c = c.clone();
        async move {
            get(&mut c, id)
                .await
                .wait_reason
                .filter(|r| r.code == code as i32)
        }
    })
    .await
}

type ClientSvc =
    cloudai_proto::pb::client_service_client::ClientServiceClient<tonic::transport::Channel>;

#[tokio::test]
async fn constraints_steer_placement_and_every_wait_has_a_reason() {
    let m = Master::start().await;
    let mut c = m.client().await;
    // "a" is the smaller, so best fit alone would pick it for anything small.
    let mut a = RawWorker::connect_as(
        &m,
        worker("a", res(1000, 1024), &[("zone", "a")], "NVIDIA A100"),
    )
    .await;
    let _hb_a = a.keep_alive();
    let mut b = RawWorker::connect_as(&m, worker("b", res(4000, 4096), &[("zone", "b")], "")).await;
    let _hb_b = b.keep_alive();
    let ws = c
        .list_workers(pb::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    let wa = ws.iter().find(|w| w.id == "a").unwrap();
    assert_eq!(wa.attributes["gpu.model"], "NVIDIA A100");
    assert_eq!(wa.labels["zone"], "a");

    // A hard constraint beats best fit; so does a preference.
    let to_b = enqueue(&mut c, constrained(100, &["zone=b"], &[])).await;
    let got = b.next_assign().await;
    assert_eq!(got.task_id, to_b);
    // The task gave no memory: the container's limit is what was reserved for it.
    assert_eq!(
        got.spec.unwrap().resources.unwrap().memory_bytes,
        cloudai_queue::DEFAULT_TASK_MEMORY_BYTES
    );
    let preferred = enqueue(&mut c, constrained(100, &[], &["zone=b"])).await;
    assert_eq!(b.next_assign().await.task_id, preferred);
    let plain = enqueue(&mut c, constrained(100, &[], &[])).await;
    assert_eq!(
        a.next_assign().await.task_id,
        plain,
        "best fit without a preference"
    );

    // No worker could ever take it: accepted, with a warning naming the closest worker.
    let r = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(constrained(100, &["gpu.model in (NVIDIA H100)"], &[])),
            strict: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.warning.contains(
            "closest worker a lacks gpu.model in (NVIDIA H100) (it has gpu.model=NVIDIA A100)"
        ),
        "{}",
        r.warning
    );
    let never = r.task_id;
    let why = reason(&mut c, &never, pb::WaitReasonCode::NoWorkerFits).await;
    assert!(why.detail.contains("closest worker a"), "{}", why.detail);
    // With strict it is refused, and nothing is stored.
    let before = count(&mut c).await;
    let e = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(constrained(8000, &[], &[])),
            strict: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("lacks cpu_millis 8000 requested"),
        "{}",
        e.message()
    );
    let after = count(&mut c).await;
    assert_eq!(before, after, "a strict refusal stores nothing");
    // An array is judged by its one spec: refused whole with strict, else stored whole
    // with the warning.
    let e = c
        .enqueue_array(pb::EnqueueArrayRequest {
            spec: Some(constrained(8000, &[], &[])),
            indices: "0-4".into(),
            strict: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("lacks cpu_millis 8000"),
        "{}",
        e.message()
    );
    assert_eq!(
        count(&mut c).await,
        before,
        "a strict array refusal stores nothing"
    );
    let arr = c
        .enqueue_array(pb::EnqueueArrayRequest {
            spec: Some(constrained(8000, &[], &[])),
            indices: "0-4".into(),
            strict: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(arr.created, 5);
    assert!(
        arr.warning.contains("lacks cpu_millis 8000"),
        "{}",
        arr.warning
    );
    assert_eq!(count(&mut c).await, before + 5);
    // A task that fits: strict accepts it without a warning.
    let ok = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(constrained(3900, &["zone=b"], &[])),
            strict: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.warning.is_empty());
    // b has 3800 of its 4000 millicores free (two tasks of 100 run): this one waits.
    reason(&mut c, &ok.task_id, pb::WaitReasonCode::Resources).await;

    // Pinned to a worker without room; delayed; waiting for a parent.
    let mut pinned = constrained(1000, &[], &[]);
    pinned.pinned_worker = Some("a".into());
    let pinned = enqueue(&mut c, pinned).await;
    let why = reason(&mut c, &pinned, pb::WaitReasonCode::PinnedWorkerUnavailable).await;
    assert!(why.detail.contains("free capacity of a"), "{}", why.detail);
    let mut later = constrained(100, &[], &[]);
    later.not_before = Some(cloudai_proto::convert::timestamp(
        chrono::Utc::now() + chrono::Duration::hours(1),
    ));
    let later = enqueue(&mut c, later).await;
    let why = reason(&mut c, &later, pb::WaitReasonCode::BeginTime).await;
    assert!(why.until.is_some());
    let mut child = constrained(100, &[], &[]);
    child.after = vec![pb::Dependency {
        task_id: never.clone(),
        condition: pb::DependencyCondition::Ok as i32,
    }];
    let child = enqueue(&mut c, child).await;
    reason(&mut c, &child, pb::WaitReasonCode::Dependency).await;
    // A running task has no reason.
    assert_eq!(get(&mut c, &to_b).await.wait_reason, None);

    // The agent is told which constraint a worker fails.
    let mut agent = m.agent().await;
    let state = agent
        .fetch_cluster_state(pb::FetchClusterStateRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(state.dispatcher_running);
    let q = state.queued.iter().find(|q| q.task_id == never).unwrap();
    assert_eq!(q.constraints.len(), 1);
    assert_eq!(q.attempts, 0);
    assert_eq!(
        q.request.as_ref().unwrap().memory_bytes,
        cloudai_queue::DEFAULT_TASK_MEMORY_BYTES,
        "the effective reservation"
    );
    assert_eq!(
        q.reason.as_ref().map(|r| r.code),
        Some(pb::WaitReasonCode::NoWorkerFits as i32)
    );
    let r = agent
        .submit_assignments(pb::SubmitAssignmentsRequest {
            assignments: vec![pb::Assignment {
                task_id: never.clone(),
                worker_id: "a".into(),
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    assert!(!r.accepted);
    assert_eq!(r.code, pb::AssignmentCode::ConstraintUnmet as i32);
    assert_eq!(r.resource, "gpu.model in (NVIDIA H100)");
    m.stop().await.unwrap();
}
