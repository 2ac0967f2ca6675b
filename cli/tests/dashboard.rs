//! The web dashboard against the real binary: its routes over real HTTP (pages, assets,
//! their types and cache headers, 404s), then in headless Chromium driven by
//! `tests/browser/dashboard.py` (Python Playwright, Debian's chromium): the overview's
//! counts, a task's log arriving live, a cancel, the task list filtered and paged, the
//! workers, a phone's screen; and with auth on, the login. Workers use the fake executor.
//!
//! The browser runs when `CLOUDAI_TEST_BROWSER_PYTHON` names a Python with `playwright`
//! (`.ci/run` makes one); screenshots go to `CLOUDAI_SCREENSHOTS` (default a temp dir).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use common::{eventually, free_port, run_env, Proc};
use serde_json::{json, Value};

const QUICK: Duration = Duration::from_secs(30);
/// The whole browser run, Chromium's start included, on a busy 2-core machine.
const BROWSER: Duration = Duration::from_secs(300);
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

/// A fake-executor worker with `id` and `cpu` cores.
fn worker(url: &str, id: &str, cpu: &str, labels: &str) -> Proc {
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
        &[],
    )
}

/// Enqueues `spec` through the API; returns the task id.
fn enqueue(api: &str, spec: Value, token: Option<&str>) -> String {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .iter()
        .map(|a| ("authorization", a.as_str()))
        .chain([("content-type", "application/json")])
        .collect();
    let a = http(api, "POST", "/api/v1/tasks", &headers, &spec.to_string());
    assert_eq!(a.code, 201, "{}", a.body);
    a.json()["id"].as_str().unwrap().to_string()
}

fn status(api: &str, id: &str) -> String {
    get(api, &format!("/api/v1/tasks/{id}")).json()["status"]
        .as_str()
        .unwrap()
        .to_string()
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

/// One browser at a time: two Chromiums on a 2-core machine starve the workers'
/// heartbeats.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// Runs the browser script with `args`; `on_ready` is called when it prints "ready:".
fn run_script(python: &str, args: &[&str], on_ready: impl FnOnce()) {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let mut all = vec!["-u", SCRIPT];
    all.extend_from_slice(args);
    let mut script = Proc::spawn_program("dashboard.py", python, &all, &[]);
    // Ready, or it ended early (its failure is reported below).
    let ready = args.contains(&"browse")
        && eventually("the browser script to be ready", BROWSER, || {
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
    // The shell links its script and style sheet under their content hash.
    let version = |name: &str| {
        let at = root
            .body
            .find(&format!("/assets/{name}?v="))
            .unwrap_or_else(|| panic!("/ does not link {name}: {}", root.body));
        let rest = &root.body[at + name.len() + 11..];
        rest[..rest.find('"').unwrap()].to_string()
    };
    let (js, css) = (version("app.js"), version("app.css"));
    assert_eq!(js.len(), 16, "{js}");
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

    let a = get(&api, &format!("/assets/app.js?v={js}"));
    assert_eq!(a.code, 200);
    assert_eq!(a.header("content-type"), "text/javascript; charset=utf-8");
    assert_eq!(
        a.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(a.header("x-content-type-options"), "nosniff");
    assert!(a.body.contains("/api/v1/tasks"), "the script calls the API");
    let etag = a.header("etag").to_string();
    assert_eq!(etag, format!("\"{js}\""));
    let a = get(&api, &format!("/assets/app.css?v={css}"));
    assert_eq!(a.code, 200);
    assert_eq!(a.header("content-type"), "text/css; charset=utf-8");
    // Without the current version: revalidated, and a matching etag answers 304.
    let a = get(&api, "/assets/app.js");
    assert_eq!(a.header("cache-control"), "no-cache");
    let a = http(
        &api,
        "GET",
        "/assets/app.js",
        &[("if-none-match", &etag)],
        "",
    );
    assert_eq!(a.code, 304);
    assert!(a.body.is_empty());

    for path in [
        "/nope",
        "/assets/other.js",
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
fn the_dashboard_in_a_browser_follows_logs_cancels_and_filters() {
    let Some(python) = browser_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let (_m, url) = master(dir.path(), &api, &[]);
    let tag = std::process::id();
    let (w1, w2) = (format!("dash-{tag}-one"), format!("dash-{tag}-two"));
    let _first = worker(&url, &w1, "1", "zone=a");
    eventually("the first worker in /api/v1/workers", QUICK, || {
        let v = get(&api, "/api/v1/workers").json();
        (v["workers"][0]["health"] == "healthy").then_some(())
    });

    // Two that end, one that runs until cancelled, and one too big for the first worker:
    // it waits for the second, started once the browser follows its (empty) log.
    let fake = |env: Value| json!({ "image": "cloudai/busybox:test", "env": env });
    let succeeded = enqueue(
        &api,
        fake(json!({ "CLOUDAI_FAKE_STDOUT": "all good" })),
        None,
    );
    let failed = enqueue(
        &api,
        fake(json!({ "CLOUDAI_FAKE_STDERR": "boom", "CLOUDAI_FAKE_EXIT_CODE": "3" })),
        None,
    );
    eventually("the first two to end", QUICK, || {
        (status(&api, &succeeded) == "succeeded" && status(&api, &failed) == "failed").then_some(())
    });
    let long = enqueue(&api, fake(json!({ "CLOUDAI_FAKE_RUN_MS": "600000" })), None);
    eventually("the long task to run", QUICK, || {
        (status(&api, &long) == "running").then_some(())
    });
    let mut live = fake(json!({
        "CLOUDAI_FAKE_STDOUT": "live line one\nlive line two",
        "CLOUDAI_FAKE_STDERR": "a warning on stderr",
        "CLOUDAI_FAKE_RUN_MS": "12000",
    }));
    live["cpu"] = json!(2);
    live["command"] = json!(["echo", "live"]);
    let live = enqueue(&api, live, None);
    assert_eq!(status(&api, &live), "queued");

    let mut second = None;
    let base = format!("http://{api}");
    run_script(
        &python,
        &[
            "--url",
            &base,
            "browse",
            "--succeeded",
            &succeeded,
            "--failed",
            &failed,
            "--long",
            &long,
            "--live",
            &live,
            "--worker",
            &w1,
            "--late-worker",
            &w2,
        ],
        || second = Some(worker(&url, &w2, "2", "zone=b")),
    );
    assert_eq!(status(&api, &long), "cancelled");
    drop(second);
}

#[test]
fn the_dashboard_asks_for_a_token_when_auth_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("x.db").display());
    let secret = dir.path().join("secret").display().to_string();
    let add = |name: &str, role: &str| {
        run_env(
            &[
                "users",
                "add",
                name,
                "--role",
                role,
                "--store",
                &store,
                "--secret-file",
                &secret,
            ],
            &[],
            QUICK,
        )
        .ok()
        .trim()
        .to_string()
    };
    let (token, viewer) = (add("ada", "admin"), add("vera", "viewer"));
    let api = format!("127.0.0.1:{}", free_port());
    let (_m, _) = master(
        dir.path(),
        &api,
        &["--require-auth", "--secret-file", &secret],
    );
    // The pages hold no data and are served to anyone; the API they call is not.
    assert_eq!(get(&api, "/").code, 200);
    assert_eq!(get(&api, "/assets/app.js").code, 200);
    assert_eq!(get(&api, "/api/v1/queue/stats").code, 401);
    // No worker: it stays queued.
    let task = enqueue(
        &api,
        json!({ "image": "cloudai/busybox:test" }),
        Some(&token),
    );

    let Some(python) = browser_python() else {
        return;
    };
    let base = format!("http://{api}");
    run_script(
        &python,
        &[
            "--url",
            &base,
            "login",
            "--token",
            &token,
            "--viewer-token",
            &viewer,
            "--task",
            &task,
        ],
        || {},
    );
}
