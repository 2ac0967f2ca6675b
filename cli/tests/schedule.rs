//! Cron schedules from the real binary, a real master and a fake-executor worker:
//! `cloudai schedule add` fires at each time of its pattern (every 2 s here), each run an
//! ordinary task with the schedule's label and its time; a pause stops the fires; after
//! the master is SIGKILLed and kept down across several times, the restarted master
//! starts one run for them, not one each, and the history says so; bad patterns, zones
//! and names are refused with their flag.

mod common;

use std::time::Duration;

use common::{eventually, master_args, run_env, Cluster, Out, Proc};
use serde_json::Value;

const QUICK: Duration = Duration::from_secs(60);

fn run(url: &str, args: &[&str]) -> Out {
    run_env(args, &[("CLOUDAI_MASTER", url)], QUICK)
}

fn spawn_master(port: u16, dir: &std::path::Path) -> Proc {
    let mut args = master_args(port, dir);
    args.push("--no-shell".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::spawn("master", &args, &[])
}

fn runs(url: &str) -> Vec<Value> {
    let out = run(
        url,
        &[
            "tasks",
            "--label",
            "cloudai.schedule=tick",
            "--oldest-first",
            "--limit",
            "500",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{out:#?}");
    out.json().as_array().cloned().unwrap_or_default()
}

fn history(url: &str) -> Vec<Value> {
    let s = run(url, &["schedule", "show", "tick", "--output", "json"]).json();
    s["history"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_schedule_fires_on_time_pauses_and_starts_missed_times_once() {
    let mut c = Cluster::with_fake_worker("sched");
    let port: u16 = c.url.rsplit(':').next().unwrap().parse().unwrap();

    let out = run(
        &c.url,
        &[
            "schedule",
            "add",
            "tick",
            "--cron",
            "*/2 * * * * *",
            "--overlap",
            "allow",
            "cloudai/busybox:test",
            "--",
            "echo",
            "tick",
        ],
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.contains("schedule tick: '*/2 * * * * *' in UTC"),
        "{}",
        out.stdout
    );
    let listed = run(&c.url, &["schedule", "list"]);
    assert!(
        listed.stdout.contains("tick\t*/2 * * * * *\tUTC"),
        "{}",
        listed.stdout
    );

    // Three runs, each at its own even second, each an ordinary task that succeeds.
    let three = eventually("three runs to succeed", QUICK, || {
        let r = runs(&c.url);
        (r.iter().filter(|t| t["status"] == "succeeded").count() >= 3).then_some(r)
    });
    let mut ticks: Vec<String> = three
        .iter()
        .map(|t| {
            t["env"]["CLOUDAI_SCHEDULED_AT"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for t in &ticks {
        let secs: u32 = t[17..19].parse().unwrap();
        assert_eq!(secs % 2, 0, "a time of the pattern: {t}");
    }
    let n = ticks.len();
    ticks.dedup();
    assert_eq!(ticks.len(), n, "no time twice: {ticks:?}");
    let h = history(&c.url);
    assert!(
        h.len() >= 3 && h.iter().all(|f| f["task_id"].is_string()),
        "{h:#?}"
    );

    // Paused: no fire for several times of the pattern.
    let p = run(&c.url, &["schedule", "pause", "tick"]);
    assert!(p.stdout.contains("next: paused"), "{p:#?}");
    let paused_at = runs(&c.url).len();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(runs(&c.url).len(), paused_at, "no run while paused");
    assert_eq!(run(&c.url, &["schedule", "resume", "tick"]).code, 0);
    eventually("a run after the resume", QUICK, || {
        (runs(&c.url).len() > paused_at).then_some(())
    });

    // Down across several times: one run for all of them once back.
    let before = runs(&c.url).len();
    c.master.kill();
    let down = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(7));
    c.master = spawn_master(port, c.dir.path());
    eventually("the master to answer again", QUICK, || {
        (run(&c.url, &["queue", "stats"]).code == 0).then_some(())
    });
    let h = eventually("a fire that says what it made up for", QUICK, || {
        let h = history(&c.url);
        h.iter()
            .any(|f| f["note"].as_str().unwrap_or("").contains("missed tick(s)"))
            .then_some(h)
    });
    let late = h
        .iter()
        .find(|f| f["note"].as_str().unwrap().contains("missed tick(s)"))
        .unwrap();
    let missed: u32 = late["note"].as_str().unwrap()["started once for ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(missed >= 2, "7 s down at one fire per 2 s: {late}");
    // The made-up run is one task: every run has its own time, and the runs since the
    // outage began are no more than the times since the restart, plus that one.
    let after = runs(&c.url);
    let mut all: Vec<&str> = after
        .iter()
        .map(|t| t["env"]["CLOUDAI_SCHEDULED_AT"].as_str().unwrap())
        .collect();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "no time twice");
    let since_restart = down.elapsed().as_secs() as usize - 7;
    assert!(
        after.len() - before <= since_restart / 2 + 2,
        "{} runs since the outage, for {since_restart} s back up",
        after.len() - before
    );

    let rn = run(&c.url, &["schedule", "run-now", "tick"]);
    assert_eq!(rn.code, 0, "{rn:#?}");
    assert_eq!(rn.stdout.trim().len(), 36);
    assert_eq!(run(&c.url, &["schedule", "rm", "tick"]).code, 0);
    let gone = run(&c.url, &["schedule", "show", "tick"]);
    assert_ne!(gone.code, 0);
    assert!(
        gone.stderr.contains("no schedule named \"tick\""),
        "{gone:#?}"
    );
}

#[test]
fn bad_schedules_are_refused_with_the_reason() {
    let c = Cluster::master_only();
    for (args, says) in [
        (vec!["--cron", "0 3 * *"], "invalid cron"),
        (
            vec!["--cron", "0 3 * * *", "--tz", "Mars/Base"],
            "not an IANA time zone",
        ),
    ] {
        let mut all = vec!["schedule", "add", "nightly"];
        all.extend(args);
        all.push("cloudai/busybox:test");
        let out = run(&c.url, &all);
        assert_ne!(out.code, 0, "{out:#?}");
        assert!(out.stderr.contains(says), "{says}: {out:#?}");
    }
    let out = run(
        &c.url,
        &[
            "schedule",
            "add",
            "bad name",
            "--cron",
            "* * * * *",
            "cloudai/busybox:test",
        ],
    );
    assert!(out.stderr.contains("schedule name"), "{out:#?}");
    let ok = run(
        &c.url,
        &[
            "schedule",
            "add",
            "nightly",
            "--cron",
            "0 3 * * *",
            "cloudai/busybox:test",
        ],
    );
    assert_eq!(ok.code, 0, "{ok:#?}");
    let again = run(
        &c.url,
        &[
            "schedule",
            "add",
            "nightly",
            "--cron",
            "0 3 * * *",
            "cloudai/busybox:test",
        ],
    );
    assert!(again.stderr.contains("already exists"), "{again:#?}");
    let out = run(
        &c.url,
        &[
            "schedule",
            "add",
            "x",
            "--cron",
            "* * * * *",
            "--after",
            "abc",
            "cloudai/busybox:test",
        ],
    );
    assert!(out.stderr.contains("--after"), "{out:#?}");
}
