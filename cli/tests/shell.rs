//! End-to-end: a scripted session of the interactive `master>` shell, driven through
//! piped stdin (`cloudai master --shell`), with a real Docker worker.

mod common;

use std::time::Duration;

use common::{eventually, master_args, run_env, unique_worker_id, Proc, SLOW};

#[test]
fn scripted_shell_session() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let history = dir.path().join("history");
    let mut args = master_args(port, dir.path());
    args.push("--shell".into());
    args.push("--history-file".into());
    args.push(history.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut master = Proc::spawn("master shell", &args, &[]);

    let worker_id = unique_worker_id("shell");
    let _worker = Proc::spawn(
        "worker",
        &[
            "worker",
            "--master",
            &url,
            "--id",
            &worker_id,
            "--heartbeat-interval",
            "500ms",
        ],
        &[],
    );
    let client = |a: &[&str]| run_env(a, &[("CLOUDAI_MASTER", &url)], SLOW);
    eventually("the worker to register", Duration::from_secs(60), || {
        client(&["workers"])
            .stdout
            .contains(&worker_id)
            .then_some(())
    });

    // Each command's answer is looked for only in what it printed after being sent.
    let mut ask = |line: &str, needle: &str| -> String {
        let mark = master.mark();
        master.send_line(line);
        master.wait_stdout_after(mark, needle, SLOW)
    };

    let out = ask("help", "commands:");
    for cmd in ["status", "workers", "task", "logs", "cancel", "exit"] {
        assert!(out.contains(cmd), "{cmd} missing from help:\n{out}");
    }

    let out = ask("workers", &worker_id);
    assert!(out.contains("HEALTH") && out.contains("healthy"), "{out}");

    let out = ask("status", "workers:  1 (1 healthy");
    assert!(out.contains("capacity:"), "{out}");
    assert!(
        out.contains("(epoch 1), 1 master(s) in the group"),
        "the leader line: {out}"
    );

    let out = ask(
        &format!("task {worker_id} cloudai/busybox:test -- echo hi"),
        &format!("on worker {worker_id}"),
    );
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("enqueued "))
        .and_then(|l| l.split_whitespace().next())
        .expect("enqueued line")
        .to_string();
    eventually("the pinned task to succeed", SLOW, || {
        let t = client(&["task", &id, "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&t.stdout).ok()?;
        (v["status"] == "succeeded" && v["worker"] == worker_id.as_str()).then_some(())
    });

    let out = ask("tasks", &id);
    let row = out.lines().find(|l| l.starts_with(&id)).expect("task row");
    assert!(
        row.contains("succeeded") && row.contains(&worker_id),
        "{row}"
    );

    let out = ask(&format!("logs {}", &id[..30]), "hi\n");
    assert_eq!(out, "hi\n");

    let out = ask(&format!("show {id}"), "attempts: 1");
    assert!(out.contains("exit code:"), "{out}");

    let out = ask("queue", "oldest queued:");
    assert!(out.contains("succeeded"), "{out}");

    // Arrays and schedules from the shell, as from the CLI.
    let out = ask(
        "enqueue --array 0-2%1 cloudai/busybox:test -- echo part",
        "\n",
    );
    let array = out.trim().to_string();
    let out = ask(&format!("array {array}"), "3 tasks, at most 1 at once");
    assert!(out.contains(&format!("array {array}")), "{out}");
    let out = ask(
        "schedule add nightly --cron '0 3 * * *' --tz Europe/Berlin cloudai/busybox:test",
        "next:",
    );
    assert!(
        out.contains("schedule nightly: '0 3 * * *' in Europe/Berlin"),
        "{out}"
    );
    let out = ask("schedule list", "nightly\t0 3 * * *\tEurope/Berlin");
    assert!(out.contains("NAME\tCRON"), "{out}");
    let out = ask("schedule rm nightly", "removed schedule nightly");
    assert!(out.contains("its runs stay"), "{out}");

    // A mistake prints one error on stderr and the shell goes on.
    let out = ask("frobnicate\nqueue stats", "oldest queued:");
    assert!(!out.contains("frobnicate"), "{out}");
    assert!(
        master
            .stderr()
            .contains("error: unrecognized subcommand 'frobnicate'"),
        "{}",
        master.stderr()
    );

    master.send_line("exit");
    let code = master.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 0, "stderr:\n{}", master.stderr());
    assert!(master.stdout().contains("stopping the master"));
    assert!(!master.stderr().contains("panicked"));
    // The master is gone: clients now get connection refused.
    assert_eq!(client(&["workers"]).code, 10);
}
