//! Job arrays from the real binary on a real Docker worker: `cloudai enqueue --array`
//! prints the array's id, each element's container sees its own CLOUDAI_ARRAY_INDEX and
//! the array's id (checked in every element's whole output), `cloudai array ID` counts
//! them, `cloudai tasks --array ID` lists them, `cloudai task` names the array, and a bad
//! index expression is refused before any connection, naming the flag.

mod common;

use std::time::Duration;

use common::{eventually, run_env, Cluster};

#[test]
fn an_array_runs_each_index_once_in_docker_and_is_counted_and_listed() {
    let c = Cluster::with_worker();
    let out = c.run(&[
        "enqueue",
        "--array",
        "0-4:2,7%2",
        "cloudai/busybox:test",
        "--",
        "sh",
        "-c",
        "echo part $CLOUDAI_ARRAY_INDEX of $CLOUDAI_ARRAY_ID",
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    let id = out.stdout.trim().to_string();
    assert_eq!(id.len(), 36, "the whole id on stdout: {out:#?}");
    assert!(
        out.stderr.contains("4 tasks, at most 2 at once"),
        "{}",
        out.stderr
    );

    let summary = eventually("all four to succeed", Duration::from_secs(120), || {
        let s = c.run(&["array", &id, "--output", "json"]).json();
        (s["counts"]["succeeded"] == 4).then_some(s)
    });
    assert_eq!(summary["size"], 4);
    assert_eq!(summary["max_running"], 2);
    assert_eq!(summary["image"], "cloudai/busybox:test");
    let text = c.run(&["array", &id]);
    assert_eq!(text.code, 0, "{text:#?}");
    assert!(
        text.stdout.contains("4 tasks, at most 2 at once"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("ended: 4 of 4"), "{}", text.stdout);

    let listed = c
        .run(&[
            "tasks",
            "--array",
            &id,
            "--oldest-first",
            "--output",
            "json",
        ])
        .json();
    let tasks = listed.as_array().expect("a list");
    let mut indices = Vec::new();
    for t in tasks {
        let index = t["array"]["index"].as_u64().unwrap();
        assert_eq!(t["array"]["id"], id.as_str());
        assert_eq!(t["env"]["CLOUDAI_ARRAY_INDEX"], index.to_string());
        let tid = t["id"].as_str().unwrap();
        let logs = c.run(&["logs", tid]);
        assert_eq!(logs.stdout, format!("part {index} of {id}\n"), "{logs:#?}");
        indices.push(index);
    }
    assert_eq!(indices, vec![0, 2, 4, 7], "each index once, in order");
    let one = c.run(&["task", tasks[0]["id"].as_str().unwrap()]);
    assert!(
        one.stdout
            .contains(&format!("{id} (index 0; 4 tasks, at most 2 at once)")),
        "{}",
        one.stdout
    );
    // Another array's id matches none of these.
    let none = c.run(&[
        "tasks",
        "--array",
        "0190d9a3-7c1e-7b2a-9f00-0000000000aa",
        "--output",
        "json",
    ]);
    assert_eq!(none.json().as_array().map(Vec::len), Some(0));
    let missing = c.run(&["array", "0190d9a3-7c1e-7b2a-9f00-0000000000aa"]);
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("no array"), "{missing:#?}");
}

#[test]
fn a_bad_index_expression_is_refused_before_connecting() {
    // Nothing listens there: the refusal must come first.
    let envs = [("CLOUDAI_MASTER", "http://127.0.0.1:9")];
    let out = run_env(
        &["enqueue", "--array", "9-3", "cloudai/busybox:test"],
        &envs,
        Duration::from_secs(30),
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("--array \"9-3\"") && out.stderr.contains("ends before it starts"),
        "{out:#?}"
    );
    let out = run_env(
        &[
            "enqueue",
            "--array",
            "0-3",
            "--wait",
            "cloudai/busybox:test",
        ],
        &envs,
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 2, "clap refuses --wait with --array: {out:#?}");
    assert!(out.stderr.contains("--wait"), "{out:#?}");
}
