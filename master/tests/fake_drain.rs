//! Many short tasks through a real master and SQLite to in-process workers on the fake
//! executor: every task ends exactly once, on one attempt, and no reservation leaks.
//! Prints the drain rate (a figure, not an assertion; benchmarks live elsewhere).

mod common;

use std::time::{Duration, Instant};

use cloudai_proto::pb;
use cloudai_worker::testing::TestWorker;
use common::*;

const TASKS: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_drains_exactly_once_across_workers() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let specs: Vec<_> = (0..TASKS)
        .map(|i| {
            let mut s = spec("cloudai/busybox:test");
            s.resources = Some(res(100, 1));
            s.priority = (i % 3) as i32;
            s
        })
        .collect();
    let mut ids = Vec::new();
    for chunk in specs.chunks(500) {
        let r = c
            .enqueue_batch(pb::EnqueueBatchRequest {
                specs: chunk.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(r.results.into_iter().map(|r| r.task_id));
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..3)
        .map(|i| TestWorker::start(m.url(), &format!("fake-{i}")))
        .collect();

    let done = eventually("every task to succeed", 120, || {
        let mut c = c.clone();
        async move {
            let s = c
                .queue_stats(pb::QueueStatsRequest {})
                .await
                .ok()?
                .into_inner();
            let ok = s
                .counts
                .iter()
                .find(|s| s.status == pb::TaskStatus::Succeeded as i32)
                .map_or(0, |s| s.count);
            (ok as usize == TASKS).then_some(s)
        }
    })
    .await;
    let elapsed = started.elapsed();
    println!(
        "drained {TASKS} tasks through 3 fake workers in {:?}: {:.0} tasks/s",
        elapsed,
        TASKS as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(
        done.counts.len(),
        1,
        "nothing but succeeded: {:?}",
        done.counts
    );

    // Exactly one attempt each, and every worker's reservations are back to zero.
    for id in ids.iter().step_by(97) {
        assert_eq!(get(&mut c, id).await.attempts.len(), 1);
    }
    let ws = eventually("reservations to be released", 10, || {
        let mut c = c.clone();
        async move {
            let ws = c
                .list_workers(pb::ListWorkersRequest {})
                .await
                .ok()?
                .into_inner()
                .workers;
            ws.iter()
                .all(|w| w.free == w.capacity && w.running_task_ids.is_empty())
                .then_some(ws)
        }
    })
    .await;
    assert_eq!(ws.len(), 3);
    let ran: u64 = workers.iter().map(|w| w.executor.started_count()).sum();
    assert_eq!(ran as usize, TASKS, "no task ran twice");
    for w in workers {
        w.shutdown().await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), m.stop())
        .await
        .unwrap()
        .unwrap();
}
