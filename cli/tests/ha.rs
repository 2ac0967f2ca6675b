//! Highly available masters on MongoDB, with real processes and real faults: three
//! masters share a fresh database on the Mongo suite's server (SecantusDB in CI, a real
//! replica set when `CLOUDAI_TEST_MONGODB_URI` names one), three workers are given all
//! three URLs, and while about a hundred tasks drain, in turn:
//!
//! 1. the leader is killed with SIGKILL: a standby must lead within the TTL plus 2 s;
//! 2. the next leader is frozen (SIGSTOP) past the TTL, then resumed: it must find itself
//!    deposed and stand by, not fight;
//! 3. the third is stopped with SIGTERM: it hands over, the next leader is in place in
//!    under a second.
//!
//! Killed masters are started again as standbys. At the end the store is judged as in the
//! chaos runs (every task terminal exactly once, attempts accounted for, whole output, true
//! times), and, since no worker died, no container may have run twice: no attempt lost or
//! revoked once it ran, no lease stopped a container, no attempt assigned twice.
//!
//! Runs where the Mongo suite runs (`CLOUDAI_TEST_MONGODB_URI` set, as CI does). A new
//! leader ends every open transaction on the server (`killAllSessions`): other clients'
//! transactions there are retried, as the masters' own are.

#[path = "chaos/check.rs"]
mod check;
#[path = "chaos/clients.rs"]
mod clients;
#[path = "chaos/cluster.rs"]
mod cluster;
#[path = "chaos/group.rs"]
mod group;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cluster::{Cluster, Rng};
use group::{leads, others, wait_leader, MASTER_FLAGS, TTL};

#[test]
fn failover_kill_pause_and_handover_lose_nothing_and_run_nothing_twice() {
    let Ok(base) = std::env::var("CLOUDAI_TEST_MONGODB_URI") else {
        eprintln!(
            "skipped: ha: CLOUDAI_TEST_MONGODB_URI is not set (CI sets it; see .ci/secantus.sh)"
        );
        return;
    };
    let seed = check::seed();
    let total = check::env_count("CLOUDAI_HA_TASKS", 100);
    let mut rng = Rng(seed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();

    let tag = std::process::id();
    // A fresh database on the suite's server (SecantusDB in CI, or a real replica set):
    // nothing here kills the store, so any server will do.
    let uri = group::database(&base, &format!("cloudai_ha_{tag}"));
    let mut cl =
        Cluster::start_group_on(tempfile::tempdir().unwrap(), uri.clone(), 3, MASTER_FLAGS);
    let n = cl.masters.len();
    let (first, _) = wait_leader(
        &rt,
        &cl,
        &[0, 1, 2],
        Instant::now(),
        Duration::from_secs(30),
    );
    for i in 0..3 {
        cl.add_worker(&format!("ha-fake{i}-{tag}"), true, "2");
    }

    let (kinds, specs) = check::plan(&mut rng, total, 200, 1500);
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let enqueuer = rt.spawn(check::enqueue_all(
        cl.urls(),
        specs,
        Duration::from_millis(120),
        acked.clone(),
    ));

    // 1. kill -9 of the leader mid-drain.
    thread::sleep(Duration::from_millis(rng.range(2_000, 4_000)));
    cl.masters[first].kill();
    let killed_at = Instant::now();
    let (second, failover) = wait_leader(&rt, &cl, &others(n, first), killed_at, TTL * 4);
    assert!(
        failover <= TTL + Duration::from_secs(2),
        "a standby took {failover:?} to lead after the leader was killed (TTL {TTL:?})\n{}",
        cl.diagnostics()
    );
    thread::sleep(Duration::from_millis(500));
    cl.masters[first].start();

    // 2. the new leader frozen past the TTL, then resumed.
    thread::sleep(Duration::from_millis(rng.range(2_000, 3_000)));
    let pause_started = Instant::now();
    cl.masters[second].pause(TTL + Duration::from_secs(2));
    let (third, _) = wait_leader(&rt, &cl, &others(n, second), pause_started, TTL * 4);
    let deposed = check::eventually_within(Duration::from_secs(5), || {
        leads(&rt, &cl, second) == Some(false)
    });
    assert!(
        deposed,
        "the resumed leader did not stand down\n{}",
        cl.diagnostics()
    );
    assert_eq!(
        leads(&rt, &cl, third),
        Some(true),
        "the resumed leader took the lead back\n{}",
        cl.diagnostics()
    );
    let stepped_down = cl.masters[second].count_in_log("stopped dispatching");
    assert!(
        stepped_down >= 1,
        "the resumed leader did not say it stopped dispatching\n{}",
        cl.diagnostics()
    );

    // 3. a clean stop of the leader: the hand-over is immediate.
    thread::sleep(Duration::from_millis(rng.range(1_000, 2_000)));
    cl.masters[third].signal("TERM");
    let term_at = Instant::now();
    let (_, handover) = wait_leader(&rt, &cl, &others(n, third), term_at, TTL * 4);
    assert!(
        handover < Duration::from_secs(1),
        "the hand-over after SIGTERM took {handover:?}\n{}",
        cl.diagnostics()
    );
    assert_eq!(
        cl.masters[third].stop(Duration::from_secs(30)),
        Some(0),
        "the stopped leader did not exit cleanly"
    );
    cl.masters[third].start();

    let refused = rt.block_on(enqueuer).expect("every task was acknowledged");
    let acked = acked.lock().unwrap().clone();
    let o = group::settle_and_judge(&rt, &mut cl, &kinds, &acked, seed, |_, _| {});
    check::announce(&format!(
        "ha[mongodb]: tasks={} attempts={} failover={failover:.1?} hand-over={handover:.2?} \
         lost={} duplicates={} lost lines={} (fenced writes={}, enqueues answered \
         UNAVAILABLE={refused}, seed={seed}, {:.0?})",
        o.tasks.len(),
        o.verdict.attempts,
        o.verdict.lost,
        o.verdict.duplicates,
        o.verdict.bad_lines,
        o.fenced,
        started.elapsed()
    ));
    check::fail_on(o.problems, &o.verdict, seed, &cl);
}
