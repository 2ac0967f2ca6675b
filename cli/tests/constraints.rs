//! End-to-end with the real binary (issue 15): a fake-executor worker labelled
//! `zone=a` registers its built-in attributes; `enqueue --constraint` runs only where it
//! holds, warns (stderr) when no registered worker could ever take the task, or refuses it
//! with `--strict` (exit 16, nothing stored; an array likewise, whole); `tasks` shows the REASON column and `task`
//! the detail and the reservation; a worker label may not shadow a built-in attribute.

mod common;

use std::time::Duration;

use common::{eventually, unique_worker_id, wait_worker_healthy, Cluster, Proc};

const BUSYBOX: &str = "cloudai/busybox:test";
const QUICK: Duration = Duration::from_secs(30);

#[test]
fn constraints_warnings_strict_and_reasons_through_the_cli() {
    let mut c = Cluster::master_only();
    let id = unique_worker_id("zone-a");
    c.worker = Some(Proc::spawn(
        "worker",
        &[
            "worker",
            "--fake-executor",
            "--master",
            &c.url,
            "--id",
            &id,
            "--labels",
            "zone=a,disk=ssd",
            "--heartbeat-interval",
            "500ms",
        ],
        &[],
    ));
    c.worker_id = id.clone();
    wait_worker_healthy(&c, &id);

    let ws = c.run(&["workers", "--output", "json"]).json();
    let w = &ws.as_array().unwrap()[0];
    assert_eq!(w["labels"]["zone"], "a");
    assert_eq!(w["attributes"]["os"], std::env::consts::OS);
    assert_eq!(w["attributes"]["arch"], std::env::consts::ARCH);
    let table = c.run(&["workers"]).stdout;
    assert!(
        table.contains("ATTRIBUTES") && table.contains("zone=a"),
        "{table}"
    );

    // It holds: the task runs there.
    let ok = c.run(&[
        "enqueue",
        "--constraint",
        "zone=a",
        "--constraint",
        "disk!=hdd",
        "--prefer",
        "zone=a",
        "--wait",
        BUSYBOX,
        "--",
        "true",
    ]);
    assert_eq!(ok.code, 0, "{ok:#?}");
    assert!(!ok.stderr.contains("warning"), "{}", ok.stderr);

    // No registered worker could ever take it: queued, with a warning naming the worker.
    let out = c.run(&[
        "enqueue",
        "--constraint",
        "gpu.model in (a100,h100)",
        BUSYBOX,
        "--",
        "true",
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    let never = out.stdout.trim().to_string();
    assert!(
        out.stderr.contains(&format!(
            "warning: no registered worker could ever take this task: closest worker {id} \
             lacks gpu.model in (a100,h100) (it has no gpu.model)"
        )),
        "{}",
        out.stderr
    );
    let t = eventually("the dispatcher's reason", QUICK, || {
        let t = c.task_json(&never);
        (t["wait_reason"]["code"] == "NoWorkerFits").then_some(t)
    });
    assert!(
        t["wait_reason"]["detail"].as_str().unwrap().contains(&id),
        "{t}"
    );
    assert_eq!(t["constraints"][0], "gpu.model in (a100,h100)");
    assert_eq!(t["reserved"]["memory_bytes"], 256 << 20, "{t}");
    let detail = c.run(&["task", &never]).stdout;
    assert!(
        detail.contains("reason") && detail.contains("NoWorkerFits: closest worker"),
        "{detail}"
    );
    let listing = c.run(&["tasks", "--status", "queued"]).stdout;
    let header = listing.lines().next().unwrap();
    let col = header
        .split_whitespace()
        .position(|h| h == "REASON")
        .unwrap();
    let row = listing.lines().find(|l| l.starts_with(&never)).unwrap();
    assert_eq!(
        row.split_whitespace().nth(col),
        Some("NoWorkerFits"),
        "{listing}"
    );

    // --strict refuses it, with the reason, and stores nothing.
    let before = stored(&c);
    let strict = c.run(&["enqueue", "--strict", "--cpu", "64", BUSYBOX, "--", "true"]);
    assert_eq!(strict.code, 16, "{strict:#?}");
    assert!(
        strict.stderr.contains("cpu_millis 64000 requested"),
        "{}",
        strict.stderr
    );
    // So does an array's, whole.
    let array = [
        "enqueue", "--strict", "--array", "0-3", "--cpu", "64", BUSYBOX, "--", "true",
    ];
    let strict = c.run(&array);
    assert_eq!(strict.code, 16, "{strict:#?}");
    assert!(
        strict.stderr.contains("cpu_millis 64000"),
        "{}",
        strict.stderr
    );
    let after = stored(&c);
    assert_eq!(before, after);
    // Without --strict the array is queued, with the warning once.
    let queued = c.run(
        &array[..1]
            .iter()
            .chain(&array[2..])
            .copied()
            .collect::<Vec<_>>(),
    );
    assert_eq!(queued.code, 0, "{queued:#?}");
    assert_eq!(
        queued
            .stderr
            .matches("warning: no registered worker")
            .count(),
        1,
        "{}",
        queued.stderr
    );
    let after = stored(&c);
    assert_eq!(before + 4, after);
    // A malformed constraint is a usage error before any call.
    let bad = c.run(&["enqueue", "--constraint", "zone in a,b", BUSYBOX]);
    assert_eq!(bad.code, 2, "{bad:#?}");
    assert!(bad.stderr.contains("constraint"), "{}", bad.stderr);

    // A label may not shadow a built-in attribute: the worker refuses to start.
    let mut shadow = Proc::spawn(
        "worker",
        &[
            "worker",
            "--fake-executor",
            "--master",
            &c.url,
            "--labels",
            "os=plan9",
        ],
        &[],
    );
    let code = shadow.wait_exit(QUICK);
    assert_ne!(code, 0);
    assert!(
        shadow.stderr().contains("built-in attribute"),
        "{}",
        shadow.stderr()
    );
}

/// How many tasks `tasks --output json` lists.
fn stored(c: &Cluster) -> usize {
    c.run(&["tasks", "--output", "json", "--limit", "1000"])
        .json()
        .as_array()
        .unwrap()
        .len()
}
