//! Chaos on the MongoDB backend: the same cluster of real processes as `chaos.rs`, on a
//! MongoDB wire server of its own (SecantusDB, started with `.ci/secantus.sh
//! --sync-on-commit`), which is killed with SIGKILL mid-run and restarted on its data, a
//! few times and for up to 10 s, while tasks are enqueued, run and end; the master and a
//! worker die once too. Meanwhile the master answers enqueues with UNAVAILABLE; when an
//! outage outlasts its leader lease it stops leading and acknowledging until the store is
//! back, then leads again under a new epoch (workers whose own lease ran out meanwhile
//! have stopped their containers, which are retried). Every task still ends exactly once
//! with its whole output.
//!
//! The same invariants as `chaos.rs` are checked at the end. SecantusDB is slow (tens of
//! writes a second), so the run keeps to about a hundred tasks. It runs where the Mongo
//! suite runs (`CLOUDAI_TEST_MONGODB_URI` set, as CI does); it never touches that server.

#[path = "chaos/check.rs"]
mod check;
#[path = "chaos/clients.rs"]
mod clients;
#[path = "chaos/cluster.rs"]
mod cluster;
#[path = "chaos/dag.rs"]
mod dag;
#[path = "chaos/secantus.rs"]
mod secantus;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use check::announce;
use cluster::{Cluster, Rng};
use secantus::Server;

#[test]
fn chaos_store_outages_lose_nothing_and_complete_nothing_twice() {
    if std::env::var("CLOUDAI_TEST_MONGODB_URI").is_err() {
        eprintln!(
            "skipped: mongodb chaos: CLOUDAI_TEST_MONGODB_URI is not set (CI sets it; see .ci/secantus.sh)"
        );
        return;
    }
    let seed = check::seed();
    let total = check::env_count("CLOUDAI_CHAOS_MONGO_TASKS", 120);
    let mut rng = Rng(seed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();

    let mut server = Server::start(None, None, None);
    let tag = std::process::id();
    let uri = server.uri(&format!("chaos_{tag}"));
    let mut cl = Cluster::start_master_on(tempfile::tempdir().unwrap(), uri.clone());
    for i in 0..3 {
        cl.add_worker(&format!("chaosm-fake{i}-{tag}"), true, "2");
    }
    let docker_id = format!("chaosm-docker-{tag}");
    cl.add_worker(&docker_id, false, "0.5");

    let (kinds, specs) = check::plan(&mut rng, total, 100, 1500);
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let enqueuer = rt.spawn(check::enqueue_all(
        cl.url(),
        specs,
        Duration::from_millis(150),
        acked.clone(),
    ));
    // The workflow goes through the same kills; its own keys share the acked map.
    let nodes = dag::plan();
    let dag_total = nodes.len();
    let workflow = rt.spawn(dag::enqueue(cl.url(), nodes, acked.clone()));
    let array = rt.spawn(dag::enqueue_array(cl.url(), acked.clone()));

    // Store outages of 3-10 s (one of 10 s), with the master and a worker killed in
    // between (never while the store is down: a master cannot start without it).
    let mut downtime = Duration::ZERO;
    for (n, outage_ms) in [10_000, rng.range(3_000, 8_000), rng.range(3_000, 6_000)]
        .into_iter()
        .enumerate()
    {
        thread::sleep(Duration::from_millis(rng.range(2_000, 4_000)));
        server.kill();
        thread::sleep(Duration::from_millis(outage_ms));
        server.restart();
        downtime += Duration::from_millis(outage_ms);
        thread::sleep(Duration::from_millis(rng.range(1_000, 3_000)));
        match n {
            0 => {
                cl.masters[0].kill();
                thread::sleep(Duration::from_millis(rng.range(200, 1_000)));
                cl.masters[0].start();
            }
            1 => {
                let w = rng.range(0, cl.workers.len() as u64) as usize;
                cl.workers[w].kill();
                thread::sleep(Duration::from_millis(rng.range(200, 1_000)));
                cl.workers[w].start();
            }
            _ => {}
        }
    }
    let refused = rt.block_on(enqueuer).expect("every task was acknowledged");
    rt.block_on(workflow)
        .expect("every workflow task was acknowledged");
    rt.block_on(array).expect("the array was acknowledged");

    check::wait_settled(
        &rt,
        &cl,
        total + dag_total + dag::ARRAY_SIZE,
        Duration::from_secs(240),
        seed,
    );
    let mut problems = check::reservation_problems(&rt, &cl.urls());
    let lease_stops: usize = cl
        .workers
        .iter()
        .map(|w| w.count_in_log("lease ended: stopped"))
        .sum();
    let unavailable = cl.masters[0].count_in_log("store write failed, retrying");
    problems.extend(check::stop_all(&mut cl));
    let acked = acked.lock().unwrap().clone();
    let (mut verdict, tasks) = check::judge_store(&rt, &uri, &kinds, &acked);
    problems.append(&mut verdict.problems);
    problems.extend(dag::judge(&dag::plan(), &acked, &tasks));
    problems.extend(dag::judge_array(&acked, &tasks));
    let left = check::leftover_containers(&docker_id);
    if !left.is_empty() {
        problems.push(format!("containers left behind: {left:?}"));
    }
    let kills = cl.masters[0].kills + cl.workers.iter().map(|w| w.kills).sum::<u32>();
    announce(&format!(
        "chaos[mongodb]: tasks={} kills={kills} store outages={} ({downtime:.0?} down) retries={} \
         lost={} duplicates={} lost lines={} (enqueues answered UNAVAILABLE={refused}, store writes retried={unavailable}, lease stops={lease_stops}, \
         seed={seed}, {:.0?})",
        tasks.len(),
        server.kills,
        verdict.attempts - tasks.len(),
        verdict.lost,
        verdict.duplicates,
        verdict.bad_lines,
        started.elapsed()
    ));
    check::fail_on(problems, &verdict, seed, &cl);
}
