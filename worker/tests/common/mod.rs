//! Helpers shared by the tests that drive the real Docker daemon with the locally built
//! `cloudai/busybox:test` image (see `sample_task/build.sh`).

#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use cloudai_queue::TaskSpec;
use cloudai_worker::attempt::AttemptOptions;
use cloudai_worker::executor::{labels, StartRequest};

/// The bare busybox test image.
pub const IMAGE: &str = "cloudai/busybox:test";

/// A name no other test (or test process) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A spec running `sh -c script` in the test image.
pub fn sh(script: &str) -> TaskSpec {
    let mut spec = TaskSpec::new(IMAGE);
    spec.command = vec!["sh".into(), "-c".into(), script.into()];
    spec
}

/// A first attempt of a fresh task on a fresh worker id.
pub fn request(spec: TaskSpec) -> StartRequest {
    StartRequest {
        task_id: unique("task"),
        attempt: 1,
        token: 1,
        worker_id: unique("docker-test-worker"),
        spec,
        devices: Vec::new(),
    }
}

/// Attempt options with a short stop grace, so timeouts and cancels end quickly.
pub fn options() -> AttemptOptions {
    AttemptOptions {
        stop_grace: Duration::from_secs(1),
        ..AttemptOptions::default()
    }
}

/// Containers carrying `label=value`, as `docker ps -a` lists them.
pub fn containers_labelled(label: &str, value: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label={label}={value}"))
        .output()
        .expect("docker cli");
    assert!(out.status.success(), "docker ps failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Fails when any container of `req`'s task is left.
pub fn assert_gone(req: &StartRequest) {
    assert_eq!(
        containers_labelled(labels::TASK_ID, &req.task_id),
        Vec::<String>::new(),
        "container of task {} left behind",
        req.task_id
    );
}
