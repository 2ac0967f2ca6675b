//! Workload 6, masters sharing a MongoDB store (issue 12), with default leader settings
//! (a 5 s lease renewed every second):
//!
//! - failover: three masters, a fake fleet given all three URLs and a queue that never
//!   runs dry; the leader is killed with SIGKILL, and the time to the first attempt the new
//!   leader assigns is read from the store (`assigned_at`, stamped by the master on this
//!   host's clock). Repeated, each killed master started again on its port as a standby.
//! - drain with three masters vs one: the same preloaded drain, once with two standbys
//!   watching the store (their lease reads, their campaigns), once without.
//!
//! On SecantusDB these are correctness-grade figures, never MongoDB's speed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use cloudai_proto::pb;
use cloudai_queue::{NewTask, QueueStore, StoreOptions, TaskQuery, TaskStatus};

use crate::master::{MasterOpts, MasterProc};
use crate::workers::{noop_spec, FakeFleet};

/// Tasks queued before each kill: enough that the queue never runs dry meanwhile.
const QUEUED_PER_RUN: usize = 40;
/// How long each of them runs on the fake executor.
const TASK_MS: &str = "200";

/// A loopback address nothing listens on, kept for one master across its restarts.
fn free_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

fn start(store: &str, listen: SocketAddr) -> Result<MasterProc> {
    MasterProc::start(&MasterOpts {
        count_commands: false,
        store: store.to_string(),
        heartbeat: Duration::from_secs(5),
        listen: Some(listen),
    })
}

/// Which of `masters` says it leads, asking each in turn until one does.
async fn leader(masters: &[Option<MasterProc>], within: Duration) -> Result<usize> {
    let deadline = Instant::now() + within;
    loop {
        for (i, m) in masters.iter().enumerate() {
            let Some(m) = m else { continue };
            let Ok(mut c) = m.client().await else {
                continue;
            };
            if let Ok(r) = c.master_status(pb::MasterStatusRequest {}).await {
                if r.into_inner().role == "leader" {
                    return Ok(i);
                }
            }
        }
        if Instant::now() > deadline {
            bail!("no master led within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The earliest `assigned_at` of any attempt after `after`, if one exists yet.
async fn first_assigned_after(
    store: &dyn QueueStore,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let tasks = store
        .list(&TaskQuery {
            statuses: vec![
                TaskStatus::Assigned,
                TaskStatus::Running,
                TaskStatus::Succeeded,
            ],
            limit: 500,
            ..TaskQuery::default()
        })
        .await?;
    Ok(tasks
        .iter()
        .flat_map(|t| &t.attempts)
        .map(|a| a.assigned_at)
        .filter(|&t| t > after)
        .min())
}

async fn enqueue_running_tasks(store: &dyn QueueStore, n: usize) -> Result<()> {
    let batch: Vec<NewTask> = (0..n)
        .map(|_| {
            let mut s = noop_spec(true);
            s.env.insert("CLOUDAI_FAKE_RUN_MS".into(), TASK_MS.into());
            s.into()
        })
        .collect();
    store.enqueue_batch(batch).await?;
    Ok(())
}

/// `runs` kills of the leader; each one's time to the new leader's first assignment.
pub async fn failover_times(store_uri: &str, runs: usize) -> Result<Vec<f64>> {
    let store = cloudai_queue::open_store(store_uri, StoreOptions::default())
        .await
        .with_context(|| format!("cannot open {store_uri}"))?;
    let addrs = [free_addr()?, free_addr()?, free_addr()?];
    let mut masters: Vec<Option<MasterProc>> = Vec::new();
    for a in addrs {
        masters.push(Some(start(store_uri, a)?));
    }
    let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    let fleet = FakeFleet::start(&urls.join(","), 2, 4, false);
    let mut times = Vec::new();
    for run in 0..runs {
        let lead = leader(&masters, Duration::from_secs(30)).await?;
        enqueue_running_tasks(store.as_ref(), QUEUED_PER_RUN).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let killed_at = Utc::now();
        drop(masters[lead].take());
        let deadline = Instant::now() + Duration::from_secs(60);
        let first = loop {
            if let Some(t) = first_assigned_after(store.as_ref(), killed_at).await? {
                break t;
            }
            if Instant::now() > deadline {
                bail!("run {run}: no assignment within 60 s of the kill");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let secs = (first - killed_at).num_milliseconds() as f64 / 1000.0;
        eprintln!("bench: failover run {run}: first assignment {secs:.2} s after the kill");
        times.push(secs);
        masters[lead] = Some(start(store_uri, addrs[lead])?);
        // Let the queue drain before the next kill, so each run starts alike.
        let drained = Instant::now() + Duration::from_secs(120);
        while store
            .stats(Utc::now())
            .await?
            .counts
            .get(&TaskStatus::Queued)
            .is_some_and(|&n| n > 0)
        {
            if Instant::now() > drained {
                bail!("run {run}: the queue did not drain");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    fleet.stop().await;
    Ok(times)
}

/// One drain of `n` preloaded tasks with `masters` masters on the store; tasks/s.
pub async fn drain_with(store_uri: &str, masters: usize, n: usize) -> Result<f64> {
    crate::drain::preload(store_uri, n, true).await?;
    let mut procs = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..masters {
        let a = free_addr()?;
        procs.push(Some(start(store_uri, a)?));
        urls.push(format!("http://{a}"));
    }
    leader(&procs, Duration::from_secs(30)).await?;
    let fleet = FakeFleet::start(&urls.join(","), 4, 4, false);
    let deadline = Instant::now() + Duration::from_secs(600);
    while fleet.probe.started() == 0 {
        if Instant::now() > deadline {
            bail!("no task started");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut client = procs[0].as_ref().expect("started").client().await?;
    let left = deadline.saturating_duration_since(Instant::now());
    let end = crate::drain::wait_succeeded(&mut client, n as u64, left).await;
    let first = fleet.probe.first_start().context("no task started")?;
    fleet.stop().await;
    drop(procs);
    let secs = end?.duration_since(first).as_secs_f64();
    Ok(n as f64 / secs.max(1e-9))
}
