//! End-to-end: the `master>` shell on a real pseudo-terminal (through util-linux
//! `script`), as a person uses it: the prompt, tab completion, Ctrl-C at the prompt and
//! Ctrl-C stopping `logs -f` without stopping the master, then `exit`.

mod common;

use std::time::Duration;

use common::{eventually, master_args, run_env, unique_worker_id, Proc, BIN, SLOW};

/// Types `keys` one at a time, as a person does.
fn type_keys(p: &mut Proc, keys: &str) {
    for b in keys.bytes() {
        p.send_raw(&[b]);
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// `script` quotes nothing: the command is one shell string.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn shell_on_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: util-linux `script` is not installed, so no pseudo-terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut args = master_args(port, dir.path());
    args.push("--history-file".into());
    args.push(dir.path().join("history").display().to_string());
    // `exec`: `script` runs the command through $SHELL, and a shell that stays as the
    // parent (dash does) takes the Ctrl-C meant for `logs -f` and exits 130 itself.
    let cmd = std::iter::once("exec".to_string())
        .chain(std::iter::once(BIN.to_string()))
        .chain(args)
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut master = Proc::spawn_program(
        "master on a pty",
        "script",
        &["-qfec", &cmd, "/dev/null"],
        &[("TERM", "xterm"), ("NO_COLOR", "1")],
    );
    master.wait_stdout("master> ", SLOW);

    // A worker with the fake executor: tasks are timers, no Docker needed here.
    let worker_id = unique_worker_id("tty");
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
            "--fake-executor",
        ],
        &[],
    );
    let client = |a: &[&str]| run_env(a, &[("CLOUDAI_MASTER", &url)], SLOW);
    eventually("the worker to register", SLOW, || {
        client(&["workers"])
            .stdout
            .contains(&worker_id)
            .then_some(())
    });

    // Tab completes the command name.
    let mark = master.mark();
    type_keys(&mut master, "stat\t");
    master.wait_stdout_after(mark, "status", SLOW);
    type_keys(&mut master, "\r");
    master.wait_stdout_after(mark, "finished in the last minute", SLOW);

    // Ctrl-C at the prompt does not stop the master.
    let mark = master.mark();
    master.send_raw(b"\x03");
    master.wait_stdout_after(mark, "type `exit`", SLOW);

    // Ctrl-C stops `logs -f`, not the master.
    let id = client(&[
        "enqueue",
        "cloudai/busybox:test",
        "-e",
        "CLOUDAI_FAKE_RUN_MS=120000",
        "-e",
        "CLOUDAI_FAKE_STDOUT=tick",
    ])
    .ok()
    .trim()
    .to_string();
    eventually("the long task to run", SLOW, || {
        let t = client(&["task", &id, "--output", "json"]).json();
        (t["status"] == "running").then_some(())
    });
    let mark = master.mark();
    type_keys(&mut master, &format!("logs -f {id}\r"));
    master.wait_stdout_after(mark, "tick", SLOW);
    master.send_raw(b"\x03");
    master.wait_stdout_after(mark, "the master keeps running", SLOW);
    assert_eq!(client(&["workers"]).code, 0, "the master still answers");
    let mark = master.mark();
    // A paste: the whole line arrives in one read (rustyline 14 stalled on this with an
    // external printer attached, upstream kkawakam/rustyline#976; 19 does not).
    master.send_raw(b"workers\r");
    master.wait_stdout_after(mark, &worker_id, SLOW);

    type_keys(&mut master, "exit\r");
    let code = master.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 0, "stdout:\n{}", master.stdout());
    assert!(master.stdout().contains("stopping the master"));
    let history = std::fs::read_to_string(dir.path().join("history")).unwrap();
    assert!(
        history.contains("status") && history.contains("logs -f"),
        "{history}"
    );
}
