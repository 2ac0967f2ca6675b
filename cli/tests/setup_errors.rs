//! The production set-up as a first-time operator meets it (issue 18): every mistake on
//! the way gets one line that says what went wrong and what to do, with the exit code the
//! CLI documents (`cloudai --help`). Real binary, real TLS master, real certificates from
//! `cloudai certs init`; workers use the fake executor (this is about joining, not
//! containers).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, free_port, run_env, unique_worker_id, Out, Proc};

const QUICK: Duration = Duration::from_secs(30);

fn run(args: &[&str]) -> Out {
    run_env(args, &[], QUICK)
}

/// The one `error: ` line of a failed command; asserts there is exactly one.
fn error_line(out: &Out) -> String {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line: {out:#?}");
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
    lines[0].to_string()
}

fn certs(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    run(&["certs", "init", &d.display().to_string()]).ok();
    d
}

fn file(d: &Path, f: &str) -> String {
    d.join(f).display().to_string()
}

fn master(dir: &Path, listen: &str, extra: &[&str]) -> Proc {
    let store = format!("sqlite://{}", dir.join("m.db").display());
    let secret = dir.join("secret").display().to_string();
    let mut args = vec![
        "master",
        "--no-shell",
        "--listen",
        listen,
        "--store",
        &store,
        "--secret-file",
        &secret,
    ];
    args.extend_from_slice(extra);
    Proc::spawn("master", &args, &[])
}

/// A worker that should stop by itself: its exit code and its error line.
fn worker_stops(url: &str, extra: &[&str]) -> (i32, String) {
    let id = unique_worker_id("w");
    let mut args = vec!["worker", "--fake-executor", "--master", url, "--id", &id];
    args.extend_from_slice(extra);
    let mut w = Proc::spawn("worker", &args, &[]);
    let code = w.wait_exit(QUICK);
    let err = w
        .stderr()
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{}", w.stderr()))
        .to_string();
    (code, err)
}

#[test]
fn missing_arguments_are_named_with_the_usage() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["enqueue"], &["<IMAGE>", "cloudai enqueue --help"]),
        (
            &["users", "add", "alice"],
            &["--role", "cloudai users add --help"],
        ),
        (&["logs"], &["<ID>"]),
        (&["certs", "init"], &["<DIR>"]),
        (&["master", "--tls-cert", "x.pem"], &["--tls-key"]),
        (
            &["master", "--client-ca", "ca.pem"],
            &["--tls-cert", "--tls-key"],
        ),
        (&["worker", "--tls-cert", "x.pem"], &["--tls-key"]),
    ];
    for (args, needles) in cases {
        let out = run(args);
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        let line = error_line(&out);
        assert!(
            line.contains("required arguments were not provided"),
            "{line}"
        );
        for n in *needles {
            assert!(line.contains(n), "{args:?}: {n} missing from: {line}");
        }
        assert!(line.contains("usage: cloudai"), "{line}");
    }
}

#[test]
fn tls_mistakes_are_told_apart_and_the_master_logs_each_failed_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let good = certs(dir.path(), "good");
    let other = certs(dir.path(), "other");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let https = format!("https://{listen}");
    let http = format!("http://{listen}");
    let ca = file(&good, "ca.pem");
    let m = master(
        dir.path(),
        &listen,
        &[
            "--tls-cert",
            &file(&good, "master.pem"),
            "--tls-key",
            &file(&good, "master.key"),
            "--client-ca",
            &ca,
        ],
    );
    eventually("the TLS master to answer", QUICK, || {
        (run(&["queue", "stats", "--master", &https, "--ca", &ca]).code == 0).then_some(())
    });
    let plain_port = free_port();
    let plain_listen = format!("127.0.0.1:{plain_port}");
    let plain_dir = tempfile::tempdir().unwrap();
    let _plain = master(plain_dir.path(), &plain_listen, &[]);
    eventually("the plain master to answer", QUICK, || {
        (run(&["queue", "stats", "--master", &plain_listen]).code == 0).then_some(())
    });

    // The CLI: each mistake says what it is, exit 10, and none says "is it running?".
    let other_ca = file(&other, "ca.pem");
    let https_plain = format!("https://{plain_listen}");
    let cli: &[(Vec<&str>, &str)] = &[
        (vec!["--master", &http], "speaks TLS: use https://"),
        (
            vec!["--master", &https, "--ca", &other_ca],
            "not signed by the CA given with --ca",
        ),
        (
            vec!["--master", &https_plain, "--ca", &ca],
            "does not speak TLS: use http://",
        ),
    ];
    for (flags, needle) in cli {
        let mut args = vec!["queue", "stats"];
        args.extend(flags.iter().copied());
        let out = run(&args);
        assert_eq!(out.code, 10, "{flags:?}: {out:#?}");
        let line = error_line(&out);
        assert!(line.contains(needle), "{flags:?}: {line}");
        assert!(!line.contains("is it running"), "{line}");
    }

    // Workers stop on permanent mistakes, each with its reason and the CLI's codes.
    let with = |certs: &Path, cert: &str, key: &str| {
        vec![
            "--ca".to_string(),
            ca.clone(),
            "--tls-cert".into(),
            file(certs, cert),
            "--tls-key".into(),
            file(certs, key),
        ]
    };
    let worker_cases: Vec<(String, Vec<String>, i32, &str)> = vec![
        (
            https.clone(),
            with(&other, "worker.pem", "worker.key"),
            10,
            "not signed by the CA the master trusts",
        ),
        (
            https.clone(),
            with(&good, "master.pem", "master.key"),
            2,
            "not a client certificate",
        ),
        (
            https.clone(),
            vec![
                "--ca".into(),
                file(&other, "ca.pem"),
                "--tls-cert".into(),
                file(&good, "worker.pem"),
                "--tls-key".into(),
                file(&good, "worker.key"),
            ],
            10,
            "not signed by the CA given with --ca",
        ),
        (http.clone(), vec![], 10, "speaks TLS: use https://"),
        (
            https_plain.clone(),
            vec!["--ca".into(), ca.clone()],
            10,
            "does not speak TLS: use http://",
        ),
        (
            https.clone(),
            with(&good, "worker.pem", "worker.key")
                .into_iter()
                .take(4)
                .chain(["--tls-key".to_string(), file(&other, "worker.key")])
                .collect(),
            2,
            "does not fit --tls-cert",
        ),
        (
            https.clone(),
            vec!["--ca".into(), ca.clone()],
            17,
            "client certificate",
        ),
    ];
    for (url, flags, code, needle) in &worker_cases {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let (got, line) = worker_stops(url, &flags);
        assert_eq!(got, *code, "{flags:?}: {line}");
        assert!(line.contains(needle), "{flags:?}: {line}");
    }

    // The master logged the failed handshakes with the peer and rustls's reason.
    let log = eventually("the failed handshakes in the master's log", QUICK, || {
        let log = m.stderr();
        (log.matches("tls handshake failed").count() >= 2).then_some(log)
    });
    // Another CA's client certificate; a plain HTTP/2 client on the TLS port.
    for reason in ["peer=127.0.0.1:", "BadSignature", "InvalidContentType"] {
        assert!(
            log.lines()
                .any(|l| l.contains("tls handshake failed") && l.contains(reason)),
            "{reason} not logged:\n{log}"
        );
    }
}

#[test]
fn ipv6_loopback_works_with_tls_where_the_machine_has_it() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let good = certs(dir.path(), "good");
    let port = free_port();
    let listen = format!("[::1]:{port}");
    let ca = file(&good, "ca.pem");
    let _m = master(
        dir.path(),
        &listen,
        &[
            "--tls-cert",
            &file(&good, "master.pem"),
            "--tls-key",
            &file(&good, "master.key"),
        ],
    );
    let url = format!("https://{listen}");
    eventually("the master on [::1] to answer over TLS", QUICK, || {
        (run(&["queue", "stats", "--master", &url, "--ca", &ca]).code == 0).then_some(())
    });
}

#[test]
fn a_master_with_a_key_of_another_certificate_stops_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let good = certs(dir.path(), "good");
    let other = certs(dir.path(), "other");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut m = master(
        dir.path(),
        &listen,
        &[
            "--tls-cert",
            &file(&good, "master.pem"),
            "--tls-key",
            &file(&other, "master.key"),
        ],
    );
    assert_eq!(m.wait_exit(QUICK), 2, "{}", m.stderr());
    let err = m.stderr();
    assert!(!err.contains("master serving"), "{err}");
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert!(
        line.contains("does not fit --tls-cert") && line.contains("other/master.key"),
        "{line}"
    );

    // A worker's certificate is not a server's.
    let listen = format!("127.0.0.1:{}", free_port());
    let mut m = master(
        dir.path(),
        &listen,
        &[
            "--tls-cert",
            &file(&good, "worker.pem"),
            "--tls-key",
            &file(&good, "worker.key"),
        ],
    );
    assert_eq!(m.wait_exit(QUICK), 2, "{}", m.stderr());
    let err = m.stderr();
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert!(line.contains("is not a server certificate"), "{line}");
}

#[test]
fn refusals_say_what_happened_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("u.db").display());
    let secret = dir.path().join("secret").display().to_string();
    let add = |name: &str| {
        run(&[
            "users",
            "add",
            name,
            "--role",
            "admin",
            "--store",
            &store,
            "--secret-file",
            &secret,
        ])
    };
    add("alice").ok();
    let dup = add("alice");
    assert_eq!(dup.code, 16, "{dup:#?}");
    let line = error_line(&dup);
    assert!(line.contains("user \"alice\" already exists"), "{line}");
    assert!(
        !line.contains("invalid user name") && !line.contains("store:"),
        "{line}"
    );

    let c = common::Cluster::with_worker();
    let id = c.run(&["enqueue", "--wait", "cloudai/busybox:test", "--", "true"]);
    assert_eq!(id.code, 0, "{id:#?}");
    let task = c.run(&["tasks", "--output", "json"]).json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cancel = c.run(&["cancel", &task]);
    assert_eq!(cancel.code, 16, "{cancel:#?}");
    let line = error_line(&cancel);
    assert!(line.contains("already ended (succeeded)"), "{line}");
    assert!(!line.contains("illegal transition"), "{line}");

    let empty = run_env(
        &["tasks", "--master", &c.url],
        &[("CLOUDAI_TOKEN", "")],
        QUICK,
    );
    assert_eq!(empty.code, 17, "{empty:#?}");
    assert!(
        error_line(&empty).contains("the API token is empty"),
        "{empty:#?}"
    );
}
