//! GPU devices against the real Docker daemon. This machine has no GPU and no NVIDIA
//! runtime, so the container is created, not started: what the daemon stored is what a
//! GPU host's runtime would act on. Then the same task through `start`: it fails with
//! the daemon's own reason, and nothing is left behind.

mod common;

use std::process::Command;

use cloudai_queue::TaskSpec;
use cloudai_worker::executor::{DockerExecutor, Executor};
use common::*;

fn inspect(id: &str, format: &str) -> serde_json::Value {
    let out = Command::new("docker")
        .args(["inspect", "--format", format, id])
        .output()
        .expect("docker cli");
    assert!(out.status.success(), "docker inspect failed");
    serde_json::from_slice(&out.stdout).expect("json from docker inspect")
}

#[tokio::test]
async fn assigned_devices_reach_the_container_by_id() {
    let exec = DockerExecutor::connect()
        .await
        .expect("a running Docker daemon");
    let mut spec = TaskSpec::new("cloudai/busybox:test");
    spec.command = vec!["true".into()];
    spec.resources.gpus = 2;
    // A task may not widen what it sees by setting the runtime's variable itself.
    spec.env
        .insert("NVIDIA_VISIBLE_DEVICES".into(), "all".into());
    let mut req = request(spec);
    req.devices = vec!["GPU-1b2c".into(), "GPU-7f00".into()];

    let handle = exec.create_only(&req).await.expect("created");
    let requests = inspect(&handle.id, "{{json .HostConfig.DeviceRequests}}");
    let env = inspect(&handle.id, "{{json .Config.Env}}");
    exec.remove(&handle).await.expect("removed");
    assert_gone(&req);

    let requests = requests.as_array().expect("one device request");
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(r["Driver"], "nvidia");
    assert_eq!(r["DeviceIDs"], serde_json::json!(["GPU-1b2c", "GPU-7f00"]));
    assert_eq!(r["Count"], 0, "by id, not by count");
    assert_eq!(r["Capabilities"], serde_json::json!([["gpu"]]));
    let env: Vec<&str> = env
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .filter(|e| e.starts_with("NVIDIA_VISIBLE_DEVICES="))
        .collect();
    assert_eq!(env, ["NVIDIA_VISIBLE_DEVICES=GPU-1b2c,GPU-7f00"]);

    // Started on a host without the NVIDIA runtime: the daemon's reason, nothing left.
    let err = exec.start(&req).await.expect_err("no GPU runtime here");
    assert!(
        err.to_string().to_lowercase().contains("device driver"),
        "{err}"
    );
    assert_gone(&req);
}
