//! The chaos runs' clients: enqueueing and cancelling through masters that may be dead
//! (or standbys) at any moment, and the counts the masters report.

// Shared by the chaos and HA tests; each uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudai_proto::pb;
use cloudai_proto::pb::client_service_client::ClientServiceClient;
use tonic::transport::{Channel, Endpoint};

/// A client with short timeouts, connecting lazily (the master may be down).
pub async fn client(url: &str) -> ClientServiceClient<Channel> {
    let ch = Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(8))
        .connect_lazy();
    ClientServiceClient::new(ch)
}

/// One client per master in `urls` (comma-separated): calls that any master answers go
/// to the next one when one fails (it may be dead, or a standby for leader-only calls).
pub async fn clients(urls: &str) -> Vec<ClientServiceClient<Channel>> {
    let mut out = Vec::new();
    for u in urls.split(',') {
        out.push(client(u).await);
    }
    out
}

/// Enqueues every task, retrying each (same idempotency key) until the master answers:
/// it may be dead, or its store down, at any moment. Fills key → acknowledged task id;
/// returns how many calls the master answered `UNAVAILABLE` (its store was down).
pub async fn enqueue_all(
    url: String,
    specs: Vec<pb::TaskSpec>,
    gap: Duration,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
) -> usize {
    let mut unavailable = 0;
    let cs = clients(&url).await;
    let mut at = 0;
    let mut cancels = Vec::new();
    for s in specs {
        let key = s.idempotency_key.clone().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut c = cs[at % cs.len()].clone();
            match c
                .enqueue(pb::EnqueueRequest {
                    spec: Some(s.clone()),
                    ..Default::default()
                })
                .await
            {
                Ok(r) => {
                    let id = r.into_inner().task_id;
                    acked.lock().unwrap().insert(key, id.clone());
                    if s.env.get("CLOUDAI_FAKE_RUN_MS").map(String::as_str) == Some("60000") {
                        cancels.push(tokio::spawn(cancel_later(cs.clone(), id)));
                    }
                    break;
                }
                Err(e) if Instant::now() > deadline => panic!("enqueue {key} never succeeded: {e}"),
                Err(e) => {
                    // A master that answers, with its store down: it must say so.
                    if e.code() == tonic::Code::Unavailable && e.message().contains("store") {
                        unavailable += 1;
                    }
                    at += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
            }
        }
        tokio::time::sleep(gap).await;
    }
    for c in cancels {
        c.await.expect("cancel task");
    }
    unavailable
}

/// Cancels a task a little after it was enqueued (queued, assigned or running by then),
/// retrying while the master is down.
async fn cancel_later(cs: Vec<ClientServiceClient<Channel>>, id: String) {
    tokio::time::sleep(Duration::from_millis(
        300 + (id.as_bytes()[35] as u64 % 16) * 150,
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    for at in 0.. {
        let mut c = cs[at % cs.len()].clone();
        match c
            .cancel_task(pb::CancelTaskRequest { id: id.clone() })
            .await
        {
            Ok(_) => return,
            Err(e) if e.code() == tonic::Code::FailedPrecondition => return,
            Err(e) if Instant::now() > deadline => panic!("cancel {id} never succeeded: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// True once every task is terminal, by the first answering master's count.
pub async fn settled(urls: &str, total: usize) -> bool {
    let mut stats = None;
    for mut c in clients(urls).await {
        if let Ok(s) = c.queue_stats(pb::QueueStatsRequest {}).await {
            stats = Some(s);
            break;
        }
    }
    let Some(stats) = stats else {
        return false;
    };
    let counts = stats.into_inner().counts;
    let sum: u64 = counts.iter().map(|c| c.count).sum();
    let live: u64 = counts
        .iter()
        .filter(|c| {
            matches!(
                pb::TaskStatus::try_from(c.status),
                Ok(pb::TaskStatus::Waiting
                    | pb::TaskStatus::Queued
                    | pb::TaskStatus::Assigned
                    | pb::TaskStatus::Running)
            )
        })
        .map(|c| c.count)
        .sum();
    sum == total as u64 && live == 0
}

/// The count of tasks per status, as the first answering master reports it (for a failure
/// message: what did not finish).
pub async fn status_counts(urls: &str) -> String {
    for mut c in clients(urls).await {
        if let Ok(s) = c.queue_stats(pb::QueueStatsRequest {}).await {
            let counts: Vec<String> = s
                .into_inner()
                .counts
                .iter()
                .map(|c| {
                    let name = pb::TaskStatus::try_from(c.status)
                        .map(|s| s.as_str_name().to_string())
                        .unwrap_or_else(|_| c.status.to_string());
                    format!("{name}={}", c.count)
                })
                .collect();
            return counts.join(" ");
        }
    }
    "no master answered".to_string()
}

/// Workers whose free capacity is not their whole capacity (a leaked reservation), as
/// the master reports them; empty when every reservation was released.
pub async fn leaked_reservations(urls: &str) -> Option<Vec<String>> {
    let mut workers = None;
    // Only the leader lists workers; the others refuse.
    for mut c in clients(urls).await {
        if let Ok(r) = c.list_workers(pb::ListWorkersRequest {}).await {
            workers = Some(r.into_inner().workers);
            break;
        }
    }
    let workers = workers?;
    Some(
        workers
            .into_iter()
            .filter(|w| w.free != w.capacity || !w.running_task_ids.is_empty())
            .map(|w| format!("{} (free {:?} of {:?})", w.id, w.free, w.capacity))
            .collect(),
    )
}
