//! Leadership on the MongoDB store: the lease, takeovers, and the fencing of a replaced
//! leader's writes (PROTOCOL.md, "Masters"). Two store handles on one database play two
//! masters. Skips when `CLOUDAI_TEST_MONGODB_URI` is unset, like the conformance suite.

mod common;

use bson::doc;
use chrono::Utc;
use cloudai_queue::mongo::MongoStore;
use cloudai_queue::{
    AttemptEnd, AttemptLedger, Candidate, ClaimRequest, LeaderStore, QueueError, ReportBody,
    ReportEvent, Resources, StoreOptions, TaskSpec, TaskStatus, TaskStore, WorkerHealth,
    WorkerStore,
};
use common::mongo::MongoHarness;

fn candidate(id: &str) -> Candidate {
    Candidate {
        id: id.into(),
        url: format!("http://{id}:50051"),
    }
}

fn claim_for(worker: &str) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        free: Resources {
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            gpus: 0,
            disk_bytes: 1 << 30,
        },
        now: Utc::now(),
    }
}

async fn two_masters(h: &MongoHarness) -> (MongoStore, MongoStore) {
    (
        h.connect(StoreOptions::default()).await,
        h.connect(StoreOptions::default()).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_candidate_leads_and_the_others_stand_by() {
    let Some(h) = MongoHarness::from_env() else {
        return;
    };
    let (a, b) = two_masters(&h).await;
    let (ma, mb) = (candidate("a"), candidate("b"));
    let la = a.campaign(&ma, None, None, Utc::now()).await.unwrap();
    assert!(la.held_by("a"), "{la:?}");
    assert_eq!(
        (la.epoch, la.url.as_str(), la.sole),
        (1, "http://a:50051", false)
    );
    let lb = b.campaign(&mb, None, None, Utc::now()).await.unwrap();
    assert_eq!(lb.holder, "a", "a standby sees the leader");
    // The leader renews under its epoch: the epoch stays, the renewal count moves.
    let renewed = a.campaign(&ma, Some(1), None, Utc::now()).await.unwrap();
    assert_eq!((renewed.holder.as_str(), renewed.epoch), ("a", 1));
    assert!(renewed.renewals > la.renewals);
    let (lease, members) = b.group().await.unwrap();
    assert_eq!(lease.unwrap().holder, "a");
    let ids: Vec<_> = members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(members[1].url, "http://b:50051");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_needs_the_lease_unrenewed_and_raises_the_epoch() {
    let Some(h) = MongoHarness::from_env() else {
        return;
    };
    let (a, b) = two_masters(&h).await;
    let (ma, mb) = (candidate("a"), candidate("b"));
    a.campaign(&ma, None, None, Utc::now()).await.unwrap();
    let seen = b.campaign(&mb, None, None, Utc::now()).await.unwrap();
    // a renews after b looked: b's takeover of what it saw must fail.
    a.campaign(&ma, Some(1), None, Utc::now()).await.unwrap();
    let still = b
        .campaign(&mb, None, Some(&seen), Utc::now())
        .await
        .unwrap();
    assert_eq!((still.holder.as_str(), still.epoch), ("a", 1));
    // Unrenewed since b saw it: b takes it under a new epoch.
    let taken = b
        .campaign(&mb, None, Some(&still), Utc::now())
        .await
        .unwrap();
    assert_eq!((taken.holder.as_str(), taken.epoch), ("b", 2));
    // a's renewal now finds b: it does not get the lease back.
    let lost = a.campaign(&ma, Some(1), None, Utc::now()).await.unwrap();
    assert_eq!((lost.holder.as_str(), lost.epoch), ("b", 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_only_the_leader_makes_is_fenced_after_a_takeover() {
    let Some(h) = MongoHarness::from_env() else {
        return;
    };
    let (a, b) = two_masters(&h).await;
    let (ma, mb) = (candidate("a"), candidate("b"));
    let worker = cloudai_queue::WorkerRecord {
        id: "w1".into(),
        labels: Default::default(),
        capacity: claim_for("w1").free,
        gpu_model: None,
        hostname: "h".into(),
        health: WorkerHealth::Healthy,
        registered_at: Utc::now(),
        last_heartbeat: Utc::now(),
        cordoned: false,
        drain_deadline: None,
        attributes: Default::default(),
    };
    a.campaign(&ma, None, None, Utc::now()).await.unwrap();
    a.upsert_worker(&worker).await.unwrap();
    let running = a.enqueue(TaskSpec::new("img").into()).await.unwrap().task;
    let running = a.assign(running.id, "w1", Utc::now()).await.unwrap();
    let queued = a.enqueue(TaskSpec::new("img").into()).await.unwrap().task;

    let seen = b.campaign(&mb, None, None, Utc::now()).await.unwrap();
    let taken = b
        .campaign(&mb, None, Some(&seen), Utc::now())
        .await
        .unwrap();
    assert_eq!(taken.epoch, 2);

    // a has not noticed: each of its leader writes is refused and changes nothing.
    let fenced = |r: Result<_, QueueError>, what: &str| match r {
        Err(QueueError::Fenced { epoch, current }) => {
            assert_eq!((epoch, current), (1, 2), "{what}");
        }
        other => panic!("{what}: expected Fenced, got {other:?}"),
    };
    fenced(a.claim(&claim_for("w1")).await.map(|_| ()), "claim");
    fenced(
        a.assign(queued.id, "w1", Utc::now()).await.map(|_| ()),
        "assign",
    );
    let end = ReportEvent {
        seq: 1,
        time: Utc::now(),
        body: ReportBody::Finished(AttemptEnd::Exited(0)),
    };
    let r = a
        .report(
            running.id,
            running.token(),
            "w1",
            vec![end.clone()],
            Utc::now(),
        )
        .await;
    fenced(r.map(|_| ()), "report");
    let r = a
        .lose(
            running.id,
            running.token(),
            cloudai_queue::LostCause::Gone("test".into()),
            Utc::now(),
        )
        .await;
    fenced(r.map(|_| ()), "lose");
    fenced(a.upsert_worker(&worker).await, "worker record");
    let r = a
        .set_worker_health("w1", WorkerHealth::Dead, Some(Utc::now()))
        .await;
    fenced(r, "worker health");
    assert_eq!(b.get(queued.id).await.unwrap().status, TaskStatus::Queued);
    assert_eq!(
        b.get(running.id).await.unwrap().status,
        TaskStatus::Assigned
    );
    let w = b.get_worker("w1").await.unwrap().unwrap();
    assert_eq!(w.health, WorkerHealth::Healthy);
    // What every master may do still works on the old leader: enqueue, read, cancel.
    a.enqueue(TaskSpec::new("img").into()).await.unwrap();
    a.request_cancel(queued.id, Utc::now()).await.unwrap();
    // The new leader writes as usual.
    let r = b
        .report(running.id, running.token(), "w1", vec![end], Utc::now())
        .await
        .unwrap();
    assert_eq!(r.task.status, TaskStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resigned_lease_is_taken_at_once_and_a_stood_down_master_writes_nothing() {
    let Some(h) = MongoHarness::from_env() else {
        return;
    };
    let (a, b) = two_masters(&h).await;
    let (ma, mb) = (candidate("a"), candidate("b"));
    a.campaign(&ma, None, None, Utc::now()).await.unwrap();
    a.enqueue(TaskSpec::new("img").into()).await.unwrap();
    a.stand_down();
    assert!(matches!(
        a.claim(&claim_for("w1")).await,
        Err(QueueError::Fenced { .. })
    ));
    a.resign("a", 1).await.unwrap();
    let l = b.campaign(&mb, None, None, Utc::now()).await.unwrap();
    assert_eq!((l.holder.as_str(), l.epoch), ("b", 2));
    assert!(b.claim(&claim_for("w1")).await.unwrap().is_some());
    // A resign by a master that no longer holds the lease changes nothing.
    a.resign("a", 1).await.unwrap();
    assert_eq!(b.group().await.unwrap().0.unwrap().holder, "b");
}

/// The case an epoch check alone cannot stop: the old leader's transaction passed its
/// check before the takeover and commits after it (the process paused in between). The
/// takeover ends every open transaction, so that commit fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_ends_a_transaction_the_old_leader_left_open() {
    let Some(h) = MongoHarness::from_env() else {
        return;
    };
    let (a, b) = two_masters(&h).await;
    let (ma, mb) = (candidate("a"), candidate("b"));
    a.campaign(&ma, None, None, Utc::now()).await.unwrap();
    let task = a.enqueue(TaskSpec::new("img").into()).await.unwrap().task;

    let raw = mongodb::Client::with_uri_str(&h.uri).await.unwrap();
    let tasks = raw
        .database(&h.db)
        .collection::<bson::Document>("TASK_QUEUE");
    let mut s = raw.start_session().await.unwrap();
    s.start_transaction().await.unwrap();
    tasks
        .update_one(
            doc! { "_id": task.id.to_string() },
            doc! { "$set": { "status": "assigned" } },
        )
        .session(&mut s)
        .await
        .unwrap();

    let seen = b.campaign(&mb, None, None, Utc::now()).await.unwrap();
    let taken = b
        .campaign(&mb, None, Some(&seen), Utc::now())
        .await
        .unwrap();
    assert_eq!(taken.holder, "b");
    let commit = s.commit_transaction().await;
    assert!(
        commit.is_err(),
        "the old leader's open transaction committed"
    );
    assert_eq!(b.get(task.id).await.unwrap().status, TaskStatus::Queued);
}
