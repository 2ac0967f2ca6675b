//! Users and the worker join token through the master, with the real binary and auth on:
//! `cloudai users add|list|remove` and `cloudai token rotate` over gRPC (`AdminService`),
//! the same over HTTP (`/api/v1/users`, `/api/v1/join-token/rotate`), the store-direct
//! bootstrap (`--store`), and a rotation ending the streams of workers that joined with
//! the old token once its grace is over. Workers use the fake executor.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{eventually, free_port, run_env, unique_worker_id, Out, Proc};

const QUICK: Duration = Duration::from_secs(30);

/// A master requiring auth, its store and secret in a temp dir, with the HTTP API.
struct Secure {
    url: String,
    http: String,
    store: String,
    secret: String,
    master: Proc,
    _dir: tempfile::TempDir,
}

impl Secure {
    /// Bootstraps an admin with `--store` (no master runs yet), then starts the master;
    /// returns it and the admin's token.
    fn start() -> (Secure, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("sqlite://{}", dir.path().join("x.db").display());
        let secret = dir.path().join("secret").display().to_string();
        let out = store_direct(
            &["users", "add", "root", "--role", "admin"],
            &store,
            &secret,
        );
        let admin = out.ok().trim().to_string();
        assert!(admin.starts_with("cai_"), "{out:#?}");
        let http = format!("127.0.0.1:{}", free_port());
        let port = free_port();
        let mut args = common::master_args(port, dir.path());
        for a in [
            "--no-shell",
            "--http-listen",
            &http,
            "--require-auth",
            "--secret-file",
            &secret,
        ] {
            args.push(a.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let master = Proc::spawn("master", &args, &[]);
        let m = Secure {
            url: format!("http://127.0.0.1:{port}"),
            http,
            store,
            secret,
            master,
            _dir: dir,
        };
        eventually("the master to answer", QUICK, || {
            (m.cli(Some(&admin), &["queue", "stats"]).code == 0).then_some(())
        });
        (m, admin)
    }

    /// `cloudai ARGS` against this master with `token`.
    fn cli(&self, token: Option<&str>, args: &[&str]) -> Out {
        let mut envs = vec![("CLOUDAI_MASTER", self.url.as_str())];
        if let Some(t) = token {
            envs.push(("CLOUDAI_TOKEN", t));
        }
        run_env(args, &envs, QUICK)
    }

    /// One HTTP request; the status and the JSON body (null when there is none).
    fn http(&self, method: &str, path: &str, token: &str, body: &str) -> (u16, serde_json::Value) {
        let mut s = std::net::TcpStream::connect(&self.http).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (code, serde_json::from_str(body).unwrap_or_default())
    }

    /// A fake-executor worker joining with `token`.
    fn worker(&self, id: &str, token: &str) -> Proc {
        let args = [
            "worker",
            "--fake-executor",
            "--master",
            &self.url,
            "--id",
            id,
            "--heartbeat-interval",
            "500ms",
        ];
        Proc::spawn(
            &format!("worker {id}"),
            &args,
            &[("CLOUDAI_JOIN_TOKEN", token)],
        )
    }

    /// Waits until the master shows worker `id` healthy.
    fn healthy(&self, admin: &str, id: &str) {
        eventually(&format!("worker {id} to be healthy"), QUICK, || {
            let out = self.cli(Some(admin), &["workers", "--output", "json"]);
            let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            v.as_array()?
                .iter()
                .any(|w| w["id"] == id && w["health"] == "healthy")
                .then_some(())
        });
    }

    /// Enqueues a task pinned to `worker` and waits until it succeeded.
    fn runs_a_task(&self, admin: &str, worker: &str) {
        let out = self.cli(
            Some(admin),
            &["enqueue", "cloudai/busybox:test", "--worker", worker],
        );
        let id = out.ok().trim().to_string();
        eventually(&format!("task {id} to succeed on {worker}"), QUICK, || {
            let out = self.cli(Some(admin), &["task", &id, "--output", "json"]);
            let t: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            (t["status"] == "succeeded" && t["worker"] == worker).then_some(())
        });
    }
}

/// `cloudai ARGS --store STORE --secret-file SECRET`, with no master involved.
fn store_direct(args: &[&str], store: &str, secret: &str) -> Out {
    let mut all = args.to_vec();
    all.extend(["--store", store, "--secret-file", secret]);
    run_env(&all, &[], QUICK)
}

/// The `error: ` line of a failed command.
fn error_line(out: &Out) -> &str {
    out.stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {out:#?}"))
}

/// A worker expected to stop by itself: its exit code and error line.
fn stopped(w: &mut Proc) -> (i32, String) {
    let code = w.wait_exit(QUICK);
    let err = w.stderr();
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{}: no error line:\n{err}", w.name))
        .to_string();
    (code, line)
}

#[test]
fn users_are_added_listed_and_removed_through_the_master_by_an_admin_only() {
    let (m, admin) = Secure::start();
    let root = Some(admin.as_str());

    // gRPC, through the CLI: a new user's token works at once.
    let out = m.cli(root, &["users", "add", "alice", "--role", "submitter"]);
    let alice = out.ok().trim().to_string();
    assert!(alice.starts_with("cai_"), "{out:#?}");
    assert!(out.stderr.contains("shown only this once"), "{out:#?}");
    let enq = m.cli(Some(&alice), &["enqueue", "cloudai/busybox:test"]);
    assert_eq!(enq.code, 0, "{enq:#?}");
    let vera = m
        .cli(root, &["users", "add", "vera", "--role", "viewer"])
        .ok()
        .trim()
        .to_string();
    let list = m.cli(root, &["users", "list"]);
    let lines: Vec<&str> = list.ok().lines().collect();
    assert_eq!(lines[0], "NAME\tROLE\tCREATED\tQUOTA", "{list:#?}");
    let names: Vec<(&str, &str)> = lines[1..]
        .iter()
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().unwrap(), f.next().unwrap())
        })
        .collect();
    assert_eq!(
        names,
        [
            ("alice", "submitter"),
            ("root", "admin"),
            ("vera", "viewer")
        ]
    );
    let json = m.cli(root, &["users", "list", "--output", "json"]).json();
    assert_eq!(json.as_array().unwrap().len(), 3, "{json}");
    assert!(json[0]["created_at"].is_string(), "{json}");

    // Refusals, each with its exit code.
    let dup = m.cli(root, &["users", "add", "alice", "--role", "viewer"]);
    assert_eq!(dup.code, 16, "{dup:#?}");
    assert!(error_line(&dup).contains("already exists"), "{dup:#?}");
    let bad = m.cli(root, &["users", "add", "not ok!", "--role", "viewer"]);
    assert_eq!(bad.code, 2, "{bad:#?}");
    assert!(error_line(&bad).contains("user name"), "{bad:#?}");
    for args in [
        &["users", "list"][..],
        &["users", "add", "eve", "--role", "admin"],
        &["users", "remove", "alice"],
        &["token", "rotate"],
    ] {
        let out = m.cli(Some(&vera), args);
        assert_eq!(out.code, 18, "a viewer: {args:?}: {out:#?}");
        assert!(
            error_line(&out).contains("may not manage users"),
            "{out:#?}"
        );
    }
    let anon = m.cli(None, &["users", "list"]);
    assert_eq!(anon.code, 17, "{anon:#?}");
    assert!(
        error_line(&anon).contains("--store"),
        "the way in: {anon:#?}"
    );

    // Removed: its token is refused on the next call.
    let out = m.cli(root, &["users", "remove", "alice"]);
    assert!(out.stderr.contains("user alice removed"), "{out:#?}");
    out.ok();
    let gone = m.cli(Some(&alice), &["tasks"]);
    assert_eq!(gone.code, 17, "{gone:#?}");
    assert!(error_line(&gone).contains("invalid API token"), "{gone:#?}");
    let again = m.cli(root, &["users", "remove", "alice"]);
    assert_eq!(again.code, 2, "{again:#?}");
    assert!(
        error_line(&again).contains("no user named \"alice\""),
        "{again:#?}"
    );

    // The same over HTTP.
    let (code, v) = m.http("GET", "/api/v1/users", &admin, "");
    assert_eq!(code, 200, "{v}");
    let listed: Vec<&str> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["root", "vera"], "{v}");
    let (code, v) = m.http("GET", "/api/v1/users", &vera, "");
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{v}"
    );
    let new_bob = r#"{"name": "bob", "role": "submitter"}"#;
    let (code, v) = m.http("POST", "/api/v1/users", &vera, new_bob);
    assert_eq!(code, 403, "{v}");
    let (code, v) = m.http("POST", "/api/v1/users", &admin, new_bob);
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["role"].as_str()),
        (Some("bob"), Some("submitter"))
    );
    let bob = v["token"].as_str().unwrap().to_string();
    let (code, v) = m.http("GET", "/api/v1/tasks", &bob, "");
    assert_eq!(code, 200, "bob's new token works: {v}");
    let (code, v) = m.http("POST", "/api/v1/users", &admin, new_bob);
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("ALREADY_EXISTS")),
        "{v}"
    );
    let (code, v) = m.http(
        "POST",
        "/api/v1/users",
        &admin,
        r#"{"name": "x", "role": "god"}"#,
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("role"),
        "{v}"
    );
    let (code, _) = m.http("DELETE", "/api/v1/users/bob", &admin, "");
    assert_eq!(code, 204);
    let (code, v) = m.http("GET", "/api/v1/tasks", &bob, "");
    assert_eq!(code, 401, "bob's token is refused at once: {v}");
    let (code, v) = m.http("DELETE", "/api/v1/users/bob", &admin, "");
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{v}"
    );

    // Store-direct still works beside the running master (recovery), and the master
    // sees what it wrote.
    let out = store_direct(
        &["users", "add", "rescue", "--role", "admin"],
        &m.store,
        &m.secret,
    );
    let rescue = out.ok().trim().to_string();
    let list = m.cli(Some(&rescue), &["users", "list"]);
    assert!(list.ok().contains("rescue\tadmin"), "{list:#?}");
    let dup = store_direct(
        &["users", "add", "rescue", "--role", "admin"],
        &m.store,
        &m.secret,
    );
    assert_eq!(dup.code, 16, "{dup:#?}");
}

/// The join token the master printed, alone on a line, at its first start.
fn first_join_token(m: &Secure) -> String {
    eventually("the master to print the join token", QUICK, || {
        m.master
            .stdout()
            .lines()
            .find(|l| l.starts_with("caj_"))
            .map(str::to_string)
    })
}

#[test]
fn a_rotation_disconnects_the_workers_of_the_old_token_once_its_grace_is_over() {
    let (m, admin) = Secure::start();
    let root = Some(admin.as_str());
    let first = first_join_token(&m);
    let (a, c) = (unique_worker_id("a"), unique_worker_id("c"));
    let mut wa = m.worker(&a, &first);
    m.healthy(&admin, &a);

    // Rotated with a 2 s grace: a worker may still join with either token meanwhile.
    let t0 = Instant::now();
    let out = m.cli(root, &["token", "rotate", "--grace", "2s"]);
    let second = out.ok().trim().to_string();
    assert!(second.starts_with("caj_") && second != first, "{out:#?}");
    assert!(
        out.stderr.contains("still admits workers until"),
        "{out:#?}"
    );
    let mut wc = m.worker(&c, &second);
    m.healthy(&admin, &c);

    // After it, the old token's worker is told why and stops; the new one's stays.
    let (code, line) = stopped(&mut wa);
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "not before the grace is over"
    );
    assert_eq!(code, 17, "{line}");
    assert!(
        line.contains("join token was rotated; restart with the new --join-token"),
        "{line}"
    );
    assert!(
        m.master
            .stderr()
            .contains("grace is over; ending its stream"),
        "the master says so"
    );
    assert!(wc.running(), "{}", wc.stderr());
    m.healthy(&admin, &c);

    // The old token no longer admits, and the refusal says why; restarted with the new
    // one, the worker runs tasks.
    let (code, line) = stopped(&mut m.worker(&a, &first));
    assert_eq!(code, 17, "{line}");
    assert!(line.contains("join token was rotated"), "{line}");
    let mut wa = m.worker(&a, &second);
    m.healthy(&admin, &a);
    m.runs_a_task(&admin, &a);

    // Over HTTP, an admin's, with no grace: both are disconnected at once.
    let (code, v) = m.http("POST", "/api/v1/join-token/rotate", &admin, "{}");
    assert_eq!(code, 400, "grace_seconds is required: {v}");
    let viewer = m
        .cli(root, &["users", "add", "vic", "--role", "viewer"])
        .ok()
        .trim()
        .to_string();
    let zero = r#"{"grace_seconds": 0}"#;
    let (code, v) = m.http("POST", "/api/v1/join-token/rotate", &viewer, zero);
    assert_eq!(code, 403, "{v}");
    let (code, v) = m.http("POST", "/api/v1/join-token/rotate", &admin, zero);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["grace_seconds"], 0.0, "{v}");
    assert!(v["previous_valid_until"].is_null(), "{v}");
    let third = v["join_token"].as_str().unwrap().to_string();
    for w in [&mut wa, &mut wc] {
        let (code, line) = stopped(w);
        assert_eq!(code, 17, "{line}");
        assert!(line.contains("join token was rotated"), "{line}");
    }
    let (code, line) = stopped(&mut m.worker(&unique_worker_id("old"), &first));
    assert_eq!(code, 17, "{line}");
    assert!(
        line.contains("invalid join token"),
        "two rotations back: {line}"
    );
    let d = unique_worker_id("d");
    let _wd = m.worker(&d, &third);
    m.healthy(&admin, &d);
    m.runs_a_task(&admin, &d);

    // A rotation written straight into the store (recovery) reaches the master's workers
    // too.
    let e = unique_worker_id("e");
    let mut we = m.worker(&e, &third);
    m.healthy(&admin, &e);
    let out = store_direct(&["token", "rotate", "--grace", "0"], &m.store, &m.secret);
    assert!(
        out.stderr.contains("admits no worker from now on"),
        "{out:#?}"
    );
    let (code, line) = stopped(&mut we);
    assert_eq!(code, 17, "{line}");
    assert!(line.contains("join token was rotated"), "{line}");
}

#[test]
fn users_and_rotation_need_a_master_that_requires_auth_and_help_names_the_bootstrap() {
    let c = common::Cluster::master_only();
    let out = c.run(&["users", "add", "ann", "--role", "admin"]);
    assert_eq!(out.code, 16, "{out:#?}");
    assert!(error_line(&out).contains("--store"), "{out:#?}");
    let out = c.run(&["token", "rotate"]);
    assert_eq!(out.code, 16, "{out:#?}");
    let list = c.run(&["users", "list"]);
    assert_eq!(list.ok(), "NAME\tROLE\tCREATED\tQUOTA\n");

    let help = run_env(&["users", "add", "--help"], &[], QUICK);
    assert!(help.ok().contains("--store"), "{help:#?}");
    assert!(help.stdout.contains("bootstrap"), "{help:#?}");
    let help = run_env(&["token", "rotate", "--help"], &[], QUICK);
    assert!(help.ok().contains("disconnects the workers"), "{help:#?}");
    assert!(!help.stdout.contains("stay connected"), "{help:#?}");
}

/// Quotas through the CLI (both ways in) and HTTP: set at `users add`, changed with
/// `users quota`, shown by `users list`; a task over its submitter's quota waits with
/// reason Quota in `cloudai task`, and starts once the quota is lifted.
#[test]
fn a_quota_holds_the_users_tasks_with_reason_quota_until_it_is_lifted() {
    let (m, admin) = Secure::start();
    let root = Some(admin.as_str());
    let out = m.cli(
        root,
        &[
            "users",
            "add",
            "ci",
            "--role",
            "submitter",
            "--quota",
            "cpu=16,running=1",
        ],
    );
    let ci = out.ok().trim().to_string();
    assert!(out.stderr.contains("quota cpu=16,running=1"), "{out:#?}");
    let list = m.cli(root, &["users", "list"]);
    let lines: Vec<&str> = list.ok().lines().collect();
    assert_eq!(lines[0], "NAME\tROLE\tCREATED\tQUOTA", "{list:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ci\t") && l.ends_with("\tcpu=16,running=1")),
        "{list:#?}"
    );
    let json = m.cli(root, &["users", "list", "--output", "json"]).json();
    let ci_json = json
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "ci")
        .unwrap();
    assert_eq!(ci_json["quota"]["cpu_millis"], 16_000, "{json}");
    assert_eq!(ci_json["quota"]["running"], 1, "{json}");
    assert!(ci_json["quota"]["gpus"].is_null(), "{json}");

    // Bad quotas are refused before anything is written.
    let bad = m.cli(root, &["users", "quota", "ci", "disk=1G"]);
    assert_eq!(bad.code, 2, "{bad:#?}");
    assert!(
        bad.stderr.contains("unknown quota limit \"disk\""),
        "{bad:#?}"
    );
    let nobody = m.cli(root, &["users", "quota", "nobody", "running=1"]);
    assert_eq!(nobody.code, 2, "{nobody:#?}");
    assert!(
        error_line(&nobody).contains("no user named \"nobody\""),
        "{nobody:#?}"
    );

    let join = first_join_token(&m);
    let id = unique_worker_id("q");
    let _w = m.worker(&id, &join);
    m.healthy(&admin, &id);
    let long = [
        "enqueue",
        "cloudai/busybox:test",
        "--env",
        "CLOUDAI_FAKE_RUN_MS=60000",
    ];
    let first = m.cli(Some(&ci), &long).ok().trim().to_string();
    let second = m.cli(Some(&ci), &long).ok().trim().to_string();
    let task = |id: &str| m.cli(Some(&ci), &["task", id, "--output", "json"]).json();
    eventually("the first task to run", QUICK, || {
        (task(&first)["status"] == "running").then_some(())
    });
    let held = eventually("the second to wait for the quota", QUICK, || {
        let t = task(&second);
        (t["wait_reason"]["code"] == "Quota").then_some(t)
    });
    assert_eq!(held["status"], "queued", "{held}");
    assert!(
        held["wait_reason"]["detail"]
            .as_str()
            .unwrap()
            .contains("allows 1 running"),
        "{held}"
    );
    let text = m.cli(Some(&ci), &["task", &second]).ok().to_string();
    assert!(text.contains("Quota"), "{text}");

    // Lifted over HTTP: the second starts beside the first.
    let (code, v) = m.http("PUT", "/api/v1/users/ci/quota", &admin, "{}");
    assert_eq!(code, 200, "{v}");
    assert!(v["quota"].is_null(), "{v}");
    eventually(
        "the second task to run once the quota is lifted",
        QUICK,
        || (task(&second)["status"] == "running").then_some(()),
    );
    let (code, v) = m.http("PUT", "/api/v1/users/ci/quota", &admin, r#"{"running": 5}"#);
    assert_eq!(
        (code, v["quota"]["running"].as_u64()),
        (200, Some(5)),
        "{v}"
    );
    let (code, v) = m.http("PUT", "/api/v1/users/ci/quota", &admin, r#"{"disk": 5}"#);
    assert_eq!(code, 400, "{v}");
    let (code, v) = m.http("PUT", "/api/v1/users/nobody/quota", &admin, "{}");
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{v}"
    );

    // Store-direct, as in recovery: the master's listing shows what it wrote.
    store_direct(&["users", "quota", "ci", "none"], &m.store, &m.secret).ok();
    let list = m.cli(root, &["users", "list"]);
    assert!(list.ok().contains("ci\tsubmitter\t"), "{list:#?}");
    assert!(
        list.ok()
            .lines()
            .any(|l| l.starts_with("ci\t") && l.ends_with("\t-")),
        "{list:#?}"
    );
    for id in [&first, &second] {
        m.cli(root, &["cancel", id]).ok();
    }
}
