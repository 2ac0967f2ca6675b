//! End to end with the real Docker daemon: a master on loopback, in-process workers from
//! `cloudai-worker` running `DockerExecutor`, and locally built images (no registry).

mod common;

use std::sync::Arc;
use std::time::Duration;

use cloudai_proto::pb;
use cloudai_queue::Resources;
use cloudai_worker::DockerExecutor;
use common::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const IMAGE: &str = "cloudai/busybox:test";

/// The test master with a worker lease of 1 s (heartbeats every 500 ms), not the 200 ms
/// of the fake-worker tests: master, worker and Docker calls share this test's one
/// thread, and on a loaded machine a stall of 200 ms ended the lease mid-task (the
/// worker stopped its container and came back without it).
fn docker_config() -> cloudai_master::MasterConfig {
    cloudai_master::MasterConfig {
        heartbeat_interval: std::time::Duration::from_millis(500),
        ..test_config()
    }
}

struct Worker {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<cloudai_worker::Result<()>>,
}

impl Worker {
    async fn start(m: &Master, id: &str, cpu_millis: u64) -> Worker {
        let mut config = cloudai_worker::testing::test_config(m.url(), id);
        config.capacity_override = Some(Resources {
            cpu_millis,
            memory_bytes: 4 << 30,
            gpus: 0,
            disk_bytes: 0,
        });
        let docker = DockerExecutor::connect().await.expect("docker daemon");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(cloudai_worker::run(config, Arc::new(docker), async move {
            let _ = rx.await;
        }));
        let w = Worker {
            stop: Some(tx),
            task,
        };
        let mut c = m.client().await;
        let id = id.to_string();
        eventually("the worker to register", 20, || {
            let mut c = c.clone();
            let id = id.clone();
            async move {
                let ws = c.list_workers(pb::ListWorkersRequest {}).await.ok()?;
                ws.into_inner()
                    .workers
                    .iter()
                    .any(|w| w.id == id && w.health == pb::WorkerHealth::Healthy as i32)
                    .then_some(())
            }
        })
        .await;
        let _ = &mut c;
        w
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }

    /// A crash: the run future is dropped mid-flight; its containers are left behind.
    fn kill(self) {
        self.task.abort();
    }
}

fn sh(script: &str) -> pb::TaskSpec {
    let mut s = spec(IMAGE);
    s.command = vec!["/bin/sh".into(), "-c".into(), script.into()];
    s
}

async fn containers_of(task_id: &str) -> Vec<String> {
    let docker = DockerExecutor::connect().await.unwrap();
    docker
        .containers_with_label(&format!("cloudai.task_id={task_id}"))
        .await
        .unwrap()
}

async fn remove_containers_of(task_id: &str) {
    let docker = DockerExecutor::connect().await.unwrap();
    for id in containers_of(task_id).await {
        let _ = docker
            .client()
            .remove_container(
                &id,
                Some(bollard::container::RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
}

/// Polls until no container carries the task's label (removal is asynchronous).
async fn assert_no_containers(task_id: &str) {
    let id = task_id.to_string();
    eventually("the task's containers to be removed", 30, || {
        let id = id.clone();
        async move { containers_of(&id).await.is_empty().then_some(()) }
    })
    .await;
}

async fn logs_of(
    c: &mut ClientServiceClient<tonic::transport::Channel>,
    id: &str,
    stdout: bool,
    stderr: bool,
) -> String {
    let mut s = c
        .stream_logs(pb::StreamLogsRequest {
            id: id.into(),
            follow: false,
            after_seq: None,
            stdout,
            stderr,
            attempt: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = s.message().await.unwrap() {
        if chunk.stream != pb::LogStream::System as i32 {
            out.extend_from_slice(&chunk.data);
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn success_failure_and_exact_logs() {
    let m = Master::start_with(docker_config()).await;
    let mut c = m.client().await;
    let w = Worker::start(&m, "e2e-ok", 4000).await;

    let ok = enqueue(&mut c, sh("echo one; echo two >&2; echo three")).await;
    let bad = enqueue(&mut c, sh("echo dying; exit 7")).await;

    let t = wait_status(&mut c, &ok, pb::TaskStatus::Succeeded, 60).await;
    assert_eq!(t.exit_code, Some(0));
    assert_eq!(logs_of(&mut c, &ok, true, false).await, "one\nthree\n");
    assert_eq!(logs_of(&mut c, &ok, false, true).await, "two\n");
    let all = logs(&mut c, &ok, true).await; // follow on a finished task ends at once
    assert_eq!(all.len(), "one\ntwo\nthree\n".len());

    let t = wait_status(&mut c, &bad, pb::TaskStatus::Failed, 60).await;
    assert_eq!(t.exit_code, Some(7));
    assert!(t.error.contains('7'), "{}", t.error);
    assert_eq!(logs(&mut c, &bad, false).await, "dying\n");

    w.stop().await;
    for id in [ok, bad] {
        assert_no_containers(&id).await;
    }
    m.stop().await.unwrap();
}

#[tokio::test]
async fn timeout_and_cancel_stop_and_remove_the_container() {
    let m = Master::start_with(docker_config()).await;
    let mut c = m.client().await;
    let w = Worker::start(&m, "e2e-stop", 4000).await;

    let mut slow = sh("echo started; sleep 60");
    slow.timeout = Some(prost_types::Duration {
        seconds: 1,
        nanos: 0,
    });
    let timed = enqueue(&mut c, slow).await;
    let cancelled = enqueue(&mut c, sh("echo started; sleep 60")).await;

    wait_status(&mut c, &cancelled, pb::TaskStatus::Running, 60).await;
    assert!(
        !containers_of(&cancelled).await.is_empty(),
        "it runs as a container"
    );
    let r = c
        .cancel_task(pb::CancelTaskRequest {
            id: cancelled.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.task.unwrap().cancel_requested);
    wait_status(&mut c, &cancelled, pb::TaskStatus::Cancelled, 60).await;
    assert_no_containers(&cancelled).await;

    let t = wait_status(&mut c, &timed, pb::TaskStatus::TimedOut, 60).await;
    assert_eq!(t.attempts.len(), 1);
    assert_no_containers(&timed).await;
    assert_eq!(logs(&mut c, &timed, false).await, "started\n");

    w.stop().await;
    m.stop().await.unwrap();
}

#[tokio::test]
async fn missing_image_fails_with_a_clear_message() {
    let m = Master::start_with(docker_config()).await;
    let mut c = m.client().await;
    let w = Worker::start(&m, "e2e-pull", 4000).await;
    let id = enqueue(&mut c, spec("cloudai/does-not-exist:never")).await;
    let t = wait_status(&mut c, &id, pb::TaskStatus::Failed, 120).await;
    assert_eq!(t.exit_code, None);
    assert!(
        t.error.contains("cloudai/does-not-exist"),
        "error names the image: {}",
        t.error
    );
    w.stop().await;
    assert_no_containers(&id).await;
    m.stop().await.unwrap();
}

#[tokio::test]
async fn pinning_and_placement_across_workers_of_different_capacity() {
    let m = Master::start_with(docker_config()).await;
    let mut c = m.client().await;
    let big = Worker::start(&m, "e2e-big", 2000).await;
    let small = Worker::start(&m, "e2e-small", 500).await;

    // Pinned to the big worker although best fit would pick the small one.
    let mut s = sh("echo pinned");
    s.resources = Some(res(100, 16));
    s.pinned_worker = Some("e2e-big".into());
    let pinned = enqueue(&mut c, s).await;
    let t = wait_status(&mut c, &pinned, pb::TaskStatus::Succeeded, 60).await;
    assert_eq!(t.worker_id, "e2e-big");

    // (Docker caps a container's CPUs at the host's, 2 here, so requests stay below.)
    // 1800 millicores fit only the big worker; 300 then fits only the small one (best
    // fit would have preferred big's last 200 otherwise); 4000 fits nowhere and waits.
    let mut s = sh("sleep 2");
    s.resources = Some(res(1800, 16));
    let large = enqueue(&mut c, s).await;
    let mut s = sh("sleep 2");
    s.resources = Some(res(300, 16));
    let little = enqueue(&mut c, s).await;
    let mut s = sh("echo never");
    s.resources = Some(res(4000, 16));
    let nowhere = enqueue(&mut c, s).await;

    let t = wait_status(&mut c, &large, pb::TaskStatus::Running, 60).await;
    assert_eq!(t.worker_id, "e2e-big");
    let t = wait_status(&mut c, &little, pb::TaskStatus::Running, 60).await;
    assert_eq!(t.worker_id, "e2e-small");
    // While both run, the reservations show in the free capacity.
    let ws = c
        .list_workers(pb::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    let free: Vec<_> = ws
        .iter()
        .map(|w| (w.id.clone(), w.free.unwrap().cpu_millis))
        .collect();
    assert_eq!(
        free,
        [("e2e-big".to_string(), 200), ("e2e-small".to_string(), 200)]
    );
    wait_status(&mut c, &large, pb::TaskStatus::Succeeded, 60).await;
    wait_status(&mut c, &little, pb::TaskStatus::Succeeded, 60).await;
    let t = get(&mut c, &nowhere).await;
    assert_eq!(
        status(&t),
        pb::TaskStatus::Queued,
        "fits nowhere, so it waits"
    );
    assert!(t.attempts.is_empty());
    c.cancel_task(pb::CancelTaskRequest {
        id: nowhere.clone(),
    })
    .await
    .unwrap();

    big.stop().await;
    small.stop().await;
    for id in [pinned, large, little, nowhere] {
        assert_no_containers(&id).await;
    }
    m.stop().await.unwrap();
}

#[tokio::test]
async fn a_killed_worker_loses_its_task_which_is_retried_on_the_other() {
    let m = Master::start_with(docker_config()).await;
    let mut c = m.client().await;
    let doomed = Worker::start(&m, "e2e-doomed", 4000).await;
    let id = enqueue(&mut c, sh("echo run; sleep 3")).await;
    let t = wait_status(&mut c, &id, pb::TaskStatus::Running, 60).await;
    assert_eq!(t.worker_id, "e2e-doomed");

    let survivor = Worker::start(&m, "e2e-survivor", 4000).await;
    doomed.kill();

    let t = wait_status(&mut c, &id, pb::TaskStatus::Succeeded, 90).await;
    assert_eq!(t.attempts.len(), 2);
    assert_eq!(t.attempts[0].worker_id, "e2e-doomed");
    assert_eq!(t.attempts[0].outcome, pb::TaskStatus::Lost as i32);
    assert_eq!(t.attempts[1].worker_id, "e2e-survivor");
    assert_eq!(t.worker_id, "e2e-survivor");
    let ws = c
        .list_workers(pb::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    let dead = ws.iter().find(|w| w.id == "e2e-doomed").unwrap();
    assert_eq!(dead.health, pb::WorkerHealth::Dead as i32);

    survivor.stop().await;
    // The crashed worker could not clean up: remove its container by label.
    remove_containers_of(&id).await;
    assert_no_containers(&id).await;
    m.stop().await.unwrap();
}
