//! Chaos: a master and several workers run as real `cloudai` processes while a few hundred
//! short tasks and a workflow of dependent tasks (two diamonds, `chaos/dag.rs`) go
//! through them, and meanwhile workers and the master are killed with
//! SIGKILL or frozen with SIGSTOP at random (seeded) moments and restarted, often while
//! tasks end. Most workers use the fake executor; one runs real containers through Docker.
//!
//! At the end: every reservation was released (each worker's free capacity is whole, as
//! the master shows it); then, from the store itself: every task that was acknowledged
//! exists once and is terminal, no task succeeded twice, attempts are accounted for (each
//! has an outcome, numbers and tokens increase), failing tasks used exactly their attempts,
//! the deciding attempt's output is every numbered line once and in order, its recorded run
//! time is within 1 s of the real one, and no container of the Docker worker is left.
//! `chaos_mongo.rs` runs the same checks on MongoDB while the store server is killed.
//!
//! `CLOUDAI_CHAOS_SEED=N` replays a run's kill schedule (the seed is in the summary line);
//! `CLOUDAI_CHAOS_TASKS=N` changes the number of tasks (default 300).

#[path = "chaos/check.rs"]
mod check;
#[path = "chaos/clients.rs"]
mod clients;
#[path = "chaos/cluster.rs"]
mod cluster;
#[path = "chaos/dag.rs"]
mod dag;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use check::announce;
use cluster::{Cluster, Rng};

/// How long workers and the master are killed and restarted.
const CHAOS_FOR: Duration = Duration::from_secs(25);
/// How long the cluster may take to finish every task once the chaos stops.
const SETTLE_WITHIN: Duration = Duration::from_secs(90);
/// Fake workers; one Docker worker comes on top.
const FAKE_WORKERS: usize = 4;

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
    let seed = check::seed();
    let total = check::env_count("CLOUDAI_CHAOS_TASKS", 300);
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

    let (kinds, specs) = check::plan(&mut rng, total, 30, 400);
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let enqueuer = rt.spawn(check::enqueue_all(
        cl.url(),
        specs,
        Duration::from_millis(60),
        acked.clone(),
    ));
    // The workflow goes through the same kills; its own keys share the acked map.
    let nodes = dag::plan();
    let dag_total = nodes.len();
    let workflow = rt.spawn(dag::enqueue(cl.url(), nodes, acked.clone()));
    let array = rt.spawn(dag::enqueue_array(cl.url(), acked.clone()));

    // Chaos: kill or freeze something every 0.5-2 s, bring it back 0.1-1.2 s later.
    let chaos_end = Instant::now() + CHAOS_FOR;
    let mut last_master_kill = Instant::now();
    let mut master_pauses = 0;
    while Instant::now() < chaos_end {
        thread::sleep(Duration::from_millis(rng.range(500, 2000)));
        let down = Duration::from_millis(rng.range(100, 1200));
        // The master dies at least every 8 s, sometimes sooner.
        let since = last_master_kill.elapsed();
        if since > Duration::from_secs(8)
            || (rng.range(0, 10) < 2 && since > Duration::from_secs(4))
        {
            if rng.range(0, 4) == 0 {
                // Frozen: its streams stay open, nothing is answered, leases end.
                cl.masters[0].pause(down + Duration::from_millis(800));
                master_pauses += 1;
            } else {
                cl.masters[0].kill();
                thread::sleep(down);
                cl.masters[0].start();
            }
            last_master_kill = Instant::now();
        } else {
            let w = rng.range(0, cl.workers.len() as u64) as usize;
            match rng.range(0, 20) {
                // Frozen past the dead timeout, then thawed: it still runs its attempts.
                0..=4 => cl.workers[w].pause(Duration::from_millis(rng.range(800, 2500))),
                // The master and a worker die together.
                5..=7 => {
                    cl.masters[0].kill();
                    cl.workers[w].kill();
                    thread::sleep(down);
                    cl.masters[0].start();
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
    let _refused = rt.block_on(enqueuer).expect("every task was acknowledged");
    rt.block_on(workflow)
        .expect("every workflow task was acknowledged");
    rt.block_on(array).expect("the array was acknowledged");

    check::wait_settled(
        &rt,
        &cl,
        total + dag_total + dag::ARRAY_SIZE,
        SETTLE_WITHIN,
        seed,
    );
    let mut problems = check::reservation_problems(&rt, &cl.urls());
    problems.extend(check::stop_all(&mut cl));
    let acked = acked.lock().unwrap().clone();
    let (mut verdict, tasks) = check::judge_store(&rt, &cl.store_uri(), &kinds, &acked);
    problems.append(&mut verdict.problems);
    problems.extend(dag::judge(&dag::plan(), &acked, &tasks));
    problems.extend(dag::judge_array(&acked, &tasks));
    let left = check::leftover_containers(&docker_id);
    if !left.is_empty() {
        problems.push(format!("containers left behind: {left:?}"));
    }
    let on_docker = tasks
        .iter()
        .flat_map(|(t, _)| &t.attempts)
        .filter(|a| a.worker_id == docker_id)
        .count();
    if on_docker == 0 {
        problems.push("no attempt ran on the docker worker".to_string());
    }

    let kills = cl.masters[0].kills + cl.workers.iter().map(|w| w.kills).sum::<u32>();
    let pauses: u32 = cl.workers.iter().map(|w| w.pauses).sum();
    let revokes = cl.masters[0].count_in_log("revoking attempts");
    let stale = cl.masters[0].count_in_log("stale report");
    let late = cl.masters[0].count_in_log("late result");
    let lease_stops: usize = cl
        .workers
        .iter()
        .map(|w| w.count_in_log("lease ended: stopped"))
        .sum();
    announce(&format!(
        "chaos[sqlite]: tasks={} kills={kills} master pauses={master_pauses} store outages=0 \
         retries={} lost={} duplicates={} lost lines={} (master kills={}, worker pauses={pauses}, \
         revokes={revokes}, lease stops={lease_stops}, late results={late}, stale reports \
         rejected={stale}, docker attempts={on_docker}, seed={seed}, {:.0?})",
        tasks.len(),
        verdict.attempts - tasks.len(),
        verdict.lost,
        verdict.duplicates,
        verdict.bad_lines,
        cl.masters[0].kills,
        started.elapsed()
    ));
    check::fail_on(problems, &verdict, seed, &cl);
}
