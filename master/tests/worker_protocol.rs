//! WorkerService over real gRPC, driven by a simulated worker on a raw stream.

mod common;

use std::time::Duration;

use cloudai_proto::pb::{self, master_message::Msg};
use common::*;
use tonic::Code;

fn aref(task_id: &str, token: u64) -> pb::AttemptRef {
    pb::AttemptRef {
        task_id: task_id.into(),
        token,
        devices: Vec::new(),
    }
}

#[tokio::test]
async fn a_task_runs_start_to_finish_with_its_logs() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut w = RawWorker::open(&m, register("w1", res(1000, 1024), vec![]))
        .await
        .unwrap();
    match w.next().await {
        Msg::Registered(r) => {
            assert_eq!(r.worker_id, "w1");
            assert_eq!(r.heartbeat_interval_ms, 100);
        }
        other => panic!("{other:?}"),
    }
    let _hb = w.keep_alive();
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    assert_eq!((a.task_id.as_str(), a.attempt), (id.as_str(), 1));
    assert_eq!(a.spec.unwrap().image, "cloudai/busybox:test");
    assert_eq!(status(&get(&mut c, &id).await), pb::TaskStatus::Assigned);

    w.event(&id, a.token, started()).await;
    wait_status(&mut c, &id, pb::TaskStatus::Running, 5).await;
    for line in ["one\n", "two\n", "three\n"] {
        w.event(&id, a.token, log(line)).await;
    }
    w.event(&id, a.token, exited(0)).await;
    match w.next().await {
        Msg::Ack(ack) => assert_eq!((ack.task_id.as_str(), ack.token), (id.as_str(), a.token)),
        other => panic!("expected Ack, got {other:?}"),
    }
    let t = wait_status(&mut c, &id, pb::TaskStatus::Succeeded, 5).await;
    assert_eq!(t.exit_code, Some(0));
    assert_eq!(t.worker_id, "w1");
    assert!(t.attempts[0].started_at.is_some() && t.finished_at.is_some());
    assert_eq!(logs(&mut c, &id, false).await, "one\ntwo\nthree\n");

    let workers = c
        .list_workers(pb::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].health, pb::WorkerHealth::Healthy as i32);
    assert_eq!(
        workers[0].free,
        Some(res(1000, 1024)),
        "reservation released"
    );
    m.stop().await.unwrap();
}

#[tokio::test]
async fn bad_first_messages_and_duplicate_ids_are_refused() {
    let m = Master::start().await;
    let hb = pb::WorkerMessage {
        msg: Some(pb::worker_message::Msg::Heartbeat(pb::Heartbeat::default())),
    };
    let err = RawWorker::open(&m, hb).await.err().unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = RawWorker::open(&m, register("bad id!", res(1, 1), vec![]))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = RawWorker::open(&m, register("w", res(1, 1), vec![aref("not-a-uuid", 1)]))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = RawWorker::open(&m, pb::WorkerMessage { msg: None })
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);

    let w = RawWorker::connect(&m, "dup", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    let err = RawWorker::open(&m, register("dup", res(1000, 1024), vec![]))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::AlreadyExists);
    m.stop().await.unwrap();
}

#[tokio::test]
async fn stale_tokens_are_rejected_but_results_acked() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    let stale = a.token + 7;
    w.event(&id, stale, started()).await;
    w.event(&id, stale, log("forged\n")).await;
    w.event(&id, stale, exited(0)).await;
    match w.next().await {
        Msg::Ack(ack) => assert_eq!(ack.token, stale),
        other => panic!("expected Ack, got {other:?}"),
    }
    let t = get(&mut c, &id).await;
    assert_eq!(
        status(&t),
        pb::TaskStatus::Assigned,
        "stale events change nothing"
    );
    assert_eq!(logs(&mut c, &id, false).await, "");
    // A message about a task that does not parse is ignored, not fatal.
    w.event("garbage", 1, started()).await;
    w.event(&id, a.token, exited(0)).await;
    assert!(matches!(w.next().await, Msg::Ack(_)));
    wait_status(&mut c, &id, pb::TaskStatus::Succeeded, 5).await;
    m.stop().await.unwrap();
}

#[tokio::test]
async fn a_dead_worker_loses_its_attempt_which_is_retried_elsewhere() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut a = RawWorker::connect(&m, "a", res(1000, 1024)).await;
    // "a" never heartbeats: it goes suspect, then dead.
    let mut s = spec("cloudai/busybox:test");
    s.pinned_worker = None;
    let id = enqueue(&mut c, s).await;
    let first = a.next_assign().await;
    a.event(&id, first.token, started()).await;

    let mut b = RawWorker::connect(&m, "b", res(1000, 1024)).await;
    let _hb = b.keep_alive();
    let second = b.next_assign().await;
    assert_eq!(second.task_id, id);
    assert_eq!(second.attempt, 2);
    assert!(second.token > first.token);

    let t = get(&mut c, &id).await;
    assert_eq!(t.attempts[0].worker_id, "a");
    assert_eq!(t.attempts[0].outcome, pb::TaskStatus::Lost as i32);
    assert!(
        t.attempts[0].error.contains("dead"),
        "{}",
        t.attempts[0].error
    );
    let workers = c
        .list_workers(pb::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    let wa = workers.iter().find(|w| w.id == "a").unwrap();
    assert_eq!(wa.health, pb::WorkerHealth::Dead as i32);
    assert_eq!(wa.free, Some(res(1000, 1024)));
    let stored = m.store.get_worker("a").await.unwrap().unwrap();
    assert_eq!(stored.health, cloudai_queue::WorkerHealth::Dead);

    // The dead worker's late result is stale.
    a.event(&id, first.token, exited(0)).await;
    b.event(&id, second.token, exited(0)).await;
    assert!(matches!(b.next().await, Msg::Ack(_)));
    let t = wait_status(&mut c, &id, pb::TaskStatus::Succeeded, 5).await;
    assert_eq!(t.worker_id, "b");

    // When "a" comes back listing the old attempt, it is revoked.
    drop(a);
    let mut a2 = eventually("a to reconnect", 5, || async {
        RawWorker::open(
            &m,
            register("a", res(1000, 1024), vec![aref(&id, first.token)]),
        )
        .await
        .ok()
    })
    .await;
    assert!(matches!(a2.next().await, Msg::Registered(_)));
    match a2.next().await {
        Msg::Revoke(r) => assert_eq!(r.attempts, vec![aref(&id, first.token)]),
        other => panic!("expected Revoke, got {other:?}"),
    }
    m.stop().await.unwrap();
}

#[tokio::test]
async fn cancel_reaches_the_worker_and_ends_cancelled() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    w.event(&id, a.token, started()).await;
    wait_status(&mut c, &id, pb::TaskStatus::Running, 5).await;
    let t = c
        .cancel_task(pb::CancelTaskRequest { id: id[..8].into() })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert!(t.cancel_requested);
    match w.next_skipping_acks().await {
        Msg::Cancel(k) => assert_eq!((k.task_id.as_str(), k.token), (id.as_str(), a.token)),
        other => panic!("expected Cancel, got {other:?}"),
    }
    w.event(
        &id,
        a.token,
        pb::task_event::Event::Finished(pb::Finished {
            kind: pb::FinishKind::Cancelled as i32,
            exit_code: None,
            error: String::new(),
        }),
    )
    .await;
    wait_status(&mut c, &id, pb::TaskStatus::Cancelled, 5).await;
    m.stop().await.unwrap();
}

#[tokio::test]
async fn follow_streams_live_logs_until_the_task_ends() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    w.event(&id, a.token, started()).await;
    w.event(&id, a.token, log("before\n")).await;
    let mut c2 = c.clone();
    let id2 = id.clone();
    let follower = tokio::spawn(async move { logs(&mut c2, &id2, true).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!follower.is_finished(), "follow waits while the task runs");
    w.event(&id, a.token, log("during\n")).await;
    w.event(&id, a.token, exited(0)).await;
    let out = tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("follow ends when the task ends")
        .unwrap();
    assert_eq!(out, "before\nduring\n");
    m.stop().await.unwrap();
}

#[tokio::test]
async fn failures_keep_the_exit_code_and_retry_when_allowed() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    let mut s = spec("cloudai/busybox:test");
    s.max_attempts = 2;
    let id = enqueue(&mut c, s).await;
    let a1 = w.next_assign().await;
    w.event(&id, a1.token, exited(3)).await;
    assert!(matches!(w.next().await, Msg::Ack(_)));
    let a2 = w.next_assign().await; // after the retry backoff
    assert_eq!(a2.attempt, 2);
    w.event(&id, a2.token, exited(4)).await;
    let t = wait_status(&mut c, &id, pb::TaskStatus::Failed, 5).await;
    assert_eq!(t.exit_code, Some(4));
    assert_eq!(t.attempts.len(), 2);
    assert_eq!(t.attempts[0].exit_code, Some(3));
    m.stop().await.unwrap();
}

#[tokio::test]
async fn capacity_is_never_over_committed_and_pins_wait() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    let mut big = spec("cloudai/busybox:test");
    big.resources = Some(res(600, 0));
    let first = enqueue(&mut c, big.clone()).await;
    let a1 = w.next_assign().await;
    assert_eq!(a1.task_id, first);
    let mut pinned = big.clone();
    pinned.pinned_worker = Some("w1".into());
    let second = enqueue(&mut c, pinned).await;
    let mut huge = spec("cloudai/busybox:test");
    huge.resources = Some(res(5000, 0));
    let never = enqueue(&mut c, huge).await;
    // Nothing else fits: no Assign comes.
    let assigned = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let Msg::Assign(a) = w.next().await {
                return a;
            }
        }
    })
    .await;
    assert!(
        assigned.is_err(),
        "no assignment while the worker is full: {assigned:?}"
    );
    assert_eq!(status(&get(&mut c, &second).await), pb::TaskStatus::Queued);
    w.event(&first, a1.token, exited(0)).await;
    assert!(matches!(w.next().await, Msg::Ack(_)));
    let a2 = w.next_assign().await;
    assert_eq!(a2.task_id, second, "freed room goes to the waiting task");
    assert_eq!(status(&get(&mut c, &never).await), pb::TaskStatus::Queued);
    m.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_master_keeps_attempts_of_workers_that_come_back() {
    let m = Master::start().await;
    let dir = m.dir.clone();
    let mut c = m.client().await;
    let mut back = RawWorker::connect(&m, "back", res(1000, 1024)).await;
    let _hb = back.keep_alive();
    let mut s = spec("cloudai/busybox:test");
    s.resources = Some(res(1000, 0));
    let kept = enqueue(&mut c, s).await;
    let k = back.next_assign().await;
    back.event(&kept, k.token, started()).await;
    wait_status(&mut c, &kept, pb::TaskStatus::Running, 5).await;

    let mut gone = RawWorker::connect(&m, "gone", res(1000, 1024)).await;
    let _hb2 = gone.keep_alive();
    let mut s = spec("cloudai/busybox:test");
    s.pinned_worker = Some("gone".into());
    let lost = enqueue(&mut c, s).await;
    let l = gone.next_assign().await;
    assert_eq!(l.task_id, lost);
    m.stop().await.unwrap();
    drop((back, gone, _hb, _hb2));

    // The new master waits the reconnect window (500 ms) before declaring "gone" dead.
    let m2 = Master::start_in(dir, test_config()).await;
    let mut c = m2.client().await;
    let mut back = RawWorker::open(
        &m2,
        register("back", res(1000, 1024), vec![aref(&kept, k.token)]),
    )
    .await
    .unwrap();
    assert!(matches!(back.next().await, Msg::Registered(_)));
    let _hb = back.keep_alive();
    let workers = c
        .list_workers(pb::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    let wb = workers.iter().find(|w| w.id == "back").unwrap();
    assert_eq!(
        wb.free,
        Some(res(0, 1024 - 256)),
        "reservation rebuilt from the store (memory left at zero reserves 256 MiB)"
    );
    assert_eq!(wb.running_task_ids, vec![kept.clone()]);

    let t = eventually("the absent worker's attempt to be lost", 10, || {
        let mut c = c.clone();
        let lost = lost.clone();
        async move {
            let t = get(&mut c, &lost).await;
            (t.attempts[0].outcome == pb::TaskStatus::Lost as i32).then_some(t)
        }
    })
    .await;
    assert_eq!(t.attempts.len(), 1);
    // The same worker process goes on numbering the attempt's events: its start was 1.
    back.event_at(&kept, k.token, 2, chrono::Utc::now(), exited(0))
        .await;
    assert!(matches!(back.next().await, Msg::Ack(a) if a.seq == 2));
    wait_status(&mut c, &kept, pb::TaskStatus::Succeeded, 5).await;
    m2.stop().await.unwrap();
}
