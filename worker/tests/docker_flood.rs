//! A container that floods its output (50 MB) runs to completion against the real Docker
//! daemon while the worker's memory stays bounded: output is read only as fast as the
//! consumer takes it, in chunks of at most 64 KiB. Its own test binary, so the memory
//! measurement sees no other test.

use std::process::Command;
use std::time::Duration;

use cloudai_queue::TaskSpec;
use cloudai_worker::attempt::{run_attempt, AttemptEvent, AttemptOptions, Finish, StopSignal};
use cloudai_worker::executor::{labels, DockerExecutor, StartRequest, MAX_CHUNK_BYTES};
use tokio::sync::mpsc;

const FLOOD_BYTES: usize = 50_000_000;

/// The largest resident set this process has had, in bytes (Linux `VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM line");
    kb * 1024
}

#[tokio::test]
async fn flooding_container_completes_with_bounded_memory() {
    let exec = DockerExecutor::connect()
        .await
        .expect("a running Docker daemon");
    let mut spec = TaskSpec::new("cloudai/busybox:test");
    spec.command = vec![
        "sh".into(),
        "-c".into(),
        format!("yes | head -c {FLOOD_BYTES}"),
    ];
    let task_id = format!("flood-{}", std::process::id());
    let req = StartRequest {
        task_id: task_id.clone(),
        attempt: 1,
        token: 1,
        worker_id: format!("flood-worker-{}", std::process::id()),
        spec,
        devices: Vec::new(),
    };
    let before = peak_rss();
    let (tx, mut rx) = mpsc::channel(16);
    let consumer = tokio::spawn(async move {
        let (mut bytes, mut chunks, mut largest) = (0usize, 0usize, 0usize);
        while let Some(e) = rx.recv().await {
            if let AttemptEvent::Output(c) = e {
                bytes += c.data.len();
                largest = largest.max(c.data.len());
                chunks += 1;
                // A slow consumer: the reader must wait for it, not buffer ahead.
                if chunks % 64 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
        (bytes, largest)
    });
    let finish = run_attempt(
        &exec,
        req,
        &AttemptOptions::default(),
        StopSignal::never(),
        tx,
    )
    .await;
    let (bytes, largest) = consumer.await.unwrap();
    assert_eq!(finish.finish, Finish::Exited(0));
    assert_eq!(bytes, FLOOD_BYTES, "every byte delivered");
    assert!(largest <= MAX_CHUNK_BYTES, "chunk of {largest} bytes");
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "peak memory grew by {} MiB while streaming {} MiB",
        grown >> 20,
        FLOOD_BYTES >> 20
    );
    let out = Command::new("docker")
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label={}={task_id}", labels::TASK_ID))
        .output()
        .expect("docker cli");
    assert!(out.stdout.is_empty(), "flood container left behind");
}
