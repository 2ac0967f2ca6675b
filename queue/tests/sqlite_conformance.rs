//! The conformance suite against the embedded SQLite store, plus SQLite-specific checks.

use std::path::PathBuf;
use std::sync::Arc;

use cloudai_queue::conformance::Harness;
use cloudai_queue::sqlite::SqliteStore;
use cloudai_queue::{
    open_store, NewTask, QueueError, QueueStore, StoreOptions, TaskQuery, TaskSpec, TaskStatus,
};
use tempfile::TempDir;

/// A SQLite file in its own temporary directory, removed when the harness drops.
struct SqliteHarness {
    dir: TempDir,
}

impl SqliteHarness {
    fn new() -> Self {
        SqliteHarness {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("queue.db")
    }
}

/// The detail column of an `EXPLAIN QUERY PLAN` statement's rows.
fn query_plan(c: &rusqlite::Connection, sql: &str) -> Vec<String> {
    c.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Enqueues `spec` once for each of `who` (`None`: without a submitter).
async fn enqueue_as(store: &dyn QueueStore, spec: &TaskSpec, who: &[Option<&str>]) {
    for w in who {
        store
            .enqueue(NewTask {
                spec: spec.clone(),
                submitted_by: w.map(str::to_string),
            })
            .await
            .unwrap();
    }
}

#[async_trait::async_trait]
impl Harness for SqliteHarness {
    async fn open(&self, opts: StoreOptions) -> Arc<dyn QueueStore> {
        Arc::new(
            SqliteStore::open(&self.path(), opts)
                .await
                .expect("open sqlite store"),
        )
    }
}

mod conformance {
    use super::SqliteHarness;
    cloudai_queue::conformance_suite!(async { Some(SqliteHarness::new()) });
}

#[tokio::test]
async fn open_store_uri_creates_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/cloudai.db");
    let uri = format!("sqlite://{}", path.display());
    let store = open_store(&uri, StoreOptions::default()).await.unwrap();
    assert_eq!(store.backend_name(), "sqlite");
    let t = store
        .enqueue(TaskSpec::new("busybox").into())
        .await
        .unwrap()
        .task;
    drop(store);
    assert!(path.exists());
    let store = open_store(&uri, StoreOptions::default()).await.unwrap();
    assert_eq!(store.get(t.id).await.unwrap(), t);
}

/// Commands that share a group commit are isolated: the failing ones roll back only
/// themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_commands_do_not_spoil_their_batch() {
    let h = SqliteHarness::new();
    let store = h.open(StoreOptions::default()).await;
    let mut handles = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let image = if i % 2 == 0 { "busybox" } else { "Bad Image" };
            store.enqueue(TaskSpec::new(image).into()).await
        }));
    }
    let (mut ok, mut invalid) = (0, 0);
    for h in handles {
        match h.await.unwrap() {
            Ok(e) => {
                assert!(e.created);
                ok += 1;
            }
            Err(QueueError::Invalid { field: "image", .. }) => invalid += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!((ok, invalid), (100, 100));
    let stats = store.stats(chrono::Utc::now()).await.unwrap();
    assert_eq!(stats.counts.get(&TaskStatus::Queued), Some(&100));
}

/// Two stores on one file (as two masters would have) never hand out a task twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_share_the_queue() {
    let h = SqliteHarness::new();
    let a = h.open(StoreOptions::default()).await;
    let b = h.open(StoreOptions::default()).await;
    let batch = (0..40).map(|_| TaskSpec::new("busybox").into()).collect();
    a.enqueue_batch(batch).await.unwrap();
    let now = chrono::Utc::now();
    let claim = |store: Arc<dyn QueueStore>, worker: &'static str| {
        tokio::spawn(async move {
            let mut n = Vec::new();
            let req = cloudai_queue::ClaimRequest {
                worker_id: worker.into(),
                free: cloudai_queue::Resources {
                    cpu_millis: 1000,
                    memory_bytes: 1 << 30,
                    gpus: 0,
                    disk_bytes: 1 << 30,
                },
                now,
            };
            while let Some(t) = store.claim(&req).await.unwrap() {
                n.push(t.id);
            }
            n
        })
    };
    let (x, y) = (claim(a.clone(), "wa"), claim(b.clone(), "wb"));
    let mut ids = x.await.unwrap();
    ids.extend(y.await.unwrap());
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((total, ids.len()), (40, 40));
}

/// A file made before the per-status counts existed (schema 1) gets them filled from its
/// tasks when it is opened, so stats and the queue cap are right from the first call.
#[tokio::test]
async fn counts_are_filled_in_for_a_file_from_before_they_existed() {
    let h = SqliteHarness::new();
    let store = h.open(StoreOptions::default()).await;
    let batch = (0..5).map(|_| TaskSpec::new("busybox").into()).collect();
    let tasks = store.enqueue_batch(batch).await.unwrap();
    store
        .request_cancel(tasks[0].task.id, chrono::Utc::now())
        .await
        .unwrap();
    drop(store);
    {
        // What a schema-1 file looks like: no counts table.
        let c = rusqlite::Connection::open(h.path()).unwrap();
        c.execute_batch("DROP TABLE task_counts; PRAGMA user_version = 1;")
            .unwrap();
    }
    let store = h
        .open(StoreOptions {
            max_queued: Some(5),
            ..StoreOptions::default()
        })
        .await;
    let s = store.stats(chrono::Utc::now()).await.unwrap();
    assert_eq!(s.counts.get(&TaskStatus::Queued), Some(&4));
    assert_eq!(s.counts.get(&TaskStatus::Cancelled), Some(&1));
    store
        .enqueue(TaskSpec::new("busybox").into())
        .await
        .unwrap();
    let full = store.enqueue(TaskSpec::new("busybox").into()).await;
    assert!(
        matches!(full, Err(QueueError::QueueFull { queued: 5, max: 5 })),
        "{full:?}"
    );
}

/// A file of schema 5, from before `spec.entrypoint`, with the submitter and array
/// indexes on the body's JSON and the counts kept by triggers: its tasks load (with the
/// image's own entrypoint), the array column is filled from each body, the old indexes
/// and the triggers are replaced, a change is counted once (not by a trigger as well),
/// and listing by submitter or by array searches the new indexes instead of reading
/// every task.
#[tokio::test]
async fn a_file_of_schema_5_is_upgraded_to_column_indexes() {
    let h = SqliteHarness::new();
    let store = h.open(StoreOptions::default()).await;
    let mut spec = TaskSpec::new("busybox");
    spec.command = vec!["echo".into(), "hi".into()];
    enqueue_as(
        store.as_ref(),
        &spec,
        &[Some("alice"), None, Some("bob"), Some("alice")],
    )
    .await;
    let indices: cloudai_queue::array::ArraySpec = "0-2".parse().unwrap();
    let (array, elements) = cloudai_queue::array::elements(&spec, &indices, None).unwrap();
    store.enqueue_batch(elements).await.unwrap();
    drop(store);
    {
        let c = rusqlite::Connection::open(h.path()).unwrap();
        c.execute_batch(
            "DROP INDEX tasks_by_submitter; DROP INDEX tasks_by_array;
             ALTER TABLE tasks DROP COLUMN array_id;
             CREATE INDEX tasks_submitter ON tasks (json_extract(body, '$.submitted_by'), id);
             CREATE INDEX tasks_array ON tasks (json_extract(body, '$.spec.array.id'), status, id)
                 WHERE json_extract(body, '$.spec.array.id') IS NOT NULL;
             UPDATE tasks SET body = json_remove(body, '$.spec.entrypoint');
             CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
                 INSERT INTO task_counts (status, n) VALUES (new.status, 1)
                     ON CONFLICT (status) DO UPDATE SET n = n + 1;
             END;
             CREATE TRIGGER task_counts_update AFTER UPDATE OF status ON tasks
                 WHEN old.status IS NOT new.status BEGIN
                 UPDATE task_counts SET n = n - 1 WHERE status = old.status;
                 INSERT INTO task_counts (status, n) VALUES (new.status, 1)
                     ON CONFLICT (status) DO UPDATE SET n = n + 1;
             END;
             PRAGMA user_version = 5;",
        )
        .unwrap();
    }
    let store = h.open(StoreOptions::default()).await;
    let alice = store
        .list(&TaskQuery {
            submitted_by: Some("alice".into()),
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(alice.len(), 2);
    assert!(alice.iter().all(|t| t.spec == spec));
    let listed = store
        .list(&TaskQuery {
            array: Some(array.clone()),
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    let counts = store.array_counts(&array).await.unwrap();
    assert_eq!(counts.get(&TaskStatus::Queued), Some(&3), "{counts:?}");
    let now = chrono::Utc::now();
    store.request_cancel(alice[0].id, now).await.unwrap();
    store.enqueue(spec.clone().into()).await.unwrap();
    let s = store.stats(now).await.unwrap();
    assert_eq!(s.counts.get(&TaskStatus::Queued), Some(&7), "{s:?}");
    assert_eq!(s.counts.get(&TaskStatus::Cancelled), Some(&1), "{s:?}");
    drop(store);
    let c = rusqlite::Connection::open(h.path()).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 8);
    let old: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('tasks_submitter', 'tasks_array')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 0, "the indexes on the body's JSON are dropped");
    let triggers: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(triggers, 0);
    for (sql, index) in [
        (
            "EXPLAIN QUERY PLAN SELECT body FROM tasks WHERE 1 = 1 AND submitter = 'alice'              ORDER BY id DESC LIMIT 10",
            "tasks_by_submitter",
        ),
        (
            "EXPLAIN QUERY PLAN SELECT status, COUNT(*) FROM tasks WHERE array_id = 'x'              GROUP BY status",
            "tasks_by_array",
        ),
    ] {
        let plan = query_plan(&c, sql);
        assert!(
            plan.iter().any(|p| p.contains(&format!("INDEX {index}"))),
            "{plan:?}"
        );
    }
}

/// A SQLite file serves one master: the first to campaign leads for as long as it lives
/// (a lease that never runs out), a second is refused with an error naming the holder,
/// and once the first lets go the file is free again.
#[tokio::test]
async fn a_second_master_on_one_file_is_refused_naming_the_holder() {
    use cloudai_queue::Candidate;
    let h = SqliteHarness::new();
    let a = h.open(StoreOptions::default()).await;
    let b = h.open(StoreOptions::default()).await;
    let me = |id: &str| Candidate {
        id: id.into(),
        url: format!("http://{id}:50051"),
    };
    let lease = a
        .campaign(&me("a"), None, None, chrono::Utc::now())
        .await
        .unwrap();
    assert!(lease.held_by("a") && lease.sole, "{lease:?}");
    let again = a
        .campaign(&me("a"), Some(1), None, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!((again.holder.as_str(), again.epoch), ("a", 1));
    match b.campaign(&me("b"), None, None, chrono::Utc::now()).await {
        Err(e @ QueueError::StoreLocked { .. }) => {
            let text = e.to_string();
            assert!(text.contains("queue.db"), "{text}");
            assert!(text.contains("master a at http://a:50051"), "{text}");
        }
        other => panic!("expected StoreLocked, got {other:?}"),
    }
    a.resign("a", 1).await.unwrap();
    let lease = b
        .campaign(&me("b"), None, None, chrono::Utc::now())
        .await
        .unwrap();
    assert!(lease.held_by("b"));
}

/// A file from before `task_deps` (schema 2): the dependency edges are filled in from the
/// tasks' specs when it is opened, so a parent's end still finds its waiting children,
/// and the lookup is a key search, not a read of every waiting task.
#[tokio::test]
async fn dependency_edges_are_filled_in_for_a_file_from_before_they_existed() {
    use cloudai_queue::deps::{self, Dependency, DependencyCondition};
    let h = SqliteHarness::new();
    let store = h.open(StoreOptions::default()).await;
    let parent = store
        .enqueue(TaskSpec::new("busybox").into())
        .await
        .unwrap()
        .task;
    let mut child = TaskSpec::new("busybox");
    child.after = vec![Dependency {
        task: parent.id,
        condition: DependencyCondition::Any,
    }];
    let child = store.enqueue(child.into()).await.unwrap().task;
    drop(store);
    {
        let c = rusqlite::Connection::open(h.path()).unwrap();
        c.execute_batch("DROP TABLE task_deps; PRAGMA user_version = 2;")
            .unwrap();
    }
    let store = h.open(StoreOptions::default()).await;
    let found = store
        .list(&TaskQuery {
            depends_on: Some(parent.id),
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![child.id]
    );
    store
        .request_cancel(parent.id, chrono::Utc::now())
        .await
        .unwrap();
    let changed = deps::resolve(&*store, parent.id, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(
        changed[0].status,
        TaskStatus::Queued,
        "`any` holds for a cancel"
    );
    drop(store);
    let c = rusqlite::Connection::open(h.path()).unwrap();
    let plan = query_plan(
        &c,
        "EXPLAIN QUERY PLAN SELECT body FROM tasks WHERE status IN ('waiting') \
         AND id IN (SELECT child FROM task_deps WHERE parent = 'x') ORDER BY id LIMIT 10",
    );
    assert!(
        plan.iter()
            .any(|p| p.contains("task_deps") && p.contains("parent=?")),
        "{plan:?}"
    );
}

/// A file from before constraints (schema 3, no `placement` column) opens: the column is
/// added, its old tasks have none, and a new task's constraints reach the dispatcher's read.
#[tokio::test]
async fn a_file_from_before_constraints_gains_the_placement_column() {
    let h = SqliteHarness::new();
    let store = h.open(StoreOptions::default()).await;
    let old = store
        .enqueue(TaskSpec::new("busybox").into())
        .await
        .unwrap()
        .task;
    drop(store);
    {
        let c = rusqlite::Connection::open(h.path()).unwrap();
        c.execute_batch("ALTER TABLE tasks DROP COLUMN placement; PRAGMA user_version = 3;")
            .unwrap();
    }
    let store = h.open(StoreOptions::default()).await;
    let mut spec = TaskSpec::new("busybox");
    spec.constraints = vec!["zone=a".parse().unwrap()];
    let new = store.enqueue(spec.into()).await.unwrap().task;
    let asks = store.queued_asks(chrono::Utc::now(), 10).await.unwrap();
    let of = |id| asks.iter().find(|a| a.id == id).unwrap();
    assert!(of(old.id).constraints.is_empty());
    assert_eq!(of(new.id).constraints[0].to_string(), "zone=a");
    drop(store);
    let c = rusqlite::Connection::open(h.path()).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 8);
}

/// A file from before fair share (schema 4, no `submitter` column nor `tasks_fair`
/// index) opens: the column is filled from each task's body, so the per-submitter reads
/// see the tasks stored before, and the reads use the new index.
#[tokio::test]
async fn a_file_from_before_fair_share_gains_the_submitter_column() {
    let h = SqliteHarness::new();
    let store = h.open(StoreOptions::default()).await;
    enqueue_as(
        store.as_ref(),
        &TaskSpec::new("busybox"),
        &[Some("ana"), None, Some("ana")],
    )
    .await;
    drop(store);
    {
        let c = rusqlite::Connection::open(h.path()).unwrap();
        c.execute_batch(
            "DROP INDEX tasks_fair; DROP INDEX tasks_by_submitter; DROP INDEX tasks_by_array;
             ALTER TABLE tasks DROP COLUMN submitter; ALTER TABLE tasks DROP COLUMN array_id;
             PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let store = h.open(StoreOptions::default()).await;
    let mut who = store.queued_submitters().await.unwrap();
    who.sort();
    assert_eq!(who, [None, Some("ana".to_string())]);
    let now = chrono::Utc::now();
    let ana = store.queued_asks_of(now, Some("ana"), 10).await.unwrap();
    assert_eq!(ana.len(), 2);
    assert!(ana.iter().all(|t| t.submitter.as_deref() == Some("ana")));
    assert_eq!(store.queued_asks_of(now, None, 10).await.unwrap().len(), 1);
    drop(store);
    let c = rusqlite::Connection::open(h.path()).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 8);
    // Both fair-share reads (as the store words them) seek in the index: one seek per
    // submitter, not a walk over every queued task.
    for sql in [
        "EXPLAIN QUERY PLAN SELECT id FROM tasks INDEXED BY tasks_fair WHERE status = 'queued' \
         AND submitter = 'ana' AND not_before <= 0 ORDER BY priority DESC, id LIMIT 5",
        "EXPLAIN QUERY PLAN SELECT MIN(submitter) FROM tasks INDEXED BY tasks_fair \
         WHERE status = 'queued' AND submitter > ''",
    ] {
        let plan = query_plan(&c, sql);
        assert!(
            plan.iter().any(|p| p.contains("tasks_fair")),
            "{sql}: {plan:?}"
        );
        assert!(
            plan.iter().all(|p| p.starts_with("SEARCH")),
            "{sql}: {plan:?}"
        );
    }
}

/// The log is copied back into the database file while the store is open (the writer
/// checkpoints after replying, SQLite's automatic checkpoint being off), and the log
/// then restarts instead of growing without bound.
#[tokio::test]
async fn the_log_is_checkpointed_while_the_store_is_open() {
    let h = SqliteHarness::new();
    let store = h.open(StoreOptions::default()).await;
    let mut wal = h.path().into_os_string();
    wal.push("-wal");
    let size = |p: &std::ffi::OsStr| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut spec = TaskSpec::new("busybox");
    spec.command = vec!["x".repeat(2000)];
    // About 8 MiB of log.
    let batch = (0..3000).map(|_| spec.clone().into()).collect();
    store.enqueue_batch(batch).await.unwrap();
    // The checkpoint follows the reply: wait for it, by the next write's turn.
    store
        .enqueue(TaskSpec::new("busybox").into())
        .await
        .unwrap();
    let db = h.path().into_os_string();
    assert!(
        size(&db) > 6 << 20,
        "no checkpoint: db {} bytes, log {} bytes",
        size(&db),
        size(&wal)
    );
    // Once copied, the log restarts: more writes reuse its frames, the file stays put.
    let log = size(&wal);
    for _ in 0..3 {
        let batch = (0..3000).map(|_| spec.clone().into()).collect();
        store.enqueue_batch(batch).await.unwrap();
    }
    assert!(size(&wal) <= log + (1 << 20), "log {log} -> {}", size(&wal));
    let s = store.stats(chrono::Utc::now()).await.unwrap();
    assert_eq!(s.counts.get(&TaskStatus::Queued), Some(&12_001));
}

/// A task's constraints and preferences are stored once, in the `placement` column, and
/// every read restores them; a body of schema 6 (which held them as well) reads the same,
/// and loses them from the body at its next write, not from the task.
#[tokio::test]
async fn constraints_are_stored_once_and_old_bodies_read_the_same() {
    let h = SqliteHarness::new();
    let store = h.open(StoreOptions::default()).await;
    let mut spec = TaskSpec::new("busybox");
    spec.constraints = vec![
        "zone in (a,b)".parse().unwrap(),
        "ssd exists".parse().unwrap(),
    ];
    spec.prefer = vec!["zone=a".parse().unwrap()];
    spec.idempotency_key = Some("once".into());
    let t = store.enqueue(spec.clone().into()).await.unwrap().task;
    assert_eq!(t.spec, spec);
    let row = |c: &rusqlite::Connection| -> (String, String) {
        c.query_row(
            "SELECT body, placement FROM tasks WHERE id = ?1",
            [t.id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    {
        let c = rusqlite::Connection::open(h.path()).unwrap();
        let (body, placement) = row(&c);
        assert!(
            !body.contains("constraints") && !body.contains("prefer"),
            "{body}"
        );
        assert!(
            placement.contains("ssd") && placement.contains("zone"),
            "{placement}"
        );
    }
    every_read_restores(&*store, t.id, &spec).await;
    drop(store);
    {
        // Back to a schema-6 row: the body holds them too.
        let c = rusqlite::Connection::open(h.path()).unwrap();
        c.execute_batch(
            "UPDATE tasks SET body = json_set(body,
                 '$.spec.constraints', json_extract(placement, '$.constraints'),
                 '$.spec.prefer', json_extract(placement, '$.prefer'));
             PRAGMA user_version = 6;",
        )
        .unwrap();
        assert!(row(&c).0.contains("ssd"));
    }
    let store = h.open(StoreOptions::default()).await;
    every_read_restores(&*store, t.id, &spec).await;
    let cancelled = store
        .request_cancel(t.id, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    assert_eq!(cancelled.spec, spec);
    assert_eq!(store.get(t.id).await.unwrap().spec, spec);
    drop(store);
    let c = rusqlite::Connection::open(h.path()).unwrap();
    assert!(
        !row(&c).0.contains("ssd"),
        "the write stored the body without them"
    );
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 8);
}

/// `get`, `list`, `queued` and an idempotent enqueue of the same spec each give back
/// task `id` with `spec` whole.
async fn every_read_restores(store: &dyn QueueStore, id: cloudai_queue::TaskId, spec: &TaskSpec) {
    let now = chrono::Utc::now();
    let got = store.get(id).await.unwrap();
    let listed = store.list(&TaskQuery::default()).await.unwrap();
    let queued = store.queued(now, 10).await.unwrap();
    let again = store.enqueue(spec.clone().into()).await.unwrap();
    assert!(!again.created, "idempotency compares whole specs");
    assert_eq!(again.task.id, id);
    for (what, s) in [
        ("get", &got.spec),
        ("list", &listed[0].spec),
        ("queued", &queued[0].spec),
        ("idempotent enqueue", &again.task.spec),
    ] {
        assert_eq!(s, spec, "{what}");
    }
}
