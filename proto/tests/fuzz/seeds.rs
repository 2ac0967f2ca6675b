//! The hand-made seeds of the corpus in `tests/corpus/`: typical messages of each kind,
//! and the broken ones a peer might send.

use cloudai_proto::pb;
use prost::Message;

// ---------------------------------------------------------------------------------------
// The seed corpus.
// ---------------------------------------------------------------------------------------

fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

/// Hand-made seeds: typical messages of each kind, and the broken ones a peer might send.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use pb::task_event::Event;
    use pb::worker_message::Msg;
    let id = "0190d9a3-7c1e-7b2a-9f00-000000000001".to_string();
    let good_spec = pb::TaskSpec {
        image: "cloudai/busybox:test".into(),
        command: vec!["sh".into(), "-c".into(), "echo hi".into()],
        entrypoint: vec![],
        env: [("A".to_string(), "1".to_string())].into(),
        resources: Some(pb::Resources {
            cpu_millis: 500,
            memory_bytes: 64 << 20,
            gpus: 0,
            disk_bytes: 0,
        }),
        priority: 3,
        max_attempts: 3,
        timeout: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        pinned_worker: Some("w1".into()),
        labels: [("team".to_string(), "ml".to_string())].into(),
        idempotency_key: Some("k1".into()),
        max_lost_retries: Some(2),
        after: vec![pb::Dependency {
            task_id: "0190d9a3-7c1e-7b2a-9f00-000000000002".into(),
            condition: pb::DependencyCondition::NotOk as i32,
        }],
        not_before: Some(prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        }),
        array: Some(pb::ArrayMember {
            id: "0190d9a3-7c1e-7b2a-9f00-0000000000aa".into(),
            index: 7,
            size: 100,
            max_running: 8,
        }),
        constraints: vec![pb::Constraint {
            key: "gpu.model".into(),
            op: pb::ConstraintOp::In as i32,
            values: vec!["a100".into(), "h100".into()],
        }],
        prefer: vec![pb::Preference {
            key: "zone".into(),
            value: "a".into(),
        }],
    };
    let hostile_spec = pb::TaskSpec {
        image: "UPPER//bad::".into(),
        command: vec!["a\0b".into()],
        entrypoint: vec!["x\0y".into()],
        env: [("A=B".to_string(), "x".to_string())].into(),
        resources: Some(pb::Resources {
            cpu_millis: u64::MAX,
            memory_bytes: u64::MAX,
            gpus: u32::MAX,
            disk_bytes: u64::MAX,
        }),
        priority: i32::MIN,
        max_attempts: u32::MAX,
        timeout: Some(prost_types::Duration {
            seconds: -1,
            nanos: -5,
        }),
        pinned_worker: Some("bad id".into()),
        labels: [(String::new(), "v".to_string())].into(),
        idempotency_key: Some(String::new()),
        max_lost_retries: Some(u32::MAX),
        after: vec![pb::Dependency {
            task_id: "not-an-id".into(),
            condition: 99,
        }],
        not_before: Some(prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: -1,
        }),
        array: Some(pb::ArrayMember {
            id: String::new(),
            index: u32::MAX,
            size: 0,
            max_running: u32::MAX,
        }),
        constraints: vec![
            pb::Constraint {
                key: "k".into(),
                op: 77,
                values: vec![],
            },
            pb::Constraint {
                key: "(".into(),
                op: pb::ConstraintOp::Exists as i32,
                values: vec!["x".into()],
            },
        ],
        prefer: vec![pb::Preference {
            key: String::new(),
            value: "a,b".into(),
        }],
    };
    let attempt = pb::Attempt {
        number: 1,
        token: 7,
        worker_id: "w1".into(),
        assigned_at: ts(1_700_000_000, 0),
        started_at: ts(1_700_000_001, 5),
        finished_at: ts(1_700_000_002, 999_999_999),
        outcome: pb::TaskStatus::Failed as i32,
        exit_code: Some(3),
        error: "exited with code 3".into(),
        reported_seq: 4,
        lost_to_silence: false,
    };
    let task = pb::Task {
        id: id.clone(),
        spec: Some(good_spec.clone()),
        status: pb::TaskStatus::Failed as i32,
        created_at: ts(1_700_000_000, 0),
        updated_at: ts(1_700_000_002, 0),
        not_before: ts(1_700_000_000, 0),
        attempts: vec![attempt.clone()],
        worker_id: "w1".into(),
        exit_code: Some(3),
        error: "exited with code 3".into(),
        cancel_requested: false,
        submitted_by: "alice".into(),
        finished_at: ts(1_700_000_002, 0),
        wait_reason: None,
    };
    let hostile_task = pb::Task {
        id: "not-a-uuid".into(),
        spec: Some(hostile_spec.clone()),
        status: 99,
        created_at: ts(i64::MAX, 0),
        updated_at: ts(i64::MIN, -1),
        not_before: None,
        attempts: vec![pb::Attempt {
            outcome: -3,
            assigned_at: ts(0, 1_000_000_000),
            ..attempt
        }],
        ..task.clone()
    };
    let wm = |msg| pb::WorkerMessage { msg: Some(msg) }.encode_to_vec();
    let event = |e: Event| {
        wm(Msg::Event(pb::TaskEvent {
            task_id: id.clone(),
            token: 7,
            time: ts(1_700_000_000, 0),
            seq: 1,
            event: Some(e),
        }))
    };
    let aref = pb::AttemptRef {
        task_id: id.clone(),
        token: 7,
        devices: vec!["GPU-1".into()],
    };
    let mm = |msg| pb::MasterMessage { msg: Some(msg) }.encode_to_vec();
    // Field 1 (worker_id in Register, nested as field 1 of WorkerMessage) holding bytes
    // that are not UTF-8.
    let bad_utf8 = vec![0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe];
    // A length prefix far beyond the buffer, and a varint that never ends.
    let huge_len = vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    let endless_varint = vec![
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    vec![
        (
            "worker_register",
            wm(Msg::Register(pb::Register {
                worker_id: "w1".into(),
                labels: [("zone".to_string(), "eu".to_string())].into(),
                capacity: Some(pb::Resources {
                    cpu_millis: 4000,
                    memory_bytes: 8 << 30,
                    gpus: 0,
                    disk_bytes: 0,
                }),
                gpu: None,
                hostname: "host".into(),
                version: "0.1.0".into(),
                running: vec![aref.clone()],
                token: String::new(),
                finished: vec![],
                attributes: [("os".to_string(), "linux".to_string())].into(),
            })),
        ),
        (
            "worker_register_hostile",
            wm(Msg::Register(pb::Register {
                worker_id: "no spaces allowed".into(),
                running: vec![pb::AttemptRef {
                    task_id: "zzz".into(),
                    token: u64::MAX,
                    devices: vec![String::new(), "x".repeat(300)],
                }],
                ..Default::default()
            })),
        ),
        (
            "worker_heartbeat",
            wm(Msg::Heartbeat(pb::Heartbeat {
                usage: Some(pb::Usage {
                    cpu_percent: f64::NAN,
                    memory_used_bytes: u64::MAX,
                    memory_total_bytes: 0,
                }),
                running: vec![aref.clone()],
                sent_at: ts(i64::MIN, i32::MIN),
                seq: u64::MAX,
            })),
        ),
        (
            "worker_event_started",
            event(Event::Started(pb::Started {
                container_id: "c1".into(),
            })),
        ),
        (
            "worker_event_log",
            event(Event::Log(pb::LogData {
                stream: pb::LogStream::Stdout as i32,
                data: b"hello\n".to_vec(),
            })),
        ),
        (
            "worker_event_log_bad_stream",
            event(Event::Log(pb::LogData {
                stream: 42,
                data: vec![0xff; 16],
            })),
        ),
        (
            "worker_event_finished",
            event(Event::Finished(pb::Finished {
                kind: pb::FinishKind::Exited as i32,
                exit_code: Some(0),
                error: String::new(),
            })),
        ),
        (
            "worker_event_finished_unknown_kind",
            event(Event::Finished(pb::Finished {
                kind: 1234,
                exit_code: Some(i32::MIN),
                error: "?".into(),
            })),
        ),
        (
            "worker_empty",
            pb::WorkerMessage { msg: None }.encode_to_vec(),
        ),
        (
            "master_assign",
            mm(pb::master_message::Msg::Assign(pb::Assign {
                task_id: id.clone(),
                token: 7,
                attempt: 1,
                spec: Some(good_spec.clone()),
                devices: vec!["GPU-1".into(), "GPU-2".into()],
            })),
        ),
        (
            "master_assign_hostile",
            mm(pb::master_message::Msg::Assign(pb::Assign {
                task_id: String::new(),
                token: 0,
                attempt: 0,
                spec: Some(hostile_spec.clone()),
                devices: vec![String::new()],
            })),
        ),
        (
            "master_revoke",
            mm(pb::master_message::Msg::Revoke(pb::Revoke {
                attempts: vec![aref],
                reason: "no longer yours".into(),
            })),
        ),
        ("task_spec", good_spec.encode_to_vec()),
        ("task_spec_hostile", hostile_spec.encode_to_vec()),
        ("task", task.encode_to_vec()),
        ("task_hostile", hostile_task.encode_to_vec()),
        (
            "enqueue_batch",
            pb::EnqueueBatchRequest {
                specs: vec![good_spec.clone(), hostile_spec],
            }
            .encode_to_vec(),
        ),
        (
            "enqueue_array",
            pb::EnqueueArrayRequest {
                spec: Some(good_spec),
                indices: "0-99:3,200,300-310%4".into(),
                strict: true,
            }
            .encode_to_vec(),
        ),
        ("bytes_bad_utf8", bad_utf8),
        ("bytes_huge_length", huge_len),
        ("bytes_endless_varint", endless_varint),
        ("bytes_empty", Vec::new()),
    ]
}
