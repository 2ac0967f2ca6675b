//! End-to-end: every client command against a real master and a real Docker worker,
//! asserting on what the user sees (stdout, stderr, exit codes, JSON parsed back).

mod common;

use std::time::Duration;

use common::{eventually, Cluster};

const BUSYBOX: &str = "cloudai/busybox:test";
const SAMPLE: &str = "cloudai/sample-task:latest";

fn enqueue(c: &Cluster, args: &[&str]) -> String {
    let mut a = vec!["enqueue"];
    a.extend(args);
    let out = c.run(&a);
    let id = out.ok().trim().to_string();
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "enqueue prints only the id: {out:#?}"
    );
    assert_eq!(id.len(), 36, "{id}");
    id
}

#[test]
fn commands_against_a_running_cluster() {
    let c = Cluster::with_worker();
    let w = c.worker_id.clone();

    // workers: table and JSON.
    let table = c.run(&["workers"]);
    let header = table.ok().lines().next().unwrap().to_string();
    for col in ["ID", "HEALTH", "CAPACITY", "FREE", "RUNNING", "HEARTBEAT"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(table.stdout.contains(&w) && table.stdout.contains("healthy"));
    let workers = c.run(&["workers", "--output", "json"]).json();
    let me = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == w.as_str())
        .expect("worker listed");
    assert!(me["capacity"]["cpu_millis"].as_u64().unwrap() > 0);
    assert!(me["capacity"]["memory_bytes"].as_u64().unwrap() > 0);

    // enqueue --wait of the sample task: its logs, then its exit code.
    let out = c.run(&["enqueue", SAMPLE, "--wait"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let mut lines = out.stdout.lines();
    let sample_id = lines.next().unwrap().trim().to_string();
    assert_eq!(sample_id.len(), 36);
    for l in ["hello from cloudai sample task", "step 3 of 3", "done"] {
        assert!(out.stdout.contains(l), "{l} missing: {out:#?}");
    }
    assert!(out.stderr.contains("a line on stderr"), "{out:#?}");
    assert!(out.stderr.contains("succeeded"), "{out:#?}");

    // enqueue --wait with a failing command exits with the task's code.
    let out = c.run(&[
        "enqueue",
        BUSYBOX,
        "--memory",
        "64M",
        "--cpu",
        "0.2",
        "--wait",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.code, 3, "{out:#?}");
    let failed_id = out.stdout.lines().next().unwrap().trim().to_string();
    assert!(out.stdout.contains("out\n"));
    assert!(out.stderr.contains("err\n"));

    // task <id>: table and JSON with the stable fields.
    let t = c.task_json(&failed_id);
    assert_eq!(t["id"], failed_id.as_str());
    assert_eq!(t["image"], BUSYBOX);
    assert_eq!(t["status"], "failed");
    assert_eq!(t["worker"], w.as_str());
    assert_eq!(t["exit_code"], 3);
    assert_eq!(t["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(t["resources"]["memory_bytes"], 64 << 20);
    assert_eq!(t["resources"]["cpu_millis"], 200);
    assert!(t["created_at"].is_string());
    let detail = c.run(&["task", &failed_id]);
    for needle in [
        "status:",
        "failed",
        "exit code:",
        "attempts: 1",
        "OUTCOME",
        &w,
    ] {
        assert!(detail.ok().contains(needle), "{needle}: {}", detail.stdout);
    }

    // A prefix is enough when it is unambiguous; a short one is ambiguous.
    let prefix = &sample_id[..30];
    assert_eq!(c.task_json(prefix)["id"], sample_id.as_str());
    let out = c.run(&["task", &sample_id[..4]]);
    assert_eq!(out.code, 12, "{out:#?}");
    assert!(out.stderr.contains("ambiguous"));

    // Unknown task id.
    let out = c.run(&["task", "ffffffff-ffff"]);
    assert_eq!(out.code, 11, "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1);
    let out = c.run(&["logs", "ffffffff-ffff"]);
    assert_eq!(out.code, 11, "{out:#?}");
    let out = c.run(&["cancel", "ffffffff-ffff"]);
    assert_eq!(out.code, 11, "{out:#?}");

    // Unknown worker.
    let out = c.run(&["enqueue", BUSYBOX, "--worker", "no-such-worker"]);
    assert_eq!(out.code, 15, "{out:#?}");
    assert!(out.stderr.contains("no-such-worker"), "{out:#?}");

    // logs: both streams, then one of them, then JSON.
    let out = c.run(&["logs", &sample_id]);
    assert!(out.ok().contains("step 1 of 3"));
    assert!(out.stderr.contains("a line on stderr"));
    let out = c.run(&["logs", &sample_id, "--stdout-only"]);
    assert!(out.ok().contains("done"));
    assert!(!out.stderr.contains("a line on stderr"), "{out:#?}");
    let out = c.run(&["logs", &sample_id, "--stderr-only"]);
    assert!(!out.ok().contains("step 1"));
    assert!(out.stderr.contains("a line on stderr"));
    let chunks = c.run(&["logs", &sample_id, "--output", "json"]).json();
    let text: String = chunks
        .as_array()
        .unwrap()
        .iter()
        .filter(|ch| ch["stream"] == "stdout")
        .map(|ch| ch["data"].as_str().unwrap().to_string())
        .collect();
    assert!(text.contains("hello from cloudai sample task\n"), "{text}");

    // logs -f follows a task from before it runs until it ends.
    let id = enqueue(
        &c,
        &[BUSYBOX, "--", "sh", "-c", "echo one; sleep 1; echo two"],
    );
    let out = c.run(&["logs", "-f", &id]);
    assert_eq!(out.ok(), "one\ntwo\n", "{out:#?}");
    c.wait_status(&id, "succeeded");

    // cancel a running task.
    let id = enqueue(
        &c,
        &[
            BUSYBOX,
            "--label",
            "kind=sleeper",
            "-e",
            "A=1",
            "--",
            "sleep",
            "60",
        ],
    );
    c.wait_status(&id, "running");
    let out = c.run(&["cancel", &id]);
    assert!(out.ok().contains(&id), "{out:#?}");
    let t = c.wait_status(&id, "cancelled");
    assert_eq!(t["labels"]["kind"], "sleeper");
    assert_eq!(t["env"]["A"], "1");
    // Cancelling it again is not possible any more.
    let out = c.run(&["cancel", &id]);
    assert_eq!(out.code, 16, "{out:#?}");

    // tasks: table, filters, JSON.
    let out = c.run(&["tasks"]);
    let header = out.ok().lines().next().unwrap().to_string();
    for col in [
        "ID", "IMAGE", "STATUS", "WORKER", "ATTEMPTS", "AGE", "DURATION",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(out.stdout.contains(&sample_id) && out.stdout.contains(&failed_id));
    let all = c.run(&["tasks", "--output", "json"]).json();
    assert_eq!(all.as_array().unwrap().len(), 4, "{all:#}");
    let failed = c
        .run(&["tasks", "--status", "failed", "--output", "json"])
        .json();
    let failed = failed.as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["id"], failed_id.as_str());
    let limited = c.run(&["tasks", "--limit", "2", "--output", "json"]).json();
    assert_eq!(limited.as_array().unwrap().len(), 2);
    let on_worker = c.run(&["tasks", "--worker", &w, "--output", "json"]).json();
    assert_eq!(on_worker.as_array().unwrap().len(), 4);

    // queue stats: text and JSON.
    let out = c.run(&["queue", "stats"]);
    for needle in [
        "succeeded",
        "failed",
        "cancelled",
        "oldest queued",
        "finished in the last minute",
    ] {
        assert!(out.ok().contains(needle), "{needle}: {}", out.stdout);
    }
    let stats = c.run(&["queue", "stats", "--output", "json"]).json();
    assert_eq!(stats["counts"]["succeeded"], 2, "{stats:#}");
    assert_eq!(stats["counts"]["failed"], 1);
    assert_eq!(stats["counts"]["cancelled"], 1);
    assert_eq!(stats["counts"]["queued"], 0);
    assert_eq!(stats["total"], 4, "{stats:#}");
    assert!(stats["finished_last_minute"].as_u64().unwrap() >= 4);

    // Pinned task via --worker and the idempotency key.
    let a = enqueue(
        &c,
        &[
            BUSYBOX,
            "--worker",
            &w,
            "--idempotency-key",
            "k1",
            "--",
            "true",
        ],
    );
    let b = enqueue(
        &c,
        &[
            BUSYBOX,
            "--worker",
            &w,
            "--idempotency-key",
            "k1",
            "--",
            "true",
        ],
    );
    assert_eq!(a, b);
    let t = c.wait_status(&a, "succeeded");
    assert_eq!(t["pinned_worker"], w.as_str());
    assert_eq!(t["worker"], w.as_str());

    // Task with a timeout: exit code 124 under --wait.
    let out = c.run(&[
        "enqueue",
        BUSYBOX,
        "--timeout",
        "1s",
        "--wait",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(out.code, 124, "{out:#?}");

    eventually("nothing left running", Duration::from_secs(30), || {
        let s = c.run(&["queue", "stats", "--output", "json"]).json();
        (s["counts"]["running"] == 0).then_some(())
    });
}
