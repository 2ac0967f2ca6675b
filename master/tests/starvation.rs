//! No starvation (issue 15), over real gRPC: one worker kept full by a steady stream of
//! small tasks, and one task as large as the whole worker. Backfill lets the small ones
//! pass it at first; once it has waited `--starvation-after`, the worker is held for it,
//! the running small tasks drain, and it starts. The bound: the threshold plus the
//! longest a small task runs (here 4 rounds of 150 ms), plus scheduling slack.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use cloudai_proto::pb;
use common::*;

const THRESHOLD: Duration = Duration::from_secs(1);
const ROUND: Duration = Duration::from_millis(150);

fn sized(cpu: u64) -> pb::TaskSpec {
    let mut s = spec("cloudai/busybox:test");
    s.resources = Some(res(cpu, 0));
    s
}

#[tokio::test]
async fn a_whole_worker_task_starts_within_the_bound_despite_a_stream_of_small_ones() {
    let m = Master::start_with(cloudai_master::MasterConfig {
        starvation_after: THRESHOLD,
        ..test_config()
    })
    .await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w", res(4000, 4096)).await;
    let _hb = w.keep_alive();
    let mut running = VecDeque::new();
    for _ in 0..4 {
        enqueue(&mut c, sized(1000)).await;
        let a = w.next_assign().await;
        w.event(&a.task_id, a.token, started()).await;
        running.push_back((a.task_id, a.token));
    }
    let big = enqueue(&mut c, sized(4000)).await;
    let t0 = Instant::now();
    let (mut passed_it, mut last_small_start) = (0, Duration::ZERO);
    let started_after = loop {
        assert!(
            t0.elapsed() < THRESHOLD + 4 * ROUND + Duration::from_secs(5),
            "the big task did not start within the bound; {passed_it} small tasks passed it"
        );
        // Each round the oldest small task ends and a new one arrives.
        if let Some((id, token)) = running.pop_front() {
            w.event(&id, token, exited(0)).await;
        }
        enqueue(&mut c, sized(1000)).await;
        let deadline = tokio::time::Instant::now() + ROUND;
        while let Ok(a) = tokio::time::timeout_at(deadline, w.next_assign()).await {
            if a.task_id == big {
                break;
            }
            w.event(&a.task_id, a.token, started()).await;
            running.push_back((a.task_id, a.token));
            passed_it += 1;
            last_small_start = t0.elapsed();
        }
        if get(&mut c, &big).await.attempts.len() == 1 {
            break t0.elapsed();
        }
    };
    assert!(
        passed_it > 0,
        "before the threshold small tasks backfill around the big one"
    );
    assert!(
        last_small_start < THRESHOLD + ROUND * 2,
        "once it starves, no small task starts on the held worker (last at {last_small_start:?})"
    );
    assert!(
        started_after <= THRESHOLD + 4 * ROUND + Duration::from_secs(2),
        "started after {started_after:?}"
    );
    eprintln!(
        "starvation: the whole-worker task started {started_after:?} after its enqueue \
         (threshold {THRESHOLD:?}); {passed_it} small tasks passed it first"
    );
    m.stop().await.unwrap();
}
