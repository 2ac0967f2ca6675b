//! The store is the one source of truth and nothing a worker reports is lost: one focused
//! test per fault of issue 11, each at the worst moment, against a real master on loopback
//! and a real SQLite file behind a store that fails or pauses on demand
//! (`common::faults::FaultStore`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cloudai_proto::pb::{self, master_message::Msg};
use cloudai_queue::{LostCause, TaskSpec};
use common::faults::FaultStore;
use common::*;

async fn faulty_master(config: cloudai_master::MasterConfig) -> (Master, Arc<FaultStore>) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let faults = FaultStore::new(open_sqlite(&dir, &config).await);
    let m = Master::start_on(dir, faults.clone(), config).await;
    (m, faults)
}

async fn worker_info(
    c: &mut ClientServiceClient<tonic::transport::Channel>,
    id: &str,
) -> pb::WorkerInfo {
    c.list_workers(pb::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers
        .into_iter()
        .find(|w| w.id == id)
        .unwrap_or_else(|| panic!("worker {id} listed"))
}

/// Bugs 3 and 6: the store fails the write of a result and of the output before it; the
/// master retries until both are stored, and only then acknowledges. No reconnect needed.
#[tokio::test]
async fn a_result_the_store_fails_to_write_is_retried_with_its_output_until_stored() {
    let (m, faults) = faulty_master(test_config()).await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    faults.fail("report", 3);
    w.event(&id, a.token, started()).await;
    w.event(&id, a.token, log("first\n")).await;
    w.event(&id, a.token, log("second\n")).await;
    let end = w.event(&id, a.token, exited(0)).await;
    let ack = w.ack_through(&id, end).await;
    assert_eq!(ack.token, a.token);
    assert!(
        faults.calls("report") >= 4,
        "three failed writes, then the one that stuck"
    );
    let t = wait_status(&mut c, &id, pb::TaskStatus::Succeeded, 5).await;
    assert_eq!(t.attempts.len(), 1);
    assert_eq!(logs(&mut c, &id, false).await, "first\nsecond\n");
    m.stop().await.unwrap();
}

/// Bug 4: the worker dies and the store fails the `lost` write; it is retried, the task
/// runs elsewhere, and the dead worker's reservation is released once it is stored.
#[tokio::test]
async fn a_lost_attempt_the_store_fails_to_write_is_retried_and_then_released() {
    let (m, faults) = faulty_master(test_config()).await;
    let mut c = m.client().await;
    let mut w1 = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let hb = w1.keep_alive();
    let mut s = spec("cloudai/busybox:test");
    s.resources = Some(res(1000, 512));
    let id = enqueue(&mut c, s).await;
    let a = w1.next_assign().await;
    w1.event(&id, a.token, started()).await;
    wait_status(&mut c, &id, pb::TaskStatus::Running, 5).await;
    faults.fail("lose", 3);
    hb.abort();
    let mut w2 = RawWorker::connect(&m, "w2", res(1000, 1024)).await;
    let _hb2 = w2.keep_alive();
    let retry = w2.next_assign().await;
    assert_eq!((retry.task_id.as_str(), retry.attempt), (id.as_str(), 2));
    assert!(faults.calls("lose") >= 4);
    let t = get(&mut c, &id).await;
    assert_eq!(t.attempts[0].outcome, pb::TaskStatus::Lost as i32);
    let dead = worker_info(&mut c, "w1").await;
    assert_eq!(
        dead.free, dead.capacity,
        "nothing left reserved on the dead worker"
    );
    assert!(dead.running_task_ids.is_empty());
    m.stop().await.unwrap();
}

/// Bug 5: a worker reports an attempt that memory does not hold; while the master reads
/// the task (it is the worker's then), the attempt is lost. The reservation restored from
/// that read is checked once more, released, and the attempt revoked: no capacity leaks.
#[tokio::test]
async fn a_loss_between_reconcile_read_and_restore_leaves_no_phantom_reservation() {
    let (m, faults) = faulty_master(test_config()).await;
    let c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    // An attempt written by another party (another master, say): memory has none of it.
    let mut s = TaskSpec::new("cloudai/busybox:test");
    s.pinned_worker = Some("elsewhere".into());
    s.resources.cpu_millis = 700;
    let task = m.store.enqueue(s.into()).await.unwrap().task;
    let assigned = m.store.assign(task.id, "w1", Utc::now()).await.unwrap();
    let token = assigned.token();
    let (entered, release) = faults.hold("get", task.id);
    w.heartbeat(vec![pb::AttemptRef {
        task_id: task.id.to_string(),
        token,
        devices: Vec::new(),
    }])
    .await;
    tokio::time::timeout(Duration::from_secs(5), entered)
        .await
        .expect("the master reads the reported attempt")
        .unwrap();
    // Read as the worker's; now lost before memory is updated from that read.
    m.store
        .lose(task.id, token, LostCause::Gone("test".into()), Utc::now())
        .await
        .unwrap();
    release.send(()).unwrap();
    let revoked = loop {
        if let Msg::Revoke(r) = w.next_skipping_acks().await {
            break r;
        }
    };
    assert_eq!(revoked.attempts.len(), 1);
    assert_eq!(revoked.attempts[0].token, token);
    let info = eventually("w1's capacity to be whole", 5, || {
        let mut c = c.clone();
        async move {
            let i = worker_info(&mut c, "w1").await;
            (i.free == i.capacity).then_some(i)
        }
    })
    .await;
    assert!(info.running_task_ids.is_empty());
    m.stop().await.unwrap();
}

/// Bug 7: a start is acknowledged only once stored, so a master that dies before storing
/// it loses nothing: the worker sends it again to the next master, which stores it with
/// the worker's time.
#[tokio::test]
async fn a_start_the_master_never_stored_is_sent_again_and_kept_with_its_time() {
    let config = test_config();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let faults = FaultStore::new(open_sqlite(&dir, &config).await);
    let m = Master::start_on(dir.clone(), faults.clone(), config.clone()).await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let hb = w.keep_alive();
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    faults.fail("report", u32::MAX);
    let t0 = Utc::now() - chrono::Duration::seconds(30);
    w.event_at(&id, a.token, 1, t0, started()).await;
    let ack = tokio::time::timeout(Duration::from_millis(800), async {
        loop {
            if let Msg::Ack(a) = w.next().await {
                return a;
            }
        }
    })
    .await;
    assert!(ack.is_err(), "acked before it was stored: {ack:?}");
    hb.abort();
    drop(w);
    m.stop().await.unwrap();
    drop(faults);

    let m2 = Master::start_in(dir, config).await;
    let mut c = m2.client().await;
    let running = vec![pb::AttemptRef {
        task_id: id.clone(),
        token: a.token,
        devices: Vec::new(),
    }];
    let mut w = RawWorker::reconnect(&m2, "w1", res(1000, 1024), running).await;
    let _hb = w.keep_alive();
    w.event_at(&id, a.token, 1, t0, started()).await;
    assert_eq!(w.ack_through(&id, 1).await.token, a.token);
    let t = wait_status(&mut c, &id, pb::TaskStatus::Running, 5).await;
    let started_at = t.attempts[0].started_at.expect("the start is kept");
    assert_eq!(
        started_at.seconds,
        t0.timestamp(),
        "the worker's time, not the master's"
    );
    m2.stop().await.unwrap();
}

/// The store goes down while a task ends: the worker stays connected and healthy (its
/// heartbeats are answered from memory), an enqueue fails at once with UNAVAILABLE and
/// says why, and once the store is back the held report lands, output and all.
#[tokio::test]
async fn with_the_store_down_heartbeats_go_on_enqueue_is_unavailable_and_reports_land_later() {
    let (m, faults) = faulty_master(test_config()).await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    w.event(&id, a.token, started()).await;
    wait_status(&mut c, &id, pb::TaskStatus::Running, 5).await;

    faults.set_down(true);
    w.event(&id, a.token, log("while the store was down\n"))
        .await;
    let end = w.event(&id, a.token, exited(0)).await;
    let err = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(spec("cloudai/busybox:test")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(
        err.message().contains("store is unavailable"),
        "{}",
        err.message()
    );
    // Well past the dead timeout (300 ms): still healthy, its heartbeats are acked.
    let mut acks = 0;
    let quiet = tokio::time::Instant::now() + Duration::from_millis(1000);
    while tokio::time::Instant::now() < quiet {
        match tokio::time::timeout(Duration::from_millis(200), w.next_raw()).await {
            Ok(Msg::HeartbeatAck(_)) => acks += 1,
            // The start (seq 1) was stored before the outage; nothing later may be acked.
            Ok(Msg::Ack(a)) if a.seq > 1 => panic!("acked while the store is down: {a:?}"),
            _ => {}
        }
    }
    assert!(acks >= 5, "{acks} heartbeat acks");
    let info = worker_info(&mut c, "w1").await;
    assert_eq!(info.health, pb::WorkerHealth::Healthy as i32);

    faults.set_down(false);
    w.ack_through(&id, end).await;
    let t = wait_status(&mut c, &id, pb::TaskStatus::Succeeded, 5).await;
    assert_eq!(t.attempts.len(), 1);
    assert_eq!(logs(&mut c, &id, false).await, "while the store was down\n");
    m.stop().await.unwrap();
}

/// A store that accepts calls and never answers: a client call gives up after
/// `--store-timeout` with UNAVAILABLE naming the flag, never hangs.
#[tokio::test]
async fn a_store_that_never_answers_makes_client_calls_unavailable_within_the_timeout() {
    let config = cloudai_master::MasterConfig {
        store_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let (m, faults) = faulty_master(config).await;
    let mut c = m.client().await;
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    faults.set_hung(true);
    let began = tokio::time::Instant::now();
    let err = c
        .get_task(pb::GetTaskRequest { id: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(
        err.message().contains("--store-timeout"),
        "{}",
        err.message()
    );
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    faults.set_hung(false);
    let t = get(&mut c, &id).await;
    assert_eq!(t.id, id);
    m.stop().await.unwrap();
}
