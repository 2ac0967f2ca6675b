//! Searching tasks, from the real binary: `cloudai tasks` with every criterion (image
//! exact and by prefix, labels, creation time, free text, oldest first), the same over
//! the HTTP API, a bulk cancel by label that touches nothing else, and the overview's
//! history and `whoami` answers. Workers use the fake executor.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::http::{http, json_of};
use common::{eventually, free_port, run_env, unique_worker_id, Out, Proc};
use serde_json::Value;

const QUICK: Duration = Duration::from_secs(60);

struct Setup {
    url: String,
    api: String,
    _master: Proc,
    _worker: Proc,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let api = format!("127.0.0.1:{}", free_port());
        let mut args = common::master_args(port, dir.path());
        args.extend(["--no-shell".into(), "--http-listen".into(), api.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let master = Proc::spawn("master", &args, &[]);
        let url = format!("http://127.0.0.1:{port}");
        let id = unique_worker_id("search");
        let worker = Proc::spawn(
            "worker",
            &[
                "worker",
                "--fake-executor",
                "--master",
                &url,
                "--id",
                &id,
                "--heartbeat-interval",
                "500ms",
            ],
            &[],
        );
        let s = Setup {
            url,
            api,
            _master: master,
            _worker: worker,
            _dir: dir,
        };
        eventually("the worker to be healthy", QUICK, || {
            let w = s.run(&["workers", "--output", "json"]);
            (w.code == 0 && w.stdout.contains("healthy")).then_some(())
        });
        s
    }

    fn run(&self, args: &[&str]) -> Out {
        run_env(args, &[("CLOUDAI_MASTER", &self.url)], QUICK)
    }

    fn enqueue(&self, image: &str, extra: &[&str], command: &[&str]) -> String {
        let mut args = vec!["enqueue", image];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(command);
        let out = self.run(&args);
        assert_eq!(out.code, 0, "{out:#?}");
        out.stdout.trim().to_string()
    }

    /// The ids `cloudai tasks ARGS` lists, in its order.
    fn ids(&self, args: &[&str]) -> Vec<String> {
        let mut a = vec!["tasks", "--output", "json", "--limit", "0"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        assert_eq!(out.code, 0, "{out:#?}");
        ids_of(&out.json())
    }

    fn get(&self, path: &str) -> (u16, Value) {
        json_of(http(&self.api, "GET", path, None, None))
    }
}

fn ids_of(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn tasks_are_found_by_every_criterion_from_the_cli_and_the_api() {
    let s = Setup::start();
    let a = s.enqueue(
        "cloudai/busybox:test",
        &["--label", "team=ml", "--label", "env=prod"],
        &["echo", "Hello"],
    );
    let b = s.enqueue(
        "cloudai/sample-task:latest",
        &["--label", "team=ml"],
        &["train"],
    );
    let c = s.enqueue(
        "cloudai/busybox:test",
        &["--label", "team=web"],
        &["echo", "bye"],
    );
    // Taken as the time bound: tasks created from here on.
    let bound = s.run(&["task", &c, "--output", "json"]).json()["created_at"]
        .as_str()
        .unwrap()
        .to_string();
    let d = s.enqueue("other/image:1", &[], &["say", "HELLO-again"]);
    for id in [&a, &b, &c, &d] {
        eventually(&format!("{id} to succeed"), QUICK, || {
            let t = s.run(&["task", id, "--output", "json"]).json();
            (t["status"] == "succeeded").then_some(())
        });
    }

    let cases: Vec<(Vec<&str>, BTreeSet<String>)> = vec![
        (vec!["--image", "cloudai/busybox:test"], set(&[&a, &c])),
        (vec!["--image", "cloudai/*"], set(&[&a, &b, &c])),
        (vec!["--label", "team=ml"], set(&[&a, &b])),
        (
            vec!["--label", "team=ml", "--label", "env=prod"],
            set(&[&a]),
        ),
        (vec!["--search", "hello"], set(&[&a, &d])),
        (vec!["--search", &d[24..]], set(&[&d])),
        (vec!["--since", &bound], set(&[&c, &d])),
        (vec!["--until", &bound], set(&[&a, &b])),
        (vec!["--since", "1h"], set(&[&a, &b, &c, &d])),
        (
            vec![
                "--image",
                "cloudai/*",
                "--search",
                "echo",
                "--status",
                "succeeded",
            ],
            set(&[&a, &c]),
        ),
    ];
    for (args, want) in &cases {
        let got = s.ids(args);
        assert_eq!(
            &got.iter().cloned().collect::<BTreeSet<_>>(),
            want,
            "tasks {args:?}"
        );
        assert_eq!(got.len(), want.len(), "no task twice: {args:?}");
    }
    assert_eq!(s.ids(&[]), vec![d.clone(), c.clone(), b.clone(), a.clone()]);
    assert_eq!(
        s.ids(&["--oldest-first"]),
        vec![a.clone(), b.clone(), c.clone(), d.clone()]
    );
    let bad = s.run(&["tasks", "--since", "yesterday"]);
    assert_eq!(bad.code, 2, "{bad:#?}");
    assert!(bad.stderr.contains("--since"), "{bad:#?}");

    // The same criteria over HTTP, paged oldest first two at a time.
    let (code, v) = s.get("/api/v1/tasks?q=HELLO&order=asc");
    assert_eq!(code, 200, "{v}");
    assert_eq!(ids_of(&v["tasks"]), vec![a.clone(), d.clone()]);
    let (_, v) = s.get("/api/v1/tasks?label=team=ml,env=prod");
    assert_eq!(ids_of(&v["tasks"]), vec![a.clone()]);
    let (_, v) = s.get("/api/v1/tasks?image=cloudai/*&order=asc&limit=2");
    assert_eq!(ids_of(&v["tasks"]), vec![a.clone(), b.clone()]);
    let token = v["next_page_token"].as_str().unwrap().to_string();
    let (_, v) = s.get(&format!(
        "/api/v1/tasks?image=cloudai/*&order=asc&limit=2&page_token={token}"
    ));
    assert_eq!(ids_of(&v["tasks"]), vec![c.clone()]);
    for (path, names) in [
        ("/api/v1/tasks?since=yesterday", "since"),
        ("/api/v1/tasks?order=up", "order"),
        ("/api/v1/tasks?label=team", "label"),
        ("/api/v1/queue/history?minutes=0", "minutes"),
    ] {
        let (code, v) = s.get(path);
        assert_eq!(code, 400, "{path}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(names), "{path}: {msg}");
    }

    // The overview's history: four successes in the last minutes, each with a wait.
    let (code, h) = s.get("/api/v1/queue/history?minutes=5");
    assert_eq!(code, 200, "{h}");
    let buckets = h["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 5, "{h}");
    let sum = |k: &str| buckets.iter().map(|b| b[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        (sum("succeeded"), sum("failed"), sum("started")),
        (4, 0, 4),
        "{h}"
    );
    assert!(
        buckets
            .iter()
            .filter(|b| b["succeeded"].as_u64() > Some(0))
            .all(|b| b["queue_wait_p50_seconds"]
                .as_f64()
                .is_some_and(|w| w >= 0.0)),
        "{h}"
    );
    let (_, me) = s.get("/api/v1/whoami");
    assert_eq!(me["auth_enforced"], false, "{me}");
    assert_eq!(me["may"]["bulk"], true, "{me}");
}

#[test]
fn a_bulk_cancel_by_label_cancels_those_and_nothing_else() {
    let s = Setup::start();
    let slow = ["--env", "CLOUDAI_FAKE_RUN_MS=60000"];
    let held: Vec<String> = (0..3)
        .map(|_| {
            let mut extra = vec!["--label", "batch=nightly"];
            extra.extend_from_slice(&slow);
            s.enqueue("cloudai/busybox:test", &extra, &["sleep"])
        })
        .collect();
    let other = s.enqueue(
        "cloudai/busybox:test",
        &["--label", "batch=daily", slow[0], slow[1]],
        &["sleep"],
    );
    let dry = s.run(&["cancel", "--label", "batch=nightly", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:#?}");
    assert!(dry.stdout.starts_with("would cancel 3 task(s)"), "{dry:#?}");
    let out = s.run(&["cancel", "--label", "batch=nightly", "--search", "sleep"]);
    assert_eq!(out.code, 0, "{out:#?}");
    for id in &held {
        eventually(&format!("{id} to be cancelled"), QUICK, || {
            let t = s.run(&["task", id, "--output", "json"]).json();
            (t["status"] == "cancelled").then_some(())
        });
    }
    let t = s.run(&["task", &other, "--output", "json"]).json();
    assert!(
        ["queued", "assigned", "running"].contains(&t["status"].as_str().unwrap()),
        "the daily task goes on: {t}"
    );
    let none = s.run(&["cancel", "--since", "not-a-time"]);
    assert_eq!(none.code, 2, "{none:#?}");
}
