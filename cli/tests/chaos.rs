//! Chaos: a master and several workers run as real `cloudai` processes while a few hundred
//! short tasks go through them, and meanwhile workers and the master are killed with
//! SIGKILL at random (seeded) moments and restarted. Most workers use the fake executor;
//! one runs real containers through Docker.
//!
//! At the end, from the store itself (opened once the master has stopped): every task that
//! was acknowledged exists once and is terminal, no task succeeded twice, attempts are
//! accounted for (each has an outcome, numbers and tokens increase), failing tasks used
//! exactly their attempts, and no container of the Docker worker is left.
//!
//! `CLOUDAI_CHAOS_SEED=N` replays a run's kill schedule (the seed is in the summary line);
//! `CLOUDAI_CHAOS_TASKS=N` changes the number of tasks (default 300).

#[path = "chaos/cluster.rs"]
mod cluster;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cloudai_proto::pb;
use cloudai_proto::pb::client_service_client::ClientServiceClient;
use cloudai_queue::{StoreOptions, Task, TaskQuery, TaskStatus};
use tonic::transport::{Channel, Endpoint};

use cluster::{Cluster, Rng};

/// How long workers and the master are killed and restarted.
const CHAOS_FOR: Duration = Duration::from_secs(25);
/// How long the cluster may take to finish every task once the chaos stops.
const SETTLE_WITHIN: Duration = Duration::from_secs(90);
/// Fake workers; one Docker worker comes on top.
const FAKE_WORKERS: usize = 4;
/// Lost attempts each task may have: enough that no task ends lost in this run.
const LOST_BUDGET: u32 = 20;

/// What a task is meant to do, and so how it must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Exits 0 at once: ends `succeeded` with exactly one successful attempt.
    Succeed,
    /// Exits 3 every time: ends `failed` after exactly `max_attempts` failed attempts.
    Fail { max_attempts: u32 },
    /// Runs for a minute and is cancelled by the client soon after being enqueued: ends
    /// `cancelled`, never succeeded.
    Cancel,
}

fn spec(i: usize, kind: Kind, run_ms: u64) -> pb::TaskSpec {
    let (code, max_attempts, run_ms) = match kind {
        Kind::Succeed => (0, 1, run_ms),
        Kind::Fail { max_attempts } => (3, max_attempts, run_ms),
        Kind::Cancel => (0, 1, 60_000),
    };
    // The same behaviour on both executors: the fake reads the env, Docker runs the command.
    let env = HashMap::from([
        ("CLOUDAI_FAKE_RUN_MS".to_string(), run_ms.to_string()),
        ("CLOUDAI_FAKE_EXIT_CODE".to_string(), code.to_string()),
        ("CLOUDAI_FAKE_STDOUT".to_string(), format!("task {i}")),
    ]);
    pb::TaskSpec {
        image: "cloudai/busybox:test".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            format!("echo task {i}; sleep {}; exit {code}", run_ms / 1000),
        ],
        env,
        resources: Some(pb::Resources {
            cpu_millis: 250,
            memory_bytes: 32 << 20,
            gpus: 0,
            disk_bytes: 0,
        }),
        max_attempts,
        max_lost_retries: Some(LOST_BUDGET),
        idempotency_key: Some(format!("chaos-{i}")),
        ..Default::default()
    }
}

fn kind_of(rng: &mut Rng) -> Kind {
    match rng.range(0, 10) {
        0 | 1 => Kind::Fail { max_attempts: 2 },
        2 => Kind::Fail { max_attempts: 3 },
        3 if rng.range(0, 3) == 0 => Kind::Cancel,
        _ => Kind::Succeed,
    }
}

async fn client(url: &str) -> ClientServiceClient<Channel> {
    let ch = Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    ClientServiceClient::new(ch)
}

/// Enqueues every task, retrying each (same idempotency key) until the master answers:
/// the master may be dead at any moment. Returns key → acknowledged task id.
async fn enqueue_all(
    url: String,
    specs: Vec<pb::TaskSpec>,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
) {
    let mut c = client(&url).await;
    let mut cancels = Vec::new();
    for s in specs {
        let key = s.idempotency_key.clone().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match c
                .enqueue(pb::EnqueueRequest {
                    spec: Some(s.clone()),
                })
                .await
            {
                Ok(r) => {
                    let id = r.into_inner().task_id;
                    acked.lock().unwrap().insert(key, id.clone());
                    if s.env.get("CLOUDAI_FAKE_RUN_MS").map(String::as_str) == Some("60000") {
                        cancels.push(tokio::spawn(cancel_later(c.clone(), id)));
                    }
                    break;
                }
                Err(e) if Instant::now() > deadline => panic!("enqueue {key} never succeeded: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    for c in cancels {
        c.await.expect("cancel task");
    }
}

/// Cancels a task a little after it was enqueued (queued, assigned or running by then),
/// retrying while the master is down.
async fn cancel_later(mut c: ClientServiceClient<Channel>, id: String) {
    tokio::time::sleep(Duration::from_millis(
        300 + (id.as_bytes()[35] as u64 % 16) * 150,
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c
            .cancel_task(pb::CancelTaskRequest { id: id.clone() })
            .await
        {
            Ok(_) => return,
            Err(e) if e.code() == tonic::Code::FailedPrecondition => return,
            Err(e) if Instant::now() > deadline => panic!("cancel {id} never succeeded: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// True once every task is terminal, by the master's own count.
async fn settled(url: &str, total: usize) -> bool {
    let mut c = client(url).await;
    let Ok(stats) = c.queue_stats(pb::QueueStatsRequest {}).await else {
        return false;
    };
    let counts = stats.into_inner().counts;
    let sum: u64 = counts.iter().map(|c| c.count).sum();
    let live: u64 = counts
        .iter()
        .filter(|c| {
            matches!(
                pb::TaskStatus::try_from(c.status),
                Ok(pb::TaskStatus::Queued | pb::TaskStatus::Assigned | pb::TaskStatus::Running)
            )
        })
        .map(|c| c.count)
        .sum();
    sum == total as u64 && live == 0
}

async fn all_tasks(uri: &str) -> Vec<Task> {
    let store = cloudai_queue::open_store(uri, StoreOptions::default())
        .await
        .expect("the store opens after the master stopped");
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list(&TaskQuery {
                statuses: vec![],
                worker_id: None,
                limit: 500,
                before,
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        out.extend(page);
    }
    out
}

/// Every invariant of one task; returns what is wrong with it.
fn check_task(t: &Task, kind: Kind, problems: &mut Vec<String>) {
    let id = t.id;
    if !t.status.is_terminal() {
        problems.push(format!("task {id} is not terminal: {}", t.status));
    }
    let mut last_token = 0;
    for (i, a) in t.attempts.iter().enumerate() {
        if a.number != i as u32 + 1 {
            problems.push(format!(
                "task {id}: attempt {} has number {}",
                i + 1,
                a.number
            ));
        }
        if a.token <= last_token {
            problems.push(format!("task {id}: token {} does not increase", a.token));
        }
        last_token = a.token;
        if a.outcome.is_none() || a.finished_at.is_none() {
            problems.push(format!("task {id}: attempt {} has no outcome", a.number));
        }
    }
    let count = |s: TaskStatus| t.attempts.iter().filter(|a| a.outcome == Some(s)).count();
    let lost = count(TaskStatus::Lost);
    if lost as u32 > LOST_BUDGET {
        problems.push(format!("task {id}: {lost} lost attempts exceed the budget"));
    }
    let others = t.attempts.len()
        - lost
        - count(TaskStatus::Succeeded)
        - count(TaskStatus::Failed)
        - count(TaskStatus::Cancelled);
    if others != 0 {
        problems.push(format!(
            "task {id}: {others} attempts ended neither succeeded, failed, cancelled nor lost"
        ));
    }
    match kind {
        Kind::Succeed => {
            if t.status != TaskStatus::Succeeded || count(TaskStatus::Succeeded) != 1 {
                problems.push(format!(
                    "task {id} should have succeeded once: {} with {} successes",
                    t.status,
                    count(TaskStatus::Succeeded)
                ));
            }
            if t.attempts.last().and_then(|a| a.outcome) != Some(TaskStatus::Succeeded) {
                problems.push(format!("task {id}: the success is not the last attempt"));
            }
        }
        Kind::Fail { max_attempts } => {
            if t.status != TaskStatus::Failed || count(TaskStatus::Failed) != max_attempts as usize
            {
                problems.push(format!(
                    "task {id} should have failed after {max_attempts} attempts: {} with {} failures",
                    t.status,
                    count(TaskStatus::Failed)
                ));
            }
            if count(TaskStatus::Succeeded) + count(TaskStatus::Cancelled) != 0 {
                problems.push(format!(
                    "task {id} that always fails has a success or cancel"
                ));
            }
            let errors_kept = t
                .attempts
                .iter()
                .filter(|a| a.outcome == Some(TaskStatus::Failed))
                .all(|a| a.exit_code == Some(3) && a.error.is_some());
            if !errors_kept {
                problems.push(format!(
                    "task {id}: a failed attempt lost its exit code or cause"
                ));
            }
        }
        Kind::Cancel => {
            if t.status != TaskStatus::Cancelled {
                problems.push(format!("task {id} should be cancelled: {}", t.status));
            }
            if count(TaskStatus::Succeeded) + count(TaskStatus::Failed) != 0 {
                problems.push(format!("cancelled task {id} has a success or failure"));
            }
        }
    }
}

fn leftover_containers(worker_id: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=cloudai.worker={worker_id}"))
        .output()
        .expect("docker cli runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn chaos_kills_lose_nothing_and_complete_nothing_twice() {
    let docker_ok = std::process::Command::new("docker")
        .args(["image", "inspect", "cloudai/busybox:test"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        docker_ok,
        "the chaos test needs the docker daemon and the cloudai/busybox:test image (sample_task/build.sh)"
    );
    let seed = std::env::var("CLOUDAI_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let total: usize = std::env::var("CLOUDAI_CHAOS_TASKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut rng = Rng(seed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();

    let mut cl = Cluster::start_master();
    let tag = std::process::id();
    for i in 0..FAKE_WORKERS {
        cl.add_worker(&format!("chaos-fake{i}-{tag}"), true, "2");
    }
    let docker_id = format!("chaos-docker-{tag}");
    cl.add_worker(&docker_id, false, "0.5");

    let mut kinds = Vec::new();
    let mut specs = Vec::new();
    for i in 0..total {
        let kind = kind_of(&mut rng);
        kinds.push(kind);
        specs.push(spec(i, kind, rng.range(30, 400)));
    }
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let enqueuer = rt.spawn(enqueue_all(cl.url(), specs, acked.clone()));

    // Chaos: kill something every 0.5-2 s, restart it 0.1-1.2 s later.
    let chaos_end = Instant::now() + CHAOS_FOR;
    let mut last_master_kill = Instant::now();
    while Instant::now() < chaos_end {
        thread::sleep(Duration::from_millis(rng.range(500, 2000)));
        let down = Duration::from_millis(rng.range(100, 1200));
        // The master dies at least every 8 s, sometimes sooner.
        let since = last_master_kill.elapsed();
        if since > Duration::from_secs(8)
            || (rng.range(0, 10) < 2 && since > Duration::from_secs(4))
        {
            cl.master.kill();
            thread::sleep(down);
            cl.master.start();
            last_master_kill = Instant::now();
        } else {
            let w = rng.range(0, cl.workers.len() as u64) as usize;
            match rng.range(0, 20) {
                // Frozen past the dead timeout, then thawed: it still runs its attempts.
                0..=4 => cl.workers[w].pause(Duration::from_millis(rng.range(800, 2500))),
                // The master and a worker die together.
                5..=7 => {
                    cl.master.kill();
                    cl.workers[w].kill();
                    thread::sleep(down);
                    cl.master.start();
                    thread::sleep(Duration::from_millis(rng.range(0, 500)));
                    cl.workers[w].start();
                    last_master_kill = Instant::now();
                }
                _ => {
                    cl.workers[w].kill();
                    thread::sleep(down);
                    cl.workers[w].start();
                }
            }
        }
    }
    rt.block_on(enqueuer).expect("every task was acknowledged");

    let settle_deadline = Instant::now() + SETTLE_WITHIN;
    while !rt.block_on(settled(&cl.url(), total)) {
        assert!(
            Instant::now() < settle_deadline,
            "tasks did not all finish within {SETTLE_WITHIN:?} of the chaos (seed {seed})\n{}",
            cl.diagnostics()
        );
        thread::sleep(Duration::from_millis(250));
    }

    let mut problems = Vec::new();
    for w in &mut cl.workers {
        if w.stop(Duration::from_secs(30)) != Some(0) {
            problems.push(format!("worker {} did not exit cleanly on SIGTERM", w.name));
        }
    }
    if cl.master.stop(Duration::from_secs(30)) != Some(0) {
        problems.push("master did not exit cleanly on SIGTERM".to_string());
    }

    let tasks = rt.block_on(all_tasks(&cl.store_uri()));
    let acked = acked.lock().unwrap().clone();
    let by_id: HashMap<String, &Task> = tasks.iter().map(|t| (t.id.to_string(), t)).collect();
    let mut lost = 0usize;
    let mut duplicates = 0usize;
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for t in &tasks {
        if let Some(k) = t.spec.idempotency_key.as_deref() {
            *per_key.entry(k).or_default() += 1;
        }
    }
    duplicates += per_key.values().filter(|n| **n > 1).count();
    for (i, kind) in kinds.iter().enumerate() {
        let key = format!("chaos-{i}");
        let Some(id) = acked.get(&key) else {
            problems.push(format!("{key} was never acknowledged"));
            continue;
        };
        match by_id.get(id) {
            None => {
                lost += 1;
                problems.push(format!(
                    "acknowledged task {id} ({key}) is not in the store"
                ));
            }
            Some(t) => {
                if t.status == TaskStatus::Lost || !t.status.is_terminal() {
                    lost += 1;
                }
                if t.attempts
                    .iter()
                    .filter(|a| a.outcome == Some(TaskStatus::Succeeded))
                    .count()
                    > 1
                {
                    duplicates += 1;
                }
                check_task(t, *kind, &mut problems);
            }
        }
    }
    if tasks.len() != total {
        problems.push(format!(
            "the store holds {} tasks, {total} were enqueued",
            tasks.len()
        ));
    }
    let left = leftover_containers(&docker_id);
    if !left.is_empty() {
        problems.push(format!("containers left behind: {left:?}"));
    }
    let on_docker = tasks
        .iter()
        .flat_map(|t| &t.attempts)
        .filter(|a| a.worker_id == docker_id)
        .count();
    if on_docker == 0 {
        problems.push("no attempt ran on the docker worker".to_string());
    }

    let attempts: usize = tasks.iter().map(|t| t.attempts.len()).sum();
    let kills = cl.master.kills + cl.workers.iter().map(|w| w.kills).sum::<u32>();
    let pauses: u32 = cl.workers.iter().map(|w| w.pauses).sum();
    let revokes = cl.master.count_in_log("revoking attempts");
    let stale = cl.master.count_in_log("stale");
    // Written to the process's stderr directly, past libtest's capture, so that CI's log
    // shows the summary of every run, not only of failing ones.
    let summary = format!(
        "chaos: tasks={} kills={kills} retries={} lost={lost} duplicates={duplicates} \
         (master kills={}, pauses={pauses}, revokes={revokes}, stale reports rejected={stale}, docker attempts={on_docker}, seed={seed}, {:.0?})",
        tasks.len(),
        attempts - tasks.len(),
        cl.master.kills,
        started.elapsed()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{summary}\n").as_bytes());
    if !problems.is_empty() || lost != 0 || duplicates != 0 {
        problems.truncate(40);
        panic!(
            "chaos found {} problem(s) (seed {seed}):\n{}\n{}",
            problems.len(),
            problems.join("\n"),
            cl.diagnostics()
        );
    }
}
