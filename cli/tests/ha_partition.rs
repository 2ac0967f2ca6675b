//! The leader cut off from the store, not killed: it runs in a network namespace of its
//! own with two links to the host, one to the store and one its workers use, and only the
//! store link is cut (`ip link set ... down`) while tasks drain. The old leader must stop
//! dispatching and say so before a standby takes the lead; once the link heals, every
//! write it still attempts is refused by the epoch (counted), and it stands by rather than
//! fighting. At the end the store is judged as in the chaos runs, and since no worker died
//! no container may have run twice.
//!
//! Needs root (`ip netns`) and the Mongo suite's server variable, as CI has; elsewhere it
//! says it skipped. It uses a SecantusDB of its own, listening on every address so that
//! the namespace reaches it through its link.

#[path = "chaos/check.rs"]
mod check;
#[path = "chaos/clients.rs"]
mod clients;
#[path = "chaos/cluster.rs"]
mod cluster;
#[path = "chaos/group.rs"]
mod group;
#[path = "chaos/netns.rs"]
mod netns;
#[path = "chaos/secantus.rs"]
mod secantus;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cluster::{master_args, master_port, Cluster, Proc, Rng};
use group::{leads, leads_at, wait_leader, MASTER_FLAGS, TTL};
use netns::{is_root, Netns};
use secantus::Server;

/// The time at the start of the first line of `log` containing `needle`.
fn logged_at(log: &str, needle: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    log.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|t| t.parse().ok())
}

#[test]
fn a_leader_cut_off_from_the_store_stops_before_another_leads_and_writes_nothing_stale() {
    if !is_root() || std::env::var("CLOUDAI_TEST_MONGODB_URI").is_err() {
        eprintln!(
            "skipped: ha partition: needs root for ip netns and CLOUDAI_TEST_MONGODB_URI (CI has both)"
        );
        return;
    }
    let seed = check::seed();
    let total = check::env_count("CLOUDAI_HA_PARTITION_TASKS", 60);
    let mut rng = Rng(seed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();

    let tag = std::process::id();
    let n = tag % 200 + 20;
    let mut ns = Netns::create(&format!("cai-hap-{tag}"));
    let store_link = ns.add_link(&format!("cahs{n}"), &format!("10.232.{n}"));
    let worker_link = ns.add_link(&format!("cahw{n}"), &format!("10.233.{n}"));
    let server = Server::start(None, None, Some("0.0.0.0"));
    let db = format!("hap_{tag}");
    let uri = server.uri(&db);
    // directConnection: the server names itself 127.0.0.1, which inside the namespace is
    // the namespace's own loopback.
    let far_uri = format!(
        "mongodb://{}:{}/{db}?directConnection=true",
        store_link.host_ip, server.port
    );

    let dir = tempfile::tempdir().unwrap();
    let cut_port = master_port();
    let cut_url = format!("http://{}:{cut_port}", worker_link.ns_ip);
    let listen = format!("0.0.0.0:{cut_port}");
    let args: Vec<String> = [
        "master",
        "--no-shell",
        // Reached over its links, not loopback: without TLS or tokens, as in a lab.
        "--insecure",
        "--listen",
        &listen,
        "--store",
        &far_uri,
        "--advertise-url",
        &cut_url,
    ]
    .iter()
    .chain(MASTER_FLAGS)
    .map(|a| a.to_string())
    .collect();
    // Started first and alone, so that it leads.
    let cut_off = Proc::new_in("master1", Some(&ns.name), args, dir.path());
    let led = check::eventually_within(Duration::from_secs(30), || {
        leads_at(&rt, &cut_url) == Some(true)
    });
    assert!(
        led,
        "the master in the namespace never led: {}",
        cut_off.tail(30)
    );
    let mut masters = vec![cut_off];
    let mut urls = vec![cut_url];
    for i in 2..=3 {
        let port = master_port();
        masters.push(Proc::new(
            &format!("master{i}"),
            master_args(port, &uri, MASTER_FLAGS),
            dir.path(),
        ));
        urls.push(format!("http://127.0.0.1:{port}"));
    }
    let mut cl = Cluster::of(masters, urls, uri.clone(), dir);
    for i in 0..3 {
        cl.add_worker(&format!("hap-fake{i}-{tag}"), true, "2");
    }

    let (kinds, specs) = check::plan(&mut rng, total, 300, 2000);
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let enqueuer = rt.spawn(check::enqueue_all(
        cl.urls(),
        specs,
        Duration::from_millis(120),
        acked.clone(),
    ));

    thread::sleep(Duration::from_millis(rng.range(2_000, 4_000)));
    store_link.set(false);
    let cut_at = Instant::now();
    let (new_leader, took) = wait_leader(&rt, &cl, &[1, 2], cut_at, TTL * 5);
    // Let the old leader try to write for a while, cut off, then heal the link.
    thread::sleep(Duration::from_secs(3));
    store_link.set(true);
    let healed = check::eventually_within(Duration::from_secs(20), || {
        leads(&rt, &cl, 0) == Some(false)
    });
    assert!(
        healed,
        "the old leader did not stand by once the link healed\n{}",
        cl.diagnostics()
    );
    assert_eq!(
        leads(&rt, &cl, new_leader),
        Some(true),
        "the old leader took the lead back\n{}",
        cl.diagnostics()
    );

    let refused = rt.block_on(enqueuer).expect("every task was acknowledged");
    let acked = acked.lock().unwrap().clone();
    let o = group::settle_and_judge(&rt, &mut cl, &kinds, &acked, seed, |cl, problems| {
        // The old leader stopped (by its own clock) before the new one took the lead, and
        // said so; both logs are stamped by this host's clock.
        let log = |name: &str| {
            std::fs::read_to_string(cl.dir.path().join(format!("{name}.log"))).unwrap()
        };
        let stopped = logged_at(&log("master1"), "stopped dispatching");
        let took_lead = logged_at(&log(&cl.masters[new_leader].name), "took the lead");
        match (stopped, took_lead) {
            (Some(s), Some(t)) if s < t => {}
            other => problems.push(format!(
                "the old leader must stop before the new one leads: (stopped, took the lead) = {other:?}"
            )),
        }
    });
    check::announce(&format!(
        "ha partition[mongodb]: tasks={} attempts={} new leader after {took:.1?} \
         lost={} duplicates={} lost lines={} (old leader's writes refused by the epoch={}, \
         enqueues answered UNAVAILABLE={refused}, seed={seed}, {:.0?})",
        o.tasks.len(),
        o.verdict.attempts,
        o.verdict.lost,
        o.verdict.duplicates,
        o.verdict.bad_lines,
        o.fenced,
        started.elapsed()
    ));
    drop(server);
    drop(ns);
    check::fail_on(o.problems, &o.verdict, seed, &cl);
}
