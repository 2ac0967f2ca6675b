//! Dependencies and delayed starts from the real binary, on fake-executor workers:
//! `cloudai enqueue --after` (prefixes, each condition) waits, starts only after its
//! parent's final outcome, and a failure cancels the chain below it with the reason;
//! `--in` holds a task back until its time; a user may cancel a waiting task; bad
//! `--after` and `--at` are refused with the flag's name.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{eventually, run_env, Cluster, Out};
use serde_json::Value;

const QUICK: Duration = Duration::from_secs(60);

fn cluster() -> Cluster {
    Cluster::with_fake_worker("flow")
}

fn run(c: &Cluster, args: &[&str]) -> Out {
    run_env(args, &[("CLOUDAI_MASTER", &c.url)], QUICK)
}

fn enqueue(c: &Cluster, extra: &[&str]) -> String {
    let mut args = vec!["enqueue", "cloudai/busybox:test"];
    args.extend_from_slice(extra);
    let out = run(c, &args);
    assert_eq!(out.code, 0, "{out:#?}");
    out.stdout.trim().to_string()
}

fn task(c: &Cluster, id: &str) -> Value {
    run(c, &["task", id, "--output", "json"]).json()
}

fn wait_ended(c: &Cluster, id: &str) -> Value {
    eventually(&format!("task {id} to end"), QUICK, || {
        let t = task(c, id);
        let done = ["succeeded", "failed", "cancelled", "timed_out", "lost"]
            .contains(&t["status"].as_str().unwrap_or(""));
        done.then_some(t)
    })
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

/// The first attempt's container start.
fn first_start(t: &Value) -> DateTime<Utc> {
    time(&t["attempts"][0]["started_at"])
}

#[test]
fn dependents_start_after_their_parents_outcome_and_failures_cancel_the_chain() {
    let c = cluster();
    let slow = ["--env", "CLOUDAI_FAKE_RUN_MS=1500"];
    let a = enqueue(&c, &slow);
    // A prefix names the parent; the master stores the whole id.
    let b = enqueue(&c, &["--after", &a[..13]]);
    let on_fail = enqueue(&c, &["--after", &format!("{b}:notok")]);
    let either = enqueue(&c, &["--after", &format!("{a}:any,{b}:any")]);
    let bt = task(&c, &b);
    assert_eq!(bt["status"], "waiting", "{bt}");
    assert_eq!(bt["after"][0], format!("{a}:ok"), "{bt}");

    let at = wait_ended(&c, &a);
    assert_eq!(at["status"], "succeeded", "{at}");
    let bt = wait_ended(&c, &b);
    assert_eq!(bt["status"], "succeeded", "{bt}");
    assert!(
        first_start(&bt) >= time(&at["finished_at"]),
        "b started after a's end: {bt} {at}"
    );
    let f = wait_ended(&c, &on_fail);
    assert_eq!(f["status"], "cancelled", "{f}");
    assert_eq!(f["error"], format!("dependency {b} ended succeeded"), "{f}");
    assert!(
        f["attempts"].as_array().unwrap().is_empty(),
        "never ran: {f}"
    );
    let e = wait_ended(&c, &either);
    assert_eq!(e["status"], "succeeded", "{e}");
    assert!(first_start(&e) >= time(&bt["finished_at"]), "{e}");

    // A failure cancels the whole chain below it, each with its own parent's reason.
    let g = enqueue(&c, &["--env", "CLOUDAI_FAKE_EXIT_CODE=3"]);
    let h = enqueue(&c, &["--after", &g]);
    let i = enqueue(&c, &["--after", &h]);
    assert_eq!(wait_ended(&c, &g)["status"], "failed");
    let ht = wait_ended(&c, &h);
    assert_eq!(ht["error"], format!("dependency {g} ended failed"), "{ht}");
    let it = wait_ended(&c, &i);
    assert_eq!(it["status"], "cancelled", "{it}");
    assert_eq!(
        it["error"],
        format!("dependency {h} ended cancelled"),
        "{it}"
    );

    // Listing and filtering know the new status.
    let long = enqueue(&c, &["--env", "CLOUDAI_FAKE_RUN_MS=60000"]);
    let held = enqueue(&c, &["--after", &long]);
    let listed = run(&c, &["tasks", "--status", "waiting", "--output", "json"]).json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![held.as_str()]);
    // A waiting task can be cancelled; its parent runs on.
    let out = run(&c, &["cancel", &held]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(task(&c, &held)["status"], "cancelled");
    assert!(["assigned", "running"].contains(&task(&c, &long)["status"].as_str().unwrap()));
}

#[test]
fn a_delayed_task_starts_at_its_time_and_bad_flags_are_named() {
    let c = cluster();
    let delayed = enqueue(&c, &["--in", "2s"]);
    let now = enqueue(&c, &[]);
    let t = task(&c, &delayed);
    let not_before = time(&t["not_before"]);
    assert!(not_before > time(&t["created_at"]), "{t}");
    assert_eq!(wait_ended(&c, &now)["status"], "succeeded");
    assert_eq!(
        task(&c, &delayed)["status"],
        "queued",
        "not before its time"
    );
    let d = wait_ended(&c, &delayed);
    assert_eq!(d["status"], "succeeded", "{d}");
    assert!(first_start(&d) >= not_before, "{d}");

    // Exit codes: 2 an invalid argument, 14 a duration's syntax (`cloudai --help`).
    let two = [&now[..8], "--after", "x:sometimes"];
    for (args, code, names) in [
        (&["--after", "ffffffff-0000"][..], 2, "after"),
        (&["--after", two[0], two[1], two[2]][..], 2, "condition"),
        (&["--at", "tomorrow"][..], 2, "--at"),
        (&["--in", "soon"][..], 14, "duration"),
    ] {
        let mut a = vec!["enqueue", "cloudai/busybox:test"];
        a.extend_from_slice(args);
        let out = run(&c, &a);
        assert_eq!(out.code, code, "{args:?}: {out:#?}");
        assert!(out.stderr.contains(names), "{args:?}: {}", out.stderr);
    }
}
