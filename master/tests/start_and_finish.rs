//! A start and an end reported close together are stored as one write (the master
//! holds a `Started` for a few milliseconds waiting for its `Finished`), and nothing a
//! worker reported is lost by that: the start time is the worker's, a lone start still
//! shows `running`, and a start held when the stream breaks is still stored.

mod common;

use cloudai_proto::pb::{self, master_message::Msg};
use common::*;

/// An event stamped with the worker's own `time`.
fn at(
    task_id: &str,
    token: u64,
    seq: u64,
    secs: i64,
    event: pb::task_event::Event,
) -> pb::WorkerMessage {
    pb::WorkerMessage {
        msg: Some(pb::worker_message::Msg::Event(pb::TaskEvent {
            task_id: task_id.into(),
            token,
            time: Some(prost_types::Timestamp {
                seconds: secs,
                nanos: 0,
            }),
            seq,
            event: Some(event),
        })),
    }
}

#[tokio::test]
async fn start_and_end_together_keep_both_times_and_a_lone_start_shows_running() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let _hb = w.keep_alive();

    // Start and end back to back: one write, and the worker's start time is kept.
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    let t0 = chrono::Utc::now().timestamp() - 60;
    w.tx.send(at(&id, a.token, 1, t0, started())).await.unwrap();
    w.tx.send(at(&id, a.token, 2, t0 + 3, exited(0)))
        .await
        .unwrap();
    match w.next().await {
        Msg::Ack(ack) => assert_eq!(
            (ack.task_id.as_str(), ack.token, ack.seq),
            (id.as_str(), a.token, 2),
            "one ack covers the start and the end: they were stored in one write"
        ),
        other => panic!("expected Ack, got {other:?}"),
    }
    let t = wait_status(&mut c, &id, pb::TaskStatus::Succeeded, 5).await;
    let started_at = t.attempts[0].started_at.as_ref().expect("start kept");
    assert_eq!(started_at.seconds, t0, "the worker's start time");
    let finished_at = t.attempts[0].finished_at.as_ref().expect("end kept");
    assert_eq!(finished_at.seconds, t0 + 3, "the worker's end time");

    // A start with no end: stored after the hold, so the task reads running.
    let id2 = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let b = w.next_assign().await;
    w.event(&id2, b.token, started()).await;
    wait_status(&mut c, &id2, pb::TaskStatus::Running, 5).await;
    m.stop().await.unwrap();
}

#[tokio::test]
async fn a_start_held_when_the_stream_breaks_is_stored() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    w.event(&id, a.token, started()).await;
    // The worker's side of the stream ends right after the start (its replies stay open,
    // so the start is surely sent before the stream closes).
    let RawWorker {
        tx, rx: _replies, ..
    } = w;
    drop(tx);
    let t = eventually("the start to be stored", 5, || {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            let t = get(&mut c, &id).await;
            t.attempts[0].started_at.is_some().then_some(t)
        }
    })
    .await;
    assert_ne!(status(&t), pb::TaskStatus::Assigned);
    m.stop().await.unwrap();
}
