//! The web dashboard against the real binary: its routes over real HTTP (pages, assets,
//! their types and cache headers, 404s), then in headless Chromium driven by
//! `tests/browser/dashboard.py` (Python Playwright, Debian's chromium), with auth on: the
//! login, the overview's counts and charts, a task's log arriving live (stream toggles,
//! search, download), cancel and retry, the task list filtered, sorted and paged, a bulk
//! cancel by filter after its dry run, a worker drained, a phone's screen, and a viewer's
//! token, which is shown no button its role may not use. Workers use the fake executor.
//!
//! The browser runs when `CLOUDAI_TEST_BROWSER_PYTHON` names a Python with `playwright`
//! (`.ci/run` makes one); screenshots go to `CLOUDAI_SCREENSHOTS` (default a temp dir).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::{eventually, free_port, Proc};

/// The scripts the shell loads, in order.
const SCRIPTS: [&str; 6] = [
    "core.js",
    "overview.js",
    "tasks.js",
    "task.js",
    "workers.js",
    "app.js",
];
use serde_json::{json, Value};

const QUICK: Duration = Duration::from_secs(30);
/// The whole browser run, Chromium's start included, on a busy 2-core machine.
const BROWSER: Duration = Duration::from_secs(170);
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/dashboard.py");

/// An HTTP answer: status, headers (names lowercased), body.
struct Answer {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 exchange; the connection closes after the answer.
fn http(addr: &str, method: &str, path: &str, extra: &[(&str, &str)], body: &str) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let extra: String = extra.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    Answer {
        code,
        body: if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        },
        headers,
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn get(addr: &str, path: &str) -> Answer {
    http(addr, "GET", path, &[], "")
}

/// A master with `--http-listen http_addr` and its store in `dir`; returns its gRPC URL.
fn master(dir: &Path, http_addr: &str, extra: &[&str]) -> (Proc, String) {
    let port = free_port();
    let mut args = common::master_args(port, dir);
    args.extend([
        "--no-shell".into(),
        "--http-listen".into(),
        http_addr.into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let m = Proc::spawn("master", &args, &[]);
    eventually("the HTTP listener", QUICK, || {
        TcpStream::connect(http_addr).ok().map(|_| ())
    });
    (m, format!("http://127.0.0.1:{port}"))
}

/// A fake-executor worker with `id` and `cpu` cores, joining with `join`.
fn worker(url: &str, id: &str, cpu: &str, labels: &str, join: &str) -> Proc {
    Proc::spawn(
        &format!("worker {id}"),
        &[
            "worker",
            "--fake-executor",
            "--master",
            url,
            "--id",
            id,
            "--cpu",
            cpu,
            "--labels",
            labels,
            "--heartbeat-interval",
            "500ms",
        ],
        &[("CLOUDAI_JOIN_TOKEN", join)],
    )
}

/// A call with `token` as the bearer.
fn call(api: &str, method: &str, path: &str, token: &str, body: &str) -> Answer {
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    http(api, method, path, &headers, body)
}

/// Enqueues `spec` through the API; returns the task id.
fn enqueue(api: &str, spec: Value, token: &str) -> String {
    let a = call(api, "POST", "/api/v1/tasks", token, &spec.to_string());
    assert_eq!(a.code, 201, "{}", a.body);
    a.json()["id"].as_str().unwrap().to_string()
}

fn status(api: &str, id: &str, token: &str) -> String {
    let a = call(api, "GET", &format!("/api/v1/tasks/{id}"), token, "");
    a.json()["status"].as_str().unwrap_or("").to_string()
}

/// The Python that has Playwright, or None (said on stderr) when the browser test skips.
fn browser_python() -> Option<String> {
    match std::env::var("CLOUDAI_TEST_BROWSER_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            eprintln!("skipped the browser test: CLOUDAI_TEST_BROWSER_PYTHON is not set");
            None
        }
    }
}

/// Runs the browser script with `args`; `on_ready` is called when it prints "ready:".
/// Returns what it printed.
fn run_script(python: &str, args: &[&str], on_ready: impl FnOnce()) -> String {
    let mut all = vec!["-u", SCRIPT];
    all.extend_from_slice(args);
    let mut script = Proc::spawn_program("dashboard.py", python, &all, &[]);
    // Ready, or it ended early (its failure is reported below).
    let ready = eventually("the browser script to be ready", BROWSER, || {
        if script.stdout().contains("ready:") {
            Some(true)
        } else {
            (!script.running()).then_some(false)
        }
    });
    if ready {
        on_ready();
    }
    let code = script.wait_exit(BROWSER);
    // Shown with --nocapture, and on failure: what it checked, where the pictures are.
    println!("{}", script.stdout());
    assert_eq!(
        code,
        0,
        "the browser script failed\nstdout:\n{}\nstderr:\n{}",
        script.stdout(),
        script.stderr()
    );
    script.stdout()
}

#[test]
fn the_dashboard_pages_and_assets_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let (_m, _) = master(dir.path(), &api, &[]);

    let root = get(&api, "/");
    assert_eq!(root.code, 200, "{}", root.body);
    assert_eq!(root.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(root.header("cache-control"), "no-cache");
    assert!(root
        .header("content-security-policy")
        .contains("script-src 'self'"));
    // The shell links its scripts (in order) and style sheet under their content hash.
    let version = |name: &str| {
        let needle = format!("/assets/{name}?v=");
        let at = root
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("/ does not link {name}: {}", root.body));
        let rest = &root.body[at + needle.len()..];
        (at, rest[..rest.find('"').unwrap()].to_string())
    };
    let mut last = 0;
    for name in SCRIPTS {
        let (at, v) = version(name);
        assert!(at > last, "{name} is loaded out of order");
        last = at;
        assert_eq!(v.len(), 16, "{v}");
        let a = get(&api, &format!("/assets/{name}?v={v}"));
        assert_eq!(a.code, 200, "{name}");
        assert_eq!(a.header("content-type"), "text/javascript; charset=utf-8");
        assert_eq!(
            a.header("cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(a.header("x-content-type-options"), "nosniff");
        assert_eq!(a.header("etag"), format!("\"{v}\""));
    }
    for path in [
        "/tasks",
        "/tasks/0194abcd",
        "/workers",
        "/tasks?status=failed",
    ] {
        let a = get(&api, path);
        assert_eq!(a.code, 200, "{path}");
        assert_eq!(a.body, root.body, "{path} is the same shell");
    }
    let (_, js) = version("core.js");
    let a = get(&api, &format!("/assets/core.js?v={js}"));
    assert!(
        a.body.contains("/api/v1/whoami"),
        "the script calls the API"
    );
    let (_, css) = version("app.css");
    let a = get(&api, &format!("/assets/app.css?v={css}"));
    assert_eq!(a.code, 200);
    assert_eq!(a.header("content-type"), "text/css; charset=utf-8");
    // Without the current version: revalidated, and a matching etag answers 304.
    let a = get(&api, "/assets/core.js");
    assert_eq!(a.header("cache-control"), "no-cache");
    let etag = format!("\"{js}\"");
    let a = http(
        &api,
        "GET",
        "/assets/core.js",
        &[("if-none-match", &etag)],
        "",
    );
    assert_eq!(a.code, 304);
    assert!(a.body.is_empty());

    for path in [
        "/nope",
        "/assets/other.js",
        "/assets/",
        "/tasks/a/b",
        "/workers/w1",
        "/index.html",
    ] {
        assert_eq!(get(&api, path).code, 404, "{path}");
    }
    // The API and metrics are still there beside it.
    assert_eq!(get(&api, "/api/v1/queue/stats").code, 200);
    assert_eq!(get(&api, "/metrics").code, 200);
}

#[test]
fn the_dashboard_in_a_browser_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret").display().to_string();
    let add = |name: &str, role: &str| common::add_user(dir.path(), name, role);
    let (admin, viewer) = (add("ada", "admin"), add("vera", "viewer"));
    let api = format!("127.0.0.1:{}", free_port());
    let (m, url) = master(
        dir.path(),
        &api,
        &["--require-auth", "--secret-file", &secret],
    );
    let join = common::join_token(&m);
    // The pages hold no data and are served to anyone; the API they call is not.
    assert_eq!(get(&api, "/").code, 200);
    assert_eq!(get(&api, "/assets/app.js").code, 200);
    assert_eq!(get(&api, "/api/v1/queue/stats").code, 401);

    let tag = std::process::id();
    let (w1, w2) = (format!("dash-{tag}-one"), format!("dash-{tag}-two"));
    let _first = worker(&url, &w1, "1", "zone=a", &join);
    eventually("the first worker in /api/v1/workers", QUICK, || {
        let v = call(&api, "GET", "/api/v1/workers", &admin, "").json();
        (v["workers"][0]["health"] == "healthy").then_some(())
    });

    // Four that end (two of them images to filter by), three that can never fit (for the
    // bulk cancel), one that runs until cancelled, and one too big for the first worker:
    // it waits for the second, started once the browser follows its (empty) log.
    let fake = |image: &str, env: Value| json!({ "image": image, "env": env });
    let busybox = "cloudai/busybox:test";
    let succeeded = enqueue(
        &api,
        fake(busybox, json!({ "CLOUDAI_FAKE_STDOUT": "all good" })),
        &admin,
    );
    let failed = enqueue(
        &api,
        fake(
            busybox,
            json!({ "CLOUDAI_FAKE_STDERR": "boom", "CLOUDAI_FAKE_EXIT_CODE": "3" }),
        ),
        &admin,
    );
    let mut train = fake("example.org/ml/train:v1", json!({}));
    train["command"] = json!(["python", "train.py", "--epochs", "3"]);
    let train = enqueue(&api, train, &admin);
    let mut eval = fake("example.org/ml/eval:v1", json!({}));
    eval["command"] = json!(["python", "evaluate.py"]);
    let eval = enqueue(&api, eval, &admin);
    let batch: Vec<String> = (0..3)
        .map(|i| {
            let mut b = fake("example.org/batch/nightly:1", json!({}));
            b["cpu"] = json!(64);
            b["command"] = json!(["run", format!("part-{i}")]);
            enqueue(&api, b, &admin)
        })
        .collect();
    eventually("the first four to end", QUICK, || {
        let st = |id: &str| status(&api, id, &admin);
        (st(&succeeded) == "succeeded"
            && st(&failed) == "failed"
            && st(&train) == "succeeded"
            && st(&eval) == "succeeded")
            .then_some(())
    });
    let long = enqueue(
        &api,
        fake(busybox, json!({ "CLOUDAI_FAKE_RUN_MS": "600000" })),
        &admin,
    );
    eventually("the long task to run", QUICK, || {
        (status(&api, &long, &admin) == "running").then_some(())
    });
    let mut live = fake(
        busybox,
        json!({
            "CLOUDAI_FAKE_STDOUT": "live line one\nlive line two",
            "CLOUDAI_FAKE_STDERR": "a warning on stderr",
            "CLOUDAI_FAKE_RUN_MS": "8000",
        }),
    );
    live["cpu"] = json!(2);
    live["command"] = json!(["echo", "live"]);
    let live = enqueue(&api, live, &admin);
    assert_eq!(status(&api, &live, &admin), "queued");
    for b in &batch {
        assert_eq!(status(&api, b, &admin), "queued");
    }

    let Some(python) = browser_python() else {
        return;
    };
    let mut second = None;
    let base = format!("http://{api}");
    let out = run_script(
        &python,
        &[
            "--url",
            &base,
            "--token",
            &admin,
            "--viewer-token",
            &viewer,
            "--succeeded",
            &succeeded,
            "--failed",
            &failed,
            "--train",
            &train,
            "--eval",
            &eval,
            "--long",
            &long,
            "--live",
            &live,
            "--worker",
            &w1,
            "--late-worker",
            &w2,
        ],
        || second = Some(worker(&url, &w2, "2", "zone=b", &join)),
    );
    // What the pages did, as the API sees it.
    assert_eq!(status(&api, &long, &admin), "cancelled");
    for b in &batch {
        assert_eq!(status(&api, b, &admin), "cancelled", "{b}");
    }
    let retried = out
        .lines()
        .find_map(|l| l.strip_prefix("retried as: "))
        .expect("the script names the retry")
        .trim()
        .to_string();
    let t = call(&api, "GET", &format!("/api/v1/tasks/{retried}"), &admin, "").json();
    assert_eq!(
        t["spec"]["labels"]["cloudai.retry-of"],
        long.as_str(),
        "{t}"
    );
    let ws = call(&api, "GET", "/api/v1/workers", &admin, "").json();
    let one = ws["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == w1.as_str())
        .unwrap()
        .clone();
    assert_eq!(one["cordoned"], true, "{one}");
    assert!(one["drain_deadline"].is_string(), "{one}");
    // The buttons a viewer is not shown are refused anyway.
    for path in [
        format!("/api/v1/tasks/{retried}/cancel"),
        format!("/api/v1/tasks/{succeeded}/retry"),
        format!("/api/v1/workers/{w1}/uncordon"),
    ] {
        assert_eq!(call(&api, "POST", &path, &viewer, "{}").code, 403, "{path}");
    }
    let bulk = r#"{"image": "cloudai/*", "dry_run": true}"#;
    let a = call(&api, "POST", "/api/v1/tasks/cancel", &viewer, bulk);
    assert_eq!(a.code, 403, "{}", a.body);
    drop(second);
}
