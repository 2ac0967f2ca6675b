//! Workload 5, scale: many raw simulated workers (see [`crate::sim`]) on one master with a
//! deep queue. Measures the master's memory and its dispatch rate (acknowledged results
//! per second over a window of `window` tasks, taken once every worker is registered),
//! so rates at different queue depths and heartbeat loads can be compared.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cloudai_proto::pb;

use crate::drain::{preload, preload_tasks, preload_with};
use crate::master::{MasterOpts, MasterProc};
use crate::sim::SimFleet;

/// How to run one scale measurement.
#[derive(Clone, Debug)]
pub struct ScaleOpts {
    /// Store URI of a fresh store.
    pub store: String,
    /// Tasks queued before the master starts.
    pub queued: usize,
    /// Simulated workers.
    pub workers: usize,
    /// HTTP/2 connections they share.
    pub connections: usize,
    /// Heartbeat interval (told by the master, followed by the simulated workers).
    pub heartbeat: Duration,
    /// Tasks in the measured window.
    pub window: usize,
    /// Workers labelled (`pool=main`, `zone=a|b`, `rack=r0..r7`) and every task
    /// constrained (`pool=main`, `zone in (a,b)`, `rack not in (r9)`) with a preference
    /// (`zone=a`): every worker still matches, so the rate differs from a plain run only
    /// by the cost of matching.
    pub constrained: bool,
    /// Submitters the queued tasks are spread over, in turn (0 or 1: none): with several,
    /// fair share reads each one's head and orders them by dominant share.
    pub submitters: usize,
}

/// The constrained run's task.
fn constrained_spec() -> cloudai_queue::TaskSpec {
    let mut spec = crate::workers::noop_spec(false);
    spec.constraints = ["pool=main", "zone in (a,b)", "rack not in (r9)"]
        .iter()
        .map(|c| c.parse().expect("a valid constraint"))
        .collect();
    spec.prefer = vec!["zone=a".parse().expect("a valid preference")];
    spec
}

/// The constrained run's labels of worker `i`.
fn labels(i: usize) -> Vec<(String, String)> {
    vec![
        ("pool".into(), "main".into()),
        (
            "zone".into(),
            if i.is_multiple_of(2) { "a" } else { "b" }.into(),
        ),
        ("rack".into(), format!("r{}", i % 8)),
    ]
}

/// What one scale run saw.
#[derive(Clone, Debug, Default)]
pub struct ScaleResult {
    /// Seconds to preload the queue (not part of any figure).
    pub preload_secs: f64,
    /// Acknowledged results per second over the window.
    pub rate: f64,
    /// Queue depth when the window began.
    pub depth_at_start: u64,
    /// Master RSS at the end of the window, bytes.
    pub rss: u64,
    /// Master peak RSS, bytes.
    pub peak_rss: u64,
    /// Heartbeats sent per second during the window.
    pub heartbeats_per_sec: f64,
    /// Workers the master did not list as healthy after the window.
    pub unhealthy: usize,
    /// Seconds until every worker was registered.
    pub register_secs: f64,
    /// Master CPU time over the window, seconds per second (1.0 = one core busy).
    pub master_cpu: f64,
}

/// One run.
pub async fn run_once(opts: &ScaleOpts) -> Result<ScaleResult> {
    let t = Instant::now();
    if opts.submitters > 1 {
        let (n, constrained) = (opts.submitters, opts.constrained);
        preload_tasks(&opts.store, opts.queued, |i| cloudai_queue::NewTask {
            spec: if constrained {
                constrained_spec()
            } else {
                crate::workers::noop_spec(false)
            },
            submitted_by: Some(format!("team-{}", i % n)),
        })
        .await?;
    } else if opts.constrained {
        preload_with(&opts.store, opts.queued, constrained_spec).await?;
    } else {
        preload(&opts.store, opts.queued, false).await?;
    }
    let preload_secs = t.elapsed().as_secs_f64();
    let master = MasterProc::start(&MasterOpts {
        count_commands: false,
        store: opts.store.clone(),
        heartbeat: opts.heartbeat,
        listen: None,
    })?;
    let mut client = master.client().await?;
    let t = Instant::now();
    let constrained = opts.constrained;
    let fleet = SimFleet::start_labelled(
        &master.url(),
        opts.workers,
        opts.connections,
        opts.heartbeat,
        |i| if constrained { labels(i) } else { Vec::new() },
    )
    .await?;
    let c = fleet.counters.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.registered.load(Ordering::Relaxed) < opts.workers as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} simulated workers registered",
                c.registered.load(Ordering::Relaxed),
                opts.workers
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let register_secs = t.elapsed().as_secs_f64();
    let a0 = c.acked.load(Ordering::Relaxed);
    let depth_at_start = (opts.queued as u64).saturating_sub(a0);
    if depth_at_start < opts.window as u64 {
        bail!(
            "only {depth_at_start} tasks left when the window began (window {})",
            opts.window
        );
    }
    let h0 = c.heartbeats.load(Ordering::Relaxed);
    let cpu0 = master.cpu_seconds()?;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(300);
    while c.acked.load(Ordering::Relaxed) < a0 + opts.window as u64 {
        if Instant::now() > deadline {
            bail!("the scale window did not complete within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let master_cpu = (master.cpu_seconds()? - cpu0) / secs.max(1e-9);
    let hb = c.heartbeats.load(Ordering::Relaxed) - h0;
    let (rss, peak_rss) = master.memory()?;
    let workers = client
        .list_workers(pb::ListWorkersRequest {})
        .await?
        .into_inner()
        .workers;
    let unhealthy = workers
        .iter()
        .filter(|w| w.health != pb::WorkerHealth::Healthy as i32)
        .count();
    fleet.stop().await;
    drop(master);
    Ok(ScaleResult {
        preload_secs,
        rate: opts.window as f64 / secs.max(1e-9),
        depth_at_start,
        rss,
        peak_rss,
        heartbeats_per_sec: hb as f64 / secs.max(1e-9),
        unhealthy,
        register_secs,
        master_cpu,
    })
}
