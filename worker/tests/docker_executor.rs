//! The Docker executor and the attempt policy against the real Docker daemon, with the
//! locally built `cloudai/busybox:test` image (see `sample_task/build.sh`). Every test
//! checks that no container it labelled is left behind.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudai_queue::{LogStream, Resources, TaskSpec};
use cloudai_worker::attempt::AttemptOptions;
use cloudai_worker::attempt::{run_attempt, stop_signal, AttemptEvent, Finish, StopSignal};
use cloudai_worker::executor::{labels, ContainerPolicy, DockerExecutor, StartRequest};
use common::*;
use tokio::sync::mpsc;

/// The sample task image: its entrypoint prints the arguments it is given.
const SAMPLE: &str = "cloudai/sample-task:latest";

async fn executor() -> Arc<DockerExecutor> {
    Arc::new(
        DockerExecutor::connect()
            .await
            .expect("a running Docker daemon"),
    )
}

/// An executor whose containers run the task as PID 1 (`--container-no-init`).
async fn executor_without_init() -> Arc<DockerExecutor> {
    let exec = DockerExecutor::connect()
        .await
        .expect("a running Docker daemon");
    Arc::new(exec.with_policy(ContainerPolicy {
        no_init: true,
        ..ContainerPolicy::default()
    }))
}

/// Runs one attempt, collecting its events; `stop` may fire mid-run.
async fn run(
    exec: &Arc<DockerExecutor>,
    req: StartRequest,
    stop: StopSignal,
) -> (Finish, Vec<AttemptEvent>) {
    run_with(exec, req, stop, &options()).await
}

/// [`run`] with these attempt options.
async fn run_with(
    exec: &Arc<DockerExecutor>,
    req: StartRequest,
    stop: StopSignal,
    opts: &AttemptOptions,
) -> (Finish, Vec<AttemptEvent>) {
    let (tx, mut rx) = mpsc::channel(16);
    let collect = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let finish = run_attempt(exec.as_ref(), req, opts, stop, tx).await.finish;
    (finish, collect.await.unwrap())
}

fn output(events: &[AttemptEvent], stream: LogStream) -> String {
    let bytes: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            AttemptEvent::Output(c) if c.stream == stream => Some(c.data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn success_streams_exact_stdout_and_stderr() {
    let exec = executor().await;
    let req = request(sh("echo out1; echo err1 >&2; echo out2; echo err2 >&2"));
    let (finish, events) = run(&exec, req.clone(), StopSignal::never()).await;
    assert_eq!(finish, Finish::Exited(0));
    assert!(
        matches!(&events[0], AttemptEvent::Started { container_id, .. } if !container_id.is_empty()),
        "first event is started: {events:?}"
    );
    assert_eq!(output(&events, LogStream::Stdout), "out1\nout2\n");
    assert_eq!(output(&events, LogStream::Stderr), "err1\nerr2\n");
    assert_gone(&req);
}

#[tokio::test]
async fn non_zero_exit_code_is_reported() {
    let exec = executor().await;
    let req = request(sh("echo failing; exit 3"));
    let (finish, events) = run(&exec, req.clone(), StopSignal::never()).await;
    assert_eq!(finish, Finish::Exited(3));
    assert_eq!(output(&events, LogStream::Stdout), "failing\n");
    assert_gone(&req);
}

#[tokio::test]
async fn env_and_command_are_honoured() {
    let exec = executor().await;
    let mut spec = TaskSpec::new(IMAGE);
    spec.command = vec![
        "sh".into(),
        "-c".into(),
        "echo \"$GREETING from $0 $1\"".into(),
        "cloudai".into(),
        "worker".into(),
    ];
    spec.env.insert("GREETING".into(), "hello world".into());
    let req = request(spec);
    let (finish, events) = run(&exec, req.clone(), StopSignal::never()).await;
    assert_eq!(finish, Finish::Exited(0));
    assert_eq!(
        output(&events, LogStream::Stdout),
        "hello world from cloudai worker\n"
    );
    assert_gone(&req);
}

#[tokio::test]
async fn the_command_goes_to_the_entrypoint_and_entrypoint_replaces_it() {
    let exec = executor().await;
    // As `docker run cloudai/sample-task:latest foo bar`: the image's entrypoint runs.
    let mut spec = TaskSpec::new(SAMPLE);
    spec.command = vec!["foo".into(), "bar".into()];
    let req = request(spec);
    let (finish, events) = run(&exec, req.clone(), StopSignal::never()).await;
    assert_eq!(finish, Finish::Exited(0));
    let out = output(&events, LogStream::Stdout);
    assert!(out.contains("args: foo bar\n"), "{out}");
    assert_gone(&req);

    // As `docker run --entrypoint /bin/echo cloudai/sample-task:latest hi`.
    let mut spec = TaskSpec::new(SAMPLE);
    spec.entrypoint = vec!["/bin/echo".into()];
    spec.command = vec!["hi".into()];
    let req = request(spec);
    let (finish, events) = run(&exec, req.clone(), StopSignal::never()).await;
    assert_eq!(finish, Finish::Exited(0));
    assert_eq!(output(&events, LogStream::Stdout), "hi\n");
    assert_gone(&req);
}

#[tokio::test]
async fn with_init_the_stop_signal_reaches_the_task() {
    let exec = executor().await;
    // `sleep` gets SIGTERM from the init process and dies of it: no wait for the grace.
    let mut spec = sh("echo before; exec sleep 60");
    spec.timeout = Some(Duration::from_secs(1));
    let req = request(spec);
    let opts = AttemptOptions {
        stop_grace: Duration::from_secs(10),
        ..AttemptOptions::default()
    };
    let began = Instant::now();
    let (finish, events) = run_with(&exec, req.clone(), StopSignal::never(), &opts).await;
    assert_eq!(finish, Finish::TimedOut);
    assert!(
        began.elapsed() < Duration::from_secs(6),
        "a 1 s timeout took {:?}: the SIGTERM did not end the task",
        began.elapsed()
    );
    assert_eq!(output(&events, LogStream::Stdout), "before\n");
    assert_gone(&req);
}

#[tokio::test]
async fn timeout_stops_the_container_and_removes_it() {
    let exec = executor_without_init().await;
    // `sleep` as PID 1 (no init) ignores SIGTERM, so this exercises the kill after the grace.
    let mut spec = sh("echo before; exec sleep 60");
    spec.timeout = Some(Duration::from_secs(1));
    let req = request(spec);
    let began = Instant::now();
    let (finish, events) = run(&exec, req.clone(), StopSignal::never()).await;
    assert_eq!(finish, Finish::TimedOut);
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "took {:?}",
        began.elapsed()
    );
    assert_eq!(output(&events, LogStream::Stdout), "before\n");
    assert_gone(&req);
}

#[tokio::test]
async fn cancel_while_running_stops_and_removes_it() {
    let exec = executor().await;
    let req = request(sh(
        "trap 'exit 0' TERM; echo running; while true; do sleep 0.1; done",
    ));
    let (stopper, signal) = stop_signal();
    let (tx, mut rx) = mpsc::channel(16);
    let attempt = tokio::spawn({
        let exec = exec.clone();
        let req = req.clone();
        async move { run_attempt(exec.as_ref(), req, &options(), signal, tx).await }
    });
    // Cancel once the container has printed, so it is certainly running.
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        let printed = matches!(&e, AttemptEvent::Output(c) if c.data == b"running\n");
        events.push(e);
        if printed {
            assert_eq!(containers_labelled(labels::TASK_ID, &req.task_id).len(), 1);
            stopper.stop();
        }
    }
    assert_eq!(attempt.await.unwrap().finish, Finish::Cancelled);
    assert!(matches!(events[0], AttemptEvent::Started { .. }));
    assert_gone(&req);
}

#[tokio::test]
async fn missing_image_fails_with_the_registry_message() {
    let exec = executor().await;
    let req = request(TaskSpec::new("cloudai/does-not-exist:nope"));
    let (finish, events) = run(&exec, req.clone(), StopSignal::never()).await;
    let Finish::Error(message) = finish else {
        panic!("expected an error, got {finish:?}");
    };
    assert!(
        message.starts_with("pull cloudai/does-not-exist:nope: ") && message.len() > 40,
        "unclear message: {message}"
    );
    assert!(
        events.iter().all(|e| matches!(e, AttemptEvent::Pulling(_))),
        "nothing but pull progress: {events:?}"
    );
    assert_gone(&req);
}

#[tokio::test]
async fn limits_and_labels_are_applied() {
    let exec = executor().await;
    let mut spec = sh("trap 'exit 0' TERM; echo up; while true; do sleep 0.1; done");
    spec.resources = Resources {
        cpu_millis: 500,
        memory_bytes: 64 << 20,
        gpus: 0,
        disk_bytes: 0,
    };
    let req = request(spec);
    let (stopper, signal) = stop_signal();
    let (tx, mut rx) = mpsc::channel(16);
    let attempt = tokio::spawn({
        let exec = exec.clone();
        let req = req.clone();
        async move { run_attempt(exec.as_ref(), req, &options(), signal, tx).await }
    });
    let mut container = None;
    while let Some(e) = rx.recv().await {
        match e {
            AttemptEvent::Started { container_id, .. } => container = Some(container_id),
            AttemptEvent::Output(_) => {
                let id = container.clone().expect("started before output");
                let info = exec
                    .client()
                    .inspect_container(&id, None)
                    .await
                    .expect("inspect");
                let host = info.host_config.expect("host config");
                assert_eq!(host.nano_cpus, Some(500_000_000));
                assert_eq!(host.memory, Some(64 << 20));
                let l = info.config.expect("config").labels.expect("labels");
                assert_eq!(l[labels::TASK_ID], req.task_id);
                assert_eq!(l[labels::ATTEMPT], "1");
                assert_eq!(l[labels::WORKER], req.worker_id);
                stopper.stop();
            }
            AttemptEvent::Pulling(_) => {}
        }
    }
    assert_eq!(attempt.await.unwrap().finish, Finish::Cancelled);
    assert_gone(&req);
}

#[tokio::test]
async fn unknown_program_fails_with_a_clear_error() {
    let mut spec = TaskSpec::new(IMAGE);
    spec.command = vec!["/no/such/program".into()];
    // With the init process (the default) the container starts, and the init says on
    // stderr that it cannot run the program and exits 127, as `docker run --init` does.
    let exec = executor().await;
    let req = request(spec.clone());
    let (finish, events) = run(&exec, req.clone(), StopSignal::never()).await;
    assert_eq!(finish, Finish::Exited(127));
    let err = output(&events, LogStream::Stderr);
    assert!(err.contains("/no/such/program"), "unclear message: {err}");
    assert_gone(&req);

    // Without it the program is the container's first process: the start fails.
    let exec = executor_without_init().await;
    let req = request(spec);
    let (finish, _) = run(&exec, req.clone(), StopSignal::never()).await;
    let Finish::Error(message) = finish else {
        panic!("expected an error, got {finish:?}");
    };
    assert!(
        message.starts_with("start container: ") && message.contains("/no/such/program"),
        "unclear message: {message}"
    );
    assert_gone(&req);
}

#[tokio::test]
async fn leftovers_of_a_previous_run_are_removed() {
    use cloudai_worker::executor::Executor;
    let exec = executor().await;
    let req = request(sh("sleep 60"));
    // Started and abandoned, as by a worker that crashed.
    exec.start(&req).await.expect("start");
    assert_eq!(containers_labelled(labels::WORKER, &req.worker_id).len(), 1);
    assert_eq!(exec.remove_leftovers(&req.worker_id).await.unwrap(), 1);
    assert!(containers_labelled(labels::WORKER, &req.worker_id).is_empty());
    assert_gone(&req);
}

#[tokio::test]
async fn an_image_removed_after_it_was_seen_is_pulled_again_not_a_create_error() {
    // A tag of the test image of this test's own, so removing it disturbs no other test.
    let tag = format!("cloudai/busybox:{}", unique("gone"));
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .expect("docker cli");
        assert!(out.status.success(), "docker {args:?} failed");
    };
    docker(&["tag", IMAGE, &tag]);
    let exec = executor().await;
    let mut spec = TaskSpec::new(&tag);
    spec.command = vec!["sh".into(), "-c".into(), "echo here".into()];
    let (finish, _) = run(&exec, request(spec.clone()), StopSignal::never()).await;
    assert_eq!(finish, Finish::Exited(0));

    // Seen present once: the executor no longer asks. Removed behind its back, the create
    // finds it missing and the image is pulled again, which fails here (no registry) with
    // the pull's own message, as for an image never seen.
    docker(&["rmi", &tag]);
    let req = request(spec);
    let (finish, _) = run(&exec, req.clone(), StopSignal::never()).await;
    let Finish::Error(message) = finish else {
        panic!("expected an error, got {finish:?}");
    };
    assert!(
        message.starts_with(&format!("pull {tag}: ")),
        "not the pull's error: {message}"
    );
    assert_gone(&req);
}

/// A worker that learns of an exit late (it was frozen, or busy) still reports when the
/// container really ended: Docker's own `FinishedAt`, not the moment the wait returned.
#[tokio::test]
async fn a_late_wait_reports_when_the_container_really_exited() {
    use cloudai_worker::executor::Executor;
    let exec = executor().await;
    let req = request(sh("sleep 1; exit 4"));
    let handle = exec.start(&req).await.expect("start");
    let started = chrono::Utc::now();
    // Long after the container's exit: as a worker thawed from a SIGSTOP would.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let exit = exec.wait(&handle).await.expect("wait");
    let waited = chrono::Utc::now();
    exec.remove(&handle).await.expect("remove");
    assert_eq!(exit.code, 4);
    let ended = exit.ended_at(started, waited);
    let ran = (ended - started).to_std().unwrap_or_default();
    assert!(
        ran >= Duration::from_millis(900) && ran < Duration::from_millis(2500),
        "the container ran 1 s, the report shows {ran:?} (waited {:?})",
        (waited - started).to_std().unwrap_or_default()
    );
    assert_gone(&req);
}
