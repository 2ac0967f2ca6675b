//! End-to-end: what a user sees when something is wrong before any task runs, and the
//! help. Runs the real binary; no master needed except where said.

mod common;

use std::time::Duration;

use common::{free_port, run_env};

const QUICK: Duration = Duration::from_secs(30);

fn run(args: &[&str]) -> common::Out {
    run_env(args, &[], QUICK)
}

fn one_line_error(out: &common::Out) -> &str {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr: {out:#?}");
    assert!(lines[0].starts_with("error: "), "{out:#?}");
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
    lines[0]
}

#[test]
fn help_lists_every_subcommand_and_the_exit_codes() {
    let out = run(&["--help"]);
    let help = out.ok();
    for cmd in [
        "master", "worker", "enqueue", "tasks", "task", "logs", "cancel", "workers", "queue",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing from:\n{help}"
        );
    }
    assert!(help.contains("Exit codes:"), "{help}");
    for code in ["16", "17", "18", "19"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(code)),
            "exit code {code} missing from:\n{help}"
        );
    }
    let enqueue = run(&["enqueue", "--help"]);
    assert!(enqueue.ok().contains("Examples:"));
    assert!(enqueue.stdout.contains("--memory"));
    let master = run(&["master", "--help"]);
    for flag in ["--listen", "--store", "--no-shell", "--shell"] {
        assert!(master.ok().contains(flag), "{flag}");
    }
}

#[test]
fn connection_refused_names_the_url_and_suggests_a_master() {
    let url = format!("http://127.0.0.1:{}", free_port());
    for args in [
        vec!["tasks"],
        vec!["workers"],
        vec!["queue", "stats"],
        vec!["task", "0192"],
        vec!["enqueue", "cloudai/busybox:test"],
    ] {
        let mut a = args.clone();
        a.extend(["--master", url.as_str()]);
        let out = run(&a);
        assert_eq!(out.code, 10, "{args:?}: {out:#?}");
        let line = one_line_error(&out);
        assert!(line.contains(&url), "{line}");
        assert!(line.contains("cloudai master"), "{line}");
    }
    // The environment variable works the same way.
    let out = run_env(&["workers"], &[("CLOUDAI_MASTER", &url)], QUICK);
    assert_eq!(out.code, 10);
    assert!(out.stderr.contains(&url));
}

#[test]
fn bad_units_images_and_arguments_have_their_own_codes() {
    // Checked before any connection: no master needed.
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["enqueue", "cloudai/busybox:test", "--memory", "12XB"],
            14,
            "12XB",
        ),
        (
            &["enqueue", "cloudai/busybox:test", "--timeout", "soon"],
            14,
            "soon",
        ),
        (
            &["enqueue", "cloudai/busybox:test", "--cpu", "lots"],
            14,
            "lots",
        ),
        (&["enqueue", "Not A/Valid:image"], 13, "image"),
        (&["enqueue", "busybox:"], 13, "image"),
        (&["enqueue", "busybox", "-e", "NOEQUALS"], 2, "NOEQUALS"),
        (
            &["enqueue", "busybox", "--worker", "bad id"],
            2,
            "worker id",
        ),
        (&["tasks", "--status", "done"], 2, "done"),
        (&["tasks", "--nope"], 2, "--nope"),
        (&["frobnicate"], 2, "frobnicate"),
        (
            &["logs", "x", "--stdout-only", "--stderr-only"],
            2,
            "cannot be used",
        ),
    ];
    for (args, code, needle) in cases {
        let mut a = args.to_vec();
        a.extend(["--master", "http://127.0.0.1:1"]);
        let out = run(&a);
        assert_eq!(out.code, *code, "{args:?}: {out:#?}");
        let line = one_line_error(&out);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
}

/// A SQLite file serves one master: a second one on the same file exits at once with one
/// line that names the file and the master holding it; the first keeps serving. Wrong
/// leader settings are refused before anything starts.
#[test]
fn a_second_master_on_one_sqlite_file_is_refused_naming_the_holder() {
    let c = common::Cluster::master_only();
    let port = free_port();
    let mut args = common::master_args(port, c.dir.path());
    args.push("--no-shell".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args);
    assert_eq!(out.code, 2, "{out:#?}");
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{out:#?}");
    let line = errors[0];
    assert!(
        line.contains("x.db") && line.contains("in use by another master"),
        "{line}"
    );
    let first_port = c.url.rsplit(':').next().unwrap();
    assert!(line.contains(&format!("127.0.0.1:{first_port}")), "{line}");
    assert!(line.contains("use MongoDB for several"), "{line}");
    assert_eq!(
        c.run(&["queue", "stats"]).code,
        0,
        "the first master still serves"
    );
    // It is one master's group: it leads, under epoch 1.
    let status = c.run(&["master", "status", "--output", "json"]).json();
    assert_eq!(status["epoch"], 1, "{status:#}");
    assert_eq!(status["masters"].as_array().unwrap().len(), 1, "{status:#}");
    assert_eq!(status["masters"][0]["role"], "leader", "{status:#}");
    let text = c.run(&["master", "status"]);
    assert!(text.ok().contains("leader: 127.0.0.1:"), "{}", text.stdout);

    let bad = run(&[
        "master",
        "--no-shell",
        "--leader-ttl",
        "2s",
        "--leader-renew",
        "1s",
    ]);
    assert_eq!(bad.code, 2, "{bad:#?}");
    assert!(one_line_error(&bad).contains("--leader-renew"), "{bad:#?}");
}
