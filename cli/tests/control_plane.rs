//! What a user sees when the master dies at the worst moment, with the real binaries:
//! a master killed with SIGKILL while a task runs and kept down until its container has
//! exited. Every line the task printed is kept, and its times are the container's own,
//! not the moment the worker could report them (issue 11, bugs 1 and 2).

mod common;

use std::process::Command;
use std::thread;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("a time, got {v}"))
        .parse()
        .unwrap()
}

fn containers_of(task: &str) -> usize {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=cloudai.task_id={task}"))
        .output()
        .expect("docker cli runs");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn a_task_that_ends_while_the_master_is_down_keeps_every_line_and_its_true_times() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // A 2 s heartbeat: the worker's lease (4 s) outlasts the task's end while the master
    // is down, so the container ends by itself and the worker holds its report.
    let mut args = master_args(port, dir.path());
    args.retain(|a| a != "500ms" && a != "--heartbeat-interval");
    args.extend(["--no-shell", "--heartbeat-interval", "2s"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let url = format!("http://127.0.0.1:{port}");
    let client = |a: &[&str]| run_env(a, &[("CLOUDAI_MASTER", &url)], SLOW);
    let mut master = Proc::spawn("master", &args, &[]);
    eventually("the master to answer", SLOW, || {
        (client(&["queue", "stats"]).code == 0).then_some(())
    });
    let worker_id = unique_worker_id("ends-while-down");
    let _worker = Proc::spawn(
        "worker",
        &[
            "worker",
            "--master",
            &url,
            "--id",
            &worker_id,
            "--stop-grace",
            "1s",
        ],
        &[],
    );
    eventually("the worker to be healthy", SLOW, || {
        let out = client(&["workers", "--output", "json"]);
        out.stdout.contains(&worker_id).then_some(())
    });

    let script = "i=1; while [ $i -le 6 ]; do echo line $i; i=$((i+1)); sleep 0.3; done";
    let out = client(&["enqueue", "cloudai/busybox:test", "--", "sh", "-c", script]);
    let id = out.ok().trim().to_string();
    eventually("the task to run", SLOW, || {
        let t = client(&["task", &id, "--output", "json"]).json();
        (t["status"] == "running").then_some(())
    });
    master.kill();
    eventually("the container to end and be removed", SLOW, || {
        (containers_of(&id) == 0).then_some(())
    });
    thread::sleep(Duration::from_millis(1500));
    let restarted = Utc::now();
    let _master = Proc::spawn("master", &args, &[]);

    let t = eventually("the task to succeed", SLOW, || {
        let out = client(&["task", &id, "--output", "json"]);
        if out.code != 0 {
            return None;
        }
        let t = out.json();
        (t["status"] == "succeeded").then_some(t)
    });
    let logs = client(&["logs", &id]);
    let want: String = (1..=6).map(|i| format!("line {i}\n")).collect();
    assert_eq!(logs.ok(), want, "every line, in order, once");
    let attempts = t["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{t}");
    let (start, end) = (
        time(&attempts[0]["started_at"]),
        time(&attempts[0]["finished_at"]),
    );
    let ran = (end - start).to_std().unwrap();
    assert!(
        ran > Duration::from_millis(1500) && ran < Duration::from_millis(2900),
        "the container ran 1.8 s; recorded {ran:?} ({start} to {end})"
    );
    assert!(
        end < restarted,
        "finished_at {end} is the container's end, before the master came back at {restarted}"
    );
}
