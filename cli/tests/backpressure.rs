//! Backpressure and caps as a user of the `cloudai` binary sees them: a master started
//! with a small per-client enqueue rate refuses the call over it with a message naming
//! the limit (and `cloudai enqueue` prints it), and a master started with a small
//! `--max-log-bytes-per-task` keeps only the newest output behind a marker.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudai_proto::pb;
use cloudai_proto::pb::client_service_client::ClientServiceClient;

const BIN: &str = env!("CARGO_BIN_EXE_cloudai");

/// Kills the process on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn client(url: &str) -> ClientServiceClient<tonic::transport::Channel> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_string()).unwrap();
        match endpoint.connect().await {
            Ok(ch) => return ClientServiceClient::new(ch),
            Err(e) if Instant::now() > deadline => panic!("master at {url} never came up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn spec(stdout_lines: usize) -> pb::TaskSpec {
    let line = "x".repeat(99);
    pb::TaskSpec {
        image: "cloudai/busybox:test".into(),
        env: [(
            "CLOUDAI_FAKE_STDOUT".to_string(),
            vec![line; stdout_lines].join("\n"),
        )]
        .into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn over_the_enqueue_rate_the_user_is_told_and_logs_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let store = format!("sqlite://{}", dir.path().join("cloudai.db").display());
    let _master = spawn(&[
        "master",
        "--no-shell",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--store",
        &store,
        "--enqueue-rate",
        "1",
        "--enqueue-burst",
        "2",
        "--max-log-bytes-per-task",
        "2048",
    ]);
    let mut c = client(&url).await;
    let _worker = spawn(&[
        "worker",
        "--master",
        &url,
        "--id",
        &format!("bp-{}", std::process::id()),
        "--fake-executor",
    ]);

    // 100 lines of 100 bytes: 10 000 bytes of output, 2 048 kept.
    let id = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(spec(100)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .task_id;
    c.enqueue(pb::EnqueueRequest {
        spec: Some(spec(1)),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(spec(1)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("--enqueue-rate"),
        "{}",
        err.message()
    );

    // The CLI shows the same message (its own connection shares the IP's budget). The
    // budget refills at 1/s: drain it right before, and allow a slow machine a retry.
    let mut seen = Vec::new();
    for _ in 0..3 {
        while c
            .enqueue(pb::EnqueueRequest {
                spec: Some(spec(1)),
                ..Default::default()
            })
            .await
            .is_ok()
        {}
        let out = Command::new(BIN)
            .args(["enqueue", "--master", &url, "cloudai/busybox:test"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.code() != Some(0) && stderr.contains("enqueue rate limit exceeded") {
            seen.clear();
            break;
        }
        seen.push(stderr);
    }
    assert!(seen.is_empty(), "the CLI never showed the limit: {seen:?}");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = c
            .get_task(pb::GetTaskRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        if t.status == pb::TaskStatus::Succeeded as i32 {
            break;
        }
        assert!(Instant::now() < deadline, "task never succeeded: {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut logs = c
        .stream_logs(pb::StreamLogsRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (mut kept, mut marker) = (0usize, String::new());
    while let Some(chunk) = logs.message().await.unwrap() {
        if chunk.stream == pb::LogStream::System as i32 {
            marker = String::from_utf8_lossy(&chunk.data).into_owned();
        } else {
            kept += chunk.data.len();
        }
    }
    assert!(kept > 0 && kept <= 2048, "kept {kept} bytes");
    assert!(marker.contains("dropped"), "marker: {marker:?}");
}
