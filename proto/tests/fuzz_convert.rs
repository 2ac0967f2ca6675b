//! Fuzzing of the wire → domain boundary with proptest (stable Rust; `cargo fuzz` needs
//! nightly). Whatever a peer sends, decoding and converting it gives a domain value or a
//! typed error and never panics; converted specs go through `validate_spec` without
//! panicking; domain values survive a trip over the wire unchanged.
//!
//! - The seed corpus in `tests/corpus/*.bin` (encoded messages, some deliberately broken)
//!   is replayed as is and used as the starting point of byte mutations.
//!   `CLOUDAI_FUZZ_WRITE_CORPUS=1 cargo test -p cloudai-proto --test fuzz_convert`
//!   rewrites the hand-made seeds.
//! - Failing cases proptest finds are kept in `tests/fuzz_convert.proptest-regressions`
//!   and replayed first on every run.
//! - Each property runs `FUZZ_CASES` cases (seconds in CI); `PROPTEST_CASES` overrides it
//!   for a longer local run.

use cloudai_proto::convert::{self, ConvertError};
use cloudai_proto::pb;
use cloudai_queue as q;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use prost::Message;
use std::path::{Path, PathBuf};

mod fuzz;

use fuzz::seeds::seeds;
use fuzz::strategies::*;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const FUZZ_CASES: u32 = 256;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FUZZ_CASES);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

// ---------------------------------------------------------------------------------------
// What every decoded message goes through: every conversion the master or worker applies.
// ---------------------------------------------------------------------------------------

/// A converted spec is validated (result ignored: only a panic fails), and a spec that
/// converts converts again to the same value after a trip back to the wire.
fn check_spec(s: pb::TaskSpec) {
    if let Ok(spec) = q::TaskSpec::try_from(s) {
        let _ = q::validate::validate_spec(&spec);
        let again = q::TaskSpec::try_from(pb::TaskSpec::from(spec.clone()))
            .expect("a converted spec converts again");
        assert_eq!(again, spec, "wire normalisation is idempotent");
    }
}

fn check_task(t: pb::Task) {
    if let Some(s) = &t.spec {
        check_spec(s.clone());
    }
    if let Ok(task) = q::Task::try_from(t) {
        let _ = q::validate::validate_spec(&task.spec);
        let again = q::Task::try_from(pb::Task::from(task.clone()))
            .expect("a converted task converts again");
        assert_eq!(again, task);
    }
}

fn check_ts(t: &Option<prost_types::Timestamp>) {
    if let Some(t) = t {
        if let Ok(d) = convert::from_timestamp("t", t) {
            assert_eq!(&convert::timestamp(d), t, "valid timestamps round trip");
        }
    }
}

fn check_ref(r: &pb::AttemptRef) {
    let _ = r.task_id.parse::<q::TaskId>();
}

fn check_worker_message(m: pb::WorkerMessage) {
    use pb::worker_message::Msg;
    match m.msg {
        Some(Msg::Register(r)) => {
            let _ = q::validate::validate_worker_id(&r.worker_id);
            let _: q::Resources = r.capacity.unwrap_or_default().into();
            r.running.iter().for_each(check_ref);
        }
        Some(Msg::Heartbeat(h)) => {
            h.running.iter().for_each(check_ref);
            check_ts(&h.sent_at);
        }
        Some(Msg::Event(e)) => {
            let _ = e.task_id.parse::<q::TaskId>();
            check_ts(&e.time);
            if let Some(pb::task_event::Event::Log(l)) = &e.event {
                let _ = convert::log_stream(l.stream);
            }
            let _ = convert::report::WorkerEvent::try_from(e);
        }
        None => {}
    }
}

fn check_master_message(m: pb::MasterMessage) {
    use pb::master_message::Msg;
    match m.msg {
        Some(Msg::Assign(a)) => {
            let _ = a.task_id.parse::<q::TaskId>();
            if let Some(s) = a.spec {
                check_spec(s);
            }
        }
        Some(Msg::Revoke(r)) => r.attempts.iter().for_each(check_ref),
        Some(Msg::Cancel(c)) => {
            let _ = c.task_id.parse::<q::TaskId>();
        }
        _ => {}
    }
}

fn check_log_chunk(c: pb::LogChunk) {
    if let Ok(chunk) = q::LogChunk::try_from(c) {
        let back = q::LogChunk::try_from(pb::LogChunk::from(chunk.clone())).unwrap();
        assert_eq!(back, chunk);
    }
}

/// Arbitrary bytes, decoded as every message a peer can send; each decoded one is
/// converted. Decode errors are fine; panics are not.
fn check_bytes(b: &[u8]) {
    if let Ok(m) = pb::WorkerMessage::decode(b) {
        check_worker_message(m);
    }
    if let Ok(m) = pb::MasterMessage::decode(b) {
        check_master_message(m);
    }
    if let Ok(s) = pb::TaskSpec::decode(b) {
        check_spec(s);
    }
    if let Ok(t) = pb::Task::decode(b) {
        check_task(t);
    }
    if let Ok(r) = pb::EnqueueRequest::decode(b) {
        if let Some(s) = r.spec {
            check_spec(s);
        }
    }
    if let Ok(r) = pb::EnqueueBatchRequest::decode(b) {
        r.specs.into_iter().for_each(check_spec);
    }
    if let Ok(r) = pb::EnqueueArrayRequest::decode(b) {
        // The master parses the indices before anything else: no panic, and what it
        // accepts stays within the limit.
        if let Ok(a) = r.indices.parse::<cloudai_queue::array::ArraySpec>() {
            assert!(
                !a.indices.is_empty() && a.indices.len() <= cloudai_queue::array::MAX_ARRAY_SIZE
            );
        }
        if let Some(s) = r.spec {
            check_spec(s);
        }
    }
    if let Ok(c) = pb::LogChunk::decode(b) {
        check_log_chunk(c);
    }
    if let Ok(r) = pb::ListTasksRequest::decode(b) {
        for s in r.statuses {
            let _ = convert::task_status("status", s);
        }
    }
}

/// The corpus on disk (written by `CLOUDAI_FUZZ_WRITE_CORPUS=1`).
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "bin"))
                .map(|p| {
                    let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                    (name, std::fs::read(&p).unwrap())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn seed_corpus_is_in_the_repo_and_replays_without_panics() {
    if std::env::var_os("CLOUDAI_FUZZ_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(corpus_dir()).unwrap();
        for (name, bytes) in seeds() {
            std::fs::write(corpus_dir().join(format!("{name}.bin")), bytes).unwrap();
        }
    }
    let on_disk = corpus();
    for (name, bytes) in seeds() {
        let found = on_disk.iter().find(|(n, _)| n == name);
        assert_eq!(
            found.map(|(_, b)| b),
            Some(&bytes),
            "seed {name} is missing or stale in tests/corpus; rewrite with CLOUDAI_FUZZ_WRITE_CORPUS=1"
        );
    }
    for (_, bytes) in &on_disk {
        check_bytes(bytes);
    }
}

#[test]
fn hostile_seeds_are_typed_errors() {
    let seeds = seeds();
    let get = |n: &str| &seeds.iter().find(|(name, _)| *name == n).unwrap().1;
    let spec = pb::TaskSpec::decode(get("task_spec_hostile").as_slice()).unwrap();
    assert!(matches!(
        q::TaskSpec::try_from(spec),
        Err(ConvertError::Invalid {
            field: "timeout",
            ..
        })
    ));
    let task = pb::Task::decode(get("task_hostile").as_slice()).unwrap();
    assert!(q::Task::try_from(task).is_err());
    for n in [
        "bytes_bad_utf8",
        "bytes_huge_length",
        "bytes_endless_varint",
    ] {
        assert!(pb::WorkerMessage::decode(get(n).as_slice()).is_err(), "{n}");
    }
    // A spec that converts but breaks every bound is refused by validation.
    let mut spec = pb::TaskSpec::decode(get("task_spec_hostile").as_slice()).unwrap();
    spec.timeout = None;
    // Its parent is no task id: a typed error too.
    assert!(matches!(
        q::TaskSpec::try_from(spec.clone()),
        Err(ConvertError::Invalid { field: "after", .. })
    ));
    spec.after.clear();
    assert!(matches!(
        q::TaskSpec::try_from(spec.clone()),
        Err(ConvertError::Invalid {
            field: "not_before",
            ..
        })
    ));
    spec.not_before = None;
    assert!(matches!(
        q::TaskSpec::try_from(spec.clone()),
        Err(ConvertError::Invalid {
            field: "constraints",
            ..
        })
    ));
    spec.constraints.remove(0);
    let spec = q::TaskSpec::try_from(spec).unwrap();
    assert!(q::validate::validate_spec(&spec).is_err());
    // The constraint left (an `exists` with a value, on a key that is no key) is
    // refused by validation on its own too.
    let mut only = q::TaskSpec::new("busybox");
    only.constraints = spec.constraints.clone();
    assert!(q::validate::validate_spec(&only).is_err());
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn wire_specs_convert_or_fail_typed(s in wire_spec()) {
        let bytes = s.encode_to_vec();
        prop_assert_eq!(pb::TaskSpec::decode(bytes.as_slice()).unwrap(), s.clone());
        check_spec(s);
    }

    #[test]
    fn wire_tasks_convert_or_fail_typed(t in wire_task()) {
        check_task(t);
    }

    #[test]
    fn worker_messages_convert_or_fail_typed(m in worker_message()) {
        let bytes = m.encode_to_vec();
        check_worker_message(m);
        check_bytes(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
        check_bytes(&b);
    }

    #[test]
    fn mutated_corpus_messages_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(mutation(), 1..6),
    ) {
        let corpus = corpus();
        prop_assume!(!corpus.is_empty());
        let (_, bytes) = &corpus[pick.index(corpus.len())];
        check_bytes(&mutate(bytes.clone(), &edits));
    }

    #[test]
    fn domain_specs_round_trip(spec in domain_spec()) {
        let wire = pb::TaskSpec::from(spec.clone());
        let decoded = pb::TaskSpec::decode(wire.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(q::TaskSpec::try_from(decoded).unwrap(), spec);
    }

    #[test]
    fn domain_tasks_round_trip(task in domain_task()) {
        let wire = pb::Task::from(task.clone());
        let decoded = pb::Task::decode(wire.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(q::Task::try_from(decoded).unwrap(), task);
    }

    #[test]
    fn timestamps_convert_or_fail_typed(t in wire_ts()) {
        match convert::from_timestamp("t", &t) {
            Ok(d) => prop_assert_eq!(convert::timestamp(d), t),
            Err(e) => {
                let typed = matches!(e, ConvertError::Invalid { field: "t", .. });
                prop_assert!(typed, "{:?}", e);
            }
        }
    }

    #[test]
    fn durations_convert_or_fail_typed(d in wire_duration()) {
        match convert::from_duration("d", &d) {
            Ok(v) => prop_assert_eq!(convert::duration(v), d),
            Err(e) => {
                let typed = matches!(e, ConvertError::Invalid { field: "d", .. });
                prop_assert!(typed, "{:?}", e);
            }
        }
    }
}
