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

/// A master with a 2 s heartbeat and one Docker worker: the worker's lease (4 s) outlasts
/// a short outage or freeze, so a container that ends meanwhile is reported, not stopped.
struct Setup {
    args: Vec<String>,
    url: String,
    master: Proc,
    worker: Proc,
}

impl Setup {
    fn start(dir: &std::path::Path, tag: &str) -> Setup {
        let port = free_port();
        let mut args = master_args(port, dir);
        args.retain(|a| a != "500ms" && a != "--heartbeat-interval");
        args.extend(["--no-shell", "--heartbeat-interval", "2s"].map(String::from));
        let url = format!("http://127.0.0.1:{port}");
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let master = Proc::spawn("master", &argv, &[]);
        let s = |a: &[&str]| run_env(a, &[("CLOUDAI_MASTER", &url)], SLOW);
        eventually("the master to answer", SLOW, || {
            (s(&["queue", "stats"]).code == 0).then_some(())
        });
        let worker_id = unique_worker_id(tag);
        let worker = Proc::spawn(
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
            let out = s(&["workers", "--output", "json"]);
            out.stdout.contains(&worker_id).then_some(())
        });
        Setup {
            args,
            url,
            master,
            worker,
        }
    }

    fn client(&self, a: &[&str]) -> Out {
        run_env(a, &[("CLOUDAI_MASTER", &self.url)], SLOW)
    }

    fn wait_running(&self, id: &str) {
        eventually("the task to run", SLOW, || {
            let t = self.client(&["task", id, "--output", "json"]).json();
            (t["status"] == "running").then_some(())
        });
    }

    fn wait_succeeded(&self, id: &str) -> serde_json::Value {
        eventually("the task to succeed", SLOW, || {
            let out = self.client(&["task", id, "--output", "json"]);
            if out.code != 0 {
                return None;
            }
            let t = out.json();
            (t["status"] == "succeeded").then_some(t)
        })
    }
}

/// The one attempt's start, end and run time as the task view shows them.
fn only_attempt(t: &serde_json::Value) -> (DateTime<Utc>, DateTime<Utc>, Duration) {
    let attempts = t["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{t}");
    let (start, end) = (
        time(&attempts[0]["started_at"]),
        time(&attempts[0]["finished_at"]),
    );
    (start, end, (end - start).to_std().unwrap())
}

#[test]
fn a_task_that_ends_while_the_master_is_down_keeps_every_line_and_its_true_times() {
    let dir = tempfile::tempdir().unwrap();
    let mut cl = Setup::start(dir.path(), "ends-while-down");
    let script = "i=1; while [ $i -le 6 ]; do echo line $i; i=$((i+1)); sleep 0.3; done";
    let out = cl.client(&["enqueue", "cloudai/busybox:test", "--", "sh", "-c", script]);
    let id = out.ok().trim().to_string();
    cl.wait_running(&id);
    cl.master.kill();
    eventually("the container to end and be removed", SLOW, || {
        (containers_of(&id) == 0).then_some(())
    });
    thread::sleep(Duration::from_millis(1500));
    let restarted = Utc::now();
    let args: Vec<&str> = cl.args.iter().map(String::as_str).collect();
    cl.master = Proc::spawn("master", &args, &[]);

    let t = cl.wait_succeeded(&id);
    let logs = cl.client(&["logs", &id]);
    let want: String = (1..=6).map(|i| format!("line {i}\n")).collect();
    assert_eq!(logs.ok(), want, "every line, in order, once");
    let (start, end, ran) = only_attempt(&t);
    assert!(
        ran > Duration::from_millis(1500) && ran < Duration::from_millis(2900),
        "the container ran 1.8 s; recorded {ran:?} ({start} to {end})"
    );
    assert!(
        end < restarted,
        "finished_at {end} is the container's end, before the master came back at {restarted}"
    );
}

/// A worker frozen (SIGSTOP) while its task runs, thawed after the container has exited:
/// the attempt shows how long the container ran, not how long the worker took to notice.
#[test]
fn a_task_that_ends_while_its_worker_is_frozen_shows_its_true_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let cl = Setup::start(dir.path(), "ends-while-frozen");
    let out = cl.client(&[
        "enqueue",
        "cloudai/busybox:test",
        "--",
        "sh",
        "-c",
        "sleep 0.8; echo done",
    ]);
    let id = out.ok().trim().to_string();
    cl.wait_running(&id);
    // Well inside the 4 s lease: the worker still owns its attempt when it thaws.
    cl.worker.signal("-STOP");
    thread::sleep(Duration::from_millis(1500));
    cl.worker.signal("-CONT");
    let t = cl.wait_succeeded(&id);
    assert_eq!(cl.client(&["logs", &id]).ok(), "done\n");
    let (start, end, ran) = only_attempt(&t);
    assert!(
        ran >= Duration::from_millis(750) && ran < Duration::from_millis(1400),
        "the container ran 0.8 s, the worker was frozen 1.5 s; recorded {ran:?} ({start} to {end})"
    );
}
