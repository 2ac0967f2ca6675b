//! The conformance suite against the MongoDB backend over a real wire connection, plus
//! MongoDB-specific checks (query plans, document shapes, URI handling).
//!
//! The server comes from `CLOUDAI_TEST_MONGODB_URI` (CI starts SecantusDB with
//! `.ci/secantus.sh`; a real mongod or replica set works unchanged). Each harness uses its
//! own database, `cloudai_test_<uuid>`, dropped when the harness is, so cases run in
//! parallel. When the variable is unset every test says it skipped.

mod common;

use bson::{doc, Bson, Document};
use cloudai_queue::mongo::{names, MongoStore};
use cloudai_queue::{
    open_store, AttemptEnd, AttemptLedger, ClaimRequest, NewTask, QueueError, ReportBody,
    ReportEvent, Resources, StoreOptions, TaskQuery, TaskSpec, TaskStatus, TaskStore,
};
use common::mongo::{redact, with_database, MongoHarness};

mod conformance {
    use super::MongoHarness;
    cloudai_queue::conformance_suite!(async { MongoHarness::from_env() });
}

/// Every stage name in an explain plan, depth first.
fn stages(plan: &Bson, out: &mut Vec<String>) {
    match plan {
        Bson::Document(d) => {
            for (k, v) in d {
                if k == "stage" {
                    if let Bson::String(s) = v {
                        out.push(s.clone());
                    }
                }
                stages(v, out);
            }
        }
        Bson::Array(a) => a.iter().for_each(|v| stages(v, out)),
        _ => {}
    }
}

/// The winning plan's stages of `explain` of `command`.
async fn plan_of(store: &MongoStore, command: Document) -> Vec<String> {
    let explained = store
        .database()
        .run_command(doc! { "explain": command, "verbosity": "queryPlanner" })
        .await
        .expect("explain");
    let planner = explained
        .get_document("queryPlanner")
        .expect("explain output has queryPlanner");
    let winning = planner
        .get("winningPlan")
        .expect("explain output has queryPlanner.winningPlan");
    let mut out = Vec::new();
    stages(winning, &mut out);
    assert!(!out.is_empty(), "winning plan names no stage: {explained}");
    out
}

/// The claim, queued and list queries use an index, never a collection scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_and_list_queries_use_indexes() {
    let Some(h) = MongoHarness::from_env() else {
        return;
    };
    let store = h.connect(StoreOptions::default()).await;
    let batch: Vec<NewTask> = (0..200)
        .map(|i| {
            let mut s = TaskSpec::new("busybox");
            s.priority = i % 5;
            if i % 10 == 0 {
                s.pinned_worker = Some("w-1".into());
            }
            s.into()
        })
        .collect();
    store.enqueue_batch(batch).await.unwrap();
    let now = chrono::Utc::now();
    for _ in 0..20 {
        let req = ClaimRequest {
            worker_id: "w-2".into(),
            free: Resources {
                cpu_millis: 1000,
                memory_bytes: 1 << 30,
                gpus: 0,
                disk_bytes: 1 << 30,
            },
            now,
        };
        store.claim(&req).await.unwrap().expect("a task to claim");
    }
    let req = ClaimRequest {
        worker_id: "w-1".into(),
        free: Resources::default(),
        now,
    };
    let (filter, sort, hint) = MongoStore::claim_plan(&req);
    let claim = plan_of(
        &store,
        doc! {
            "findAndModify": names::TASKS, "query": filter, "sort": sort, "hint": hint,
            "update": { "$inc": { "token": 1_i64 } },
        },
    )
    .await;
    let (filter, sort, hint) = MongoStore::queued_plan(now);
    let queued = plan_of(
        &store,
        doc! { "find": names::TASKS, "filter": filter, "sort": sort, "hint": hint, "limit": 10 },
    )
    .await;
    let (filter, sort, hint) = MongoStore::delayed_plan(now, now + chrono::Duration::hours(1));
    let delayed = plan_of(
        &store,
        doc! { "find": names::TASKS, "filter": filter, "sort": sort, "hint": hint, "limit": 10 },
    )
    .await;
    let mut lists = Vec::new();
    for q in [
        TaskQuery::default(),
        TaskQuery {
            statuses: vec![TaskStatus::Queued, TaskStatus::Running],
            ..Default::default()
        },
        TaskQuery {
            worker_id: Some("w-2".into()),
            ..Default::default()
        },
        TaskQuery {
            submitted_by: Some("alice".into()),
            ..Default::default()
        },
        TaskQuery {
            depends_on: Some("0190d9a3-7c1e-7b2a-9f00-0000000000ab".parse().unwrap()),
            statuses: vec![TaskStatus::Waiting],
            oldest_first: true,
            ..Default::default()
        },
        TaskQuery {
            array: Some("0190d9a3-7c1e-7b2a-9f00-0000000000aa".into()),
            statuses: vec![TaskStatus::Waiting],
            oldest_first: true,
            ..Default::default()
        },
    ] {
        let (filter, sort, hint) = MongoStore::list_plan(&q);
        lists.push(
            plan_of(
                &store,
                doc! { "find": names::TASKS, "filter": filter, "sort": sort, "hint": hint, "limit": 100 },
            )
            .await,
        );
    }
    for (what, plan) in [
        ("claim", &claim),
        ("queued", &queued),
        ("delayed", &delayed),
    ]
    .into_iter()
    .chain(lists.iter().map(|p| ("list", p)))
    {
        eprintln!("mongodb explain: {what}: {plan:?}");
        assert!(
            !plan.iter().any(|s| s == "COLLSCAN"),
            "{what} scans: {plan:?}"
        );
        assert!(
            plan.iter().any(|s| s == "IXSCAN"),
            "{what} uses no index: {plan:?}"
        );
    }
}

/// Documents are stored in the documented shape: string ids, BSON dates, one
/// `ASSIGNMENTS` document per attempt, a `RESULTS` document once finished, and nothing
/// in `USERS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_have_the_documented_shape() {
    let Some(h) = MongoHarness::from_env() else {
        return;
    };
    let store = h.connect(StoreOptions::default()).await;
    let mut spec = TaskSpec::new("busybox");
    spec.env.insert("A.B".into(), "$dollar".into());
    spec.max_attempts = 2;
    let t = store.enqueue(spec.into()).await.unwrap().task;
    let now = chrono::Utc::now();
    let a = store.assign(t.id, "w1", now).await.unwrap();
    let end = |seq, e| ReportEvent {
        seq,
        time: now,
        body: ReportBody::Finished(e),
    };
    let back = store
        .report(
            t.id,
            a.token(),
            "w1",
            vec![end(1, AttemptEnd::Exited(2))],
            now,
        )
        .await
        .unwrap()
        .task;
    let b = store.assign(t.id, "w2", back.not_before).await.unwrap();
    let start = ReportEvent {
        seq: 1,
        time: now,
        body: ReportBody::Started {
            container_id: "c".into(),
        },
    };
    store
        .report(
            t.id,
            b.token(),
            "w2",
            vec![start, end(2, AttemptEnd::Exited(0))],
            now,
        )
        .await
        .unwrap();

    let db = store.database();
    let coll = |n: &str| db.collection::<Document>(n);
    let d = coll(names::TASKS)
        .find_one(doc! { "_id": t.id.to_string() })
        .await
        .unwrap()
        .expect("task document");
    assert!(
        matches!(d.get("created_at"), Some(Bson::DateTime(_))),
        "{d}"
    );
    assert_eq!(d.get_str("status").unwrap(), "succeeded");
    assert_eq!(d.get_i64("token").unwrap(), b.token() as i64);
    assert!(d.get("idempotency_key").is_none(), "absent when unset: {d}");
    let env = d.get_document("spec").unwrap().get_array("env").unwrap();
    assert_eq!(env[0], Bson::Document(doc! { "k": "A.B", "v": "$dollar" }));
    let attempts: Vec<Document> = {
        use futures::TryStreamExt;
        coll(names::ASSIGNMENTS)
            .find(doc! { "task_id": t.id.to_string() })
            .sort(doc! { "number": 1 })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].get_str("outcome").unwrap(), "failed");
    assert_eq!(attempts[1].get_str("worker_id").unwrap(), "w2");
    assert_eq!(attempts[1].get_str("outcome").unwrap(), "succeeded");
    let result = coll(names::RESULTS)
        .find_one(doc! { "_id": t.id.to_string() })
        .await
        .unwrap()
        .expect("result document");
    assert_eq!(result.get_str("status").unwrap(), "succeeded");
    assert_eq!(result.get_i64("attempts").unwrap(), 2);
    assert_eq!(
        coll(names::USERS).count_documents(doc! {}).await.unwrap(),
        0
    );
}

/// `open_store` picks the backend from the URI, whose path names the database; a
/// malformed URI is `InvalidStoreUri`; indexes are created once and reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_store_uses_the_uri_database() {
    let Some(h) = MongoHarness::from_env() else {
        return;
    };
    let store = open_store(&h.uri, StoreOptions::default()).await.unwrap();
    assert_eq!(store.backend_name(), "mongodb");
    let t = store
        .enqueue(TaskSpec::new("busybox").into())
        .await
        .unwrap()
        .task;
    // Connecting again (as a second master does) keeps data and indexes.
    let again = h.connect(StoreOptions::default()).await;
    assert_eq!(again.get(t.id).await.unwrap(), t);
    assert_eq!(again.database().name(), h.db);
    let names: Vec<String> = again
        .database()
        .collection::<Document>(names::TASKS)
        .list_index_names()
        .await
        .unwrap();
    for want in [
        "claim",
        "pinned_worker",
        "idempotency_key",
        "status_id",
        "worker_id",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "index {want} missing: {names:?}"
        );
    }
    let bad = MongoStore::connect("mongodb://", StoreOptions::default()).await;
    assert!(matches!(bad, Err(QueueError::InvalidStoreUri { .. })));
}

#[test]
fn credentials_are_not_printed() {
    assert_eq!(redact("mongodb://u:p@h:1/x"), "mongodb://***@h:1/x");
    assert_eq!(redact("mongodb://h:1/"), "mongodb://h:1/");
}

#[test]
fn database_name_is_put_in_the_uri_path() {
    assert_eq!(
        with_database("mongodb://127.0.0.1:1/", "x"),
        "mongodb://127.0.0.1:1/x"
    );
    assert_eq!(
        with_database("mongodb://a:1,b:2/old?replicaSet=rs&w=1", "x"),
        "mongodb://a:1,b:2/x?replicaSet=rs&w=1"
    );
    assert_eq!(
        with_database("mongodb://u:p@h?directConnection=true", "x"),
        "mongodb://u:p@h/x?directConnection=true"
    );
}
