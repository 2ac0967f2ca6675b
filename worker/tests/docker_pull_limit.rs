//! Image pulls per worker are rate limited: against the real Docker daemon (no registry
//! exists here, so each pull fails fast with the registry's message), a pull over the
//! limit waits its turn and says so in its progress, and images already present never
//! wait. The pulls made are timed for the worker's `/metrics`; present images are not.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use cloudai_queue::TaskSpec;
use cloudai_worker::executor::{DockerExecutor, Executor, PullLimiter};
use cloudai_worker::WorkerMetrics;
use governor::Quota;
use tokio::sync::mpsc;

#[tokio::test]
async fn pulls_over_the_limit_wait_their_turn() {
    let period = Duration::from_millis(700);
    let limit = PullLimiter::new(
        Quota::with_period(period)
            .unwrap()
            .allow_burst(NonZeroU32::new(1).unwrap()),
    );
    let exec = DockerExecutor::connect()
        .await
        .expect("docker daemon")
        .with_pull_limit(limit);
    let (tx, mut rx) = mpsc::channel(64);

    // A present image needs no pull and takes no turn.
    for _ in 0..3 {
        exec.prepare(&TaskSpec::new("cloudai/busybox:test"), &tx)
            .await
            .unwrap();
    }
    assert!(rx.try_recv().is_err(), "no pull, no progress");

    let missing = TaskSpec::new("cloudai/does-not-exist:pull-limit");
    let first = Instant::now();
    assert!(exec.prepare(&missing, &tx).await.is_err());
    let mut progress = Vec::new();
    while let Ok(line) = rx.try_recv() {
        progress.push(line);
    }
    assert!(
        !progress.iter().any(|l| l.contains("rate limit")),
        "{progress:?}"
    );

    assert!(exec.prepare(&missing, &tx).await.is_err());
    assert!(
        first.elapsed() >= period - Duration::from_millis(50),
        "the second pull started after {:?}",
        first.elapsed()
    );
    let mut progress = Vec::new();
    while let Ok(line) = rx.try_recv() {
        progress.push(line);
    }
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("waiting") && l.contains("pull rate limit")),
        "{progress:?}"
    );
}

#[tokio::test]
async fn the_default_limit_lets_a_burst_through() {
    let exec = DockerExecutor::connect().await.expect("docker daemon");
    let (tx, mut rx) = mpsc::channel(256);
    let missing = TaskSpec::new("cloudai/does-not-exist:pull-burst");
    let default = cloudai_worker::executor::pull_limit::DEFAULT_PULLS_PER_MINUTE;
    for _ in 0..default {
        assert!(exec.prepare(&missing, &tx).await.is_err());
    }
    while let Ok(line) = rx.try_recv() {
        assert!(!line.contains("rate limit"), "{line}");
    }
}

#[tokio::test]
async fn pulls_made_are_timed_by_outcome_and_present_images_are_not() {
    let exec = DockerExecutor::connect().await.expect("docker daemon");
    let metrics = WorkerMetrics::new(exec.pull_metrics().expect("docker times its pulls"));
    let (tx, _rx) = mpsc::channel(64);
    exec.prepare(&TaskSpec::new("cloudai/busybox:test"), &tx)
        .await
        .unwrap();
    let text = metrics.encode().unwrap();
    assert!(
        !text.contains("cloudai_worker_image_pull_seconds_count"),
        "a present image is no pull:\n{text}"
    );
    let missing = TaskSpec::new("cloudai/does-not-exist:pull-metrics");
    for _ in 0..2 {
        assert!(exec.prepare(&missing, &tx).await.is_err());
    }
    let text = metrics.encode().unwrap();
    assert!(
        text.lines()
            .any(|l| l == "cloudai_worker_image_pull_seconds_count{outcome=\"error\"} 2"),
        "{text}"
    );
    assert!(!text.contains("outcome=\"ok\""), "{text}");
}
