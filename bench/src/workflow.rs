//! Workload 8, workflow (issue 14): what a dependency costs.
//!
//! - [`pairs_once`]: parent end → child start on an idle cluster. A parent that runs a
//!   fixed time, then a child `after` it (so WAITING until the parent succeeds), one pair
//!   at a time on one fake worker. Both ends are stamped on this process's monotonic
//!   clock by the [`Probe`](crate::workers::Probe): the parent's end as the executor's
//!   `wait` returns, the child's start as the executor starts it. Beside Celery's
//!   `chain(parent.si(), child.si())` ([`crate::celery::chain`]).
//! - [`dag_once`]: a linear chain of no-op tasks (each `after` the one before) against as
//!   many independent no-ops, both enqueued in full before the one single-slot worker
//!   connects; first start → last end. The difference over the steps is what each
//!   dependency adds to running the same tasks back to back.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cloudai_proto::pb;

use crate::celery;
use crate::config::Config;
use crate::master::{MasterOpts, MasterProc};
use crate::report::{Row, Target};
use crate::stats::percentile;
use crate::suite::{celery_opts, cleanup, say, sqlite, summary};
use crate::workers::{noop_spec, FakeFleet};

type Client = pb::client_service_client::ClientServiceClient<tonic::transport::Channel>;

/// Pairs run before measuring (connection set-up, caches).
const WARMUP: usize = 5;
/// Independent tasks per `EnqueueBatch` call.
const BATCH: usize = 1000;

fn master(store: &str) -> Result<MasterProc> {
    MasterProc::start(&MasterOpts {
        count_commands: false,
        store: store.to_string(),
        heartbeat: Duration::from_secs(5),
        listen: None,
    })
}

/// A no-op wire spec, `after` `parent` (condition OK) when given; one slot when `slotted`.
fn spec(slotted: bool, parent: Option<&str>, run_ms: u64) -> pb::TaskSpec {
    let mut s = noop_spec(slotted);
    if run_ms > 0 {
        s.env
            .insert("CLOUDAI_FAKE_RUN_MS".into(), run_ms.to_string());
    }
    let mut s: pb::TaskSpec = s.into();
    s.after = parent
        .map(|p| pb::Dependency {
            task_id: p.to_string(),
            condition: pb::DependencyCondition::Ok as i32,
        })
        .into_iter()
        .collect();
    s
}

async fn poll_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// What [`pairs_once`] measured.
#[derive(Clone, Debug, Default)]
pub struct Pairs {
    /// Parent end → child start, ms, per measured pair.
    pub latency: Vec<f64>,
    /// Pairs left out because the child's enqueue was acknowledged only after its parent
    /// had ended (so it may never have waited): should stay 0.
    pub late: usize,
    /// The slowest pairs, split by the store's wall-clock stamps (for the log).
    pub slowest: Vec<String>,
}

/// Milliseconds from `a` to `b`.
fn ms_between(a: &prost_types::Timestamp, b: &prost_types::Timestamp) -> f64 {
    (b.seconds - a.seconds) as f64 * 1000.0 + f64::from(b.nanos - a.nanos) / 1e6
}

/// Where one pair's time went, by the stamps the store kept: the parent's end as its
/// worker reported it → the child's assignment (the master) → the child's start.
async fn split(client: &Client, parent: &str, child: &str, total: f64) -> Result<String> {
    let get = |id: &str| {
        let req = pb::GetTaskRequest { id: id.to_string() };
        let mut c = client.clone();
        async move { anyhow::Ok(c.get_task(req).await?.into_inner()) }
    };
    let (p, c) = (get(parent).await?, get(child).await?);
    let a = c.attempts.first().context("child without an attempt")?;
    let (Some(end), Some(assigned), Some(started)) =
        (&p.finished_at, &a.assigned_at, &a.started_at)
    else {
        bail!("missing stamps on {parent} or {child}");
    };
    Ok(format!(
        "{} ms = parent end → child assigned {} ms + assigned → started {} ms",
        crate::report::num(total),
        crate::report::num(ms_between(end, assigned)),
        crate::report::num(ms_between(assigned, started)),
    ))
}

/// `n` parent → child pairs, one at a time, each parent running `parent_ms`.
pub async fn pairs_once(store: &str, n: usize, parent_ms: u64) -> Result<Pairs> {
    let master = master(store)?;
    let fleet = FakeFleet::start(&master.url(), 1, 0, true);
    let mut client = master.client().await?;
    master.wait_for_a_worker("the fake worker").await?;
    let mut out = Pairs::default();
    let mut ids = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let enqueue = |s| pb::EnqueueRequest {
            spec: Some(s),
            ..Default::default()
        };
        let parent = client
            .enqueue(enqueue(spec(false, None, parent_ms)))
            .await?
            .into_inner()
            .task_id;
        let child = client
            .enqueue(enqueue(spec(false, Some(&parent), 0)))
            .await?
            .into_inner()
            .task_id;
        let acked = Instant::now();
        let probe = &fleet.probe;
        poll_until(&format!("child {child} to end"), 30, || {
            probe.end_of(&child).is_some()
        })
        .await?;
        let (Some(ended), Some(started)) = (probe.end_of(&parent), probe.start_of(&child)) else {
            bail!("pair {i}: no parent end or child start recorded");
        };
        if i >= WARMUP && acked >= ended {
            out.late += 1;
        } else if i >= WARMUP {
            out.latency
                .push(started.saturating_duration_since(ended).as_secs_f64() * 1000.0);
            ids.push((parent, child));
        }
        // Let the child's result reach the store: the next pair finds an idle cluster.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|a, b| out.latency[*b].total_cmp(&out.latency[*a]));
    for &k in order.iter().take(3) {
        let (parent, child) = &ids[k];
        out.slowest
            .push(split(&client, parent, child, out.latency[k]).await?);
    }
    fleet.stop().await;
    Ok(out)
}

/// What [`dag_once`] measured.
#[derive(Clone, Debug)]
pub struct Dag {
    /// First start → last end, seconds.
    pub secs: f64,
    /// Enqueueing every task (before the worker connects), seconds.
    pub enqueue_secs: f64,
    /// One task's end → the next one's start (by start time), ms.
    pub gaps: Vec<f64>,
}

/// `n` no-op tasks on one single-slot worker: a linear chain when `chained` (each `after`
/// the one before, enqueued one by one), else independent (enqueued in batches).
pub async fn dag_once(store: &str, n: usize, chained: bool) -> Result<Dag> {
    let master = master(store)?;
    let mut client = master.client().await?;
    let t0 = Instant::now();
    if chained {
        let mut prev: Option<String> = None;
        for _ in 0..n {
            let s = spec(true, prev.as_deref(), 0);
            let r = client
                .enqueue(pb::EnqueueRequest {
                    spec: Some(s),
                    ..Default::default()
                })
                .await?;
            prev = Some(r.into_inner().task_id);
        }
    } else {
        for chunk in (0..n).collect::<Vec<_>>().chunks(BATCH) {
            let specs = chunk.iter().map(|_| spec(true, None, 0)).collect();
            client
                .enqueue_batch(pb::EnqueueBatchRequest { specs })
                .await?;
        }
    }
    let enqueue_secs = t0.elapsed().as_secs_f64();
    let fleet = FakeFleet::start(&master.url(), 1, 1, true);
    let probe = &fleet.probe;
    let limit = 60 + n as u64 / 10;
    poll_until(&format!("{n} tasks to end"), limit, || {
        probe.ended() >= n as u64
    })
    .await
    .with_context(|| format!("{} of {n} ended", probe.ended()))?;
    let (first, last) = (probe.first_start(), probe.last_end());
    let spans = probe.spans();
    fleet.stop().await;
    let (Some(first), Some(last)) = (first, last) else {
        bail!("no start or end recorded");
    };
    let gaps = spans
        .windows(2)
        .filter_map(|w| Some(w[1].0.saturating_duration_since(w[0].1?)))
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    Ok(Dag {
        secs: last.saturating_duration_since(first).as_secs_f64(),
        enqueue_secs,
        gaps,
    })
}

/// p50 / p99 of `v`, for the progress log.
fn p(v: &[f64], q: f64) -> String {
    percentile(v, q).map_or("-".into(), crate::report::num)
}

/// The median of the first and of the last tenth of `gaps` (does a step cost depend on
/// how many tasks still wait?).
fn tenths(gaps: &[f64]) -> (String, String) {
    let k = (gaps.len() / 10).max(1).min(gaps.len());
    let m = |s: &[f64]| crate::stats::median(s).map_or("-".into(), crate::report::num);
    (m(&gaps[..k]), m(&gaps[gaps.len() - k..]))
}

/// The workload's rows: dependency latency beside Celery's chain, then the DAG's
/// overhead. Each repetition is a fresh master on a fresh SQLite file.
pub async fn rows(cfg: &Config) -> Result<Vec<Row>> {
    let (n, ms, dag_n) = (cfg.chain_n, cfg.chain_parent_ms, cfg.dag_n);
    let (mut p50, mut p99, mut late) = (Vec::new(), Vec::new(), 0);
    let (mut chain, mut flat, mut step) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..cfg.reps {
        let (uri, path) = sqlite(&cfg.workdir, "workflow-pairs", rep);
        let r = pairs_once(&uri, n, ms).await;
        cleanup(&path);
        let r = r?;
        say!(
            "workflow pairs rep {rep}: parent end → child start p50 {} ms, p99 {} ms, max {} ms ({} pairs, {} left out as late)",
            p(&r.latency, 50.0), p(&r.latency, 99.0), p(&r.latency, 100.0), r.latency.len(), r.late
        );
        say!(
            "workflow pairs rep {rep}, slowest: {}",
            r.slowest.join("; ")
        );
        p50.extend(percentile(&r.latency, 50.0));
        p99.extend(percentile(&r.latency, 99.0));
        late += r.late;
        let dag = |chained| {
            let (uri, path) = sqlite(&cfg.workdir, "workflow-dag", rep);
            async move {
                let r = dag_once(&uri, dag_n, chained).await;
                cleanup(&path);
                r
            }
        };
        let (a, b) = (dag(true).await?, dag(false).await?);
        for (what, d) in [("chain", &a), ("independent", &b)] {
            let (head, tail) = tenths(&d.gaps);
            say!(
                "workflow dag {what} rep {rep}: {dag_n} tasks in {:.3} s (enqueued in {:.2} s); end → next start p50 {} ms, p99 {} ms, max {} ms; median of the first tenth {head} ms, of the last {tail} ms",
                d.secs, d.enqueue_secs, p(&d.gaps, 50.0), p(&d.gaps, 99.0), p(&d.gaps, 100.0)
            );
        }
        chain.push(a.secs);
        flat.push(b.secs);
        step.push((a.secs - b.secs) * 1000.0 / dag_n as f64);
    }
    let (mut c50, mut c99) = (Vec::new(), Vec::new());
    let conc = cfg.latency_celery_concurrency;
    if let Some(c) = celery_opts(cfg) {
        for rep in 0..cfg.reps {
            let lat = celery::chain(&c, n, ms, conc)?;
            say!(
                "workflow celery chain rep {rep}: parent end → child start p50 {} ms, p99 {} ms, max {} ms",
                p(&lat, 50.0), p(&lat, 99.0), p(&lat, 100.0)
            );
            c50.extend(percentile(&lat, 50.0));
            c99.extend(percentile(&lat, 99.0));
        }
    }
    let mut rows = Vec::new();
    for (pct, ours, peer) in [("p50", &p50, &c50), ("p99", &p99, &c99)] {
        rows.push(Row {
            figure: format!("8. workflow: parent end → child start {pct}, idle (ms)"),
            cloudai: summary(ours),
            peer: (!peer.is_empty()).then(|| summary(peer)),
            target: Target::AtMost(5.0),
            note: if pct == "p50" {
                format!(
                    "{n} pairs per repetition, one at a time, after {WARMUP} warm-ups; parent runs {ms} ms, child `after` it (ok); cloudai: one fake worker, SQLite, end = the executor's wait returned, start = the executor started it, on the bench's monotonic clock ({late} pairs left out: child acknowledged after its parent ended); Celery: chain(parent.si(), child.si()), -c {conc}, Redis, both stamped in the task bodies on CLOCK_MONOTONIC{}",
                    if peer.is_empty() { "; peer not run (no --celery-python/--redis-url)" } else { "" }
                )
            } else {
                String::new()
            },
        });
    }
    rows.push(Row {
        figure: format!(
            "8. workflow: {dag_n}-step chain vs {dag_n} independent tasks, first start → last end (s)"
        ),
        cloudai: summary(&chain),
        peer: Some(summary(&flat)),
        target: Target::None,
        note: format!("peer column = the same {dag_n} no-op tasks without dependencies on the same master; one fake worker with one slot, every task enqueued before it connects (the chain one by one with `after` the one before, the independent ones in batches of {BATCH}); SQLite"),
    });
    rows.push(Row {
        figure: format!("8. workflow: {dag_n}-step chain, overhead per step (ms)"),
        cloudai: summary(&step),
        peer: None,
        target: Target::None,
        note: "(chain − independent) / steps, per repetition".into(),
    });
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_between_wire_timestamps() {
        let t = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        assert_eq!(ms_between(&t(10, 900_000_000), &t(11, 100_000_000)), 200.0);
        assert_eq!(ms_between(&t(5, 0), &t(5, 1_500_000)), 1.5);
    }

    #[test]
    fn first_and_last_tenth_medians() {
        let gaps: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(tenths(&gaps), ("1.500".into(), "19.50".into()));
        assert_eq!(tenths(&[4.0]), ("4.000".into(), "4.000".into()));
    }
}
