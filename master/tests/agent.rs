//! AgentService over real gRPC: cluster state, and per-assignment validation.

mod common;

use cloudai_proto::pb::{self, master_message::Msg};
use common::*;

fn assignment(task_id: &str, worker_id: &str) -> pb::Assignment {
    pb::Assignment {
        task_id: task_id.into(),
        worker_id: worker_id.into(),
    }
}

#[tokio::test]
async fn agent_reads_state_and_each_assignment_is_validated() {
    // A master whose own dispatcher cannot place anything: every worker is tiny, so
    // the tasks stay queued for the agent to look at.
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut agent = m.agent().await;
    let mut small = RawWorker::connect(&m, "small", res(500, 256)).await;
    let _hb1 = small.keep_alive();
    let big = RawWorker::connect(&m, "big", res(4000, 4096)).await;
    let _hb2 = big.keep_alive();
    let sick = RawWorker::connect(&m, "sick", res(4000, 4096)).await;

    let mut s = spec("cloudai/busybox:test");
    s.resources = Some(res(8000, 0)); // fits nowhere: stays queued
    s.priority = 1;
    let too_big = enqueue(&mut c, s).await;
    let mut s = spec("cloudai/busybox:test");
    s.resources = Some(res(8000, 0));
    s.pinned_worker = Some("small".into());
    let pinned = enqueue(&mut c, s).await;
    let mut s = spec("cloudai/busybox:test");
    s.resources = Some(res(100, 0));
    let done = enqueue(&mut c, s).await;
    // The dispatcher places the small task itself (best fit: "small").
    let a = small.next_assign().await;
    assert_eq!(a.task_id, done);

    // Wait for "sick" (no heartbeats) to become suspect.
    eventually("sick to turn suspect", 5, || {
        let mut c = c.clone();
        async move {
            let ws = c
                .list_workers(pb::ListWorkersRequest {})
                .await
                .unwrap()
                .into_inner()
                .workers;
            ws.iter()
                .any(|w| w.id == "sick" && w.health != pb::WorkerHealth::Healthy as i32)
                .then_some(())
        }
    })
    .await;

    let state = agent
        .fetch_cluster_state(pb::FetchClusterStateRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = state.workers.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["big", "sick", "small"]);
    let queued: Vec<_> = state.queued.iter().map(|q| q.task_id.clone()).collect();
    assert_eq!(queued, [too_big.clone(), pinned.clone()], "dispatch order");
    assert_eq!(state.queued[1].pinned_worker.as_deref(), Some("small"));
    // Memory left at zero is reserved at the default, which is also its limit.
    assert_eq!(state.queued[0].request, Some(res(8000, 256)));
    assert!(state.dispatcher_running);
    assert_eq!(state.queued[0].attempts, 0);
    assert!(state.queued[0].created_at.is_some());

    // A task that fits "big" once we make one: enqueue it pinned to "big" with an
    // agent-friendly request; the dispatcher places it at once, so instead use the
    // existing queued ones and check every rejection reason.
    let results = agent
        .submit_assignments(pb::SubmitAssignmentsRequest {
            assignments: vec![
                assignment(&too_big, "big"),    // does not fit
                assignment(&pinned, "big"),     // pinned elsewhere
                assignment(&done, "big"),       // not queued
                assignment(&too_big, "ghost"),  // unknown worker
                assignment("not-an-id", "big"), // malformed id
                assignment(&too_big, "sick"),   // not healthy
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 6);
    assert!(results.iter().all(|r| !r.accepted));
    let reasons: Vec<_> = results.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons[0].contains("does not fit"), "{reasons:?}");
    assert!(reasons[1].contains("pinned to worker small"), "{reasons:?}");
    assert!(reasons[2].contains("not queued"), "{reasons:?}");
    assert!(reasons[3].contains("unknown worker"), "{reasons:?}");
    assert!(reasons[4].contains("uuid"), "{reasons:?}");
    assert!(reasons[5].contains("not healthy"), "{reasons:?}");
    use pb::AssignmentCode as C;
    let codes: Vec<_> = results.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        [
            C::DoesNotFit,
            C::PinnedElsewhere,
            C::NotQueued,
            C::UnknownWorker,
            C::UnknownTask,
            C::WorkerUnschedulable
        ]
        .map(|c| c as i32)
    );
    // "Does not fit" says which resource, how much is asked and how much is free.
    assert_eq!(
        (
            results[0].resource.as_str(),
            results[0].requested,
            results[0].free
        ),
        ("cpu_millis", 8000, 4000)
    );
    m.stop().await.unwrap();
    drop(sick);
    drop(big);
}

#[tokio::test]
async fn in_agent_only_mode_the_agent_places_and_the_master_enforces() {
    let m = Master::start_with(cloudai_master::MasterConfig {
        agent_only: true,
        ..test_config()
    })
    .await;
    let mut c = m.client().await;
    let mut agent = m.agent().await;
    let mut a = RawWorker::connect(&m, "a", res(1000, 1024)).await;
    let _hb1 = a.keep_alive();
    let mut b = RawWorker::connect(&m, "b", res(4000, 4096)).await;
    let _hb2 = b.keep_alive();
    let mut s = spec("cloudai/busybox:test");
    s.resources = Some(res(1000, 0));
    let first = enqueue(&mut c, s.clone()).await;
    let second = enqueue(&mut c, s.clone()).await;
    let third = enqueue(&mut c, s).await;
    let state = agent
        .fetch_cluster_state(pb::FetchClusterStateRequest { max_queued: 2 })
        .await
        .unwrap()
        .into_inner();
    let queued: Vec<_> = state.queued.iter().map(|q| q.task_id.clone()).collect();
    assert_eq!(
        queued,
        [first.clone(), second.clone()],
        "limited, oldest first"
    );

    let results = agent
        .submit_assignments(pb::SubmitAssignmentsRequest {
            assignments: vec![
                assignment(&first, "b"),
                assignment(&first, "a"), // already taken by the line above
                assignment(&second, "a"),
                assignment(&third, "a"), // "a" is full now
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let accepted: Vec<_> = results.iter().map(|r| r.accepted).collect();
    assert_eq!(accepted, [true, false, true, false], "{results:?}");
    assert_eq!(results[0].code, pb::AssignmentCode::Accepted as i32);
    assert_eq!(results[1].code, pb::AssignmentCode::NotQueued as i32);
    assert_eq!(results[3].code, pb::AssignmentCode::DoesNotFit as i32);
    assert!(
        results[1].reason.contains("not queued"),
        "{}",
        results[1].reason
    );
    assert!(
        results[3].reason.contains("does not fit"),
        "{}",
        results[3].reason
    );
    assert_eq!(b.next_assign().await.task_id, first);
    assert_eq!(a.next_assign().await.task_id, second);
    assert_eq!(get(&mut c, &first).await.worker_id, "b");
    assert_eq!(status(&get(&mut c, &third).await), pb::TaskStatus::Queued);
    m.stop().await.unwrap();
}

#[tokio::test]
async fn an_accepted_assignment_reaches_the_chosen_worker() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut agent = m.agent().await;
    // Enqueue before any worker exists, so the dispatcher has nowhere to put it.
    let mut s = spec("cloudai/busybox:test");
    s.resources = Some(res(1000, 0));
    let id = enqueue(&mut c, s).await;
    // Two workers connect; the dispatcher races the agent for the task. Best fit picks
    // "a" (the smaller), so the agent asks for "b": either the agent wins and "b" gets
    // it, or the task is no longer queued and the agent is told so.
    let mut a = RawWorker::connect(&m, "a", res(1000, 1024)).await;
    let _hb1 = a.keep_alive();
    let mut b = RawWorker::connect(&m, "b", res(4000, 4096)).await;
    let _hb2 = b.keep_alive();
    let r = agent
        .submit_assignments(pb::SubmitAssignmentsRequest {
            assignments: vec![assignment(&id, "b")],
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    let t = get(&mut c, &id).await;
    assert_eq!(t.attempts.len(), 1, "assigned exactly once");
    if r.accepted {
        assert_eq!(t.worker_id, "b");
        let got = b.next_assign().await;
        assert_eq!(got.task_id, id);
    } else {
        // Either the dispatcher had assigned it already, or it held it in flight.
        assert!(
            [
                pb::AssignmentCode::NotQueued as i32,
                pb::AssignmentCode::HeldByDispatcher as i32
            ]
            .contains(&r.code),
            "{r:?}"
        );
        assert_eq!(t.worker_id, "a");
        assert!(matches!(a.next().await, Msg::Assign(_)));
    }
    let state = agent
        .fetch_cluster_state(pb::FetchClusterStateRequest { max_queued: 5 })
        .await
        .unwrap()
        .into_inner();
    assert!(state.queued.is_empty());
    let holder = state.workers.iter().find(|w| w.id == t.worker_id).unwrap();
    assert_eq!(holder.running_task_ids, vec![id]);
    m.stop().await.unwrap();
}
