//! Workload 1, drain: preload N no-op tasks into a fresh store, start a master on it,
//! connect the fake fleet, and time from the first container start until the master
//! reports N tasks succeeded (polled over gRPC `QueueStats`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cloudai_proto::pb;
use cloudai_queue::{NewTask, StoreOptions};
use tonic::transport::Channel;

use crate::master::{MasterOpts, MasterProc};
use crate::workers::{noop_spec, FakeFleet};

/// Tasks per `enqueue_batch` when preloading.
const PRELOAD_CHUNK: usize = 5000;
/// How often the harness asks the master how many tasks succeeded. Each ask counts the
/// whole table in the master, so the drain asks only once every task has started.
const POLL: Duration = Duration::from_millis(50);
/// How often the drain asks once every task has started (the last results are close).
const TAIL_POLL: Duration = Duration::from_millis(5);

/// How to run one drain.
#[derive(Clone, Debug)]
pub struct DrainOpts {
    /// Store URI of a fresh, empty store.
    pub store: String,
    /// Tasks to drain.
    pub n: usize,
    /// Simulated workers.
    pub workers: usize,
    /// Slots per worker (tasks running at once on one worker); 0 = unlimited.
    pub slots: u64,
    /// Count the master's store commands (which costs it CPU on MongoDB).
    pub count_commands: bool,
}

/// Enqueues `n` no-op tasks straight into the store at `uri` (not timed).
pub async fn preload(uri: &str, n: usize, slotted: bool) -> Result<()> {
    preload_with(uri, n, || noop_spec(slotted)).await
}

/// Enqueues `n` tasks made by `spec` straight into the store at `uri` (not timed).
pub async fn preload_with(
    uri: &str,
    n: usize,
    spec: impl Fn() -> cloudai_queue::TaskSpec,
) -> Result<()> {
    preload_tasks(uri, n, |_| spec().into()).await
}

/// Enqueues `n` tasks, the `i`th made by `make(i)`, straight into the store at `uri`.
pub async fn preload_tasks(uri: &str, n: usize, make: impl Fn(usize) -> NewTask) -> Result<()> {
    let store = cloudai_queue::open_store(uri, StoreOptions::default())
        .await
        .with_context(|| format!("cannot open store {uri}"))?;
    let mut done = 0;
    while done < n {
        let k = (n - done).min(PRELOAD_CHUNK);
        let batch: Vec<NewTask> = (done..done + k).map(&make).collect();
        store.enqueue_batch(batch).await?;
        done += k;
    }
    Ok(())
}

/// Tasks in `status`, from the master's `QueueStats`.
pub async fn count(
    client: &mut pb::client_service_client::ClientServiceClient<Channel>,
    status: pb::TaskStatus,
) -> Result<u64> {
    let stats = client
        .queue_stats(pb::QueueStatsRequest {})
        .await?
        .into_inner();
    Ok(stats
        .counts
        .iter()
        .filter(|c| c.status == status as i32)
        .map(|c| c.count)
        .sum())
}

/// Polls until `want` tasks succeeded; returns when the poll saw it.
pub async fn wait_succeeded(
    client: &mut pb::client_service_client::ClientServiceClient<Channel>,
    want: u64,
    timeout: Duration,
) -> Result<Instant> {
    wait_succeeded_every(client, want, timeout, POLL).await
}

/// [`wait_succeeded`], asking every `poll`.
pub async fn wait_succeeded_every(
    client: &mut pb::client_service_client::ClientServiceClient<Channel>,
    want: u64,
    timeout: Duration,
    poll: Duration,
) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let done = count(client, pb::TaskStatus::Succeeded).await?;
        if done >= want {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("only {done} of {want} tasks succeeded within {timeout:?}");
        }
        tokio::time::sleep(poll).await;
    }
}

/// What one drain measured.
#[derive(Clone, Debug)]
pub struct Drained {
    /// Tasks per second, first start to last acknowledged result.
    pub rate: f64,
    /// The master's CPU time per task, in µs (start-up and preload excluded).
    pub master_cpu_us: f64,
    /// Store commands the master sent per task over the drain (0 on SQLite), and the
    /// counts by command name.
    pub commands_per_task: f64,
    /// Commands by name over the drain.
    pub commands: Vec<(String, u64)>,
}

/// One drain.
pub async fn run_once(opts: &DrainOpts) -> Result<Drained> {
    preload(&opts.store, opts.n, opts.slots > 0).await?;
    let mut master = MasterProc::start(&MasterOpts {
        store: opts.store.clone(),
        heartbeat: Duration::from_secs(5),
        listen: None,
        count_commands: opts.count_commands,
    })?;
    let mut client = master.client().await?;
    let own_cpu = crate::master::cpu_seconds_of("self").unwrap_or(0.0);
    let cpu0 = master.cpu_seconds().unwrap_or(0.0);
    let (_, commands0) = master.store_commands()?;
    let fleet = FakeFleet::start(&master.url(), opts.workers, opts.slots, false);
    // Generous: the drain is timed from its first start to its last result; this only
    // bounds a stuck run (a slow test server drains a few tasks a second).
    let per_task = if opts.store.starts_with("mongodb") {
        500
    } else {
        5
    };
    let timeout = Duration::from_secs(60).max(Duration::from_millis(opts.n as u64 * per_task));
    let deadline = Instant::now() + timeout;
    while fleet.probe.started() < opts.n as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let waited = wait_succeeded_every(&mut client, opts.n as u64, left, TAIL_POLL)
        .await
        .with_context(|| format!("the drain did not finish within {timeout:?}"));
    let first = fleet.probe.first_start();
    let cpu = master.cpu_seconds().unwrap_or(0.0) - cpu0;
    let (_, commands1) = master.store_commands()?;
    let own_cpu = crate::master::cpu_seconds_of("self").unwrap_or(0.0) - own_cpu;
    fleet.stop().await;
    drop(master);
    let end = waited?;
    let first = first.context("no task started")?;
    let secs = end.duration_since(first).as_secs_f64();
    let commands = counts_between(&commands0, &commands1);
    let sent: u64 = commands.iter().map(|(_, n)| n).sum();
    let n = opts.n as f64;
    let drained = Drained {
        rate: n / secs.max(1e-9),
        master_cpu_us: cpu * 1e6 / n,
        commands_per_task: sent as f64 / n,
        commands,
    };
    eprintln!(
        "bench: drain of {} took {secs:.2} s; CPU: master {cpu:.2} s ({:.1} µs/task), fake workers and harness {own_cpu:.2} s ({:.1} µs/task); store commands {:.2}/task {:?}",
        opts.n,
        drained.master_cpu_us,
        own_cpu * 1e6 / n,
        drained.commands_per_task,
        drained.commands,
    );
    Ok(drained)
}

/// The counts of `after` less those of `before`, by name (names only in `after` count
/// from zero).
pub fn counts_between(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .map(|(name, n)| {
            let was = before
                .iter()
                .find(|(b, _)| b == name)
                .map_or(0, |(_, m)| *m);
            (name.clone(), n.saturating_sub(was))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_between_subtracts_by_name() {
        let before = vec![("find".to_string(), 2), ("update".to_string(), 7)];
        let after = vec![
            ("find".to_string(), 5),
            ("insert".to_string(), 1),
            ("update".to_string(), 7),
        ];
        assert_eq!(
            counts_between(&before, &after),
            vec![("find".to_string(), 3), ("insert".to_string(), 1)]
        );
    }
}
