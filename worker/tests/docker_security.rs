//! The container policy against the real Docker daemon (`cloudai/busybox:test`, see
//! `sample_task/build.sh`): the safe defaults reach the container, a fork bomb is held by
//! the PID limit while the executor stays usable, and an image off the allow-list is
//! rejected with its reason before any container exists. No container is left behind.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cloudai_worker::attempt::{run_attempt, AttemptEvent, Finish, StopSignal};
use cloudai_worker::executor::{ContainerPolicy, DockerExecutor, Executor, StartRequest};
use common::*;
use futures::StreamExt;
use tokio::sync::mpsc;

async fn executor(policy: ContainerPolicy) -> Arc<DockerExecutor> {
    Arc::new(
        DockerExecutor::connect()
            .await
            .expect("a running Docker daemon")
            .with_policy(policy),
    )
}

/// Runs one attempt to its end; returns how it finished and its stdout.
async fn run(exec: &Arc<DockerExecutor>, req: StartRequest) -> (Finish, String) {
    let (tx, mut rx) = mpsc::channel(64);
    let collect = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(e) = rx.recv().await {
            if let AttemptEvent::Output(c) = e {
                out.extend(c.data);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let finish = run_attempt(exec.as_ref(), req, &options(), StopSignal::never(), tx)
        .await
        .finish;
    (finish, collect.await.unwrap())
}

#[tokio::test]
async fn safe_defaults_reach_the_container() {
    let exec = executor(ContainerPolicy::default()).await;
    let req = request(sh("sleep 30"));
    let handle = exec.start(&req).await.expect("start");
    let info = exec
        .client()
        .inspect_container(&handle.id, None)
        .await
        .expect("inspect");
    exec.remove(&handle).await.expect("remove");
    assert_gone(&req);

    let hc = info.host_config.expect("host config");
    assert_eq!(hc.privileged, Some(false));
    assert_eq!(hc.network_mode.as_deref(), Some("bridge"));
    assert_ne!(hc.pid_mode.as_deref(), Some("host"));
    assert_eq!(hc.ipc_mode.as_deref(), Some("private"));
    assert_eq!(hc.pids_limit, Some(1024));
    assert_eq!(
        hc.memory,
        Some(cloudai_queue::DEFAULT_TASK_MEMORY_BYTES as i64),
        "a task that gives none is limited to what placement reserves for it"
    );
    assert!(
        hc.security_opt
            .unwrap_or_default()
            .iter()
            .any(|o| o.starts_with("no-new-privileges")),
        "no-new-privileges is set"
    );
    assert!(
        hc.binds.unwrap_or_default().is_empty(),
        "no host bind mounts"
    );
    assert!(hc.mounts.unwrap_or_default().is_empty(), "no mounts");
    assert_eq!(hc.init, Some(true), "an init process forwards signals");
}

#[tokio::test]
async fn a_fork_bomb_is_held_by_the_pid_limit_and_the_executor_stays_healthy() {
    const LIMIT: i64 = 64;
    let exec = executor(ContainerPolicy {
        pids_limit: LIMIT,
        ..ContainerPolicy::default()
    })
    .await;
    // Every process forks copies of itself forever; busybox sh exits on a failed fork, so
    // the bomb rises to the limit and burns itself out against it. PID 1 starts it once,
    // then stays alive on builtins only (a fork would fail while the bomb holds every
    // PID) until the task's timeout stops the container.
    let mut spec = sh("bomb() { while :; do bomb & done; }; bomb & while :; do :; done");
    spec.resources.cpu_millis = 500;
    spec.timeout = Some(Duration::from_secs(6));
    let req = request(spec);

    let (tx, mut rx) = mpsc::channel(64);
    let attempt = {
        let exec = exec.clone();
        let req = req.clone();
        tokio::spawn(async move {
            run_attempt(exec.as_ref(), req, &options(), StopSignal::never(), tx)
                .await
                .finish
        })
    };
    let mut container = None;
    while let Some(e) = rx.recv().await {
        if let AttemptEvent::Started { container_id, .. } = e {
            container = Some(container_id);
            break;
        }
    }
    let container = container.expect("the bomb's container started");
    let output = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(e) = rx.recv().await {
            if let AttemptEvent::Output(c) = e {
                out.extend(c.data);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let limit = exec
        .client()
        .inspect_container(&container, None)
        .await
        .expect("inspect")
        .host_config
        .and_then(|hc| hc.pids_limit);
    assert_eq!(
        limit,
        Some(LIMIT),
        "the container carries the worker's pid limit"
    );
    let mut peak = 0;
    for _ in 0..10 {
        let mut stats = exec.client().stats(
            &container,
            Some(bollard::container::StatsOptions {
                stream: false,
                one_shot: true,
            }),
        );
        if let Some(Ok(s)) = stats.next().await {
            peak = peak.max(s.pids_stats.current.unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let finish = attempt.await.unwrap();
    let output = output.await.unwrap();
    assert_eq!(
        finish,
        Finish::TimedOut,
        "PID 1 survived the bomb until its timeout"
    );
    assert!(
        output.contains("can't fork"),
        "the bomb ran into the pid limit: {}",
        output.lines().next().unwrap_or("")
    );
    assert!(
        peak <= LIMIT as u64,
        "never more processes than the limit: peak {peak} > {LIMIT}"
    );
    assert_gone(&req);

    // The executor (and the daemon under it) still runs ordinary work.
    let next = request(sh("echo still healthy"));
    let (finish, out) = run(&exec, next.clone()).await;
    assert_eq!(finish, Finish::Exited(0));
    assert_eq!(out, "still healthy\n");
    assert_gone(&next);
}

#[tokio::test]
async fn an_image_off_the_allow_list_is_rejected_with_its_reason() {
    let exec = executor(ContainerPolicy {
        allowed_images: vec!["cloudai/sample-task".into()],
        ..ContainerPolicy::default()
    })
    .await;
    let req = request(sh("echo must not run"));
    let (finish, out) = run(&exec, req.clone()).await;
    match finish {
        Finish::Error(why) => assert!(
            why.contains("image cloudai/busybox:test is not allowed on this worker")
                && why.contains("cloudai/sample-task"),
            "clear reason: {why}"
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(out, "");
    assert_gone(&req);

    let allowed = executor(ContainerPolicy {
        allowed_images: vec!["cloudai/busy*".into()],
        ..ContainerPolicy::default()
    })
    .await;
    let ok = request(sh("echo allowed"));
    let (finish, out) = run(&allowed, ok.clone()).await;
    assert_eq!((finish, out.as_str()), (Finish::Exited(0), "allowed\n"));
    assert_gone(&ok);
}
