//! `cloudai submit FILE` from the real binary, on fake-executor workers: the sample
//! workflow (`sample_task/flow.yaml`) runs each step after its parents' outcome, the one
//! that needs a failure is cancelled with the reason, `workflow show` lists the steps in
//! dependency order with their statuses, `workflow cancel` stops what has not ended, and
//! a broken file is refused with its line before anything is enqueued.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{eventually, run_env, Cluster, Out};
use serde_json::Value;

const QUICK: Duration = Duration::from_secs(60);

fn cluster() -> Cluster {
    Cluster::with_fake_worker("wff")
}

fn run(c: &Cluster, args: &[&str]) -> Out {
    run_env(args, &[("CLOUDAI_MASTER", &c.url)], QUICK)
}

fn sample() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../sample_task/flow.yaml")
        .display()
        .to_string()
}

fn show(c: &Cluster, id: &str) -> Vec<Value> {
    let out = run(c, &["workflow", "show", id, "--output", "json"]);
    assert_eq!(out.code, 0, "{out:#?}");
    out.json().as_array().unwrap().clone()
}

fn step<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps.iter().find(|s| s["step"] == name).unwrap()
}

#[test]
fn the_sample_workflow_runs_in_order_and_shows_each_step() {
    let c = cluster();
    let dry = run(&c, &["submit", &sample(), "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:#?}");
    let order: Vec<&str> = dry
        .stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap().trim())
        .collect();
    assert_eq!(
        order,
        ["build", "lint", "test", "notify", "report"],
        "{}",
        dry.stdout
    );

    let out = run(&c, &["submit", &sample()]);
    assert_eq!(out.code, 0, "{out:#?}");
    let id = out.stdout.trim().to_string();
    assert!(out.stderr.contains("step build -> task"), "{out:#?}");
    let steps = eventually("the workflow to end", QUICK, || {
        let s = show(&c, &id);
        s.iter()
            .all(|t| ["succeeded", "cancelled", "failed"].contains(&t["status"].as_str().unwrap()))
            .then_some(s)
    });
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["build", "lint", "test", "notify", "report"],
        "dependency order"
    );
    for s in ["build", "test", "lint", "report"] {
        assert_eq!(step(&steps, s)["status"], "succeeded", "{steps:#?}");
    }
    let notify = step(&steps, "notify");
    assert_eq!(notify["status"], "cancelled");
    let test_id = step(&steps, "test")["task_id"].as_str().unwrap();
    assert_eq!(
        notify["error"],
        format!("dependency {test_id} ended succeeded")
    );
    assert_eq!(
        step(&steps, "report")["needs"],
        serde_json::json!(["test:any", "lint:any"])
    );
    assert_eq!(
        (
            step(&steps, "build")["depth"].as_u64(),
            step(&steps, "report")["depth"].as_u64()
        ),
        (Some(0), Some(2))
    );
    // Each step started after its parents ended, by the tasks' own times.
    let task = |id: &str| run(&c, &["task", id, "--output", "json"]).json();
    let report = task(step(&steps, "report")["task_id"].as_str().unwrap());
    for p in ["test", "lint"] {
        let parent = task(step(&steps, p)["task_id"].as_str().unwrap());
        assert!(
            report["attempts"][0]["assigned_at"].as_str() >= parent["finished_at"].as_str(),
            "{report} {parent}"
        );
    }
    let text = run(&c, &["workflow", "show", &id]);
    assert!(
        text.stdout.contains("  test\tsucceeded"),
        "indented by depth: {}",
        text.stdout
    );
    assert!(
        text.stdout.contains("5 step(s): 1 cancelled, 4 succeeded"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_workflow_is_cancelled_whole_and_a_broken_file_names_its_line() {
    let c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.yaml");
    std::fs::write(
        &file,
        "steps:\n  first:\n    image: cloudai/busybox:test\n    env: {CLOUDAI_FAKE_RUN_MS: '60000'}\n  \
         second:\n    image: cloudai/busybox:test\n    needs: ['first:any']\n",
    )
    .unwrap();
    let out = run(&c, &["submit", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:#?}");
    let id = out.stdout.trim().to_string();
    eventually("the first step to run", QUICK, || {
        (step(&show(&c, &id), "first")["status"] == "running").then_some(())
    });
    let out = run(&c, &["workflow", "cancel", &id]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("cancelled 2 step(s)"), "{out:#?}");
    let steps = eventually("both steps to be cancelled", QUICK, || {
        let s = show(&c, &id);
        s.iter().all(|t| t["status"] == "cancelled").then_some(s)
    });
    // `second` (after `first:any`) was cancelled itself, not released by first's end.
    assert_eq!(step(&steps, "second")["error"], Value::Null, "{steps:#?}");

    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "steps:\n  a:\n    image: cloudai/busybox:test\n    needs: [b]\n",
    )
    .unwrap();
    let before = run(&c, &["tasks", "--output", "json"])
        .json()
        .as_array()
        .unwrap()
        .len();
    let out = run(&c, &["submit", broken.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.contains("broken.yaml:2: step a needs \"b\""),
        "{}",
        out.stderr
    );
    let after = run(&c, &["tasks", "--output", "json"])
        .json()
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "nothing was enqueued");
    let out = run(&c, &["workflow", "show", "no-such-workflow"]);
    assert_eq!(out.code, 11, "{out:#?}");
}
