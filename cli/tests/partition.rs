//! A worker cut off, not killed: it runs in a network namespace of its own, joined to
//! the host by a veth pair, and the link is cut (`ip link set ... down`) while its task
//! runs. Under default settings (5 s heartbeat, dead after 15 s, a 10 s lease) the cut-off
//! worker stops its container when its lease ends, before the master declares it dead and
//! runs the task on the other worker: two copies never overlap. Each copy appends a line
//! per tick to a file on a host bind mount, stamped with its container's host name and the
//! kernel's uptime (one clock for both), which is what the test reads.
//!
//! Needs root (`ip netns`), as CI has; elsewhere it says it skipped.

mod common;
#[path = "chaos/netns.rs"]
mod netns;

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use netns::{is_root, Netns};

/// The ticks of each copy: container host name → (first, last) uptime.
fn copies(path: &std::path::Path) -> BTreeMap<String, (f64, f64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(host), Some(t)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(t) = t.parse::<f64>() else { continue };
        let e = out.entry(host.to_string()).or_insert((t, t));
        e.0 = e.0.min(t);
        e.1 = e.1.max(t);
    }
    out
}

#[test]
fn a_cut_off_worker_stops_its_copy_before_the_master_starts_another() {
    if !is_root() {
        eprintln!("skipped: partition test: needs root for ip netns (CI runs as root)");
        return;
    }
    let tag = std::process::id();
    let n = tag % 200 + 20;
    let mut ns = Netns::create(&format!("cai-part-{tag}"));
    let link = ns.add_link(&format!("caip{n}"), &format!("10.231.{n}"));
    let dir = tempfile::tempdir().unwrap();
    let out_dir = tempfile::Builder::new()
        .prefix("cloudai-partition")
        .tempdir_in("/tmp")
        .unwrap();
    let ticks = out_dir.path().join("ticks");
    let port = free_port();
    let store = format!("sqlite://{}", dir.path().join("p.db").display());
    let listen = format!("0.0.0.0:{port}");
    // Default heartbeat, dead timeout and lease: only the listener and store are set.
    let _master = Proc::spawn(
        "master",
        &[
            "master",
            "--no-shell",
            "--insecure",
            "--listen",
            &listen,
            "--store",
            &store,
        ],
        &[],
    );
    let url = format!("http://127.0.0.1:{port}");
    let client = |a: &[&str]| run_env(a, &[("CLOUDAI_MASTER", &url)], SLOW);
    eventually("the master to answer", SLOW, || {
        (client(&["queue", "stats"]).code == 0).then_some(())
    });
    let bind = format!("{}:/out", out_dir.path().display());
    let far_url = format!("http://{}:{port}", link.host_ip);
    let (w1, w2) = (unique_worker_id("cut-off"), unique_worker_id("other"));
    let _cut_off = Proc::spawn_program(
        "worker in netns",
        "ip",
        &[
            "netns",
            "exec",
            &ns.name,
            BIN,
            "worker",
            "--master",
            &far_url,
            "--id",
            &w1,
            "--container-bind",
            &bind,
            "--stop-grace",
            "1s",
        ],
        &[],
    );
    let healthy = |id: &str| {
        let out = client(&["workers", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        v.as_array()?
            .iter()
            .any(|w| w["id"] == id && w["health"] == "healthy")
            .then_some(())
    };
    eventually("the cut-off worker to join", SLOW, || healthy(&w1));

    // 100 ticks of 0.2 s: still running when the link is cut, long enough for a second
    // copy to start.
    let script = "i=0; while [ $i -lt 100 ]; do echo \"$(hostname) $(cut -d' ' -f1 /proc/uptime)\" >> /out/ticks; i=$((i+1)); sleep 0.2; done";
    let id = client(&["enqueue", "cloudai/busybox:test", "--", "sh", "-c", script])
        .ok()
        .trim()
        .to_string();
    eventually("the first copy to tick", SLOW, || {
        (copies(&ticks).len() == 1).then_some(())
    });
    let _other = Proc::spawn(
        "worker",
        &[
            "worker",
            "--master",
            &url,
            "--id",
            &w2,
            "--container-bind",
            &bind,
            "--stop-grace",
            "1s",
        ],
        &[],
    );
    eventually("the other worker to join", SLOW, || healthy(&w2));

    let cut = Instant::now();
    link.set(false);
    let both = eventually("a second copy to run", Duration::from_secs(60), || {
        let c = copies(&ticks);
        (c.len() == 2).then_some(c)
    });
    let second_at = cut.elapsed();
    // Let the second copy run a while, then heal the link.
    thread::sleep(Duration::from_secs(4));
    link.set(true);
    let t = eventually("the task to succeed", Duration::from_secs(90), || {
        let t = client(&["task", &id, "--output", "json"]).json();
        (t["status"] == "succeeded").then_some(t)
    });
    let c = copies(&ticks);
    let mut spans: Vec<(f64, f64)> = c.values().copied().collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(spans.len(), 2, "two copies: {c:?} ({both:?})");
    let gap = spans[1].0 - spans[0].1;
    announce_line(&format!(
        "partition: second copy started {second_at:.1?} after the cut; the first had \
         stopped {gap:.1} s before it (overlap {:.1} s)",
        (-gap).max(0.0)
    ));
    assert!(
        gap > 0.0,
        "two copies ran at once for {:.1} s: {spans:?}",
        -gap
    );
    let attempts = t["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{t}");
    assert_eq!(attempts[0]["outcome"], "lost");
    assert_eq!(attempts[0]["worker"], w1.as_str());
    assert_eq!(attempts[1]["worker"], w2.as_str());
    eventually(
        "the cut-off worker to come back",
        Duration::from_secs(60),
        || healthy(&w1),
    );
}

fn announce_line(line: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
}
