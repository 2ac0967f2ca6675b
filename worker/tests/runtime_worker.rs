//! The worker runtime against a small fake master: a real tonic `WorkerService` on
//! 127.0.0.1:0 that hands each `Connect` stream to the test, which plays the master's
//! side of `proto/PROTOCOL.md` message by message. Containers are the FakeExecutor's.

use std::time::Duration;

use cloudai_proto::pb;
use cloudai_proto::pb::master_message::Msg as M;
use cloudai_proto::pb::task_event::Event;
use cloudai_proto::pb::worker_message::Msg as W;
use cloudai_proto::pb::worker_service_server::{WorkerService, WorkerServiceServer};
use cloudai_worker::testing::{test_config, TestWorker, TEST_CAPACITY};
use cloudai_worker::{FakeBehavior, FakeExecutor, WorkerError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

const WAIT: Duration = Duration::from_secs(10);

/// One worker stream, as the fake master sees it.
struct Conn {
    inbound: Streaming<pb::WorkerMessage>,
    outbound: mpsc::Sender<Result<pb::MasterMessage, Status>>,
}

struct FakeMaster {
    conns: mpsc::Sender<Conn>,
}

#[tonic::async_trait]
impl WorkerService for FakeMaster {
    type ConnectStream = ReceiverStream<Result<pb::MasterMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let (outbound, rx) = mpsc::channel(64);
        let conn = Conn {
            inbound: request.into_inner(),
            outbound,
        };
        self.conns
            .send(conn)
            .await
            .map_err(|_| Status::unavailable("test over"))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// `GET /metrics` of a worker's `--metrics-listen` address: the body.
async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    reply.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// Starts the fake master; returns its URL and the stream of incoming connections.
async fn fake_master() -> (String, mpsc::Receiver<Conn>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(WorkerServiceServer::new(FakeMaster { conns: tx }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (url, rx)
}

impl Conn {
    async fn next(&mut self) -> W {
        let msg = tokio::time::timeout(WAIT, self.inbound.message())
            .await
            .expect("worker message in time")
            .expect("stream ok")
            .expect("stream open");
        msg.msg.expect("message body")
    }

    /// The next task event, skipping heartbeats.
    async fn event(&mut self) -> pb::TaskEvent {
        loop {
            match self.next().await {
                W::Event(e) => return e,
                W::Heartbeat(_) => continue,
                W::Register(r) => panic!("unexpected register {r:?}"),
            }
        }
    }

    async fn send(&self, msg: M) {
        self.outbound
            .send(Ok(pb::MasterMessage { msg: Some(msg) }))
            .await
            .expect("worker stream open");
    }

    /// Reads the Register (which must come first) and answers Registered, without a
    /// lease.
    async fn accept(&mut self) -> pb::Register {
        self.accept_with(5000, 0).await
    }

    /// Reads the Register and answers Registered with this heartbeat interval and lease.
    async fn accept_with(&mut self, heartbeat_ms: u32, lease_ms: u32) -> pb::Register {
        let W::Register(register) = self.next().await else {
            panic!("first message is not register");
        };
        self.send(M::Registered(pb::Registered {
            worker_id: register.worker_id.clone(),
            heartbeat_interval_ms: heartbeat_ms,
            lease_ms,
            stop_within_ms: lease_ms / 2,
        }))
        .await;
        register
    }

    async fn ack(&self, task_id: &str, token: u64, seq: u64) {
        self.send(M::Ack(pb::Ack {
            task_id: task_id.into(),
            token,
            seq,
        }))
        .await;
    }
}

async fn connection(conns: &mut mpsc::Receiver<Conn>) -> Conn {
    tokio::time::timeout(WAIT, conns.recv())
        .await
        .expect("worker connects in time")
        .expect("master running")
}

fn assign(task_id: &str, token: u64, env: &[(&str, &str)]) -> M {
    let mut spec = pb::TaskSpec {
        image: "fake:latest".into(),
        ..Default::default()
    };
    for (k, v) in env {
        spec.env.insert(k.to_string(), v.to_string());
    }
    M::Assign(pb::Assign {
        task_id: task_id.into(),
        token,
        attempt: 1,
        spec: Some(spec),
        devices: Vec::new(),
    })
}

fn finished(e: &pb::TaskEvent) -> &pb::Finished {
    match &e.event {
        Some(Event::Finished(f)) => f,
        other => panic!("expected finished, got {other:?}"),
    }
}

#[tokio::test]
async fn registers_first_then_heartbeats_with_telemetry() {
    let (url, mut conns) = fake_master().await;
    let mut config = test_config(&url, "w-heartbeat");
    config.labels = vec![("zone".into(), "eu".into())];
    let worker = TestWorker::spawn(config, FakeBehavior::default());
    let mut conn = connection(&mut conns).await;
    let register = conn.accept().await;
    assert_eq!(register.worker_id, "w-heartbeat");
    assert_eq!(register.labels["zone"], "eu");
    assert_eq!(register.capacity, Some(TEST_CAPACITY.into()));
    assert!(register.running.is_empty());
    assert!(!register.version.is_empty() && !register.hostname.is_empty());
    for _ in 0..3 {
        let W::Heartbeat(hb) = conn.next().await else {
            panic!("expected a heartbeat");
        };
        let usage = hb.usage.expect("usage");
        assert!(usage.memory_total_bytes > 0);
        assert!((0.0..=100.0).contains(&usage.cpu_percent));
        assert!(hb.sent_at.is_some());
    }
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn assignment_reports_started_logs_and_finished_with_its_token() {
    let (url, mut conns) = fake_master().await;
    let worker = TestWorker::start(&url, "w-assign");
    let mut conn = connection(&mut conns).await;
    conn.accept().await;
    conn.send(assign(
        "t-ok",
        7,
        &[("CLOUDAI_FAKE_STDOUT", "hello\nworld")],
    ))
    .await;
    let started = conn.event().await;
    assert!(
        matches!(&started.event, Some(Event::Started(s)) if s.container_id.starts_with("fake-"))
    );
    let mut out = Vec::new();
    let done = loop {
        let e = conn.event().await;
        assert_eq!((e.task_id.as_str(), e.token), ("t-ok", 7));
        match &e.event {
            Some(Event::Log(l)) => {
                assert_eq!(l.stream, pb::LogStream::Stdout as i32);
                out.extend_from_slice(&l.data);
            }
            _ => break e,
        }
    };
    assert_eq!(out, b"hello\nworld\n");
    let f = finished(&done);
    assert_eq!(f.kind, pb::FinishKind::Exited as i32);
    assert_eq!(f.exit_code, Some(0));

    conn.send(assign("t-bad", 3, &[("CLOUDAI_FAKE_EXIT_CODE", "2")]))
        .await;
    assert!(matches!(conn.event().await.event, Some(Event::Started(_))));
    let f = conn.event().await;
    assert_eq!(finished(&f).exit_code, Some(2));
    assert_eq!(f.token, 3);

    conn.send(assign(
        "t-err",
        1,
        &[("CLOUDAI_FAKE_PULL_ERROR", "manifest unknown")],
    ))
    .await;
    let e = loop {
        let e = conn.event().await;
        if !matches!(e.event, Some(Event::Pulling(_))) {
            break e;
        }
    };
    let f = finished(&e);
    assert_eq!(f.kind, pb::FinishKind::Error as i32);
    assert!(f.error.contains("manifest unknown"), "{}", f.error);
    containers_removed(&worker.executor, "finished containers").await;
    worker.shutdown().await.unwrap();
}

/// Waits until the executor holds no container (the end is reported first, then the
/// container removed).
async fn containers_removed(executor: &FakeExecutor, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while executor.live_containers() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "{what} not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_end_is_reported_before_the_container_is_removed_and_shutdown_waits_for_it() {
    let (url, mut conns) = fake_master().await;
    let worker = TestWorker::start(&url, "w-remove");
    let mut conn = connection(&mut conns).await;
    conn.accept().await;
    // The daemon takes 3 s to remove this one.
    conn.send(assign(
        "t-slow-rm",
        1,
        &[("CLOUDAI_FAKE_REMOVE_MS", "3000")],
    ))
    .await;
    assert!(matches!(conn.event().await.event, Some(Event::Started(_))));
    let f = conn.event().await;
    assert_eq!(finished(&f).exit_code, Some(0));
    assert_eq!(
        worker.executor.live_containers(),
        1,
        "the result went out before the removal ended"
    );
    containers_removed(&worker.executor, "the finished container").await;

    // A shutdown right after an end still waits for that container's removal.
    conn.send(assign(
        "t-slow-rm2",
        2,
        &[("CLOUDAI_FAKE_REMOVE_MS", "1000")],
    ))
    .await;
    assert!(matches!(conn.event().await.event, Some(Event::Started(_))));
    assert!(finished(&conn.event().await).exit_code == Some(0));
    let executor = worker.executor.clone();
    assert_eq!(executor.live_containers(), 1);
    worker.shutdown().await.unwrap();
    assert_eq!(executor.live_containers(), 0, "shutdown left the container");
}

#[tokio::test]
async fn cancel_stops_the_attempt_and_reports_cancelled() {
    let (url, mut conns) = fake_master().await;
    let worker = TestWorker::start(&url, "w-cancel");
    let mut conn = connection(&mut conns).await;
    conn.accept().await;
    conn.send(assign("t-long", 1, &[("CLOUDAI_FAKE_RUN_MS", "60000")]))
        .await;
    assert!(matches!(conn.event().await.event, Some(Event::Started(_))));
    assert_eq!(worker.executor.live_containers(), 1);
    conn.send(M::Cancel(pb::Cancel {
        task_id: "t-long".into(),
        token: 1,
    }))
    .await;
    let e = conn.event().await;
    assert_eq!(finished(&e).kind, pb::FinishKind::Cancelled as i32);
    containers_removed(&worker.executor, "the cancelled container").await;

    // A cancel for an attempt this worker does not run is settled as cancelled at once.
    conn.send(M::Cancel(pb::Cancel {
        task_id: "t-unknown".into(),
        token: 4,
    }))
    .await;
    let e = conn.event().await;
    assert_eq!((e.task_id.as_str(), e.token), ("t-unknown", 4));
    assert_eq!(finished(&e).kind, pb::FinishKind::Cancelled as i32);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn unacked_events_are_resent_in_order_after_a_reconnect_and_acked_ones_are_not() {
    let (url, mut conns) = fake_master().await;
    let mut config = test_config(&url, "w-resend");
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config.metrics_listen = Some(metrics);
    let worker = TestWorker::spawn(config, FakeBehavior::default());
    let mut conn = connection(&mut conns).await;
    conn.accept().await;
    conn.send(assign(
        "t-resend",
        5,
        &[("CLOUDAI_FAKE_STDOUT", "one\ntwo")],
    ))
    .await;
    let mut first = Vec::new();
    loop {
        let e = conn.event().await;
        let end = matches!(e.event, Some(Event::Finished(_)));
        first.push(e);
        if end {
            break;
        }
    }
    let seqs: Vec<u64> = first.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=first.len() as u64).collect::<Vec<_>>(),
        "numbered 1, 2, …"
    );
    assert!(matches!(first[0].event, Some(Event::Started(_))));
    // Only the start is acknowledged before the master goes away.
    conn.ack("t-resend", 5, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(conn);

    let mut conn = connection(&mut conns).await;
    let register = conn.accept().await;
    assert!(
        register.running.is_empty(),
        "a finished attempt is not running"
    );
    assert_eq!(
        register.finished,
        vec![pb::AttemptRef {
            task_id: "t-resend".into(),
            token: 5,
            devices: Vec::new(),
        }],
        "its report is on its way"
    );
    let mut again = Vec::new();
    while again.len() < first.len() - 1 {
        again.push(conn.event().await);
    }
    assert_eq!(
        again,
        first[1..],
        "everything after the ack, in order, unchanged"
    );
    let text = scrape(metrics).await;
    let resends = format!("cloudai_worker_event_resends_total {}", again.len());
    for line in [
        resends.as_str(),
        "cloudai_worker_master_connected 1",
        "cloudai_worker_running_attempts 0",
        "cloudai_worker_attempts_finished_total{outcome=\"succeeded\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
    }
    conn.ack("t-resend", 5, first.len() as u64).await;

    // Once acked it is forgotten: the next session carries only heartbeats.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(conn);
    let mut conn = connection(&mut conns).await;
    assert!(conn.accept().await.finished.is_empty());
    for _ in 0..3 {
        assert!(matches!(conn.next().await, W::Heartbeat(_)));
    }
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn output_past_the_memory_limit_spills_to_disk_and_arrives_whole() {
    let (url, mut conns) = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&url, "w-spill");
    config.data_dir = Some(dir.path().to_path_buf());
    config.max_report_memory = 4096;
    let worker = TestWorker::spawn(config, FakeBehavior::default());
    let mut conn = connection(&mut conns).await;
    conn.accept().await;
    let lines: Vec<String> = (0..400)
        .map(|i| format!("line {i:04} {}", "x".repeat(40)))
        .collect();
    conn.send(assign(
        "t-spill",
        1,
        &[("CLOUDAI_FAKE_STDOUT", &lines.join("\n"))],
    ))
    .await;
    // Nothing is acknowledged until the attempt has ended: the worker must hold it all.
    let spill_dir = dir.path().join("reports");
    let spilled = tokio::time::timeout(WAIT, async {
        loop {
            let n = std::fs::read_dir(&spill_dir)
                .map(|d| d.count())
                .unwrap_or(0);
            if n > 0 {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a spill file appears");
    assert_eq!(spilled, 1);
    let mut out = Vec::new();
    let mut last = 0;
    loop {
        let e = conn.event().await;
        assert_eq!(e.seq, last + 1, "no gap, no repeat");
        last = e.seq;
        match &e.event {
            Some(Event::Log(l)) => out.extend_from_slice(&l.data),
            Some(Event::Finished(_)) => break,
            _ => {}
        }
        // Acknowledge as a master would, which lets the rest through the window.
        conn.ack("t-spill", 1, e.seq).await;
    }
    conn.ack("t-spill", 1, last).await;
    assert_eq!(String::from_utf8(out).unwrap(), lines.join("\n") + "\n");
    tokio::time::timeout(WAIT, async {
        while std::fs::read_dir(&spill_dir).unwrap().count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the spill file is removed once acknowledged");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn reconnect_reports_running_attempts_and_revoke_stops_them_silently() {
    let (url, mut conns) = fake_master().await;
    let worker = TestWorker::start(&url, "w-revoke");
    let mut conn = connection(&mut conns).await;
    conn.accept().await;
    let mut kept = assign("t-kept", 9, &[("CLOUDAI_FAKE_RUN_MS", "60000")]);
    if let M::Assign(a) = &mut kept {
        a.devices = vec!["GPU-7".into()];
    }
    conn.send(kept).await;
    assert!(matches!(conn.event().await.event, Some(Event::Started(_))));
    drop(conn);

    let mut conn = connection(&mut conns).await;
    let register = conn.accept().await;
    assert_eq!(
        register.running,
        vec![pb::AttemptRef {
            task_id: "t-kept".into(),
            token: 9,
            devices: vec!["GPU-7".into()],
        }],
        "reported with the device it was given, for a master that restarted"
    );
    assert_eq!(
        worker.executor.live_containers(),
        1,
        "kept running meanwhile"
    );
    let resent = conn.event().await;
    assert!(
        matches!(resent.event, Some(Event::Started(_))) && resent.seq == 1,
        "the unacknowledged start is sent again: {resent:?}"
    );
    conn.send(M::Revoke(pb::Revoke {
        attempts: register.running.clone(),
        reason: "task reassigned".into(),
    }))
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while worker.executor.live_containers() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "revoked container not removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // No Finished for a revoked attempt, and it is no longer reported as running (in
    // heartbeats made after its container was gone; earlier ones may still be in flight).
    let gone = cloudai_proto::convert::timestamp(chrono::Utc::now());
    let mut checked = 0;
    while checked < 3 {
        match conn.next().await {
            W::Heartbeat(hb)
                if hb.sent_at.as_ref().is_some_and(|t| {
                    t.seconds > gone.seconds || (t.seconds == gone.seconds && t.nanos >= gone.nanos)
                }) =>
            {
                assert!(hb.running.iter().all(|r| r.task_id != "t-kept"), "{hb:?}");
                checked += 1;
            }
            W::Heartbeat(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_stops_running_attempts() {
    let (url, mut conns) = fake_master().await;
    let worker = TestWorker::start(&url, "w-shutdown");
    let mut conn = connection(&mut conns).await;
    conn.accept().await;
    for i in 0..50 {
        conn.send(assign(
            &format!("t-{i}"),
            1,
            &[("CLOUDAI_FAKE_RUN_MS", "60000")],
        ))
        .await;
    }
    let mut started = 0;
    while started < 50 {
        if matches!(conn.event().await.event, Some(Event::Started(_))) {
            started += 1;
        }
    }
    let executor = worker.executor.clone();
    assert_eq!(executor.live_containers(), 50);
    worker.shutdown().await.unwrap();
    assert_eq!(executor.live_containers(), 0);
}

#[tokio::test]
async fn a_rejected_registration_ends_run_with_an_error() {
    let (url, mut conns) = fake_master().await;
    let worker = TestWorker::start(&url, "w-rejected");
    let mut conn = connection(&mut conns).await;
    assert!(matches!(conn.next().await, W::Register(_)));
    conn.outbound
        .send(Err(Status::invalid_argument("bad join token")))
        .await
        .unwrap();
    let err = tokio::time::timeout(WAIT, worker.join())
        .await
        .expect("run returns")
        .unwrap_err();
    assert!(
        matches!(&err, WorkerError::Rejected { code: tonic::Code::InvalidArgument, message } if message.contains("bad join token")),
        "{err}"
    );
}

#[tokio::test]
async fn worker_keeps_retrying_until_the_master_appears() {
    // Reserve a port, close it, start the worker against it, then bring the master up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let worker = TestWorker::start(format!("http://{addr}"), "w-late");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!worker.is_finished(), "an absent master is not fatal");
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (tx, mut conns) = mpsc::channel(8);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(WorkerServiceServer::new(FakeMaster { conns: tx }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut conn = connection(&mut conns).await;
    assert_eq!(conn.accept().await.worker_id, "w-late");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn containers_stop_when_the_lease_ends_and_an_acked_heartbeat_renews_it() {
    let (url, mut conns) = fake_master().await;
    let worker = TestWorker::start(&url, "w-lease");
    let mut conn = connection(&mut conns).await;
    conn.accept_with(100, 600).await;
    conn.send(assign("t-leased", 2, &[("CLOUDAI_FAKE_RUN_MS", "60000")]))
        .await;
    assert!(matches!(conn.event().await.event, Some(Event::Started(_))));
    // Acknowledge every heartbeat for two leases' time: the attempt keeps running.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        match conn.next().await {
            W::Heartbeat(hb) => {
                conn.send(M::HeartbeatAck(pb::HeartbeatAck { seq: hb.seq }))
                    .await
            }
            W::Event(_) => {}
            W::Register(_) => panic!("unexpected register"),
        }
    }
    assert_eq!(
        worker.executor.live_containers(),
        1,
        "a renewed lease holds"
    );
    // Now the master stops acknowledging (a partition, a stuck master): the stream
    // stays open, but within the lease the container is stopped.
    // (The deadline is generous for a loaded machine; the timing itself is tested with
    // paused time in the runtime's lease module.)
    let stopped_by = tokio::time::Instant::now() + WAIT;
    while worker.executor.live_containers() > 0 {
        assert!(
            tokio::time::Instant::now() < stopped_by,
            "container still running long after the lease ended"
        );
        match tokio::time::timeout(Duration::from_millis(20), conn.inbound.message()).await {
            Ok(Ok(Some(m))) => assert!(
                !matches!(&m.msg, Some(W::Event(e)) if matches!(e.event, Some(Event::Finished(_)))),
                "a stopped-unreported attempt sends no end: {m:?}"
            ),
            // The worker closed the stream (it is about to register again). A closed
            // stream answers at once, so wait on the clock instead: spinning on it would
            // starve the attempt task sharing this single-threaded runtime.
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => {}
        }
    }
    // Then it registers again, so the master learns at once that nothing runs there.
    let mut again = connection(&mut conns).await;
    let register = again.accept().await;
    assert!(register.running.is_empty(), "{register:?}");
    assert!(register.finished.is_empty(), "no end will come for it");
    assert!(!worker.is_finished(), "the worker itself keeps going");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_lease_containers_outlive_a_lost_master() {
    let (url, mut conns) = fake_master().await;
    let worker = TestWorker::start(&url, "w-nolease");
    let mut conn = connection(&mut conns).await;
    conn.accept().await;
    conn.send(assign("t-kept", 2, &[("CLOUDAI_FAKE_RUN_MS", "60000")]))
        .await;
    assert!(matches!(conn.event().await.event, Some(Event::Started(_))));
    drop(conn);
    drop(conns);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(worker.executor.live_containers(), 1);
    worker.shutdown().await.unwrap();
}
