//! What a task costs in MongoDB commands, counted by the driver's command monitoring
//! (`QueueStore::commands_sent`): a figure that does not depend on the server's speed.
//! Each step of a task's life is held to the number of round trips it takes today, so a
//! change that adds one fails here, and one that saves some lowers the budget.
//! Skips when `CLOUDAI_TEST_MONGODB_URI` is unset, like the conformance suite.

mod common;

use chrono::Utc;
use cloudai_queue::{
    AttemptEnd, AttemptLedger, Candidate, LeaderStore, QueueStore, ReportBody, ReportEvent,
    StoreOptions, TaskSpec, TaskStore,
};
use common::mongo::MongoHarness;

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
    let store = h.connect(StoreOptions::default()).await;
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

    // Today's budgets, 12 for the whole life (issue 17 aims at 3, amortized):
    // enqueue: insert; assign: fence find, findAndModify, $push update, ASSIGNMENTS insert,
    // commit; report: fence find, task find, task update, ASSIGNMENTS and RESULTS upserts,
    // commit.
    assert!((1..=1).contains(&enqueue), "enqueue took {enqueue}");
    assert!((1..=5).contains(&assign), "assign took {assign}");
    assert!((1..=6).contains(&report), "report took {report}");
}
