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

    master.send_line("help");
    master.wait_stdout("commands:", SLOW);
    let out = master.stdout();
    for cmd in ["status", "workers", "task", "logs", "cancel", "exit"] {
        assert!(out.contains(cmd), "{cmd} missing from help:\n{out}");
    }

    master.send_line("workers");
    master.wait_stdout(&worker_id, SLOW);

    master.send_line("status");
    master.wait_stdout("workers:  1 (1 healthy", SLOW);

    master.send_line(&format!("task {worker_id} cloudai/busybox:test -- echo hi"));
    let out = master.wait_stdout(&format!("on worker {worker_id}"), SLOW);
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

    master.send_line("tasks");
    let out = master.wait_stdout("succeeded", SLOW);
    assert!(out.contains(&id), "{out}");

    master.send_line(&format!("logs {}", &id[..30]));
    master.wait_stdout("hi\n", SLOW);

    master.send_line(&format!("show {id}"));
    master.wait_stdout("exit code:", SLOW);

    // A mistake prints one error and the shell goes on.
    master.send_line("frobnicate");
    master.send_line("queue");
    master.wait_stdout("finished in the last minute", SLOW);
    assert!(master.stderr().contains("error:"), "{}", master.stderr());

    master.send_line("exit");
    let code = master.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 0, "stderr:\n{}", master.stderr());
    assert!(master.stdout().contains("stopping the master"));
    assert!(!master.stderr().contains("panicked"));
    // The master is gone: clients now get connection refused.
    assert_eq!(client(&["workers"]).code, 10);
}
