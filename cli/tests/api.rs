//! The HTTP JSON API (`/api/v1`) over real HTTP against the real binary, with auth off
//! (loopback) and on: enqueue, read, list with filters, logs (whole, and followed as
//! Server-Sent Events while the task runs), cancel, workers, stats, and the errors and
//! role refusals a script would meet. Workers use the fake executor.

mod common;

use std::path::Path;
use std::time::Duration;

use common::http::{http, json_of};
use common::{eventually, free_port, unique_worker_id, Proc};
use serde_json::{json, Value};

const QUICK: Duration = Duration::from_secs(30);

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
    (
        Proc::spawn("master", &args, &[]),
        format!("http://127.0.0.1:{port}"),
    )
}

fn worker(url: &str, extra: &[&str]) -> (Proc, String) {
    let id = unique_worker_id("api");
    let mut args = vec![
        "worker",
        "--fake-executor",
        "--master",
        url,
        "--id",
        &id,
        "--heartbeat-interval",
        "500ms",
    ];
    args.extend_from_slice(extra);
    (Proc::spawn("worker", &args, &[]), id)
}

#[test]
fn the_api_enqueues_reads_follows_logs_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let (_m, url) = master(dir.path(), &api, &[]);
    let (_w, wid) = worker(&url, &[]);
    eventually("the worker in /api/v1/workers", QUICK, || {
        std::net::TcpStream::connect(&api).ok()?;
        let (code, v) = json_of(http(&api, "GET", "/api/v1/workers", None, None));
        (code == 200 && v["workers"][0]["health"] == "healthy").then_some(())
    });

    // Enqueue a task that writes two lines over a second; follow its logs as SSE.
    let spec = json!({
        "image": "cloudai/busybox:test",
        "command": ["echo", "hi"],
        "env": { "CLOUDAI_FAKE_STDOUT": "first line\nsecond line", "CLOUDAI_FAKE_RUN_MS": "1500" },
        "cpu": 0.5,
        "labels": { "team": "api" },
    });
    let (code, v) = json_of(http(
        &api,
        "POST",
        "/api/v1/tasks",
        None,
        Some(&spec.to_string()),
    ));
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["created"], true);
    let (code, sse) = http(
        &api,
        "GET",
        &format!("/api/v1/tasks/{id}/logs?follow=true"),
        None,
        None,
    );
    assert_eq!(code, 200, "{sse}");
    let logs: Vec<Value> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["stream"] == "stdout")
        .collect();
    let text: String = logs.iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(text, "first line\nsecond line\n", "{sse}");
    assert!(
        sse.contains("event: end"),
        "the stream ends with the task: {sse}"
    );

    let (code, t) = json_of(http(
        &api,
        "GET",
        &format!("/api/v1/tasks/{}", &id[..13]),
        None,
        None,
    ));
    assert_eq!(code, 200, "{t}");
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["attempts"][0]["worker_id"], wid.as_str());
    assert_eq!(t["spec"]["resources"]["cpu_millis"], 500);
    let (_, whole) = json_of(http(
        &api,
        "GET",
        &format!("/api/v1/tasks/{id}/logs?stream=stdout"),
        None,
        None,
    ));
    assert_eq!(
        whole["chunks"].as_array().unwrap().len(),
        logs.len(),
        "{whole}"
    );

    // Lists filter in the store; stats count.
    let (_, l) = json_of(http(
        &api,
        "GET",
        "/api/v1/tasks?status=succeeded,failed&limit=10",
        None,
        None,
    ));
    assert_eq!(l["tasks"][0]["id"], id.as_str(), "{l}");
    let (_, l) = json_of(http(&api, "GET", "/api/v1/tasks?status=queued", None, None));
    assert_eq!(l["tasks"].as_array().unwrap().len(), 0, "{l}");
    let (_, s) = json_of(http(&api, "GET", "/api/v1/queue/stats", None, None));
    assert_eq!(s["counts"]["succeeded"], 1, "{s}");

    // Errors a script meets: JSON with the gRPC code and the HTTP status that fits.
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        (
            "GET",
            "/api/v1/tasks?status=done",
            None,
            400,
            "unknown status",
        ),
        (
            "GET",
            "/api/v1/tasks/ffffffff",
            None,
            404,
            "no task id starts with",
        ),
        (
            "POST",
            &format!("/api/v1/tasks/{id}/cancel"),
            None,
            409,
            "already ended (succeeded)",
        ),
        (
            "POST",
            "/api/v1/tasks",
            Some("{\"image\": 5}"),
            400,
            "invalid type",
        ),
        (
            "POST",
            "/api/v1/tasks",
            Some("{\"image\": \"x\", \"gpu\": 1}"),
            400,
            "unknown field",
        ),
        (
            "POST",
            "/api/v1/tasks",
            Some("{\"image\": \"Not An Image!\"}"),
            400,
            "invalid image",
        ),
    ];
    for (method, path, body, want, needle) in cases {
        let (code, v) = json_of(http(&api, method, path, None, *body));
        assert_eq!(code, *want, "{method} {path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{method} {path}: {v}"
        );
    }

    // A running task is cancelled through the API.
    let long =
        json!({ "image": "cloudai/busybox:test", "env": { "CLOUDAI_FAKE_RUN_MS": "60000" } });
    let (_, v) = json_of(http(
        &api,
        "POST",
        "/api/v1/tasks",
        None,
        Some(&long.to_string()),
    ));
    let long_id = v["id"].as_str().unwrap().to_string();
    eventually("the long task to run", QUICK, || {
        let (_, t) = json_of(http(
            &api,
            "GET",
            &format!("/api/v1/tasks/{long_id}"),
            None,
            None,
        ));
        (t["status"] == "running").then_some(())
    });
    let (code, v) = json_of(http(
        &api,
        "POST",
        &format!("/api/v1/tasks/{long_id}/cancel"),
        None,
        None,
    ));
    assert_eq!(code, 200, "{v}");
    eventually("the cancel to end it", QUICK, || {
        let (_, t) = json_of(http(
            &api,
            "GET",
            &format!("/api/v1/tasks/{long_id}"),
            None,
            None,
        ));
        (t["status"] == "cancelled").then_some(())
    });
}

#[test]
fn the_api_checks_tokens_and_roles_as_grpc_does() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret").display().to_string();
    let add = |name: &str, role: &str| common::add_user(dir.path(), name, role);
    let (viewer, alice, bob) = (
        add("vera", "viewer"),
        add("alice", "submitter"),
        add("bob", "submitter"),
    );
    let api = format!("127.0.0.1:{}", free_port());
    let (_m, _) = master(
        dir.path(),
        &api,
        &["--require-auth", "--secret-file", &secret],
    );
    let spec = json!({ "image": "cloudai/busybox:test" }).to_string();

    let (code, v) = eventually("the API to answer", QUICK, || {
        std::net::TcpStream::connect(&api).ok()?;
        Some(json_of(http(&api, "GET", "/api/v1/tasks", None, None)))
    });
    assert_eq!(code, 401, "{v}");
    assert_eq!(v["error"]["code"], "UNAUTHENTICATED");
    let (code, _) = json_of(http(&api, "GET", "/api/v1/tasks", Some(&viewer), None));
    assert_eq!(code, 200);
    // What the dashboard shows to each: the buttons its role may use.
    let (code, me) = json_of(http(&api, "GET", "/api/v1/whoami", Some(&viewer), None));
    assert_eq!(code, 200, "{me}");
    assert_eq!(
        (&me["user"], &me["role"]),
        (&json!("vera"), &json!("viewer"))
    );
    assert_eq!(me["may"]["enqueue"], false, "{me}");
    let (_, me) = json_of(http(&api, "GET", "/api/v1/whoami", Some(&alice), None));
    assert_eq!(me["auth_enforced"], true, "{me}");
    assert_eq!(
        (&me["may"]["enqueue"], &me["may"]["bulk"]),
        (&json!(true), &json!(false))
    );
    let (code, _) = json_of(http(&api, "GET", "/api/v1/whoami", Some("wrong"), None));
    assert_eq!(code, 401);
    let (code, v) = json_of(http(
        &api,
        "POST",
        "/api/v1/tasks",
        Some(&viewer),
        Some(&spec),
    ));
    assert_eq!(code, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may not enqueue"),
        "{v}"
    );

    let (code, v) = json_of(http(
        &api,
        "POST",
        "/api/v1/tasks",
        Some(&alice),
        Some(&spec),
    ));
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (_, t) = json_of(http(
        &api,
        "GET",
        &format!("/api/v1/tasks/{id}"),
        Some(&viewer),
        None,
    ));
    assert_eq!(t["submitted_by"], "alice", "{t}");
    let (_, l) = json_of(http(
        &api,
        "GET",
        "/api/v1/tasks?submitter=bob",
        Some(&viewer),
        None,
    ));
    assert_eq!(l["tasks"].as_array().unwrap().len(), 0, "{l}");
    // Another submitter may not cancel it; its owner may.
    let (code, v) = json_of(http(
        &api,
        "POST",
        &format!("/api/v1/tasks/{id}/cancel"),
        Some(&bob),
        None,
    ));
    assert_eq!(code, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("submitted by alice"),
        "{v}"
    );
    let (code, v) = json_of(http(
        &api,
        "POST",
        &format!("/api/v1/tasks/{id}/cancel"),
        Some(&alice),
        None,
    ));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["task"]["status"], "cancelled", "{v}");
}
