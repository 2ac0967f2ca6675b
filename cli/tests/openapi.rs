//! The HTTP API's OpenAPI document (`/api/v1/openapi.json`, generated from the handlers)
//! against the real binary: it lists every operation, each documented operation is a
//! route the master answers, and schemathesis (PyPI) fuzzing every operation from the
//! document, with auth on and an admin's token, meets no 5xx and no crash. The fuzz
//! runs when `CLOUDAI_TEST_SCHEMATHESIS` names its executable (`.ci/run` makes a venv);
//! otherwise it says it skipped.

mod common;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::http::{http, json_of};
use common::{eventually, free_port, unique_worker_id, Proc};
use serde_json::Value;

const QUICK: Duration = Duration::from_secs(60);
/// The fuzz run, on a busy 2-core machine.
const FUZZ: Duration = Duration::from_secs(600);

/// Every operation the API has: (method, path).
const OPERATIONS: &[(&str, &str)] = &[
    ("get", "/api/v1/tasks"),
    ("post", "/api/v1/tasks"),
    ("get", "/api/v1/tasks/{id}"),
    ("post", "/api/v1/tasks/{id}/cancel"),
    ("post", "/api/v1/tasks/{id}/retry"),
    ("get", "/api/v1/tasks/{id}/logs"),
    ("post", "/api/v1/tasks/cancel"),
    ("post", "/api/v1/tasks/retry"),
    ("get", "/api/v1/workers"),
    ("post", "/api/v1/workers/{id}/cordon"),
    ("post", "/api/v1/workers/{id}/uncordon"),
    ("post", "/api/v1/workers/{id}/drain"),
    ("get", "/api/v1/queue/stats"),
    ("get", "/api/v1/queue/history"),
    ("get", "/api/v1/whoami"),
    ("get", "/api/v1/users"),
    ("post", "/api/v1/users"),
    ("delete", "/api/v1/users/{name}"),
    ("put", "/api/v1/users/{name}/quota"),
    ("post", "/api/v1/join-token/rotate"),
];

fn master(dir: &Path, api: &str, extra: &[&str]) -> (Proc, String) {
    let port = free_port();
    let mut args = common::master_args(port, dir);
    args.extend(["--no-shell".into(), "--http-listen".into(), api.into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let m = Proc::spawn("master", &args, &[]);
    eventually("the HTTP listener", QUICK, || {
        TcpStream::connect(api).ok().map(|_| ())
    });
    (m, format!("http://127.0.0.1:{port}"))
}

#[test]
fn the_document_lists_every_operation_and_each_is_a_route() {
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let (_m, _) = master(dir.path(), &api, &[]);
    let (code, doc) = json_of(http(&api, "GET", "/api/v1/openapi.json", None, None));
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut found = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            found.insert((method.clone(), path.clone()));
            let id = op["operationId"].as_str().unwrap().to_string();
            assert!(ids.insert(id.clone()), "operationId {id} twice");
            assert!(
                op["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"]
                    == "#/components/schemas/ErrorBody",
                "{method} {path} documents its errors: {op}"
            );
        }
    }
    let want: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(found, want);
    assert_eq!(
        doc["components"]["securitySchemes"]["token"]["scheme"], "bearer",
        "{doc}"
    );
    for field in ["image", "labels", "timeout_seconds", "idempotency_key"] {
        assert!(
            doc["components"]["schemas"]["ApiSpec"]["properties"][field].is_object(),
            "ApiSpec documents {field}"
        );
    }
    // Each documented operation is routed: the answer is the API's JSON (an unrouted
    // path would get the server's bare 404 with an empty body).
    for (method, path) in OPERATIONS {
        let concrete = path.replace("{id}", "nosuch").replace("{name}", "nosuch");
        let (code, body) = http(&api, &method.to_uppercase(), &concrete, None, Some("{}"));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{method} {concrete}: {code} not JSON ({e}): {body:?}"));
        assert!(code < 500, "{method} {concrete}: {code} {v}");
    }
}

#[test]
fn schemathesis_finds_no_server_error_with_auth_on() {
    let Some(st) = std::env::var("CLOUDAI_TEST_SCHEMATHESIS")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        eprintln!("skipped the API fuzz: CLOUDAI_TEST_SCHEMATHESIS is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret").display().to_string();
    let admin = common::add_user(dir.path(), "root", "admin");
    // The user the fuzz may remove (`path.name`): not the admin whose token it sends.
    common::add_user(dir.path(), "fuzzed", "viewer");
    let api = format!("127.0.0.1:{}", free_port());
    let (m, url) = master(
        dir.path(),
        &api,
        &["--require-auth", "--secret-file", &secret],
    );
    let join = common::join_token(&m);
    let wid = unique_worker_id("fuzz");
    let _w = Proc::spawn(
        "worker",
        &[
            "worker",
            "--fake-executor",
            "--master",
            &url,
            "--id",
            &wid,
            "--heartbeat-interval",
            "500ms",
            "--join-token",
            &join,
        ],
        &[],
    );
    let (code, v) = json_of(http(
        &api,
        "POST",
        "/api/v1/tasks",
        Some(&admin),
        Some(r#"{"image": "cloudai/busybox:test", "env": {"CLOUDAI_FAKE_STDOUT": "hi"}}"#),
    ));
    assert_eq!(code, 201, "{v}");
    // Real ids for the path parameters, so the fuzz reaches past "not found".
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.id\" = \"{}\"\n\"path.name\" = \"fuzzed\"\n\n\
             [[operations]]\ninclude-path-regex = \"^/api/v1/workers/\"\n\
             parameters = {{ \"path.id\" = \"{wid}\" }}\n",
            v["id"].as_str().unwrap()
        ),
    )
    .unwrap();
    let auth = format!("authorization: Bearer {admin}");
    let schema = format!("http://{api}/api/v1/openapi.json");
    let report = dir.path().join("report");
    let mut p = Proc::spawn_program(
        "schemathesis",
        &st,
        &[
            "--config-file",
            config.to_str().unwrap(),
            "run",
            &schema,
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--no-color",
            "--report-dir",
            report.to_str().unwrap(),
            // No example database left in the source tree.
            "--generation-database",
            "none",
            "-H",
            &auth,
        ],
        &[],
    );
    p.close_stdin();
    let code = p.wait_exit(FUZZ);
    println!("{}{}", p.stdout(), p.stderr());
    assert_eq!(
        code,
        0,
        "schemathesis failed:\n{}\n{}",
        p.stdout(),
        p.stderr()
    );
    assert!(
        p.stdout().contains("passed"),
        "schemathesis ran cases: {}",
        p.stdout()
    );
    assert!(
        !m.stderr().contains("panicked"),
        "the master panicked:\n{}",
        m.stderr()
    );
    // Still serving.
    let (code, _) = http(&api, "GET", "/api/v1/queue/stats", Some(&admin), None);
    assert_eq!(code, 200);
}
