//! End-to-end: what a task runs, how it stops, and what `task` and `tasks` show about it
//! (issue 18), with the real binary, real Docker workers and the test images:
//!
//! - `enqueue IMAGE -- ARGS` passes ARGS to the image's entrypoint, as `docker run IMAGE
//!   ARGS` does (docker itself gives the expected output), and `--entrypoint` replaces the
//!   entrypoint (`--entrypoint ''` clears it), as `docker run --entrypoint` does;
//! - containers run with an init process, so a 2 s timeout on `sleep 30` and a cancel end
//!   at the SIGTERM instead of after the worker's 10 s stop grace; a worker started with
//!   `--container-no-init` runs the task as PID 1;
//! - `submitted_by` shows in `task` and `tasks` (table and JSON), and `tasks --submitter`
//!   is filtered by the master before it pages (a master that requires auth, no worker).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{eventually, free_port, run_env, unique_worker_id, wait_worker_healthy};
use common::{Cluster, Out, Proc};

const BUSYBOX: &str = "cloudai/busybox:test";
const SAMPLE: &str = "cloudai/sample-task:latest";
const QUICK: Duration = Duration::from_secs(30);

/// `docker run --rm ARGS...`: its stdout, the reference for what a task prints.
fn docker_run(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(["run", "--rm"])
        .args(args)
        .output()
        .expect("run the docker cli");
    assert!(
        out.status.success(),
        "docker run {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The sample task's lines without the one naming its host name (each container has its
/// own).
fn without_hostname(s: &str) -> Vec<&str> {
    s.lines()
        .filter(|l| !l.starts_with("running as "))
        .collect()
}

/// `cloudai enqueue --wait ARGS...`: the task's id and what the task printed on stdout
/// (everything after the id line).
fn enqueue_wait(c: &Cluster, args: &[&str]) -> (String, String, Out) {
    let mut a = vec!["enqueue", "--wait"];
    a.extend_from_slice(args);
    let out = c.run(&a);
    let (id, logs) = out
        .stdout
        .split_once('\n')
        .unwrap_or_else(|| panic!("no id line: {out:#?}"));
    assert_eq!(id.len(), 36, "{out:#?}");
    (id.to_string(), logs.to_string(), out)
}

/// A Docker worker with the default stop grace (10 s: what a user gets), healthy.
fn docker_worker(c: &Cluster, id: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "worker",
        "--master",
        &c.url,
        "--id",
        id,
        "--heartbeat-interval",
        "500ms",
    ];
    args.extend_from_slice(extra);
    let w = Proc::spawn(&format!("worker {id}"), &args, &[]);
    wait_worker_healthy(c, id);
    w
}

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

/// How long the task's only attempt ran, from its recorded start and end.
fn run_time(task: &serde_json::Value) -> Duration {
    let attempts = task["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{task:#}");
    let a = &attempts[0];
    (time(&a["finished_at"]) - time(&a["started_at"]))
        .to_std()
        .expect("ends after it starts")
}

/// The cells of a table row (AGE, the only column of two words, comes after these).
fn cells(row: &str) -> Vec<&str> {
    row.split_whitespace().collect()
}

/// The value of `key:` in `cloudai task ID`'s text.
fn detail(text: &str, key: &str) -> String {
    let prefix = format!("{key}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{text}"))
}

#[test]
fn args_follow_docker_and_signals_reach_the_task() {
    let c = Cluster::master_only();
    let w = unique_worker_id("init");
    let _worker = docker_worker(&c, &w, &[]);

    // ARGS go to the image's entrypoint: the sample task prints them, as with docker run.
    let expected = docker_run(&[SAMPLE, "foo", "bar"]);
    assert!(expected.contains("args: foo bar\n"), "{expected}");
    let (id, logs, out) = enqueue_wait(&c, &[SAMPLE, "--worker", &w, "--", "foo", "bar"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(
        without_hostname(&logs),
        without_hostname(&expected),
        "{out:#?}"
    );
    let t = c.task_json(&id);
    assert_eq!(t["command"], serde_json::json!(["foo", "bar"]));
    assert_eq!(t["entrypoint"], serde_json::json!([]));
    let text = c.run(&["task", &id]);
    assert_eq!(detail(text.ok(), "entrypoint"), "(image default)");
    assert_eq!(detail(&text.stdout, "command"), "foo bar");

    // --entrypoint replaces the image's entrypoint; ARGS go to the new one.
    let expected = docker_run(&["--entrypoint", "/bin/echo", SAMPLE, "hi"]);
    let (id, logs, out) = enqueue_wait(
        &c,
        &[
            "--entrypoint",
            "/bin/echo",
            SAMPLE,
            "--worker",
            &w,
            "--",
            "hi",
        ],
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!((logs.as_str(), expected.as_str()), ("hi\n", "hi\n"));
    let t = c.task_json(&id);
    assert_eq!(t["entrypoint"], serde_json::json!(["/bin/echo"]));
    assert_eq!(t["command"], serde_json::json!(["hi"]));
    assert_eq!(
        detail(c.run(&["task", &id]).ok(), "entrypoint"),
        "/bin/echo"
    );

    // --entrypoint '' clears it: the first ARG is the program, as with docker run.
    let expected = docker_run(&["--entrypoint", "", SAMPLE, "/bin/echo", "cleared"]);
    let (_, logs, out) = enqueue_wait(
        &c,
        &[
            SAMPLE,
            "--entrypoint",
            "",
            "--worker",
            &w,
            "--",
            "/bin/echo",
            "cleared",
        ],
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(
        (logs.as_str(), expected.as_str()),
        ("cleared\n", "cleared\n")
    );

    // A 2 s timeout on `sleep 30` ends at the SIGTERM, not after the 10 s grace.
    let (id, _, out) = enqueue_wait(
        &c,
        &[
            BUSYBOX,
            "--worker",
            &w,
            "--timeout",
            "2s",
            "--",
            "sleep",
            "30",
        ],
    );
    assert_eq!(out.code, 124, "{out:#?}");
    let t = c.task_json(&id);
    assert_eq!(t["status"], "timed_out", "{t:#}");
    let ran = run_time(&t);
    assert!(
        ran >= Duration::from_millis(1900) && ran < Duration::from_secs(6),
        "a 2 s timeout ran {ran:?} (the stop grace is 10 s): {t:#}"
    );

    // A cancel of a running `sleep 30` ends it within a few seconds.
    let out = c.run(&["enqueue", BUSYBOX, "--worker", &w, "--", "sleep", "30"]);
    let id = out.ok().trim().to_string();
    c.wait_status(&id, "running");
    let asked = Instant::now();
    c.run(&["cancel", &id]).ok();
    let t = eventually("the cancelled task to end", QUICK, || {
        let t = c.task_json(&id);
        (t["status"] == "cancelled").then_some(t)
    });
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "a cancel took {took:?} to end the task (the stop grace is 10 s): {t:#}"
    );
    assert!(run_time(&t) < Duration::from_secs(30), "{t:#}");

    // With the init process the task is not PID 1; `--container-no-init` makes it so.
    let n = unique_worker_id("noinit");
    let no_init = docker_worker(&c, &n, &["--container-no-init"]);
    let (_, logs, out) = enqueue_wait(
        &c,
        &[BUSYBOX, "--worker", &w, "--", "sh", "-c", "echo pid $$"],
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(logs.starts_with("pid ") && logs != "pid 1\n", "{logs}");
    let (_, logs, out) = enqueue_wait(
        &c,
        &[BUSYBOX, "--worker", &n, "--", "sh", "-c", "echo pid $$"],
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(logs, "pid 1\n");
    let log = no_init.stderr();
    assert!(log.contains("without an init process"), "{log}");
    assert!(
        !log.contains("restrictions loosened"),
        "not a loosening: {log}"
    );

    // Without auth nobody is recorded: `-` in the table, null in JSON.
    let table = c.run(&["tasks"]);
    let mut lines = table.ok().lines();
    let header = cells(lines.next().unwrap());
    let col = header
        .iter()
        .position(|h| *h == "SUBMITTER")
        .expect("SUBMITTER column");
    for row in lines {
        assert_eq!(cells(row)[col], "-", "{}", table.stdout);
    }
    let all = c.run(&["tasks", "--output", "json"]).json();
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|t| t["submitted_by"].is_null()),
        "{all:#}"
    );
}

/// `cloudai users add NAME --role submitter` on the store in `dir`; returns the token.
fn add_submitter(dir: &Path, name: &str) -> String {
    let out = run_env(
        &[
            "users",
            "add",
            name,
            "--role",
            "submitter",
            "--store",
            &store_uri(dir),
            "--secret-file",
            &secret_file(dir),
        ],
        &[],
        QUICK,
    );
    out.ok().trim().to_string()
}

fn store_uri(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("cloudai.db").display())
}

fn secret_file(dir: &Path) -> String {
    dir.join("cloudai.secret").display().to_string()
}

#[test]
fn the_submitter_is_shown_and_filtered_by_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let alice = add_submitter(dir.path(), "alice");
    let bob = add_submitter(dir.path(), "bob");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let (store, secret) = (store_uri(dir.path()), secret_file(dir.path()));
    let _master = Proc::spawn(
        "master",
        &[
            "master",
            "--no-shell",
            "--listen",
            &listen,
            "--store",
            &store,
            "--secret-file",
            &secret,
            "--require-auth",
        ],
        &[],
    );
    let as_user = |token: &str, args: &[&str]| {
        run_env(
            args,
            &[("CLOUDAI_MASTER", &url), ("CLOUDAI_TOKEN", token)],
            QUICK,
        )
    };
    eventually("the master to answer", QUICK, || {
        (as_user(&alice, &["queue", "stats"]).code == 0).then_some(())
    });
    // No worker: the tasks stay queued. Oldest first: alice, alice, bob.
    let enqueue = |token: &str| {
        as_user(token, &["enqueue", BUSYBOX])
            .ok()
            .trim()
            .to_string()
    };
    let a1 = enqueue(&alice);
    let a2 = enqueue(&alice);
    let b1 = enqueue(&bob);

    // task ID: text and JSON.
    let text = as_user(&bob, &["task", &a1]);
    assert_eq!(detail(text.ok(), "submitted by"), "alice");
    let t = as_user(&bob, &["task", &a1, "--output", "json"]).json();
    assert_eq!(t["submitted_by"], "alice");

    // tasks: a SUBMITTER column, and submitted_by in JSON.
    let table = as_user(&alice, &["tasks"]);
    let mut lines = table.ok().lines();
    let header = cells(lines.next().unwrap());
    let col = header
        .iter()
        .position(|h| *h == "SUBMITTER")
        .expect("SUBMITTER column");
    let rows: Vec<(String, String)> = lines
        .map(|r| (cells(r)[0].to_string(), cells(r)[col].to_string()))
        .collect();
    let want = [(&b1, "bob"), (&a2, "alice"), (&a1, "alice")]
        .map(|(id, who)| (id.clone(), who.to_string()));
    assert_eq!(rows, want, "{}", table.stdout);
    let all = as_user(&alice, &["tasks", "--output", "json"]).json();
    let who: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["submitted_by"].clone())
        .collect();
    assert_eq!(who, ["bob", "alice", "alice"], "{all:#}");

    // --submitter: the master filters before it pages, so a limit of 2 gets both of
    // alice's tasks although the newest task is bob's.
    let ids = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["tasks", "--output", "json"];
        a.extend_from_slice(args);
        as_user(&bob, &a)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&["--submitter", "alice", "--limit", "2"]),
        [a2.as_str(), a1.as_str()]
    );
    assert_eq!(ids(&["--submitter", "bob"]), [b1.as_str()]);
    assert_eq!(
        ids(&["--submitter", "alice", "--status", "queued", "--limit", "1"]),
        [a2]
    );
    assert!(ids(&["--submitter", "carol"]).is_empty());
    let none = as_user(&bob, &["tasks", "--submitter", "carol"]);
    assert_eq!(none.ok(), "no tasks\n");
    let table = as_user(&bob, &["tasks", "--submitter", "bob"]);
    assert!(
        table.ok().contains(&b1) && !table.stdout.contains(&a1),
        "{table:#?}"
    );
    let empty = as_user(&bob, &["tasks", "--submitter", ""]);
    assert_eq!(empty.code, 2, "{empty:#?}");
}
