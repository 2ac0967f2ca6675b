//! Job arrays through a real master and SQLite to in-process workers on the fake
//! executor: every index runs once with its index in the env, a capped array never has
//! more than its cap of elements running at once (judged from the attempts' own times),
//! the elements are listed, counted, cancelled by the array's id, and bad requests get
//! errors that name the problem.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cloudai_proto::{convert, pb};
use cloudai_worker::testing::TestWorker;
use common::*;

async fn enqueue_array(
    c: &mut pb::client_service_client::ClientServiceClient<tonic::transport::Channel>,
    spec: pb::TaskSpec,
    indices: &str,
) -> Result<pb::EnqueueArrayResponse, tonic::Status> {
    c.enqueue_array(pb::EnqueueArrayRequest {
        spec: Some(spec),
        indices: indices.into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

async fn counts(
    c: &mut pb::client_service_client::ClientServiceClient<tonic::transport::Channel>,
    id: &str,
) -> BTreeMap<i32, u64> {
    let s = c
        .get_array(pb::GetArrayRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner();
    s.counts.iter().map(|c| (c.status, c.count)).collect()
}

fn time(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    convert::from_timestamp("t", t.as_ref().expect("a time")).unwrap()
}

/// Most intervals open at once.
fn most_at_once(mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)>) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for (a, b) in spans.drain(..) {
        edges.push((a, 1));
        edges.push((b, -1));
    }
    // An end and a start at the same instant do not overlap.
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_array_runs_each_index_once_and_never_more_than_its_cap() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let _workers: Vec<_> = (0..2)
        .map(|i| TestWorker::start(m.url(), &format!("arr-{i}")))
        .collect();
    let mut s = spec("cloudai/busybox:test");
    s.resources = Some(res(100, 16));
    s.env.insert("CLOUDAI_FAKE_RUN_MS".into(), "150".into());
    let r = enqueue_array(&mut c, s.clone(), "0-7%3").await.unwrap();
    assert_eq!((r.size, r.created, r.max_running), (8, 8, 3));

    let id = r.array_id.clone();
    eventually("every element to succeed", 60, || {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            let n = counts(&mut c, &id).await;
            (n.get(&(pb::TaskStatus::Succeeded as i32)) == Some(&8)).then_some(())
        }
    })
    .await;
    let tasks = c
        .list_tasks(pb::ListTasksRequest {
            array: Some(id.clone()),
            limit: 100,
            oldest_first: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks;
    let mut seen = Vec::new();
    let mut spans = Vec::new();
    for t in &tasks {
        let spec = t.spec.as_ref().unwrap();
        let member = spec.array.as_ref().expect("an element");
        assert_eq!(member.id, id);
        assert_eq!(spec.env["CLOUDAI_ARRAY_INDEX"], member.index.to_string());
        assert_eq!(spec.env["CLOUDAI_ARRAY_ID"], id);
        assert_eq!(spec.labels["cloudai.array"], id);
        assert_eq!(t.attempts.len(), 1, "element {} ran once", member.index);
        let a = &t.attempts[0];
        spans.push((time(&a.assigned_at), time(&a.finished_at)));
        seen.push(member.index);
    }
    assert_eq!(seen, (0..8).collect::<Vec<_>>(), "listed in index order");
    let most = most_at_once(spans);
    assert!(
        most <= 3,
        "{most} elements held a worker at once, over the cap of 3"
    );
    assert!(
        most >= 2,
        "elements ran one at a time ({most}): the cap is 3"
    );

    // Cancelled by the array's id: the running and the waiting elements alike.
    let mut slow = s.clone();
    slow.env
        .insert("CLOUDAI_FAKE_RUN_MS".into(), "60000".into());
    let long = enqueue_array(&mut c, slow, "0-9%2").await.unwrap();
    let lid = long.array_id.clone();
    eventually("two elements to run", 30, || {
        let mut c = c.clone();
        let lid = lid.clone();
        async move {
            let n = counts(&mut c, &lid).await;
            (n.get(&(pb::TaskStatus::Running as i32)) == Some(&2)).then_some(())
        }
    })
    .await;
    let n = counts(&mut c, &lid).await;
    assert_eq!(n.get(&(pb::TaskStatus::Waiting as i32)), Some(&8), "{n:?}");
    let mut admin = pb::admin_service_client::AdminServiceClient::new(m.channel().await);
    let r = admin
        .cancel_matching(pb::MatchRequest {
            filter: Some(pb::TaskFilter {
                array: Some(lid.clone()),
                ..Default::default()
            }),
            dry_run: false,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.task_ids.len(), 10, "{r:?}");
    eventually("all ten to be cancelled", 30, || {
        let mut c = c.clone();
        let lid = lid.clone();
        async move {
            let n = counts(&mut c, &lid).await;
            (n.get(&(pb::TaskStatus::Cancelled as i32)) == Some(&10)).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_requests_are_checked_and_a_key_gives_the_same_array() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let s = spec("cloudai/busybox:test");
    for (bad, says) in [
        ("5-1", "ends before it starts"),
        ("0-100000", "more than the limit of 100000"),
        ("1,1", "index 1 is given twice"),
        ("0-9%0", "%0"),
        ("", "no indices"),
    ] {
        let e = enqueue_array(&mut c, s.clone(), bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}: {e:?}");
        assert!(e.message().contains(says), "{bad}: {}", e.message());
    }
    let mut forged = s.clone();
    forged.array = Some(pb::ArrayMember {
        id: "x".into(),
        index: 0,
        size: 1,
        max_running: 0,
    });
    let e = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(forged.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("EnqueueArray"), "{}", e.message());
    let e = enqueue_array(&mut c, forged, "0-1").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    let mut keyed = s.clone();
    keyed.idempotency_key = Some("nightly-2026-12-02".into());
    let first = enqueue_array(&mut c, keyed.clone(), "0-4").await.unwrap();
    let again = enqueue_array(&mut c, keyed.clone(), "0-4").await.unwrap();
    assert_eq!((first.created, again.created), (5, 0));
    assert_eq!(first.array_id, again.array_id);
    assert_eq!(first.first_task_id, again.first_task_id);
    // The same key over other indices is another array: refused, not merged.
    let e = enqueue_array(&mut c, keyed, "0-5").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");

    let e = c
        .get_array(pb::GetArrayRequest {
            id: "0190d9a3-7c1e-7b2a-9f00-0000000000aa".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let sum = c
        .get_array(pb::GetArrayRequest {
            id: first.array_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((sum.size, sum.max_running), (5, 0));
    assert_eq!(sum.image, "cloudai/busybox:test");
    assert_eq!(
        sum.counts,
        vec![pb::StatusCount {
            status: pb::TaskStatus::Queued as i32,
            count: 5
        }]
    );
}
