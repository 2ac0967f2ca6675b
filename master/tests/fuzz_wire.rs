//! Fuzzing of the master's own wire conversions (`cloudai_master::wire`): whatever a
//! worker sends, `Register`, heartbeats and task events become a registration, usage,
//! attempt references and outcomes, or a typed `Status`, and never a panic. Uses the
//! strategies and the seed corpus of `cloudai-proto`'s `fuzz_convert` test.

#![allow(clippy::result_large_err)]

#[allow(dead_code)]
#[path = "../../proto/tests/fuzz/strategies.rs"]
mod strategies;

use std::path::Path;

use cloudai_master::wire;
use cloudai_proto::pb;
use cloudai_queue::TaskStatus;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use prost::Message;
use strategies::{mutate, mutation, worker_message};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// Everything the master's worker service does to a message before touching state.
fn apply(m: pb::WorkerMessage) {
    use pb::worker_message::Msg;
    match m.msg {
        Some(Msg::Register(r)) => {
            if let Ok(reg) = wire::register(r) {
                assert!(!reg.record.id.is_empty());
            }
        }
        Some(Msg::Heartbeat(h)) => {
            let u = wire::usage(h.usage);
            assert!(u.cpu_percent.is_finite());
            let _ = wire::attempt_refs(&h.running);
        }
        Some(Msg::Event(e)) => {
            if let Some(pb::task_event::Event::Finished(f)) = &e.event {
                let o = cloudai_proto::convert::report::attempt_end(f).outcome();
                assert!(o.status.is_terminal() && o.status != TaskStatus::Lost);
                let success = f.kind == pb::FinishKind::Exited as i32 && f.exit_code == Some(0);
                assert_eq!(o.status == TaskStatus::Succeeded, success, "{f:?}");
                if o.status == TaskStatus::Failed {
                    assert!(o.error.is_some(), "a failure always says why: {f:?}");
                }
            }
            let _ = cloudai_proto::convert::report::WorkerEvent::try_from(e);
        }
        None => {}
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/tests/corpus");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    out
}

#[test]
fn the_corpus_goes_through_the_master_conversions() {
    let corpus = corpus();
    assert!(corpus.len() >= 10);
    for bytes in corpus {
        if let Ok(m) = pb::WorkerMessage::decode(bytes.as_slice()) {
            apply(m);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn worker_messages_never_panic_the_master(m in worker_message()) {
        apply(m);
    }

    #[test]
    fn mutated_worker_messages_never_panic_the_master(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(mutation(), 1..6),
    ) {
        let corpus = corpus();
        let bytes = mutate(corpus[pick.index(corpus.len())].clone(), &edits);
        if let Ok(m) = pb::WorkerMessage::decode(bytes.as_slice()) {
            apply(m);
        }
    }
}
