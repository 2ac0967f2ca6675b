use std::time::Duration;

use chrono::TimeZone;

use super::*;
use crate::array::{elements, ArraySpec, LABEL};
use crate::deps::{Dependency, DependencyCondition};
use crate::lifecycle::new_task;
use crate::model::NewTask;
use crate::sqlite::schema::ts;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 23, 30, 0).unwrap() + chrono::Duration::nanoseconds(123)
}

/// A task with every field away from its default: a retried array element with deps.
fn full_task() -> Task {
    let mut spec = TaskSpec::new("cloudai/busybox:test");
    spec.command = vec!["sh".into(), "-c".into(), "echo \"hi\"\n".into()];
    spec.entrypoint = vec![String::new()];
    spec.env.insert("MODE".into(), "fast".into());
    spec.resources = Resources {
        cpu_millis: 500,
        memory_bytes: 1 << 28,
        gpus: 1,
        disk_bytes: 0,
    };
    spec.priority = -3;
    spec.max_attempts = 4;
    spec.max_lost_retries = 0;
    spec.timeout = Some(Duration::from_millis(30_500));
    spec.pinned_worker = Some("w-1".into());
    spec.labels.insert("team".into(), "ml".into());
    spec.idempotency_key = Some("nightly".into());
    spec.after = vec![Dependency {
        task: TaskId::new(),
        condition: DependencyCondition::Any,
    }];
    spec.not_before = Some(now() + chrono::Duration::minutes(10));
    let array: ArraySpec = "3-5%2".parse().unwrap();
    let (_, mut els) = elements(&spec, &array, Some("ann".into())).unwrap();
    let mut t = new_task(els.remove(1), now());
    let mut a = Attempt::new(1, 7, "w-1", now() + chrono::Duration::seconds(1));
    a.started_at = Some(now() + chrono::Duration::seconds(2));
    a.finished_at = Some(now() + chrono::Duration::seconds(3));
    a.outcome = Some(TaskStatus::Failed);
    a.exit_code = Some(2);
    a.error = Some("exit 2".into());
    a.reported_seq = 3;
    a.lost_to_silence = true;
    t.attempts = vec![
        a,
        Attempt::new(2, 8, "w-2", now() + chrono::Duration::seconds(9)),
    ];
    t.status = TaskStatus::Assigned;
    t.updated_at = now() + chrono::Duration::seconds(9);
    t.finished_at = Some(now() + chrono::Duration::seconds(20));
    t.cancel_requested = true;
    t.exit_code = Some(2);
    t.error = Some("exit 2".into());
    t
}

#[test]
fn every_field_reads_back_the_same() {
    let t = full_task();
    assert_eq!(t.spec.env[INDEX_ENV], "4", "the element is index 4 of 3-5");
    let body = encode_task(&t).unwrap();
    assert_eq!(decode_task(&body, None).unwrap(), t, "{body}");
}

#[test]
fn a_fresh_task_writes_only_what_differs_from_the_defaults() {
    let t = new_task(NewTask::from(TaskSpec::new("busybox")), now());
    let body = encode_task(&t).unwrap();
    for absent in [
        "null",
        "[]",
        "{}",
        "false",
        "updated_at",
        "not_before",
        "priority",
        "resources",
    ] {
        assert!(!body.contains(absent), "{absent} in {body}");
    }
    assert!(
        body.contains(&format!("\"created_at\":{}", ts(now()))),
        "times as nanoseconds: {body}"
    );
    assert_eq!(decode_task(&body, None).unwrap(), t);
    let full = serde_json::to_string(&t).unwrap();
    assert!(body.len() * 2 < full.len(), "{body} against {full}");
}

#[test]
fn an_array_element_leaves_out_the_env_its_membership_gives() {
    let (id, els) = elements(&TaskSpec::new("busybox"), &"0-2".parse().unwrap(), None).unwrap();
    let t = new_task(els.into_iter().nth(2).unwrap(), now());
    let body = encode_task(&t).unwrap();
    assert!(
        !body.contains(INDEX_ENV) && !body.contains(ID_ENV),
        "{body}"
    );
    assert!(body.contains(LABEL), "label queries read the body: {body}");
    let back = decode_task(&body, None).unwrap();
    assert_eq!(back.spec.env[INDEX_ENV], "2");
    assert_eq!(back.spec.env[ID_ENV], id);
    assert_eq!(back, t);

    // Env that is not what the membership gives is the task's own, and is kept.
    let mut own = t.clone();
    own.spec.env.insert(INDEX_ENV.into(), "seven".into());
    let body = encode_task(&own).unwrap();
    assert!(
        body.contains("seven") && !body.contains("array_env"),
        "{body}"
    );
    assert_eq!(decode_task(&body, None).unwrap(), own);
}

#[test]
fn an_older_body_reads_the_same() {
    // Up to schema 7 the body was the model's own serde form, nulls and RFC 3339 times.
    let t = full_task();
    let old = serde_json::to_string(&t).unwrap();
    assert!(
        old.contains("\"timeout\":30500") && old.contains("T23:30:"),
        "{old}"
    );
    assert_eq!(decode_task(&old, None).unwrap(), t);
}

#[test]
fn times_nanoseconds_cannot_hold_are_not_clamped() {
    let mut t = new_task(NewTask::from(TaskSpec::new("busybox")), now());
    t.not_before = Utc.with_ymd_and_hms(2400, 1, 1, 0, 0, 0).unwrap();
    t.updated_at = Utc.with_ymd_and_hms(1600, 1, 1, 0, 0, 0).unwrap();
    let body = encode_task(&t).unwrap();
    assert_eq!(decode_task(&body, None).unwrap(), t, "{body}");
}

#[test]
fn a_corrupt_body_is_a_typed_error_that_says_so() {
    for body in [
        "{",
        r#"{"id":"x"}"#,
        r#"{"id":"01a24351-f8a8-70df-affa-09e6b8ff658e","spec":{"image":"b","max_attempts":1,"max_lost_retries":0},"status":"queued","created_at":true}"#,
    ] {
        let e = decode_task(body, None).unwrap_err().to_string();
        assert!(e.contains("corrupt task row"), "{body}: {e}");
    }
}
