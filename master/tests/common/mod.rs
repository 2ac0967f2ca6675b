//! Test harness: a real master on loopback with a real SQLite file, gRPC clients, and a
//! simulated worker speaking the raw protocol.

#![allow(dead_code)]

pub mod faults;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cloudai_master::{MasterConfig, MasterError};
use cloudai_proto::pb;
use cloudai_queue::QueueStore;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

pub use pb::agent_service_client::AgentServiceClient;
pub use pb::client_service_client::ClientServiceClient;
pub use pb::worker_service_client::WorkerServiceClient;

/// Heartbeat interval used by test masters.
pub const HB: Duration = Duration::from_millis(100);

/// A master serving on an ephemeral loopback port.
pub struct Master {
    pub addr: SocketAddr,
    pub store: Arc<dyn QueueStore>,
    pub dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), MasterError>>>,
}

pub fn test_config() -> MasterConfig {
    MasterConfig {
        heartbeat_interval: HB,
        dead_after: 3,
        reconnect_window: Duration::from_millis(500),
        ..MasterConfig::default()
    }
}

impl Master {
    pub async fn start() -> Master {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(config: MasterConfig) -> Master {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Self::start_in(dir, config).await
    }

    /// A master on the store file in `dir` (reopened: this is how a restart is tested).
    pub async fn start_in(dir: Arc<tempfile::TempDir>, config: MasterConfig) -> Master {
        let store = open_sqlite(&dir, &config).await;
        Self::start_on(dir, store, config).await
    }

    /// A master on `store` (for example a [`faults::FaultStore`] around the file in `dir`).
    pub async fn start_on(
        dir: Arc<tempfile::TempDir>,
        store: Arc<dyn QueueStore>,
        config: MasterConfig,
    ) -> Master {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(cloudai_master::serve(
            listener,
            async move {
                let _ = rx.await;
            },
            store.clone(),
            config,
        ));
        Master {
            addr,
            store,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn client(&self) -> ClientServiceClient<Channel> {
        ClientServiceClient::new(self.channel().await)
    }

    pub async fn agent(&self) -> AgentServiceClient<Channel> {
        AgentServiceClient::new(self.channel().await)
    }

    /// Graceful stop; returns what `serve` returned.
    pub async fn stop(mut self) -> Result<(), MasterError> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("master stops within 10s")
            .unwrap()
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The SQLite store in `dir`, opened as a master would.
pub async fn open_sqlite(dir: &tempfile::TempDir, config: &MasterConfig) -> Arc<dyn QueueStore> {
    let uri = format!("sqlite://{}", dir.path().join("cloudai.db").display());
    cloudai_queue::open_store(&uri, config.store_options())
        .await
        .unwrap()
}

/// Polls `f` until it returns `Some`, failing the test after `secs` seconds.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn spec(image: &str) -> pb::TaskSpec {
    pb::TaskSpec {
        image: image.into(),
        ..Default::default()
    }
}

pub fn res(cpu_millis: u64, memory_mib: u64) -> pb::Resources {
    pb::Resources {
        cpu_millis,
        memory_bytes: memory_mib << 20,
        gpus: 0,
        disk_bytes: 0,
    }
}

pub async fn enqueue(c: &mut ClientServiceClient<Channel>, spec: pb::TaskSpec) -> String {
    c.enqueue(pb::EnqueueRequest {
        spec: Some(spec),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .task_id
}

pub async fn get(c: &mut ClientServiceClient<Channel>, id: &str) -> pb::Task {
    c.get_task(pb::GetTaskRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

pub fn status(t: &pb::Task) -> pb::TaskStatus {
    pb::TaskStatus::try_from(t.status).unwrap()
}

/// Waits until the task reaches `want`.
pub async fn wait_status(
    c: &mut ClientServiceClient<Channel>,
    id: &str,
    want: pb::TaskStatus,
    secs: u64,
) -> pb::Task {
    let mut last = None;
    let what = format!("task {id} to be {want:?}");
    let c2 = c.clone();
    let got = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            let t = get(&mut c2.clone(), id).await;
            if status(&t) == want {
                return t;
            }
            last = Some(t);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    match got {
        Ok(t) => t,
        Err(_) => panic!("timed out waiting for {what}; last seen: {last:?}"),
    }
}

/// Every log chunk of a task, concatenated (stdout and stderr).
pub async fn logs(c: &mut ClientServiceClient<Channel>, id: &str, follow: bool) -> String {
    let mut s = c
        .stream_logs(pb::StreamLogsRequest {
            id: id.into(),
            follow,
            ..Default::default()
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

/// A worker that speaks the raw protocol, driven by the test. It numbers each attempt's
/// events itself (1, 2, 3, …) unless a test gives the seq, and skips heartbeat acks.
pub struct RawWorker {
    pub tx: mpsc::Sender<pb::WorkerMessage>,
    pub rx: Streaming<pb::MasterMessage>,
    seqs: std::sync::Mutex<std::collections::HashMap<(String, u64), u64>>,
}

pub fn register(
    id: &str,
    capacity: pb::Resources,
    running: Vec<pb::AttemptRef>,
) -> pb::WorkerMessage {
    pb::WorkerMessage {
        msg: Some(pb::worker_message::Msg::Register(pb::Register {
            worker_id: id.into(),
            capacity: Some(capacity),
            hostname: "test-host".into(),
            version: "test".into(),
            running,
            ..Default::default()
        })),
    }
}

impl RawWorker {
    /// Opens a stream and sends `first`; returns the stream or the call's error.
    pub async fn open(
        master: &Master,
        first: pb::WorkerMessage,
    ) -> Result<RawWorker, tonic::Status> {
        let (tx, rx) = mpsc::channel(64);
        tx.send(first).await.unwrap();
        let mut client = WorkerServiceClient::new(master.channel().await);
        let resp = client.connect(ReceiverStream::new(rx)).await?;
        Ok(RawWorker {
            tx,
            rx: resp.into_inner(),
            seqs: Default::default(),
        })
    }

    /// Registers and checks the `Registered` answer.
    pub async fn connect(master: &Master, id: &str, capacity: pb::Resources) -> RawWorker {
        RawWorker::connect_as(master, register(id, capacity, vec![])).await
    }

    /// Sends this `Register` (labels, attributes…) and checks the `Registered` answer.
    pub async fn connect_as(master: &Master, register: pb::WorkerMessage) -> RawWorker {
        let id = match &register.msg {
            Some(pb::worker_message::Msg::Register(r)) => r.worker_id.clone(),
            other => panic!("not a Register: {other:?}"),
        };
        let mut w = RawWorker::open(master, register).await.unwrap();
        match w.next().await {
            pb::master_message::Msg::Registered(r) => assert_eq!(r.worker_id, id),
            other => panic!("expected Registered, got {other:?}"),
        }
        w
    }

    /// Registers `id` again, listing `running` (retrying while the master still holds
    /// the old stream), and checks the `Registered` answer.
    pub async fn reconnect(
        master: &Master,
        id: &str,
        capacity: pb::Resources,
        running: Vec<pb::AttemptRef>,
    ) -> RawWorker {
        let mut w = eventually(&format!("{id} to register again"), 5, || async {
            RawWorker::open(master, register(id, capacity, running.clone()))
                .await
                .ok()
        })
        .await;
        match w.next().await {
            pb::master_message::Msg::Registered(r) => assert_eq!(r.worker_id, id),
            other => panic!("expected Registered, got {other:?}"),
        }
        w
    }

    /// The next master message other than a heartbeat ack (fails the test after 10 s).
    pub async fn next(&mut self) -> pb::master_message::Msg {
        loop {
            match self.next_raw().await {
                pb::master_message::Msg::HeartbeatAck(_) => continue,
                m => return m,
            }
        }
    }

    /// The next master message, heartbeat acks included (fails the test after 10 s).
    pub async fn next_raw(&mut self) -> pb::master_message::Msg {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("a master message within 10s")
            .expect("stream ok")
            .expect("stream not closed")
            .msg
            .expect("message body")
    }

    /// The next `Ack` for `task_id` that covers event `seq` (earlier acks of the task
    /// and other messages are skipped).
    pub async fn ack_through(&mut self, task_id: &str, seq: u64) -> pb::Ack {
        loop {
            if let pb::master_message::Msg::Ack(a) = self.next().await {
                if a.task_id == task_id && a.seq >= seq {
                    return a;
                }
            }
        }
    }

    pub async fn next_assign(&mut self) -> pb::Assign {
        loop {
            match self.next_skipping_acks().await {
                pb::master_message::Msg::Assign(a) => return a,
                pb::master_message::Msg::Registered(_) => continue,
                other => panic!("expected Assign, got {other:?}"),
            }
        }
    }

    /// The next master message other than an ack of this worker's reports.
    pub async fn next_skipping_acks(&mut self) -> pb::master_message::Msg {
        loop {
            match self.next().await {
                pb::master_message::Msg::Ack(_) => continue,
                m => return m,
            }
        }
    }

    pub async fn heartbeat(&self, running: Vec<pb::AttemptRef>) {
        let _ = self
            .tx
            .send(pb::WorkerMessage {
                msg: Some(pb::worker_message::Msg::Heartbeat(pb::Heartbeat {
                    running,
                    ..Default::default()
                })),
            })
            .await;
    }

    /// Heartbeats every `HB` in the background, reporting nothing running.
    pub fn keep_alive(&self) -> JoinHandle<()> {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            loop {
                let hb = pb::WorkerMessage {
                    msg: Some(pb::worker_message::Msg::Heartbeat(pb::Heartbeat::default())),
                };
                if tx.send(hb).await.is_err() {
                    return;
                }
                tokio::time::sleep(HB / 2).await;
            }
        })
    }

    /// Sends the attempt's next event, numbered after the ones this worker sent, at now.
    /// Returns its seq.
    pub async fn event(&self, task_id: &str, token: u64, event: pb::task_event::Event) -> u64 {
        let seq = {
            let mut seqs = self.seqs.lock().unwrap();
            let n = seqs.entry((task_id.to_string(), token)).or_insert(0);
            *n += 1;
            *n
        };
        self.event_at(task_id, token, seq, chrono::Utc::now(), event)
            .await;
        seq
    }

    /// Sends an event with the given seq and time, as a worker that re-sends would.
    pub async fn event_at(
        &self,
        task_id: &str,
        token: u64,
        seq: u64,
        time: chrono::DateTime<chrono::Utc>,
        event: pb::task_event::Event,
    ) {
        self.tx
            .send(pb::WorkerMessage {
                msg: Some(pb::worker_message::Msg::Event(pb::TaskEvent {
                    task_id: task_id.into(),
                    token,
                    time: Some(cloudai_proto::convert::timestamp(time)),
                    seq,
                    event: Some(event),
                })),
            })
            .await
            .unwrap();
    }
}

pub fn started() -> pb::task_event::Event {
    pb::task_event::Event::Started(pb::Started {
        container_id: "c1".into(),
    })
}

pub fn log(data: &str) -> pb::task_event::Event {
    pb::task_event::Event::Log(pb::LogData {
        stream: pb::LogStream::Stdout as i32,
        data: data.as_bytes().to_vec(),
    })
}

pub fn exited(code: i32) -> pb::task_event::Event {
    pb::task_event::Event::Finished(pb::Finished {
        kind: pb::FinishKind::Exited as i32,
        exit_code: Some(code),
        error: String::new(),
    })
}
