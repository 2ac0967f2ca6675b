//! The chaos runs' workload and invariants: what each task is meant to do and every check
//! made from the store at the end (terminal once, attempts accounted for, complete output,
//! true times), plus the reservations as the masters show them. The clients that enqueue
//! and cancel through masters that may be dead are in `clients.rs` (re-exported here).

// Shared by chaos.rs and chaos_mongo.rs; each uses a part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use cloudai_proto::pb;
use cloudai_queue::{LogStream, QueueStore, Task, TaskQuery, TaskStatus};

pub use super::clients::*;
use super::cluster::{Cluster, Rng};

/// Lines each task prints.
pub const LINES: usize = 5;
/// Lost attempts each task may have: enough that no task ends lost in a run.
pub const LOST_BUDGET: u32 = 20;
/// How far a recorded run time may be from the container's real one.
pub const TIME_SLACK: Duration = Duration::from_secs(1);

/// What a task is meant to do, and so how it must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Exits 0: ends `succeeded` with exactly one successful attempt.
    Succeed,
    /// Exits 3 every time: ends `failed` after exactly `max_attempts` failed attempts.
    Fail { max_attempts: u32 },
    /// Runs for a minute and is cancelled by the client soon after being enqueued: ends
    /// `cancelled`, never succeeded.
    Cancel,
}

/// The line number `j` of task `i`.
pub fn line(i: usize, j: usize) -> String {
    format!("task {i} line {j}")
}

/// Task `i`'s spec: the same behaviour on both executors (the fake reads the env, Docker
/// runs the command): `LINES` numbered lines, then `run_ms`, then its exit code.
pub fn spec(i: usize, kind: Kind, run_ms: u64) -> pb::TaskSpec {
    let (code, max_attempts, run_ms) = match kind {
        Kind::Succeed => (0, 1, run_ms),
        Kind::Fail { max_attempts } => (3, max_attempts, run_ms),
        Kind::Cancel => (0, 1, 60_000),
    };
    let lines: Vec<String> = (1..=LINES).map(|j| line(i, j)).collect();
    let env = HashMap::from([
        ("CLOUDAI_FAKE_RUN_MS".to_string(), run_ms.to_string()),
        ("CLOUDAI_FAKE_EXIT_CODE".to_string(), code.to_string()),
        ("CLOUDAI_FAKE_STDOUT".to_string(), lines.join("\n")),
    ]);
    pb::TaskSpec {
        image: "cloudai/busybox:test".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "for j in $(seq 1 {LINES}); do echo \"task {i} line $j\"; done; sleep {}; exit {code}",
                run_ms as f64 / 1000.0
            ),
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

/// A random kind: mostly successes, some failures that retry, a few cancels.
pub fn kind_of(rng: &mut Rng) -> Kind {
    match rng.range(0, 10) {
        0 | 1 => Kind::Fail { max_attempts: 2 },
        2 => Kind::Fail { max_attempts: 3 },
        3 if rng.range(0, 3) == 0 => Kind::Cancel,
        _ => Kind::Succeed,
    }
}

/// Every task in the store, with the output of its last attempt.
pub async fn all_tasks(store: &dyn QueueStore) -> Vec<(Task, Vec<String>)> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list(&TaskQuery {
                limit: 500,
                before,
                ..TaskQuery::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        for t in page {
            let attempt = t.attempts.last().map(|a| a.number);
            let chunks = store.read_logs(t.id, None, 100_000).await.unwrap();
            let text: Vec<u8> = chunks
                .iter()
                .filter(|c| c.stream == LogStream::Stdout && Some(c.attempt) == attempt)
                .flat_map(|c| c.data.clone())
                .collect();
            let lines = String::from_utf8_lossy(&text)
                .lines()
                .map(str::to_string)
                .collect();
            out.push((t, lines));
        }
    }
    out
}

/// Every invariant of task `i`; pushes what is wrong with it. Returns the lines of its
/// deciding attempt's output that are missing or repeated.
pub fn check_task(
    i: usize,
    t: &Task,
    output: &[String],
    kind: Kind,
    run_ms: u64,
    problems: &mut Vec<String>,
) -> usize {
    let id = t.id;
    if !t.status.is_terminal() {
        problems.push(format!("task {id} is not terminal: {}", t.status));
    }
    let mut last_token = 0;
    for (n, a) in t.attempts.iter().enumerate() {
        if a.number != n as u32 + 1 {
            problems.push(format!(
                "task {id}: attempt {} has number {}",
                n + 1,
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
        if let (Some(s), Some(f)) = (a.started_at, a.finished_at) {
            if f < s {
                problems.push(format!(
                    "task {id}: attempt {} ends before it starts",
                    a.number
                ));
            }
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
    let mut bad_lines = 0;
    let last = t.attempts.last();
    // The deciding attempt ran to its end: all of its output and its true run time.
    if let (Kind::Succeed | Kind::Fail { .. }, Some(a)) = (kind, last) {
        let want: Vec<String> = (1..=LINES).map(|j| line(i, j)).collect();
        if output != want {
            bad_lines = want.iter().filter(|l| !output.contains(l)).count()
                + output.len().saturating_sub(want.len());
            problems.push(format!(
                "task {id} (attempt {}): output {output:?}, want {want:?}",
                a.number
            ));
        }
        match (a.started_at, a.finished_at) {
            (Some(s), Some(f)) => {
                let ran = (f - s).to_std().unwrap_or_default();
                let real = Duration::from_millis(run_ms);
                if ran > real + TIME_SLACK || ran + TIME_SLACK < real {
                    problems.push(format!(
                        "task {id}: attempt {} ran {real:?} but shows {ran:?} ({s} to {f})",
                        a.number
                    ));
                }
            }
            _ => problems.push(format!("task {id}: the deciding attempt has no start")),
        }
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
            if last.and_then(|a| a.outcome) != Some(TaskStatus::Succeeded) {
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
    bad_lines
}

/// Containers a worker left behind.
pub fn leftover_containers(worker_id: &str) -> Vec<String> {
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

/// What a run found, checked against what was enqueued and acknowledged.
pub struct Verdict {
    pub problems: Vec<String>,
    pub lost: usize,
    pub duplicates: usize,
    pub bad_lines: usize,
    pub attempts: usize,
}

/// Checks every task `kinds[i]` (acknowledged as `acked["chaos-i"]`) in `tasks`.
pub fn judge(
    kinds: &[(Kind, u64)],
    acked: &BTreeMap<String, String>,
    tasks: &[(Task, Vec<String>)],
) -> Verdict {
    let by_id: HashMap<String, &(Task, Vec<String>)> =
        tasks.iter().map(|p| (p.0.id.to_string(), p)).collect();
    let mut v = Verdict {
        problems: Vec::new(),
        lost: 0,
        duplicates: 0,
        bad_lines: 0,
        attempts: tasks.iter().map(|(t, _)| t.attempts.len()).sum(),
    };
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for (t, _) in tasks {
        if let Some(k) = t.spec.idempotency_key.as_deref() {
            *per_key.entry(k).or_default() += 1;
        }
    }
    v.duplicates += per_key.values().filter(|n| **n > 1).count();
    for (i, (kind, run_ms)) in kinds.iter().enumerate() {
        let key = format!("chaos-{i}");
        let Some(id) = acked.get(&key) else {
            v.problems.push(format!("{key} was never acknowledged"));
            continue;
        };
        match by_id.get(id) {
            None => {
                v.lost += 1;
                v.problems.push(format!(
                    "acknowledged task {id} ({key}) is not in the store"
                ));
            }
            Some((t, output)) => {
                if t.status == TaskStatus::Lost || !t.status.is_terminal() {
                    v.lost += 1;
                }
                if t.attempts
                    .iter()
                    .filter(|a| a.outcome == Some(TaskStatus::Succeeded))
                    .count()
                    > 1
                {
                    v.duplicates += 1;
                }
                v.bad_lines += check_task(i, t, output, *kind, *run_ms, &mut v.problems);
            }
        }
    }
    // The workflow's tasks (`dag.rs`) are judged on their own.
    let planned = tasks
        .iter()
        .filter(|(t, _)| {
            t.spec
                .idempotency_key
                .as_deref()
                .map_or(true, |k| k.starts_with("chaos-"))
        })
        .count();
    if planned != kinds.len() {
        v.problems.push(format!(
            "the store holds {planned} tasks of the plan, {} were enqueued",
            kinds.len()
        ));
    }
    v
}

/// The run's seed: `CLOUDAI_CHAOS_SEED` (to replay a run), else the clock.
pub fn seed() -> u64 {
    std::env::var("CLOUDAI_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// A count from the environment variable `var`, else `default`.
pub fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `total` random tasks, each run for `lo..hi` ms: their kinds and run times, and specs.
pub fn plan(
    rng: &mut Rng,
    total: usize,
    lo: u64,
    hi: u64,
) -> (Vec<(Kind, u64)>, Vec<pb::TaskSpec>) {
    (0..total)
        .map(|i| {
            let kind = kind_of(rng);
            let run_ms = rng.range(lo, hi);
            ((kind, run_ms), spec(i, kind, run_ms))
        })
        .unzip()
}

/// Waits until every task is terminal, else fails with the cluster's logs.
pub fn wait_settled(
    rt: &tokio::runtime::Runtime,
    cl: &Cluster,
    total: usize,
    within: Duration,
    seed: u64,
) {
    let deadline = Instant::now() + within;
    while !rt.block_on(settled(&cl.urls(), total)) {
        assert!(
            Instant::now() < deadline,
            "tasks did not all finish within {within:?} of the chaos (seed {seed}); by \
             status: {}\n{}",
            rt.block_on(status_counts(&cl.urls())),
            cl.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Once every task has ended: every reservation must be released (waits up to 10 s for
/// the last releases); returns the leaks as problems.
pub fn reservation_problems(rt: &tokio::runtime::Runtime, url: &str) -> Vec<String> {
    let mut last = None;
    for _ in 0..40 {
        last = rt.block_on(leaked_reservations(url));
        if last.as_ref().is_some_and(Vec::is_empty) {
            return Vec::new();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    match last {
        Some(leaks) => leaks
            .iter()
            .map(|l| format!("leaked reservation: {l}"))
            .collect(),
        None => vec!["the master did not list its workers".into()],
    }
}

/// Stops every worker, then the master, with SIGTERM; an unclean exit is a problem.
pub fn stop_all(cl: &mut Cluster) -> Vec<String> {
    let mut problems = Vec::new();
    for w in &mut cl.workers {
        if w.stop(Duration::from_secs(30)) != Some(0) {
            problems.push(format!("worker {} did not exit cleanly on SIGTERM", w.name));
        }
    }
    for m in &mut cl.masters {
        if m.stop(Duration::from_secs(30)) != Some(0) {
            problems.push(format!("{} did not exit cleanly on SIGTERM", m.name));
        }
    }
    problems
}

/// Reads every task from the store at `uri` (the master has stopped) and judges them.
pub fn judge_store(
    rt: &tokio::runtime::Runtime,
    uri: &str,
    kinds: &[(Kind, u64)],
    acked: &BTreeMap<String, String>,
) -> (Verdict, Vec<(Task, Vec<String>)>) {
    let store = rt
        .block_on(cloudai_queue::open_store(
            uri,
            cloudai_queue::StoreOptions::default(),
        ))
        .expect("the store opens after the master stopped");
    let tasks = rt.block_on(all_tasks(store.as_ref()));
    (judge(kinds, acked, &tasks), tasks)
}

/// Fails the test with the first problems and the cluster's logs, if there are any.
pub fn fail_on(problems: Vec<String>, v: &Verdict, seed: u64, cl: &Cluster) {
    if !problems.is_empty() || v.lost != 0 || v.duplicates != 0 {
        let n = problems.len();
        let first: Vec<String> = problems.into_iter().take(40).collect();
        panic!(
            "chaos found {n} problem(s) (seed {seed}):\n{}\n{}",
            first.join("\n"),
            cl.diagnostics()
        );
    }
}

/// Writes a line past libtest's capture, so that CI's log shows every run's summary.
pub fn announce(line: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
}

/// Polls `f` every 50 ms until it holds (true) or `within` has passed (false).
pub fn eventually_within(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
