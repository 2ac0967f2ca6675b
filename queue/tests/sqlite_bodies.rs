//! The SQLite store's task bodies across its schema versions: a file written with the
//! previous form (schema 7: the model's serde form, every field, RFC 3339 times) opens
//! and reads the same through every path, and each write rewrites a body compact.

use chrono::{Duration, Utc};
use cloudai_queue::sqlite::SqliteStore;
use cloudai_queue::{
    AttemptEnd, AttemptLedger, ClaimRequest, ReportBody, ReportEvent, Resources, StoreOptions,
    Task, TaskQuery, TaskSpec, TaskStatus, TaskStore,
};

fn claim(worker: &str) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        free: Resources {
            cpu_millis: 8000,
            memory_bytes: 1 << 34,
            gpus: 0,
            disk_bytes: 1 << 40,
        },
        now: Utc::now(),
    }
}

async fn report(store: &SqliteStore, t: &Task, seq: u64, body: ReportBody) -> Task {
    let at = Utc::now();
    let event = ReportEvent {
        seq,
        time: at,
        body,
    };
    store
        .report(t.id, t.token(), "w1", vec![event], at)
        .await
        .unwrap()
        .task
}

fn body_of(c: &rusqlite::Connection, t: &Task) -> String {
    c.query_row(
        "SELECT body FROM tasks WHERE id = ?1",
        [t.id.to_string()],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn a_schema_7_file_reads_the_same_and_each_write_makes_its_body_compact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let store = SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap();
    let mut spec = TaskSpec::new("busybox");
    spec.command = vec!["echo".into(), "hi".into()];
    spec.labels.insert("team".into(), "ml".into());
    let done = store.enqueue(spec.clone().into()).await.unwrap().task;
    let running = store.enqueue(spec.clone().into()).await.unwrap().task;
    let queued = store.enqueue(spec.into()).await.unwrap().task;
    let c1 = store.claim(&claim("w1")).await.unwrap().unwrap();
    let c2 = store.claim(&claim("w1")).await.unwrap().unwrap();
    assert_eq!((c1.id, c2.id), (done.id, running.id));
    let started = ReportBody::Started {
        container_id: "c1".into(),
    };
    report(&store, &c1, 1, started.clone()).await;
    let done = report(&store, &c1, 2, ReportBody::Finished(AttemptEnd::Exited(0))).await;
    let running = report(&store, &c2, 1, started).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(running.status, TaskStatus::Running);
    let since = Utc::now() - Duration::hours(1);
    let times_now = store.recent_times(since, 10).await.unwrap();
    drop(store);

    // Back to schema 7: each body in the form that version wrote.
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        assert!(
            !body_of(&c, &done).contains("null"),
            "compact since schema 8"
        );
        for t in [&done, &running, &queued] {
            c.execute(
                "UPDATE tasks SET body = ?2 WHERE id = ?1",
                [t.id.to_string(), serde_json::to_string(t).unwrap()],
            )
            .unwrap();
        }
        c.execute_batch("PRAGMA user_version = 7;").unwrap();
        assert!(body_of(&c, &done).contains("\"error\":null"));
    }
    let store = SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap();
    for t in [&done, &running, &queued] {
        assert_eq!(&store.get(t.id).await.unwrap(), t, "get");
    }
    let mut listed = store.list(&TaskQuery::default()).await.unwrap();
    listed.sort_by_key(|t| t.id);
    assert_eq!(listed, vec![done.clone(), running.clone(), queued.clone()]);
    let by_label = TaskQuery {
        labels: [("team".to_string(), "ml".to_string())].into(),
        ..TaskQuery::default()
    };
    assert_eq!(store.list(&by_label).await.unwrap().len(), 3, "label query");
    assert_eq!(
        store.recent_times(since, 10).await.unwrap(),
        times_now,
        "the history's times from an RFC 3339 attempt start"
    );
    // Claiming and finishing rewrite the bodies compact; they read the same after.
    let c3 = store.claim(&claim("w1")).await.unwrap().unwrap();
    assert_eq!(c3.id, queued.id);
    let running = report(
        &store,
        &running,
        2,
        ReportBody::Finished(AttemptEnd::Exited(3)),
    )
    .await;
    assert_eq!(running.status, TaskStatus::Failed);
    drop(store);
    let c = rusqlite::Connection::open(&path).unwrap();
    for t in [&running, &c3] {
        let body = body_of(&c, t);
        assert!(!body.contains("null") && !body.contains("T2"), "{body}");
    }
    assert!(
        body_of(&c, &done).contains("null"),
        "an unwritten body stays as it was"
    );
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 8);
    drop(c);
    let store = SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.get(running.id).await.unwrap(), running);
    assert_eq!(store.get(c3.id).await.unwrap(), c3);
}
