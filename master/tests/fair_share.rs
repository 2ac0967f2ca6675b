//! Fair share and quotas (issue 15), over real gRPC with `--require-auth` and a real
//! SQLite store: two submitters each enqueue 5,000 equal tasks, one after the other, and
//! four workers drain them; from the moment both have work, each gets half the slots.
//! A submitter at its quota waits with reason `Quota` and holds no one else up.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cloudai_master::auth::setup::{add_user, rotate_join_token};
use cloudai_master::auth::{SecurityConfig, ServerSecret};
use cloudai_master::config::FairShare;
use cloudai_master::MasterConfig;
use cloudai_proto::pb;
use cloudai_queue::{Quota, Role, TaskId};
use common::*;
use tokio::sync::mpsc;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const PER_SUBMITTER: usize = 5_000;
const WORKERS: usize = 4;
/// Each worker runs four 1-CPU tasks at once: 16 slots in all.
const CPU: u64 = 4_000;

#[derive(Clone)]
struct Bearer(String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.0).parse().unwrap(),
        );
        Ok(r)
    }
}

type Authed = pb::client_service_client::ClientServiceClient<InterceptedService<Channel, Bearer>>;

struct Cluster {
    master: Master,
    secret: ServerSecret,
    join: String,
}

impl Cluster {
    async fn start(fair_share: FairShare) -> Cluster {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let secret_file = dir.path().join("cloudai.secret");
        let config = MasterConfig {
            fair_share,
            security: SecurityConfig {
                require_auth: true,
                secret_file: secret_file.clone(),
                ..SecurityConfig::default()
            },
            ..test_config()
        };
        let master = Master::start_in(dir, config).await;
        let (secret, _) = ServerSecret::load_or_create(&secret_file).unwrap();
        let (join, _) = rotate_join_token(master.store.as_ref(), &secret, Duration::ZERO)
            .await
            .unwrap();
        Cluster {
            master,
            secret,
            join,
        }
    }

    async fn user(&self, name: &str) -> Authed {
        let token = add_user(
            self.master.store.as_ref(),
            &self.secret,
            name,
            Role::Submitter,
        )
        .await
        .unwrap();
        pb::client_service_client::ClientServiceClient::with_interceptor(
            self.master.channel().await,
            Bearer(token),
        )
    }

    async fn worker(&self, id: &str, cpu: u64) -> RawWorker {
        let mut r = register(id, res(cpu, 8192), vec![]);
        if let Some(pb::worker_message::Msg::Register(r)) = r.msg.as_mut() {
            r.token = self.join.clone();
        }
        RawWorker::connect_as(&self.master, r).await
    }
}

fn one_cpu() -> pb::TaskSpec {
    let mut s = spec("cloudai/busybox:test");
    s.resources = Some(res(1000, 64));
    s
}

async fn enqueue_many(c: &mut Authed, n: usize) {
    let r = c
        .enqueue_array(pb::EnqueueArrayRequest {
            spec: Some(one_cpu()),
            indices: format!("0-{}", n - 1),
            strict: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.created as usize, n);
}

/// Runs each worker as a fake that finishes every task it is given at once, and sends
/// the id of each assigned task, in the order the workers got them, to the channel.
fn drain(workers: Vec<RawWorker>) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    for mut w in workers {
        let tx = tx.clone();
        let _hb = w.keep_alive();
        let events = w.tx.clone();
        tokio::spawn(async move {
            let _hb = _hb;
            loop {
                let a = w.next_assign().await;
                if tx.send(a.task_id.clone()).is_err() {
                    return;
                }
                // The attempt's first and only event.
                let finished = pb::TaskEvent {
                    task_id: a.task_id,
                    token: a.token,
                    time: Some(cloudai_proto::convert::timestamp(chrono::Utc::now())),
                    seq: 1,
                    event: Some(exited(0)),
                };
                let msg = pb::WorkerMessage {
                    msg: Some(pb::worker_message::Msg::Event(finished)),
                };
                if events.send(msg).await.is_err() {
                    return;
                }
            }
        });
    }
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_submitters_get_half_the_slots_each_though_one_enqueued_first() {
    let cl = Cluster::start(FairShare::Drf).await;
    let mut ana = cl.user("ana").await;
    let mut ben = cl.user("ben").await;
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        workers.push(cl.worker(&format!("w{i}"), CPU).await);
    }
    let mut assigned = drain(workers);

    enqueue_many(&mut ana, PER_SUBMITTER).await;
    // Ana's tasks are already running when Ben's arrive.
    let mut order: Vec<String> = Vec::new();
    while order.len() < 100 {
        order.push(assigned.recv().await.unwrap());
    }
    enqueue_many(&mut ben, PER_SUBMITTER).await;
    let ben_from = order.len();
    let total = 2 * PER_SUBMITTER;
    tokio::time::timeout(Duration::from_secs(240), async {
        while order.len() < total {
            order.push(assigned.recv().await.unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {total} tasks were assigned", order.len()));

    let mut who: HashMap<String, String> = HashMap::new();
    for id in &order {
        let t = cl
            .master
            .store
            .get(id.parse::<TaskId>().unwrap())
            .await
            .unwrap();
        who.insert(id.clone(), t.submitted_by.unwrap());
    }
    let is_ana = |id: &String| who[id] == "ana";
    // From Ben's enqueue until one of them has nothing left queued: both have work.
    let mut left = HashMap::from([
        (
            "ana",
            PER_SUBMITTER - order[..ben_from].iter().filter(|i| is_ana(i)).count(),
        ),
        ("ben", PER_SUBMITTER),
    ]);
    let (mut to_ana, mut to_ben) = (0usize, 0usize);
    for id in &order[ben_from..] {
        // The first assignments after the enqueue may have been placed just before it.
        if is_ana(id) {
            to_ana += 1;
            *left.get_mut("ana").unwrap() -= 1;
        } else {
            to_ben += 1;
            *left.get_mut("ben").unwrap() -= 1;
        }
        if left.values().any(|&n| n == 0) {
            break;
        }
    }
    let both = to_ana + to_ben;
    let ana_share = to_ana as f64 / both as f64;
    eprintln!(
        "fair share: while both had work, {both} tasks were assigned: ana {to_ana} ({:.1}%), \
         ben {to_ben} ({:.1}%); ana had {ben_from} before ben enqueued",
        100.0 * ana_share,
        100.0 * (1.0 - ana_share)
    );
    assert!(
        both >= PER_SUBMITTER,
        "both had work for {both} assignments"
    );
    assert!(
        (0.4..=0.6).contains(&ana_share),
        "ana got {:.1}% of the slots while both had work",
        100.0 * ana_share
    );
    // Every task was assigned once.
    assert_eq!(who.len(), total, "a task was assigned twice");
}

/// A fake worker that reports nothing by itself: its assignments arrive on the
/// receiver (its stream is read all the time), and `finish` ends one.
struct Manual {
    assigns: mpsc::UnboundedReceiver<pb::Assign>,
    tx: mpsc::Sender<pb::WorkerMessage>,
}

impl Manual {
    fn new(mut w: RawWorker) -> Manual {
        let (to, assigns) = mpsc::unbounded_channel();
        let tx = w.tx.clone();
        let hb = w.keep_alive();
        tokio::spawn(async move {
            let _hb = hb;
            while let Ok(Some(m)) = w.rx.message().await {
                if let Some(pb::master_message::Msg::Assign(a)) = m.msg {
                    if to.send(a).is_err() {
                        return;
                    }
                }
            }
        });
        Manual { assigns, tx }
    }

    async fn next(&mut self) -> pb::Assign {
        tokio::time::timeout(Duration::from_secs(10), self.assigns.recv())
            .await
            .expect("an assignment within 10 s")
            .expect("stream open")
    }

    /// True when nothing is assigned for a while.
    async fn idle(&mut self) -> bool {
        tokio::time::timeout(Duration::from_millis(300), self.assigns.recv())
            .await
            .is_err()
    }

    async fn finish(&self, a: &pb::Assign) {
        let finished = pb::TaskEvent {
            task_id: a.task_id.clone(),
            token: a.token,
            time: Some(cloudai_proto::convert::timestamp(chrono::Utc::now())),
            seq: 1,
            event: Some(exited(0)),
        };
        self.tx
            .send(pb::WorkerMessage {
                msg: Some(pb::worker_message::Msg::Event(finished)),
            })
            .await
            .unwrap();
    }
}

async fn enqueue_one(c: &mut Authed) -> String {
    c.enqueue(pb::EnqueueRequest {
        spec: Some(one_cpu()),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .task_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_its_quota_a_submitter_waits_with_reason_quota_and_holds_no_one_up() {
    let cl = Cluster::start(FairShare::Drf).await;
    let mut cap = cl.user("cap").await;
    let mut ben = cl.user("ben").await;
    let quota = Quota {
        running: Some(2),
        ..Quota::default()
    };
    assert!(cl
        .master
        .store
        .set_user_quota("cap", Some(quota))
        .await
        .unwrap());
    let mut w = Manual::new(cl.worker("w", 8_000).await);

    let mut cap_ids = Vec::new();
    for _ in 0..5 {
        cap_ids.push(enqueue_one(&mut cap).await);
    }
    let first = [w.next().await, w.next().await];
    // Ben's tasks are not held up behind Cap's: both start though Cap's are older.
    for _ in 0..2 {
        enqueue_one(&mut ben).await;
    }
    let bens = [w.next().await, w.next().await];
    for a in first.iter().chain(&bens) {
        let t = cl
            .master
            .store
            .get(a.task_id.parse().unwrap())
            .await
            .unwrap();
        let want = if first.contains(a) { "cap" } else { "ben" };
        assert_eq!(t.submitted_by.as_deref(), Some(want));
    }
    // Three of Cap's wait, each with the reason and the limit.
    let waiting = eventually("cap's other tasks to show reason Quota", 10, || {
        let mut cap = cap.clone();
        let ids = cap_ids.clone();
        async move {
            let mut n = Vec::new();
            for id in ids {
                let t = cap
                    .get_task(pb::GetTaskRequest { id })
                    .await
                    .unwrap()
                    .into_inner();
                let quota = pb::WaitReasonCode::Quota as i32;
                if let Some(r) = t.wait_reason.filter(|r| r.code == quota) {
                    n.push(r.detail);
                }
            }
            (n.len() == 3).then_some(n)
        }
    })
    .await;
    assert!(waiting[0].contains("allows 2 running"), "{}", waiting[0]);
    assert!(
        w.idle().await,
        "nothing more is assigned while cap is at its quota"
    );
    // One of Cap's ends: exactly one more of Cap's starts.
    w.finish(&first[0]).await;
    let next = w.next().await;
    assert!(cap_ids.contains(&next.task_id));
    assert!(w.idle().await, "still two of cap's running");
    // The quota lifted (through the store, as another master would): the rest start
    // within the quota cache's refresh, without another event.
    assert!(cl.master.store.set_user_quota("cap", None).await.unwrap());
    w.finish(&bens[0]).await;
    let rest = [w.next().await, w.next().await];
    for a in &rest {
        assert!(cap_ids.contains(&a.task_id));
    }
}
