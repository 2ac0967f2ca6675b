//! Backpressure over real gRPC: the per-client enqueue rate limit and the cap on queued
//! tasks answer `RESOURCE_EXHAUSTED` with a message naming the limit and its flag, store
//! nothing for a refused call (never a silent drop), and let work in again once there is
//! room.

#![allow(clippy::result_large_err)]

mod common;

use std::time::Duration;

use cloudai_master::MasterConfig;
use cloudai_proto::pb;
use common::*;
use tonic::Code;

fn limited(rate: u32, burst: u32, max_queued: Option<u64>) -> MasterConfig {
    MasterConfig {
        enqueue_rate: rate,
        enqueue_burst: burst,
        max_queued,
        ..test_config()
    }
}

async fn try_enqueue(
    c: &mut ClientServiceClient<tonic::transport::Channel>,
) -> Result<String, tonic::Status> {
    c.enqueue(pb::EnqueueRequest {
        spec: Some(spec("cloudai/busybox:test")),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().task_id)
}

async fn stored(m: &Master) -> u64 {
    let stats = m.store.stats(chrono::Utc::now()).await.unwrap();
    stats.counts.values().sum()
}

#[tokio::test]
async fn a_client_over_its_enqueue_rate_is_told_to_come_back() {
    let m = Master::start_with(limited(2, 3, None)).await;
    let mut c = m.client().await;
    for _ in 0..3 {
        try_enqueue(&mut c).await.unwrap();
    }
    let err = try_enqueue(&mut c).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("enqueue rate limit exceeded")
            && err.message().contains("--enqueue-rate")
            && err.message().contains("ip:127.0.0.1"),
        "{}",
        err.message()
    );
    let wait: u64 = err
        .metadata()
        .get("grpc-retry-pushback-ms")
        .expect("pushback metadata")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= 500, "{wait}");

    let batch = pb::EnqueueBatchRequest {
        specs: vec![spec("cloudai/busybox:test"); 4],
    };
    let err = c.enqueue_batch(batch).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("batch of 4"), "{}", err.message());
    assert_eq!(stored(&m).await, 3, "refused calls stored nothing");

    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    try_enqueue(&mut c).await.expect("back within the rate");
    assert_eq!(stored(&m).await, 4);
    m.stop().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_refuses_more_until_work_starts() {
    let m = Master::start_with(limited(0, 0, Some(3))).await;
    let mut c = m.client().await;
    for _ in 0..2 {
        try_enqueue(&mut c).await.unwrap();
    }
    let batch = pb::EnqueueBatchRequest {
        specs: vec![spec("cloudai/busybox:test"); 2],
    };
    let err = c.enqueue_batch(batch).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("queue is full") && err.message().contains("--max-queued"),
        "{}",
        err.message()
    );
    assert_eq!(
        stored(&m).await,
        2,
        "an all-or-nothing batch stored nothing"
    );
    try_enqueue(&mut c).await.unwrap();
    let err = try_enqueue(&mut c).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);

    // A worker takes one: there is room again.
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    w.next_assign().await;
    eventually("room in the queue", 5, || {
        let mut c = c.clone();
        async move { try_enqueue(&mut c).await.ok() }
    })
    .await;
    m.stop().await.unwrap();
}
