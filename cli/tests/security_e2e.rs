//! End-to-end security tests with real processes: the `cloudai` binary as master, workers
//! (fake executor: these tests are about who may do what, not about containers) and CLI.
//!
//! Covered: a worker with a wrong or missing join token is refused; a viewer cannot
//! enqueue; a submitter cannot cancel another user's task (but its own, and an admin any);
//! tokens are not stored in plain text (the SQLite files are read byte by byte); TLS with
//! the wrong CA fails and with the right CA works; mTLS refuses a worker without a client
//! certificate; `--insecure` on a non-loopback address warns; loopback is local-dev mode.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, free_port, run_env, unique_worker_id, Out, Proc, SLOW};

const QUICK: Duration = Duration::from_secs(30);

/// `cloudai users add NAME --role ROLE` against the store in `dir`; returns the token.
fn add_user(dir: &Path, name: &str, role: &str) -> String {
    let out = run_env(
        &[
            "users",
            "add",
            name,
            "--role",
            role,
            "--store",
            &store_uri(dir),
            "--secret-file",
            &secret_file(dir),
        ],
        &[],
        QUICK,
    );
    let token = out.ok().trim().to_string();
    assert!(
        token.starts_with("cai_"),
        "a token on stdout alone: {out:#?}"
    );
    assert!(out.stderr.contains("shown only this once"), "{out:#?}");
    token
}

fn store_uri(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("cloudai.db").display())
}

fn secret_file(dir: &Path) -> String {
    dir.join("cloudai.secret").display().to_string()
}

/// A master started with `extra` flags, its store and secret in `dir`.
fn start_master(dir: &Path, port: u16, listen_ip: &str, extra: &[&str]) -> Proc {
    let listen = format!("{listen_ip}:{port}");
    let store = store_uri(dir);
    let secret = secret_file(dir);
    let mut args = vec![
        "master",
        "--no-shell",
        "--listen",
        &listen,
        "--store",
        &store,
        "--secret-file",
        &secret,
        "--heartbeat-interval",
        "500ms",
    ];
    args.extend_from_slice(extra);
    Proc::spawn("master", &args, &[])
}

/// Runs a client command against `url` with `token` (none when empty) and extra flags.
fn client(url: &str, token: Option<&str>, args: &[&str]) -> Out {
    let mut envs = vec![("CLOUDAI_MASTER", url)];
    if let Some(t) = token {
        envs.push(("CLOUDAI_TOKEN", t));
    }
    run_env(args, &envs, QUICK)
}

fn failed_with(out: &Out, needle: &str) {
    assert_ne!(out.code, 0, "expected a refusal: {out:#?}");
    // Auth refusals have exit codes of their own: 17 unauthenticated, 18 not allowed.
    let want = if needle.contains("token") {
        Some(17)
    } else if needle.contains("may not") || needle.contains("submitted by") {
        Some(18)
    } else {
        None
    };
    if let Some(code) = want {
        assert_eq!(out.code, code, "exit code for {needle:?}: {out:#?}");
    }
    assert!(
        out.stderr.contains(needle),
        "stderr should say {needle:?}: {out:#?}"
    );
}

fn start_worker(url: &str, id: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "worker",
        "--master",
        url,
        "--id",
        id,
        "--fake-executor",
        "--heartbeat-interval",
        "500ms",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(&format!("worker {id}"), &args, &[])
}

fn worker_health(url: &str, token: Option<&str>, extra: &[&str], id: &str) -> Option<String> {
    let mut args = vec!["workers", "--output", "json"];
    args.extend_from_slice(extra);
    let out = client(url, token, &args);
    if out.code != 0 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    v.as_array()?
        .iter()
        .find(|w| w["id"] == id)
        .and_then(|w| w["health"].as_str().map(str::to_string))
}

/// The join token the master printed at its first start.
fn printed_join_token(master: &Proc) -> String {
    let token = eventually("the master to print the join token", QUICK, || {
        let out = master.stdout();
        out.lines()
            .find(|l| l.starts_with("caj_"))
            .map(|l| l.trim().to_string())
    });
    assert!(
        !master.stderr().contains(&token),
        "the join token must not be in the log stream"
    );
    token
}

/// Every byte of the SQLite store (main file and WAL) as lossy text.
fn store_bytes(dir: &Path) -> String {
    let mut all = Vec::new();
    for name in ["cloudai.db", "cloudai.db-wal"] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            all.extend(b);
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[test]
fn tokens_roles_join_token_and_nothing_stored_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let admin = add_user(dir.path(), "root", "admin");
    let sub1 = add_user(dir.path(), "sub1", "submitter");
    let sub2 = add_user(dir.path(), "sub2", "submitter");
    let viewer = add_user(dir.path(), "vera", "viewer");

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let master = start_master(dir.path(), port, "127.0.0.1", &["--require-auth"]);
    let join = printed_join_token(&master);
    assert!(join.starts_with("caj_"));
    eventually("the master to answer", QUICK, || {
        (client(&url, Some(&admin), &["queue", "stats"]).code == 0).then_some(())
    });

    // Clients: missing, wrong, and too-small credentials.
    failed_with(&client(&url, None, &["tasks"]), "missing API token");
    failed_with(
        &client(&url, Some("cai_not-a-real-token"), &["tasks"]),
        "invalid API token",
    );
    client(&url, Some(&viewer), &["tasks"]).ok();
    failed_with(
        &client(&url, Some(&viewer), &["enqueue", "cloudai/busybox:test"]),
        "user vera has role viewer and may not enqueue tasks",
    );
    eventually("the refusal to be logged with the peer", QUICK, || {
        let log = master.stderr();
        (log.contains("request refused") && log.contains("peer=127.0.0.1:")).then_some(())
    });

    // Ownership of cancels (no worker yet, so tasks stay queued).
    let t1 = client(&url, Some(&sub1), &["enqueue", "cloudai/busybox:test"])
        .ok()
        .trim()
        .to_string();
    let t2 = client(&url, Some(&sub1), &["enqueue", "cloudai/busybox:test"])
        .ok()
        .trim()
        .to_string();
    failed_with(
        &client(&url, Some(&sub2), &["cancel", &t1]),
        "was submitted by sub1",
    );
    failed_with(
        &client(&url, Some(&viewer), &["cancel", &t1]),
        "may not cancel",
    );
    client(&url, Some(&sub1), &["cancel", &t1]).ok();
    client(&url, Some(&admin), &["cancel", &t2]).ok();
    let shown = client(&url, Some(&viewer), &["task", &t1, "--output", "json"]).json();
    assert_eq!(shown["status"], "cancelled");

    // Workers: a wrong or missing join token is refused, the right one joins.
    let mut bad = start_worker(
        &url,
        &unique_worker_id("bad"),
        &["--join-token", "caj_wrong"],
    );
    assert_ne!(
        bad.wait_exit(QUICK),
        0,
        "a worker with a wrong token gives up"
    );
    assert!(
        bad.stderr().contains("invalid join token"),
        "{}",
        bad.stderr()
    );
    let mut none = start_worker(&url, &unique_worker_id("none"), &[]);
    assert_ne!(none.wait_exit(QUICK), 0);
    assert!(
        none.stderr().contains("missing join token"),
        "{}",
        none.stderr()
    );
    eventually("the refused registration to be logged", QUICK, || {
        master
            .stderr()
            .contains("worker registration refused")
            .then_some(())
    });
    let good_id = unique_worker_id("good");
    let _good = start_worker(&url, &good_id, &["--join-token", &join]);
    eventually(
        "the worker with the right token to be healthy",
        QUICK,
        || {
            (worker_health(&url, Some(&viewer), &[], &good_id).as_deref() == Some("healthy"))
                .then_some(())
        },
    );
    // A second worker cannot take over the id while the first is connected.
    let thief = start_worker(&url, &good_id, &["--join-token", &join]);
    eventually("the takeover to be refused", QUICK, || {
        thief.stderr().contains("already connected").then_some(())
    });
    drop(thief);

    // The submitter's task runs on the worker and records who submitted it.
    let t3 = client(
        &url,
        Some(&sub2),
        &["enqueue", "--wait", "cloudai/busybox:test"],
    );
    assert_eq!(t3.code, 0, "{t3:#?}");

    drop(master);
    let bytes = store_bytes(dir.path());
    for (what, token) in [
        ("admin", &admin),
        ("sub1", &sub1),
        ("sub2", &sub2),
        ("viewer", &viewer),
        ("join", &join),
    ] {
        let secret_part = &token[4..];
        assert!(
            !bytes.contains(secret_part),
            "the {what} token is stored in plain text"
        );
    }
    assert!(bytes.contains("hmac-sha256:"), "hashes are stored");
    let submitted: Vec<String> = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = cloudai_queue::open_store(
            &store_uri(dir.path()),
            cloudai_queue::StoreOptions::default(),
        )
        .await
        .unwrap();
        let tasks = store
            .list(&cloudai_queue::TaskQuery::default())
            .await
            .unwrap();
        let mut v: Vec<String> = tasks
            .into_iter()
            .map(|t| t.submitted_by.unwrap_or_default())
            .collect();
        v.sort();
        v
    });
    assert_eq!(submitted, vec!["sub1", "sub1", "sub2"]);
}

/// `cloudai certs init DIR`; returns DIR.
fn certs(dir: &Path, name: &str) -> PathBuf {
    let out_dir = dir.join(name);
    let out = run_env(
        &["certs", "init", &out_dir.display().to_string()],
        &[],
        QUICK,
    );
    assert!(out.ok().contains("--tls-cert"), "{out:#?}");
    out_dir
}

#[test]
fn tls_checks_the_ca_and_mtls_requires_a_worker_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let good = certs(dir.path(), "certs");
    let other = certs(dir.path(), "other");
    let p = |d: &Path, f: &str| d.join(f).display().to_string();
    let port = free_port();
    let https = format!("https://127.0.0.1:{port}");
    let (cert, key, ca) = (
        p(&good, "master.pem"),
        p(&good, "master.key"),
        p(&good, "ca.pem"),
    );
    let _master = start_master(
        dir.path(),
        port,
        "127.0.0.1",
        &["--tls-cert", &cert, "--tls-key", &key, "--client-ca", &ca],
    );
    eventually("the TLS master to answer with the right CA", QUICK, || {
        (client(&https, None, &["queue", "stats", "--ca", &ca]).code == 0).then_some(())
    });

    let wrong = client(
        &https,
        None,
        &["queue", "stats", "--ca", &p(&other, "ca.pem")],
    );
    assert_ne!(wrong.code, 0, "the wrong CA must fail: {wrong:#?}");
    assert!(
        wrong.stderr.to_lowercase().contains("certificate")
            || wrong.stderr.to_lowercase().contains("issuer"),
        "the failure names the certificate: {wrong:#?}"
    );
    failed_with(&client(&https, None, &["queue", "stats"]), "needs --ca");
    let plain = client(
        &format!("http://127.0.0.1:{port}"),
        None,
        &["queue", "stats"],
    );
    assert_ne!(
        plain.code, 0,
        "plain http to a TLS master fails: {plain:#?}"
    );

    // mTLS: a worker without a client certificate is refused; with one it joins.
    let mut anon = start_worker(&https, &unique_worker_id("anon"), &["--ca", &ca]);
    assert_ne!(anon.wait_exit(QUICK), 0);
    assert!(
        anon.stderr().contains("client certificate"),
        "{}",
        anon.stderr()
    );
    let id = unique_worker_id("mtls");
    let _w = start_worker(
        &https,
        &id,
        &[
            "--ca",
            &ca,
            "--tls-cert",
            &p(&good, "worker.pem"),
            "--tls-key",
            &p(&good, "worker.key"),
        ],
    );
    eventually(
        "the worker with a client certificate to be healthy",
        SLOW,
        || {
            (worker_health(&https, None, &["--ca", &ca], &id).as_deref() == Some("healthy"))
                .then_some(())
        },
    );
}

#[test]
fn insecure_off_loopback_warns_and_loopback_is_local_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let insecure = start_master(dir.path(), port, "0.0.0.0", &["--insecure"]);
    eventually("the loud warning", QUICK, || {
        let err = insecure.stderr();
        (err.contains("INSECURE") && err.contains("authentication OFF")).then_some(())
    });
    drop(insecure);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let required = start_master(dir.path(), port, "0.0.0.0", &[]);
    eventually(
        "auth to be required off loopback, with a warning about TLS",
        QUICK,
        || {
            let log = required.stderr();
            (log.contains("auth is required") && log.contains("WARN") && log.contains("NO TLS on"))
                .then_some(())
        },
    );
    let url = format!("http://127.0.0.1:{port}");
    eventually("an unauthenticated call to be refused", QUICK, || {
        let out = client(&url, None, &["tasks"]);
        out.stderr.contains("missing API token").then_some(())
    });
    drop(required);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let dev = start_master(dir.path(), port, "127.0.0.1", &[]);
    eventually("local-dev mode to be announced", QUICK, || {
        dev.stderr().contains("local-dev mode").then_some(())
    });
    let url = format!("http://127.0.0.1:{port}");
    eventually("local-dev mode to need no token", QUICK, || {
        (client(&url, None, &["tasks"]).code == 0).then_some(())
    });
    assert!(
        !Path::new(&secret_file(dir.path())).exists(),
        "local-dev mode sets up no secret"
    );
}

#[test]
fn the_master_shell_works_with_tls_and_required_auth() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path(), "certs");
    let p = |f: &str| c.join(f).display().to_string();
    let port = free_port();
    let (cert, key, ca) = (p("master.pem"), p("master.key"), p("ca.pem"));
    let listen = format!("127.0.0.1:{port}");
    let store = store_uri(dir.path());
    let secret = secret_file(dir.path());
    let mut master = Proc::spawn(
        "master shell",
        &[
            "master",
            "--shell",
            "--require-auth",
            "--listen",
            &listen,
            "--store",
            &store,
            "--secret-file",
            &secret,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--client-ca",
            &ca,
        ],
        &[],
    );
    // The shell's own admin token and CA let it in; an outside client without a token
    // is still refused.
    let mark = master.mark();
    master.send_line("queue stats");
    master.wait_stdout_after(mark, "oldest queued:", QUICK);
    let https = format!("https://127.0.0.1:{port}");
    failed_with(
        &client(&https, None, &["tasks", "--ca", &ca]),
        "missing API token",
    );
    master.send_line("exit");
    assert_eq!(master.wait_exit(QUICK), 0, "{}", master.stderr());
}

#[test]
fn a_fork_bomb_task_is_contained_and_the_docker_worker_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _master = start_master(dir.path(), port, "127.0.0.1", &[]);
    let id = unique_worker_id("bomb");
    let _worker = Proc::spawn(
        "docker worker",
        &[
            "worker",
            "--master",
            &url,
            "--id",
            &id,
            "--heartbeat-interval",
            "500ms",
            "--stop-grace",
            "1s",
            "--container-pids-limit",
            "64",
        ],
        &[],
    );
    eventually("the docker worker to be healthy", SLOW, || {
        (worker_health(&url, None, &[], &id).as_deref() == Some("healthy")).then_some(())
    });
    let bomb = client(
        &url,
        None,
        &[
            "enqueue",
            "--timeout",
            "5s",
            "cloudai/busybox:test",
            "--",
            "sh",
            "-c",
            "bomb() { while :; do bomb & done; }; bomb & while :; do :; done",
        ],
    );
    let bomb_id = bomb.ok().trim().to_string();
    let task = eventually("the bomb to time out", SLOW, || {
        let t = client(&url, None, &["task", &bomb_id, "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&t.stdout).ok()?;
        (v["status"] == "timed_out").then_some(v)
    });
    assert_eq!(task["worker"], id.as_str());
    let logs = client(&url, None, &["logs", &bomb_id]);
    assert!(
        logs.stdout.contains("can't fork") || logs.stderr.contains("can't fork"),
        "the bomb hit the pid limit: {logs:#?}"
    );
    assert_eq!(
        worker_health(&url, None, &[], &id).as_deref(),
        Some("healthy"),
        "the worker stays healthy"
    );
    let after = client(
        &url,
        None,
        &[
            "enqueue",
            "--wait",
            "cloudai/busybox:test",
            "--",
            "echo",
            "fine",
        ],
    );
    assert_eq!(after.code, 0, "{after:#?}");
    assert!(after.stdout.contains("fine"), "{after:#?}");
}
