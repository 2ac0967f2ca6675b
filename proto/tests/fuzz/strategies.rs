//! Proptest strategies: wire values (anything a peer could encode, in range or not) and
//! domain values (anything the model can hold), plus byte mutations of encoded messages.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use cloudai_proto::pb;
use cloudai_queue as q;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Strategies: wire values (anything a peer could encode) and domain values.
// ---------------------------------------------------------------------------------------

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9./:_@-]{0,40}",
        "[A-Za-z0-9_=\\-\\x00]{0,16}",
        any::<String>(),
        Just(String::new()),
        Just("0190d9a3-7c1e-7b2a-9f00-000000000001".to_string()),
        Just("cloudai/busybox:test".to_string()),
    ]
}

pub fn wire_ts() -> impl Strategy<Value = prost_types::Timestamp> {
    prop_oneof![
        (any::<i64>(), any::<i32>()),
        (-62_135_596_800i64..253_402_300_799, 0i32..1_000_000_000),
        (Just(i64::MAX), Just(0)),
        (Just(0i64), Just(-1)),
    ]
    .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos })
}

pub fn wire_duration() -> impl Strategy<Value = prost_types::Duration> {
    prop_oneof![
        (any::<i64>(), any::<i32>()),
        (0i64..10_000_000, 0i32..1_000_000_000),
        (Just(i64::MAX), Just(999_999_999)),
    ]
    .prop_map(|(seconds, nanos)| prost_types::Duration { seconds, nanos })
}

pub fn small_or_any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..4096, any::<u64>()]
}

pub fn wire_resources() -> impl Strategy<Value = pb::Resources> {
    (
        small_or_any_u64(),
        small_or_any_u64(),
        any::<u32>(),
        small_or_any_u64(),
    )
        .prop_map(
            |(cpu_millis, memory_bytes, gpus, disk_bytes)| pb::Resources {
                cpu_millis,
                memory_bytes,
                gpus,
                disk_bytes,
            },
        )
}

pub fn wire_map() -> impl Strategy<Value = std::collections::HashMap<String, String>> {
    prop::collection::hash_map(text(), text(), 0..6)
}

pub fn wire_spec() -> impl Strategy<Value = pb::TaskSpec> {
    (
        (
            text(),
            prop::collection::vec(text(), 0..5),
            wire_map(),
            prop::option::of(wire_resources()),
            any::<i32>(),
            prop_oneof![0u32..5, any::<u32>()],
        ),
        (
            prop::option::of(wire_duration()),
            prop::option::of(text()),
            wire_map(),
            prop::option::of(text()),
            prop::option::of(prop_oneof![0u32..5, any::<u32>()]),
            prop::collection::vec(text(), 0..3),
        ),
        (
            prop::collection::vec(wire_dependency(), 0..3),
            prop::option::of(wire_ts()),
            prop::option::of((text(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
                |(id, index, size, max_running)| pb::ArrayMember {
                    id,
                    index,
                    size,
                    max_running,
                },
            )),
            prop::collection::vec(
                (
                    text(),
                    prop_oneof![0i32..6, any::<i32>()],
                    prop::collection::vec(text(), 0..3),
                )
                    .prop_map(|(key, op, values)| pb::Constraint {
                        key,
                        op,
                        values,
                    }),
                0..3,
            ),
            prop::collection::vec(
                (text(), text()).prop_map(|(key, value)| pb::Preference { key, value }),
                0..2,
            ),
        ),
    )
        .prop_map(
            |(
                (image, command, env, resources, priority, max_attempts),
                (timeout, pinned_worker, labels, idempotency_key, max_lost_retries, entrypoint),
                (after, not_before, array, constraints, prefer),
            )| pb::TaskSpec {
                image,
                command,
                entrypoint,
                env,
                resources,
                priority,
                max_attempts,
                timeout,
                pinned_worker,
                labels,
                idempotency_key,
                max_lost_retries,
                after,
                not_before,
                array,
                constraints,
                prefer,
            },
        )
}

/// A parent: a real id or any text, any condition value.
pub fn wire_dependency() -> impl Strategy<Value = pb::Dependency> {
    (
        prop_oneof![
            any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
            text()
        ],
        prop_oneof![0i32..3, any::<i32>()],
    )
        .prop_map(|(task_id, condition)| pb::Dependency { task_id, condition })
}

pub fn status_value() -> impl Strategy<Value = i32> {
    prop_oneof![0i32..10, any::<i32>()]
}

pub fn wire_attempt() -> impl Strategy<Value = pb::Attempt> {
    (
        (
            any::<u32>(),
            any::<u64>(),
            text(),
            prop::option::of(wire_ts()),
        ),
        (
            prop::option::of(wire_ts()),
            prop::option::of(wire_ts()),
            status_value(),
            prop::option::of(any::<i32>()),
            text(),
        ),
        (any::<u64>(), any::<bool>()),
    )
        .prop_map(
            |(
                (number, token, worker_id, assigned_at),
                (started_at, finished_at, outcome, exit_code, error),
                (reported_seq, lost_to_silence),
            )| pb::Attempt {
                number,
                token,
                worker_id,
                assigned_at,
                started_at,
                finished_at,
                outcome,
                exit_code,
                error,
                reported_seq,
                lost_to_silence,
            },
        )
}

pub fn wire_task() -> impl Strategy<Value = pb::Task> {
    (
        (
            text(),
            prop::option::of(wire_spec()),
            status_value(),
            prop::option::of(wire_ts()),
            prop::option::of(wire_ts()),
            prop::option::of(wire_ts()),
        ),
        (
            prop::collection::vec(wire_attempt(), 0..4),
            text(),
            prop::option::of(any::<i32>()),
            text(),
            any::<bool>(),
            text(),
            prop::option::of(wire_ts()),
        ),
    )
        .prop_map(
            |(
                (id, spec, status, created_at, updated_at, not_before),
                (
                    attempts,
                    worker_id,
                    exit_code,
                    error,
                    cancel_requested,
                    submitted_by,
                    finished_at,
                ),
            )| pb::Task {
                id,
                spec,
                status,
                created_at,
                updated_at,
                not_before,
                attempts,
                worker_id,
                exit_code,
                error,
                cancel_requested,
                submitted_by,
                finished_at,
                wait_reason: None,
            },
        )
}

pub fn attempt_ref() -> impl Strategy<Value = pb::AttemptRef> {
    (
        text(),
        any::<u64>(),
        proptest::collection::vec(text(), 0..3),
    )
        .prop_map(|(task_id, token, devices)| pb::AttemptRef {
            task_id,
            token,
            devices,
        })
}

pub fn worker_message() -> impl Strategy<Value = pb::WorkerMessage> {
    use pb::task_event::Event;
    use pb::worker_message::Msg;
    let register = (
        text(),
        wire_map(),
        prop::option::of(wire_resources()),
        prop::collection::vec(attempt_ref(), 0..4),
        text(),
    )
        .prop_map(|(worker_id, labels, capacity, running, token)| {
            Msg::Register(pb::Register {
                worker_id,
                labels,
                capacity,
                gpu: None,
                hostname: "h".into(),
                version: "v".into(),
                finished: running.clone(),
                running,
                token,
                attributes: Default::default(),
            })
        });
    let heartbeat = (
        any::<f64>(),
        prop::collection::vec(attempt_ref(), 0..4),
        prop::option::of(wire_ts()),
        any::<u64>(),
    )
        .prop_map(|(cpu_percent, running, sent_at, seq)| {
            Msg::Heartbeat(pb::Heartbeat {
                usage: Some(pb::Usage {
                    cpu_percent,
                    ..Default::default()
                }),
                running,
                sent_at,
                seq,
            })
        });
    let body = prop_oneof![
        text().prop_map(|progress| Event::Pulling(pb::Pulling { progress })),
        text().prop_map(|container_id| Event::Started(pb::Started { container_id })),
        (status_value(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(stream, data)| Event::Log(pb::LogData { stream, data })),
        (status_value(), prop::option::of(any::<i32>()), text()).prop_map(
            |(kind, exit_code, error)| Event::Finished(pb::Finished {
                kind,
                exit_code,
                error
            })
        ),
    ];
    let event = (
        text(),
        any::<u64>(),
        prop::option::of(wire_ts()),
        prop::option::of(body),
        0u64..4,
    )
        .prop_map(|(task_id, token, time, event, seq)| {
            Msg::Event(pb::TaskEvent {
                task_id,
                token,
                time,
                event,
                seq,
            })
        });
    prop::option::of(prop_oneof![register, heartbeat, event])
        .prop_map(|msg| pb::WorkerMessage { msg })
}

pub fn domain_time() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_135_596_800i64..253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(s, n)| Utc.timestamp_opt(s, n).single().expect("in range"))
}

pub fn non_empty() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,20}"
}

pub fn domain_spec() -> impl Strategy<Value = q::TaskSpec> {
    (
        (
            text(),
            prop::collection::vec(text(), 0..4),
            prop::collection::btree_map(text(), text(), 0..4),
            (any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>()),
            any::<i32>(),
        ),
        (
            1u32..=u32::MAX,
            any::<u32>(),
            prop::option::of(
                (0u64..=i64::MAX as u64, 0u32..1_000_000_000)
                    .prop_map(|(s, n)| Duration::new(s, n)),
            ),
            prop::option::of(non_empty()),
            prop::collection::btree_map(text(), text(), 0..4),
            prop::option::of(non_empty()),
        ),
        prop::collection::vec(text(), 0..3),
        (
            prop::collection::vec(
                (
                    any::<u128>(),
                    prop::sample::select(q::DependencyCondition::ALL.to_vec()),
                )
                    .prop_map(|(n, condition)| q::Dependency {
                        task: q::TaskId(uuid::Uuid::from_u128(n)),
                        condition,
                    }),
                0..3,
            ),
            prop::option::of(domain_time()),
            prop::option::of(
                (non_empty(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
                    |(id, index, size, max_running)| q::array::ArrayMember {
                        id,
                        index,
                        size,
                        max_running,
                    },
                ),
            ),
        ),
    )
        .prop_map(
            |(
                (image, command, env, (cpu_millis, memory_bytes, gpus, disk_bytes), priority),
                (max_attempts, max_lost_retries, timeout, pinned_worker, labels, idempotency_key),
                entrypoint,
                (after, not_before, array),
            )| q::TaskSpec {
                image,
                command,
                entrypoint,
                env,
                resources: q::Resources {
                    cpu_millis,
                    memory_bytes,
                    gpus,
                    disk_bytes,
                },
                priority,
                max_attempts,
                max_lost_retries,
                timeout,
                pinned_worker,
                labels,
                idempotency_key,
                after,
                not_before,
                array,
                constraints: Vec::new(),
                prefer: Vec::new(),
            },
        )
}

pub fn domain_status() -> impl Strategy<Value = q::TaskStatus> {
    prop::sample::select(q::TaskStatus::ALL.to_vec())
}

pub fn domain_attempt() -> impl Strategy<Value = q::Attempt> {
    (
        (any::<u32>(), any::<u64>(), text(), domain_time()),
        (
            prop::option::of(domain_time()),
            prop::option::of(domain_time()),
            prop::option::of(domain_status()),
            prop::option::of(any::<i32>()),
            prop::option::of(non_empty()),
        ),
        (any::<u64>(), any::<bool>()),
    )
        .prop_map(
            |(
                (number, token, worker_id, assigned_at),
                (started_at, finished_at, outcome, exit_code, error),
                (reported_seq, lost_to_silence),
            )| q::Attempt {
                number,
                token,
                worker_id,
                assigned_at,
                started_at,
                finished_at,
                outcome,
                exit_code,
                error,
                reported_seq,
                lost_to_silence,
            },
        )
}

pub fn domain_task() -> impl Strategy<Value = q::Task> {
    (
        (
            any::<u128>(),
            domain_spec(),
            domain_status(),
            domain_time(),
            domain_time(),
            domain_time(),
        ),
        (
            prop::option::of(domain_time()),
            prop::collection::vec(domain_attempt(), 0..4),
            any::<bool>(),
            prop::option::of(any::<i32>()),
            prop::option::of(non_empty()),
            prop::option::of(non_empty()),
        ),
    )
        .prop_map(
            |(
                (id, spec, status, created_at, updated_at, not_before),
                (finished_at, attempts, cancel_requested, exit_code, error, submitted_by),
            )| q::Task {
                id: q::TaskId(uuid::Uuid::from_u128(id)),
                spec,
                status,
                created_at,
                updated_at,
                not_before,
                finished_at,
                attempts,
                cancel_requested,
                exit_code,
                error,
                submitted_by,
            },
        )
}

/// One edit of an encoded message: what a broken or hostile peer sends.
#[derive(Clone, Debug)]
pub enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

pub fn mutate(mut b: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for m in edits {
        let len = b.len();
        match m {
            Mutation::Flip(i, x) if len > 0 => b[i % len] ^= x,
            Mutation::Truncate(i) => b.truncate(i % (len + 1)),
            Mutation::Insert(i, bytes) => {
                let at = i % (len + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove(i, n) if len > 0 => {
                let at = i % len;
                b.drain(at..(at + n).min(len));
            }
            _ => {}
        }
    }
    b
}
