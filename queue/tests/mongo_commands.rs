//! What a task costs in MongoDB commands, counted by the driver's command monitoring
//! (`QueueStore::commands_sent`): a figure that does not depend on the server's speed.
//! Each step of a task's life is held to the number of round trips it takes today, so a
//! change that adds one fails here, and one that saves some lowers the budget.
//! Skips when `CLOUDAI_TEST_MONGODB_URI` is unset, like the conformance suite.

mod common;

use chrono::Utc;
use cloudai_queue::{
    AttemptEnd, AttemptLedger, Candidate, LeaderStore, QueueStore, ReportBody, ReportEvent,
    StoreOptions, TaskSpec, TaskStatus, TaskStore,
};
use common::mongo::MongoHarness;

fn counted() -> StoreOptions {
    StoreOptions {
        count_commands: true,
        ..StoreOptions::default()
    }
}

fn total(store: &dyn QueueStore) -> u64 {
    store.commands_sent().iter().map(|(_, n)| n).sum()
}

/// Runs `step` and returns how many commands it sent, by name.
async fn cost<F: std::future::Future<Output = ()>>(
    store: &dyn QueueStore,
    step: F,
) -> (u64, Vec<(String, u64)>) {
    let before = store.commands_sent();
    step.await;
    let after = store.commands_sent();
    let by: Vec<(String, u64)> = after
        .iter()
        .map(|(name, n)| {
            let was = before.iter().find(|(b, _)| b == name).map_or(0, |p| p.1);
            (name.clone(), n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    (by.iter().map(|(_, n)| n).sum(), by)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_of_a_task_costs_no_more_commands_than_today() {
    let Some(h) = MongoHarness::from_env() else {
        return;
    };
    // Not counted unless asked for (the driver's monitoring costs CPU).
    let quiet = h.connect(StoreOptions::default()).await;
    assert!(
        quiet.commands_sent().is_empty(),
        "{:?}",
        quiet.commands_sent()
    );
    let store = h.connect(counted()).await;
    // Connecting created the indexes: those commands were counted.
    assert!(total(&store) > 0, "{:?}", store.commands_sent());
    let me = Candidate {
        id: "m".into(),
        url: "http://m:50051".into(),
    };
    store.campaign(&me, None, None, Utc::now()).await.unwrap();

    let mut task = None;
    let (enqueue, by) = cost(&store, async {
        task = Some(
            store
                .enqueue(TaskSpec::new("img").into())
                .await
                .unwrap()
                .task,
        );
    })
    .await;
    let id = task.unwrap().id;
    eprintln!("enqueue: {enqueue} commands {by:?}");

    let mut token = 0;
    let (assign, by) = cost(&store, async {
        token = store.assign(id, "w1", Utc::now()).await.unwrap().token();
    })
    .await;
    eprintln!("assign: {assign} commands {by:?}");

    let now = Utc::now();
    let events = vec![
        ReportEvent {
            seq: 1,
            time: now,
            body: ReportBody::Started {
                container_id: "c".into(),
            },
        },
        ReportEvent {
            seq: 2,
            time: now,
            body: ReportBody::Finished(AttemptEnd::Exited(0)),
        },
    ];
    let (report, by) = cost(&store, async {
        let applied = store.report(id, token, "w1", events, now).await.unwrap();
        assert!(applied.task.status.is_terminal());
    })
    .await;
    eprintln!("start and end in one report: {report} commands {by:?}");

    // A lone task's budgets, 11 for the whole life (batches amortize them, below):
    // enqueue: insert; assign: fence find, findAndModify (token and attempt in one update
    // pipeline), ASSIGNMENTS insert, commit; report: fence find, task find, task update,
    // ASSIGNMENTS and RESULTS upserts, commit.
    assert!((1..=1).contains(&enqueue), "enqueue took {enqueue}");
    assert!((1..=4).contains(&assign), "assign took {assign}");
    assert!((1..=6).contains(&report), "report took {report}");
}

/// Concurrent assigns and reports (a dispatch pass, many workers' reports) share
/// transactions: the fence read, the commit, the task read and write and the copies are
/// paid once per batch, so a task costs far fewer commands than alone, and each call
/// still gets its own answer (one refused assign does not fail its batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_assigns_and_reports_share_transactions() {
    let Some(h) = MongoHarness::from_env() else {
        return;
    };
    let store = std::sync::Arc::new(h.connect(counted()).await);
    let me = Candidate {
        id: "m".into(),
        url: "http://m:50051".into(),
    };
    store.campaign(&me, None, None, Utc::now()).await.unwrap();
    const N: usize = 40;
    let specs = (0..N).map(|_| TaskSpec::new("img").into()).collect();
    let ids: Vec<_> = store
        .enqueue_batch(specs)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.task.id)
        .collect();

    let (assign, by) = cost(&*store, async {
        let calls = ids.iter().map(|&id| {
            let store = store.clone();
            tokio::spawn(async move { store.assign(id, "w1", Utc::now()).await })
        });
        // The same task twice: exactly one of the two is assigned.
        let again = {
            let store = store.clone();
            let id = ids[0];
            tokio::spawn(async move { store.assign(id, "w2", Utc::now()).await })
        };
        let mut tokens = Vec::new();
        for c in calls.collect::<Vec<_>>() {
            if let Ok(t) = c.await.unwrap() {
                tokens.push((t.id, t.token(), t.worker_id().unwrap().to_string()));
            }
        }
        let twice = again.await.unwrap();
        assert_eq!(
            tokens.len() + usize::from(twice.is_ok()),
            N,
            "one assign of the same task must fail"
        );
        if let Err(e) = &twice {
            assert!(e.to_string().contains("assigned"), "{e}");
        }
    })
    .await;
    eprintln!("{N} concurrent assigns: {assign} commands {by:?}");

    let now = Utc::now();
    let (report, by) = cost(&*store, async {
        let calls: Vec<_> = ids
            .iter()
            .map(|&id| {
                let store = store.clone();
                tokio::spawn(async move {
                    let t = store.get(id).await.unwrap();
                    let worker = t.worker_id().unwrap().to_string();
                    let events = vec![
                        ReportEvent {
                            seq: 1,
                            time: now,
                            body: ReportBody::Started {
                                container_id: format!("c-{id}"),
                            },
                        },
                        ReportEvent {
                            seq: 2,
                            time: now,
                            body: ReportBody::Finished(AttemptEnd::Exited(3)),
                        },
                    ];
                    store.report(id, t.token(), &worker, events, now).await
                })
            })
            .collect();
        for c in calls {
            let applied = c.await.unwrap().unwrap();
            assert!(applied.changed);
            assert_eq!(applied.task.exit_code, Some(3));
        }
    })
    .await;
    eprintln!("{N} concurrent reports (and their reads): {report} commands {by:?}");
    // Every task is stored as finished, with its own container.
    for &id in &ids {
        let t = store.get(id).await.unwrap();
        assert!(t.status.is_terminal(), "{id}: {}", t.status);
        assert_eq!(t.attempts.len(), 1);
        assert_eq!(t.attempts[0].exit_code, Some(3));
    }
    // Alone, these would be 4 per assign and 6 per report; shared, a batch adds a
    // handful of commands to one findAndModify per assign (this batch had a refused
    // assign, so it ran one take at a time), and to nothing per report (the test's own
    // reads, one `find` per task, are taken off).
    let per_assign = assign as f64 / N as f64;
    let per_report = (report - N as u64) as f64 / N as f64;
    assert!(
        per_assign < 2.0,
        "{per_assign:.2} commands per assign: batches did not form"
    );
    assert!(
        per_report < 1.5,
        "{per_report:.2} commands per report: batches did not form"
    );

    // Without a refused one in a batch, it takes its tasks in one `update` and reads them
    // back in one `find`: not even one command per assign.
    let specs = (0..N).map(|_| TaskSpec::new("img").into()).collect();
    let more: Vec<_> = store.enqueue_batch(specs).await.unwrap();
    let (fast, by) = cost(&*store, async {
        let calls: Vec<_> = more
            .iter()
            .map(|e| {
                let (store, id) = (store.clone(), e.task.id);
                tokio::spawn(async move { store.assign(id, "w3", Utc::now()).await })
            })
            .collect();
        for c in calls {
            let t = c.await.unwrap().unwrap();
            assert_eq!(t.status, TaskStatus::Assigned);
            assert_eq!(t.attempts.len(), 1);
            assert_eq!((t.attempts[0].number, t.attempts[0].token), (1, t.token()));
            assert_eq!(t.worker_id(), Some("w3"));
        }
    })
    .await;
    eprintln!("{N} more concurrent assigns, none refused: {fast} commands {by:?}");
    let per_fast = fast as f64 / N as f64;
    assert!(
        per_fast < 1.0,
        "{per_fast:.2} commands per assign: batches did not form"
    );
}
