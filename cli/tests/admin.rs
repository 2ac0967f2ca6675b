//! Operators' actions with the real binary: `cloudai retry` of one ended task and of every
//! failed task a filter matches, `cloudai cancel` by filter, each with `--dry-run`
//! first; the same over HTTP, where a bulk action is an admin's. Workers use the fake
//! executor (`CLOUDAI_FAKE_EXIT_CODE`, `CLOUDAI_FAKE_RUN_MS` in a task's env).

mod common;

use std::time::Duration;

use common::{eventually, Cluster, Out};

const QUICK: Duration = Duration::from_secs(30);

fn lines_with(out: &Out, needle: &str) -> usize {
    out.stdout.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn retry_and_bulk_cancel_act_on_what_the_filter_matches_after_a_dry_run() {
    let c = Cluster::master_only();
    let wid = common::unique_worker_id("admin");
    let _w = common::Proc::spawn(
        "worker",
        &[
            "worker",
            "--fake-executor",
            "--master",
            &c.url,
            "--id",
            &wid,
            "--heartbeat-interval",
            "500ms",
        ],
        &[],
    );
    common::wait_worker_healthy(&c, &wid);
    let enqueue = |extra: &[&str]| {
        let mut args = vec!["enqueue", "cloudai/busybox:test"];
        args.extend_from_slice(extra);
        let out = c.run(&args);
        assert_eq!(out.code, 0, "{out:#?}");
        out.stdout.trim().to_string()
    };
    let failing: Vec<String> = (0..3)
        .map(|_| enqueue(&["--env", "CLOUDAI_FAKE_EXIT_CODE=3"]))
        .collect();
    let ok = enqueue(&[]);
    for id in failing.iter().chain([&ok]) {
        let want = if id == &ok { "succeeded" } else { "failed" };
        c.wait_status(id, want);
    }

    // A dry run names them and changes nothing.
    let dry = c.run(&["retry", "--status", "failed", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:#?}");
    assert!(dry.stdout.starts_with("would retry 3 task(s)"), "{dry:#?}");
    for id in &failing {
        assert!(dry.stdout.contains(id.as_str()), "{dry:#?}");
    }
    let all = c.run(&["tasks", "--output", "json"]).json();
    assert_eq!(
        all.as_array().unwrap().len(),
        4,
        "nothing was enqueued by the dry run"
    );

    // Retried: one new task each, linked to the old one, which is left as it was.
    let done = c.run(&[
        "retry",
        "--status",
        "failed",
        "--image",
        "cloudai/busybox:test",
    ]);
    assert!(done.ok().starts_with("retried 3 task(s)"), "{done:#?}");
    assert_eq!(lines_with(&done, " -> "), 3, "{done:#?}");
    let (old, new) = done
        .stdout
        .lines()
        .find_map(|l| l.split_once(" -> "))
        .unwrap();
    let t = c.task_json(new);
    assert_eq!(t["labels"]["cloudai.retry-of"], old, "{t}");
    assert_eq!(c.task_json(old)["status"], "failed");
    c.wait_status(new, "failed");

    // One task by id; a task still running is refused with a reason.
    let again = c.run(&["retry", &ok]);
    let again_id = again.ok().trim().to_string();
    assert_ne!(again_id, ok);
    c.wait_status(&again_id, "succeeded");
    let long: Vec<String> = (0..3)
        .map(|_| {
            enqueue(&[
                "--env",
                "CLOUDAI_FAKE_RUN_MS=60000",
                "--label",
                "batch=long",
            ])
        })
        .collect();
    for id in &long {
        c.wait_status(id, "running");
    }
    let refused = c.run(&["retry", &long[0]]);
    assert_eq!(refused.code, 16, "{refused:#?}");
    assert!(
        refused.stderr.contains("has not ended (running)"),
        "{refused:#?}"
    );

    // Bulk cancel: the unfinished ones only (the default), dry run first.
    let dry = c.run(&["cancel", "--image", "cloudai/busybox:*", "--dry-run"]);
    assert!(dry.ok().starts_with("would cancel 3 task(s)"), "{dry:#?}");
    assert_eq!(c.task_json(&long[0])["status"], "running");
    let done = c.run(&["cancel", "--image", "cloudai/busybox:*", "--output", "json"]);
    let v = done.json();
    assert_eq!(v["task_ids"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["dry_run"], false);
    for id in &long {
        c.wait_status(id, "cancelled");
    }

    // Misuse is refused before anything is sent.
    for (args, needle) in [
        (vec!["cancel"], "give a task id, or a filter"),
        (vec!["cancel", "abc", "--status", "queued"], "not both"),
        (
            vec!["retry", "abc", "--dry-run"],
            "--dry-run goes with a filter",
        ),
        (vec!["cancel", "--status", "done"], "done"),
    ] {
        let out = c.run(&args);
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        assert!(out.stderr.contains(needle), "{args:?}: {out:#?}");
    }
}

#[test]
fn bulk_actions_over_http_are_an_admins() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret").display().to_string();
    let add = |name: &str, role: &str| common::add_user(dir.path(), name, role);
    let (admin, sub) = (add("root", "admin"), add("sam", "submitter"));
    let http = format!("127.0.0.1:{}", common::free_port());
    let port = common::free_port();
    let mut args = common::master_args(port, dir.path());
    args.extend(
        [
            "--no-shell",
            "--http-listen",
            &http,
            "--require-auth",
            "--secret-file",
            &secret,
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _m = common::Proc::spawn("master", &args, &[]);
    let post = |path: &str, token: &str, body: &str| -> (u16, serde_json::Value) {
        let mut s = std::net::TcpStream::connect(&http).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (code, serde_json::from_str(body).unwrap_or_default())
    };
    eventually("the HTTP API", QUICK, || {
        std::net::TcpStream::connect(&http).ok()
    });
    let (code, v) = post(
        "/api/v1/tasks",
        &sub,
        r#"{"image": "cloudai/busybox:test"}"#,
    );
    assert_eq!(code, 201, "{v}");
    let filter = r#"{"image": "cloudai/busybox:test", "dry_run": true}"#;
    let (code, v) = post("/api/v1/tasks/cancel", &sub, filter);
    assert_eq!(code, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("act on many tasks"),
        "{v}"
    );
    let (code, v) = post("/api/v1/tasks/cancel", &admin, filter);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["task_ids"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["dry_run"], true);
    let (code, v) = post("/api/v1/tasks/cancel", &admin, r#"{"dry_run": true}"#);
    assert_eq!(code, 400, "an empty filter is refused: {v}");
    let (code, v) = post(
        "/api/v1/tasks/cancel",
        &admin,
        r#"{"image": "cloudai/busybox:test"}"#,
    );
    assert_eq!(
        (code, v["task_ids"].as_array().unwrap().len()),
        (200, 1),
        "{v}"
    );
    let id = v["task_ids"][0].as_str().unwrap().to_string();
    let (code, v) = post(&format!("/api/v1/tasks/{id}/retry"), &sub, "");
    assert_eq!(code, 201, "a submitter may retry: {v}");
    assert!(v["id"].as_str().is_some_and(|n| n != id), "{v}");

    // Workers: an admin's too; an unknown one is a 404 naming it.
    let (code, v) = post("/api/v1/workers/gpu-9/cordon", &sub, "");
    assert_eq!(code, 403, "{v}");
    let (code, v) = post(
        "/api/v1/workers/gpu-9/drain",
        &admin,
        r#"{"deadline_seconds": 5}"#,
    );
    assert_eq!(code, 404, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("gpu-9"),
        "{v}"
    );
    let (code, v) = post(
        "/api/v1/workers/gpu-9/drain",
        &admin,
        r#"{"deadline_seconds": -1}"#,
    );
    assert_eq!(code, 400, "{v}");
}

#[test]
fn a_cordoned_worker_gets_no_task_and_a_drain_moves_what_runs_at_its_deadline() {
    let c = Cluster::master_only();
    let spawn = |tag: &str| {
        let id = common::unique_worker_id(tag);
        let p = common::Proc::spawn(
            "worker",
            &[
                "worker",
                "--fake-executor",
                "--master",
                &c.url,
                "--id",
                &id,
                "--heartbeat-interval",
                "500ms",
            ],
            &[],
        );
        common::wait_worker_healthy(&c, &id);
        (p, id)
    };
    let ((_a, a), (_b, b)) = (spawn("a"), spawn("b"));
    let out = c.run(&["worker", "cordon", &a]);
    assert!(out.ok().contains("cordoned"), "{out:#?}");
    let table = c.run(&["workers"]);
    assert!(table.ok().contains("healthy (cordoned)"), "{table:#?}");

    // Nothing lands on the cordoned worker.
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let out = c.run(&[
                "enqueue",
                "cloudai/busybox:test",
                "--env",
                "CLOUDAI_FAKE_RUN_MS=60000",
            ]);
            out.ok().trim().to_string()
        })
        .collect();
    for id in &ids {
        let t = c.wait_status(id, "running");
        assert_eq!(t["worker"], b.as_str(), "{t}");
    }

    // Drain b (after lifting a's cordon): at the deadline its attempts are stopped and
    // the tasks run again on a, the first attempt recorded lost to the drain.
    c.run(&["worker", "uncordon", &a]).ok();
    let out = c.run(&["worker", "drain", &b, "--deadline", "1s"]);
    assert!(out.ok().contains("draining"), "{out:#?}");
    for id in &ids {
        let t = eventually(
            "the task to run again on the other worker",
            Duration::from_secs(60),
            || {
                let t = c.task_json(id);
                (t["status"] == "running" && t["worker"] == a.as_str()).then_some(t)
            },
        );
        let first = &t["attempts"][0];
        assert_eq!(first["outcome"], "lost", "{t}");
        assert!(first["error"].as_str().unwrap().contains("drained"), "{t}");
    }
    let w = c.run(&["workers", "--output", "json"]).json();
    let bw = w
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == b.as_str())
        .unwrap();
    assert_eq!(bw["cordoned"], true, "{bw}");
    assert!(
        bw["running_task_ids"].as_array().unwrap().is_empty(),
        "{bw}"
    );
    let out = c.run(&["worker", "uncordon", &b]);
    assert!(out.ok().contains("uncordoned"), "{out:#?}");
    // An unknown worker is named.
    let out = c.run(&["worker", "cordon", "nobody"]);
    assert_eq!(out.code, 15, "{out:#?}");
}
