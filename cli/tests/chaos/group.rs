//! Checks of a group of masters: who leads by each master's own account, and what a
//! failover must never do to the workers' containers.

// Shared by the HA tests; each uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use cloudai_proto::pb;
use cloudai_queue::{Task, TaskStatus};

use super::check;
use super::cluster::Cluster;

/// The leader lease of the HA tests' masters: short, so the runs stay short.
pub const TTL: Duration = Duration::from_secs(3);
/// A 3 s lease renewed every 0.5 s; heartbeats every second and a worker dead after 12 s
/// missed: its lease (8 s, renewed twice a second) outlasts a failover (about the TTL).
pub const MASTER_FLAGS: &[&str] = &[
    "--leader-ttl",
    "3s",
    "--leader-renew",
    "500ms",
    "--heartbeat-interval",
    "1s",
    "--dead-after",
    "12",
];

/// What master `i` says of itself: `Some(true)` when it leads, `Some(false)` when it
/// stands by, `None` when it does not answer.
pub fn leads(rt: &tokio::runtime::Runtime, cl: &Cluster, i: usize) -> Option<bool> {
    leads_at(rt, &cl.url_of(i))
}

/// The same for the master at `url`.
pub fn leads_at(rt: &tokio::runtime::Runtime, url: &str) -> Option<bool> {
    rt.block_on(async {
        let mut c = check::client(url).await;
        let r = tokio::time::timeout(
            Duration::from_secs(1),
            c.master_status(pb::MasterStatusRequest {}),
        )
        .await
        .ok()?
        .ok()?
        .into_inner();
        Some(r.role == "leader")
    })
}

/// Waits until one of `among` says it leads; returns it and how long that took.
pub fn wait_leader(
    rt: &tokio::runtime::Runtime,
    cl: &Cluster,
    among: &[usize],
    since: Instant,
    within: Duration,
) -> (usize, Duration) {
    loop {
        for &i in among {
            if leads(rt, cl, i) == Some(true) {
                return (i, since.elapsed());
            }
        }
        assert!(
            since.elapsed() < within,
            "no master among {among:?} led within {within:?}\n{}",
            cl.diagnostics()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

pub fn others(n: usize, but: usize) -> Vec<usize> {
    (0..n).filter(|&i| i != but).collect()
}

/// Attempts each worker was sent, by `(task, token)`, from the workers' logs.
pub fn assignments(cl: &Cluster) -> HashMap<(String, String), usize> {
    let mut seen = HashMap::new();
    for w in &cl.workers {
        let log = std::fs::read_to_string(cl.dir.path().join(format!("{}.log", w.name)))
            .unwrap_or_default();
        for line in log.lines().filter(|l| l.contains(" assigned ")) {
            let field = |k: &str| {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix(k))
                    .unwrap_or_default()
                    .to_string()
            };
            *seen
                .entry((field("task_id="), field("token=")))
                .or_default() += 1;
        }
    }
    seen
}

/// What must not happen to containers when no worker died: a lease that ran out and
/// stopped them, a revoke of an attempt its worker still owned, an attempt sent twice.
pub fn ran_once_problems(cl: &Cluster) -> Vec<String> {
    let mut problems = Vec::new();
    let lease_stops: usize = cl
        .workers
        .iter()
        .map(|w| w.count_in_log("lease ended: stopped"))
        .sum();
    if lease_stops > 0 {
        problems.push(format!(
            "{lease_stops} lease end(s) stopped containers during the failovers"
        ));
    }
    let revokes: usize = cl
        .masters
        .iter()
        .map(|m| m.count_in_log("revoking attempts"))
        .sum();
    if revokes > 0 {
        problems.push(format!(
            "{revokes} revoke(s) of attempts workers still owned"
        ));
    }
    for ((task, token), times) in assignments(cl) {
        if times > 1 {
            problems.push(format!(
                "attempt {token} of task {task} was sent to a worker {times} times"
            ));
        }
    }
    problems
}

/// Attempts lost after their container started (the failover stopped or forgot them).
pub fn lost_after_start(tasks: &[(Task, Vec<String>)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (t, _) in tasks {
        for a in &t.attempts {
            if a.outcome == Some(TaskStatus::Lost) && a.started_at.is_some() {
                problems.push(format!(
                    "task {}: attempt {} was lost after its container started ({:?})",
                    t.id, a.number, a.error
                ));
            }
        }
    }
    problems
}

/// What an HA run ends with.
pub struct Outcome {
    pub problems: Vec<String>,
    pub verdict: check::Verdict,
    pub tasks: Vec<(Task, Vec<String>)>,
    /// Leader writes the store refused by the epoch (a deposed leader's), from the logs.
    pub fenced: usize,
}

/// Waits until every task ended, checks what the masters show (reservations) and what no
/// failover may do (`ran_once_problems`), lets `before_stop` look at the live cluster,
/// stops everything, and judges the store as the chaos runs do.
pub fn settle_and_judge(
    rt: &tokio::runtime::Runtime,
    cl: &mut Cluster,
    kinds: &[(check::Kind, u64)],
    acked: &std::collections::BTreeMap<String, String>,
    seed: u64,
    before_stop: impl FnOnce(&Cluster, &mut Vec<String>),
) -> Outcome {
    check::wait_settled(rt, cl, kinds.len(), Duration::from_secs(240), seed);
    let mut problems = check::reservation_problems(rt, &cl.urls());
    problems.extend(ran_once_problems(cl));
    before_stop(cl, &mut problems);
    let fenced = cl
        .masters
        .iter()
        .map(|m| m.count_in_log("write fenced"))
        .sum();
    problems.extend(check::stop_all(cl));
    let (mut verdict, tasks) = check::judge_store(rt, &cl.store_uri(), kinds, acked);
    problems.append(&mut verdict.problems);
    problems.extend(lost_after_start(&tasks));
    Outcome {
        problems,
        verdict,
        tasks,
        fenced,
    }
}

/// `uri` (a `mongodb://` URI) with its database replaced by `db`, options kept.
pub fn database(uri: &str, db: &str) -> String {
    let (scheme, rest) = uri.split_once("://").expect("a mongodb:// URI");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hosts, tail) = rest.split_at(end);
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{scheme}://{hosts}/{db}{query}")
}
