//! One focused test per failure mode of issue 6 that the protocol tests do not already pin
//! down: retries with backoff keep every cause; a partitioned worker declared dead is
//! revoked (and stops its container) when the partition heals; a restarted master waits
//! its reconnect window before declaring absent workers' attempts lost; a result is never
//! applied twice; a cancel survives the death of the worker it was sent to.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cloudai_proto::pb::{self, master_message::Msg};
use cloudai_worker::testing::{test_config as worker_config, TestWorker};
use cloudai_worker::FakeBehavior;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[tokio::test]
async fn failed_attempts_retry_after_a_growing_backoff_and_keep_every_cause() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    let mut s = spec("cloudai/busybox:test");
    s.max_attempts = 3;
    let id = enqueue(&mut c, s).await;

    let mut gaps = Vec::new();
    for (n, code) in [(1u32, 3), (2, 4), (3, 5)] {
        let a = w.next_assign().await;
        assert_eq!((a.task_id.as_str(), a.attempt), (id.as_str(), n));
        w.event(&id, a.token, started()).await;
        w.event(&id, a.token, exited(code)).await;
        assert!(matches!(w.next().await, Msg::Ack(_)));
        gaps.push(Instant::now());
    }
    // Backoff before retry n is 2^(n-1) s less up to 50% jitter: >= 0.5 s, then >= 1 s.
    let t = wait_status(&mut c, &id, pb::TaskStatus::Failed, 5).await;
    let first_retry = gaps[1] - gaps[0];
    let second_retry = gaps[2] - gaps[1];
    assert!(first_retry >= Duration::from_millis(450), "{first_retry:?}");
    assert!(
        second_retry >= Duration::from_millis(950),
        "{second_retry:?}"
    );
    assert_eq!(t.attempts.len(), 3);
    for (a, code) in t.attempts.iter().zip([3, 4, 5]) {
        assert_eq!(a.outcome, pb::TaskStatus::Failed as i32);
        assert_eq!(a.exit_code, Some(code));
        assert_eq!(a.error, format!("exited with code {code}"));
        assert!(a.finished_at.is_some());
    }
    assert_eq!(
        (t.exit_code, t.error.as_str()),
        (Some(5), "exited with code 5")
    );
    m.stop().await.unwrap();
}

/// A TCP relay between a worker and the master that can stop forwarding (a partition
/// that neither side's socket notices) and resume.
struct Partition {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Partition {
    async fn to(upstream: SocketAddr) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let cut_rx = cut.subscribe();
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(relay(dr, uw, cut_rx.clone()));
                tokio::spawn(relay(ur, dw, cut_rx.clone()));
            }
        });
        Partition { addr, cut }
    }

    fn set(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // While cut, hold the bytes: nothing is lost, nothing arrives.
        if cut.wait_for(|c| !*c).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_partitioned_worker_stops_its_container_before_the_master_runs_it_elsewhere() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let partition = Partition::to(m.addr).await;
    let a = TestWorker::spawn(
        worker_config(format!("http://{}", partition.addr), "a"),
        FakeBehavior {
            run_for: Duration::from_secs(120),
            ..Default::default()
        },
    );
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let t = wait_status(&mut c, &id, pb::TaskStatus::Running, 10).await;
    let first = t.attempts[0].token;
    assert_eq!(a.executor.live_containers(), 1);

    // Cut off (the sockets notice nothing): no heartbeat is acknowledged, the worker's
    // lease ends and it stops the container, before the master may declare it dead.
    partition.set(true);
    let mut b = RawWorker::connect(&m, "b", res(4000, 8192)).await;
    let _hb = b.keep_alive();
    let retry = b.next_assign().await;
    assert_eq!((retry.task_id.as_str(), retry.attempt), (id.as_str(), 2));
    assert_eq!(
        a.executor.live_containers(),
        0,
        "the cut-off copy stopped before the second copy was assigned"
    );
    let t = get(&mut c, &id).await;
    assert_eq!(t.attempts[0].outcome, pb::TaskStatus::Lost as i32);
    assert!(t.attempts[0].lost_to_silence);

    partition.set(false);
    // The stopped attempt reported no end: attempt 1 stays lost, attempt 2 decides.
    b.event(&id, retry.token, started()).await;
    b.event(&id, retry.token, exited(0)).await;
    let t = wait_status(&mut c, &id, pb::TaskStatus::Succeeded, 5).await;
    assert_eq!(t.attempts.len(), 2);
    assert_eq!(t.attempts[0].token, first);
    assert_eq!(t.attempts[0].outcome, pb::TaskStatus::Lost as i32);
    assert_eq!(t.worker_id, "b");
    a.shutdown().await.unwrap();
    m.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_master_waits_the_reconnect_window_before_declaring_attempts_lost() {
    let window = Duration::from_millis(1500);
    let config = cloudai_master::MasterConfig {
        reconnect_window: window,
        ..test_config()
    };
    let m = Master::start_with(config.clone()).await;
    let dir = m.dir.clone();
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "gone", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    w.event(&id, a.token, started()).await;
    wait_status(&mut c, &id, pb::TaskStatus::Running, 5).await;
    m.stop().await.unwrap();
    drop((w, _hb));

    let restarted = Instant::now();
    let m2 = Master::start_in(dir, config).await;
    let mut c = m2.client().await;
    // Well past dead_after (300 ms) but inside the window: still running.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let t = get(&mut c, &id).await;
    assert_eq!(
        status(&t),
        pb::TaskStatus::Running,
        "lost before the window ended"
    );
    assert_eq!(t.attempts[0].outcome, 0);
    let t = eventually("the absent worker's attempt to be lost", 10, || {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            let t = get(&mut c, &id).await;
            (t.attempts[0].outcome == pb::TaskStatus::Lost as i32).then_some(t)
        }
    })
    .await;
    assert!(restarted.elapsed() >= window, "{:?}", restarted.elapsed());
    assert!(
        t.attempts[0].error.contains("dead"),
        "{}",
        t.attempts[0].error
    );
    assert_eq!(
        status(&t),
        pb::TaskStatus::Queued,
        "a lost attempt is retried"
    );
    m2.stop().await.unwrap();
}

#[tokio::test]
async fn a_result_sent_again_is_acked_but_never_applied_twice() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let hb = w.keep_alive();
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    w.event(&id, a.token, started()).await;
    w.event(&id, a.token, exited(0)).await;
    assert!(matches!(w.next().await, Msg::Ack(_)));
    let done = wait_status(&mut c, &id, pb::TaskStatus::Succeeded, 5).await;

    // Re-sent (as after a reconnect), and a contradicting one: both acked, neither applied.
    w.event(&id, a.token, exited(0)).await;
    assert!(matches!(w.next().await, Msg::Ack(k) if k.token == a.token));
    w.event(&id, a.token, exited(9)).await;
    assert!(matches!(w.next().await, Msg::Ack(k) if k.token == a.token));
    hb.abort();
    drop(w);
    let mut w = RawWorker::reconnect(&m, "w1", res(1000, 1024), vec![]).await;
    w.event(&id, a.token, exited(0)).await;
    assert!(matches!(w.next().await, Msg::Ack(_)));

    let t = get(&mut c, &id).await;
    assert_eq!(t, done, "the task did not change");
    assert_eq!(t.attempts.len(), 1);
    m.stop().await.unwrap();
}

#[tokio::test]
async fn a_cancel_whose_worker_dies_ends_the_task_cancelled_without_a_retry() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut a = RawWorker::connect(&m, "a", res(1000, 1024)).await;
    let hb = a.keep_alive();
    let mut s = spec("cloudai/busybox:test");
    s.max_lost_retries = Some(5);
    let id = enqueue(&mut c, s).await;
    let first = a.next_assign().await;
    a.event(&id, first.token, started()).await;
    wait_status(&mut c, &id, pb::TaskStatus::Running, 5).await;
    c.cancel_task(pb::CancelTaskRequest { id: id.clone() })
        .await
        .unwrap();
    assert!(matches!(a.next_skipping_acks().await, Msg::Cancel(_)));
    // The worker dies before it reports the cancel.
    hb.abort();
    let mut b = RawWorker::connect(&m, "b", res(1000, 1024)).await;
    let _hb = b.keep_alive();
    let t = wait_status(&mut c, &id, pb::TaskStatus::Cancelled, 5).await;
    assert_eq!(t.attempts.len(), 1);
    assert_eq!(t.attempts[0].outcome, pb::TaskStatus::Lost as i32);
    let assigned = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            if let Msg::Assign(a) = b.next().await {
                return a;
            }
        }
    })
    .await;
    assert!(
        assigned.is_err(),
        "a cancelled task is not retried elsewhere: {assigned:?}"
    );
    // Its late report changes nothing.
    a.event(&id, first.token, exited(0)).await;
    let again = get(&mut c, &id).await;
    assert_eq!(status(&again), pb::TaskStatus::Cancelled);
    drop(a);
    m.stop().await.unwrap();
}
