//! Cases about what outlives a call: persistence across reopen, task output, stats and
//! the worker registry.

use std::collections::BTreeMap;

use chrono::Duration;

use super::{add, claim_at, ended, now, output, passed, spec, started, Harness};
use crate::error::QueueError;
use crate::model::{
    LogStream, NewLogChunk, Resources, TaskSpec, TaskStatus, WorkerHealth, WorkerRecord,
};
use crate::report::AttemptEnd;
use crate::store::StoreOptions;

fn chunk(stream: LogStream, text: &str) -> NewLogChunk {
    NewLogChunk {
        stream,
        time: now(),
        data: text.as_bytes().to_vec(),
    }
}

fn worker(id: &str, team: &str) -> WorkerRecord {
    let at = now();
    WorkerRecord {
        id: id.to_string(),
        labels: BTreeMap::from([("team".to_string(), team.to_string())]),
        capacity: Resources {
            cpu_millis: 8000,
            memory_bytes: 32 << 30,
            gpus: 1,
            disk_bytes: 100 << 30,
        },
        gpu_model: Some("A100".into()),
        hostname: format!("{id}.local"),
        health: WorkerHealth::Healthy,
        registered_at: at,
        last_heartbeat: at,
        cordoned: false,
        drain_deadline: None,
        attributes: BTreeMap::from([
            ("os".to_string(), "linux".to_string()),
            ("gpu.model".to_string(), "A100".to_string()),
        ]),
    }
}

/// Tasks, attempts, logs and workers all survive dropping the store and opening it again.
pub async fn persistence_across_reopen(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let at = now();
    let keyed = TaskSpec {
        idempotency_key: Some("keep-me".into()),
        ..spec()
    };
    let a = add(&*store, keyed.clone()).await;
    let b = add(&*store, spec()).await;
    let c = add(&*store, spec()).await;
    let b1 = store.assign(b.id, "w1", at).await.unwrap();
    started(&*store, b.id, b1.token(), at).await.unwrap();
    let applied = output(
        &*store,
        b.id,
        b1.token(),
        vec![
            chunk(LogStream::Stdout, "one\n"),
            chunk(LogStream::Stderr, "two\n"),
            chunk(LogStream::Stdout, "three\n"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(applied.through, 4, "the start, then three chunks");
    let c1 = store.assign(c.id, "w2", at).await.unwrap();
    ended(
        &*store,
        c.id,
        c1.token(),
        AttemptEnd::Error("image not found".into()),
        at,
    )
    .await
    .unwrap();
    store.upsert_worker(&worker("w1", "ml")).await.unwrap();
    store
        .set_worker_health("w1", WorkerHealth::Suspect, Some(at))
        .await
        .unwrap();
    let tasks = [
        store.get(a.id).await.unwrap(),
        store.get(b.id).await.unwrap(),
        store.get(c.id).await.unwrap(),
    ];
    let logs = store.read_logs(b.id, None, 100).await.unwrap();
    let workers = store.list_workers().await.unwrap();
    drop(store);

    let store = h.open(StoreOptions::default()).await;
    for t in &tasks {
        assert_eq!(store.get(t.id).await.unwrap(), *t);
    }
    assert_eq!(store.read_logs(b.id, None, 100).await.unwrap(), logs);
    assert_eq!(store.list_workers().await.unwrap(), workers);
    assert_eq!(workers[0].health, WorkerHealth::Suspect);
    let again = store.enqueue(keyed.into()).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.task.id, a.id);
    // Sequences and tokens continue where they were.
    let next = output(
        &*store,
        b.id,
        b1.token(),
        vec![chunk(LogStream::Stdout, "four\n")],
    )
    .await
    .unwrap();
    assert_eq!(next.through, 5);
    let logs = store.read_logs(b.id, Some(3), 10).await.unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(
        (logs[0].seq, logs[0].data.as_slice()),
        (4, b"four\n".as_slice())
    );
    let a1 = store.claim(&claim_at("w3", now())).await.unwrap().unwrap();
    assert_eq!(a1.id, a.id);
    let stale = started(&*store, c.id, c1.token() + 1, at).await;
    assert!(
        matches!(stale, Err(QueueError::StaleToken { .. })),
        "{stale:?}"
    );
    passed(&*store, "persistence_across_reopen");
}

/// Output past the cap drops the oldest chunks; seq 0 says how much was dropped.
pub async fn bounded_logs_keep_newest_with_marker(h: &dyn Harness) {
    const CAP: u64 = 1024;
    const CHUNK: usize = 128;
    let store = h
        .open(StoreOptions {
            max_log_bytes_per_task: CAP,
            ..StoreOptions::default()
        })
        .await;
    let t = add(&*store, spec()).await;
    let a = store.assign(t.id, "w1", now()).await.unwrap();
    let written: Vec<Vec<u8>> = (1..=80)
        .map(|i| {
            let mut line = format!("line {i:03} ").into_bytes();
            line.resize(CHUNK - 1, b'.');
            line.push(b'\n');
            line
        })
        .collect();
    let mut last = 0;
    for batch in written.chunks(8) {
        let chunks = batch
            .iter()
            .map(|d| NewLogChunk {
                stream: LogStream::Stdout,
                time: now(),
                data: d.clone(),
            })
            .collect();
        last = output(&*store, t.id, a.token(), chunks)
            .await
            .unwrap()
            .through;
    }
    assert_eq!(last, 80);
    let total = (80 * CHUNK) as u64;
    let logs = store.read_logs(t.id, None, 1000).await.unwrap();
    let (marker, kept) = logs.split_first().expect("marker and chunks");
    assert_eq!((marker.seq, marker.stream), (0, LogStream::System));
    let text = String::from_utf8(marker.data.clone()).unwrap();
    let dropped: u64 = text
        .strip_prefix("[cloudai: ")
        .and_then(|r| r.strip_suffix(" bytes of older output dropped]"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected marker {text:?}"));
    let kept_bytes: u64 = kept.iter().map(|c| c.data.len() as u64).sum();
    assert!(kept_bytes <= CAP, "kept {kept_bytes} bytes");
    assert!(
        kept_bytes > CAP - CHUNK as u64,
        "kept only {kept_bytes} bytes"
    );
    assert_eq!(kept_bytes + dropped, total);
    assert_eq!(kept.last().unwrap().seq, 80);
    for w in kept.windows(2) {
        assert_eq!(w[0].seq + 1, w[1].seq);
    }
    for c in kept.iter().skip(1) {
        assert_eq!(c.data, written[c.seq as usize - 1], "chunk {}", c.seq);
        assert_eq!(c.attempt, 1);
    }
    // Reading after seq 0 skips the marker.
    let after = store.read_logs(t.id, Some(0), 1000).await.unwrap();
    assert_eq!(after.as_slice(), kept);
    passed(&*store, "bounded_logs_keep_newest_with_marker");
}

/// `read_logs` returns chunks after a seq, in order, at most `limit`.
pub async fn read_logs_after_and_limit(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t = add(&*store, spec()).await;
    let a = store.assign(t.id, "w1", now()).await.unwrap();
    assert!(store.read_logs(t.id, None, 10).await.unwrap().is_empty());
    let texts = ["a\n", "b\n", "c\n", "d\n", "e\n"];
    let stream = |i: usize| [LogStream::Stdout, LogStream::Stderr][i % 2];
    let sent: Vec<NewLogChunk> = texts
        .iter()
        .enumerate()
        .map(|(i, s)| chunk(stream(i), s))
        .collect();
    let first = output(&*store, t.id, a.token(), sent[..3].to_vec())
        .await
        .unwrap();
    assert_eq!(first.through, 3);
    let second = output(&*store, t.id, a.token(), sent[3..].to_vec())
        .await
        .unwrap();
    assert_eq!(second.through, 5);
    let all = store.read_logs(t.id, None, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    for (c, s) in all.iter().zip(&sent) {
        assert_eq!(
            (c.stream, &c.data, c.time, c.attempt),
            (s.stream, &s.data, s.time, 1)
        );
    }
    let page = store.read_logs(t.id, Some(2), 2).await.unwrap();
    assert_eq!(page.iter().map(|c| c.seq).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(store.read_logs(t.id, None, 1).await.unwrap()[0].seq, 1);
    assert!(store.read_logs(t.id, Some(5), 10).await.unwrap().is_empty());
    passed(&*store, "read_logs_after_and_limit");
}

/// Stats count tasks per status, find the oldest queued, and count recent finishes.
pub async fn stats_counts_oldest_and_recent(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let empty = store.stats(now()).await.unwrap();
    assert_eq!(empty.counts.values().sum::<u64>(), 0);
    assert_eq!(empty.oldest_queued_at, None);
    assert_eq!(empty.finished_last_minute, 0);

    let t1 = add(&*store, spec()).await;
    let t2 = add(&*store, spec()).await;
    let t3 = add(&*store, spec()).await;
    let t4 = add(&*store, spec()).await;
    let at = now();
    let claimed = store.claim(&claim_at("w1", at)).await.unwrap().unwrap();
    assert_eq!(claimed.id, t1.id);
    store.request_cancel(t2.id, at).await.unwrap();
    let s = store.stats(at + Duration::seconds(30)).await.unwrap();
    let count = |st: TaskStatus| s.counts.get(&st).copied().unwrap_or(0);
    assert_eq!(count(TaskStatus::Queued), 2);
    assert_eq!(count(TaskStatus::Assigned), 1);
    assert_eq!(count(TaskStatus::Cancelled), 1);
    assert_eq!(s.counts.values().sum::<u64>(), 4);
    assert_eq!(s.oldest_queued_at, Some(t3.created_at));
    assert!(t3.created_at <= t4.created_at);
    assert_eq!(s.finished_last_minute, 1);
    let later = store.stats(at + Duration::minutes(2)).await.unwrap();
    assert_eq!(later.finished_last_minute, 0);
    passed(&*store, "stats_counts_oldest_and_recent");
}

/// Workers are upserted, read, listed by id, and their health updated.
pub async fn worker_registry(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    assert_eq!(store.get_worker("nobody").await.unwrap(), None);
    assert!(matches!(
        store.set_worker_health("nobody", WorkerHealth::Dead, None).await,
        Err(QueueError::UnknownWorker(id)) if id == "nobody"
    ));
    assert!(store.list_workers().await.unwrap().is_empty());

    let wb = worker("w-b", "infra");
    let wa = worker("w-a", "ml");
    store.upsert_worker(&wb).await.unwrap();
    store.upsert_worker(&wa).await.unwrap();
    assert_eq!(store.get_worker("w-a").await.unwrap(), Some(wa.clone()));
    assert_eq!(
        store.list_workers().await.unwrap(),
        vec![wa.clone(), wb.clone()]
    );

    let mut wa2 = wa.clone();
    wa2.labels.insert("zone".into(), "eu".into());
    wa2.capacity.gpus = 2;
    // An operator's drain round-trips (the deadline to the millisecond, as stores keep
    // times).
    wa2.cordoned = true;
    wa2.drain_deadline = chrono::DateTime::from_timestamp_millis(now().timestamp_millis() + 60_000);
    store.upsert_worker(&wa2).await.unwrap();
    assert_eq!(store.get_worker("w-a").await.unwrap(), Some(wa2.clone()));
    assert_eq!(store.list_workers().await.unwrap().len(), 2);

    let beat = now() + Duration::seconds(5);
    store
        .set_worker_health("w-a", WorkerHealth::Dead, Some(beat))
        .await
        .unwrap();
    let got = store.get_worker("w-a").await.unwrap().unwrap();
    assert_eq!((got.health, got.last_heartbeat), (WorkerHealth::Dead, beat));
    assert_eq!(got.labels, wa2.labels);
    store
        .set_worker_health("w-b", WorkerHealth::Suspect, None)
        .await
        .unwrap();
    let got = store.get_worker("w-b").await.unwrap().unwrap();
    assert_eq!(
        (got.health, got.last_heartbeat),
        (WorkerHealth::Suspect, wb.last_heartbeat)
    );
    passed(&*store, "worker_registry");
}
