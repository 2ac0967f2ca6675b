//! Runs each workload for its repetitions, beside its peer, and turns the measurements
//! into table [`Row`]s. Every repetition gets a fresh store file, removed afterwards.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::celery::{self, CeleryOpts};
use crate::config::Config;
use crate::report::{Row, Target};
use crate::stats::{percentile, Summary};
use crate::{api, container, drain, enqueue, latency, scale};

/// Progress on stderr (the table goes to stdout).
macro_rules! say {
    ($($t:tt)*) => { eprintln!("bench: {}", format!($($t)*)) };
}
pub(crate) use say;

/// A fresh SQLite store URI under the work dir; the files are removed by [`cleanup`].
pub(crate) fn sqlite(dir: &Path, name: &str, rep: usize) -> (String, PathBuf) {
    let path = dir.join(format!("{name}-{rep}.db"));
    cleanup(&path);
    (format!("sqlite://{}", path.display()), path)
}

pub(crate) fn cleanup(db: &Path) {
    for suffix in ["", "-wal", "-shm", ".master.lock"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

pub(crate) fn summary(v: &[f64]) -> Summary {
    Summary::of(v).unwrap_or(Summary {
        median: f64::NAN,
        min: f64::NAN,
        max: f64::NAN,
        n: 0,
    })
}

pub(crate) fn celery_opts(cfg: &Config) -> Option<CeleryOpts> {
    Some(CeleryOpts {
        python: cfg.celery_python.clone()?,
        redis: cfg.redis_url.clone()?,
        script: cfg
            .celery_script
            .clone()
            .unwrap_or_else(celery::default_script),
    })
}

/// Workload 1: drain on SQLite (beside Celery) and on the Mongo wire server.
pub async fn drain(cfg: &Config) -> Result<Vec<Row>> {
    let concurrency = cfg.drain_workers * cfg.drain_slots as usize;
    let mut ours = Vec::new();
    let mut ours_cpu = Vec::new();
    for rep in 0..cfg.reps {
        let (uri, path) = sqlite(&cfg.workdir, "drain", rep);
        let r = drain::run_once(&drain::DrainOpts {
            store: uri,
            n: cfg.drain_n,
            workers: cfg.drain_workers,
            slots: cfg.drain_slots,
            count_commands: false,
        })
        .await;
        cleanup(&path);
        let r = r?;
        say!(
            "drain sqlite rep {rep}: {:.0} tasks/s, master CPU {:.1} µs/task",
            r.rate,
            r.master_cpu_us
        );
        ours_cpu.push(r.master_cpu_us);
        ours.push(r.rate);
    }
    let mut peer = Vec::new();
    if let Some(c) = celery_opts(cfg) {
        for rep in 0..cfg.celery_drain_reps {
            let r = celery::drain(&c, cfg.drain_n, concurrency)?;
            say!("drain celery rep {rep}: {r:.0} tasks/s");
            peer.push(r);
        }
    }
    let setup = format!(
        "N = {}, {} fake workers × {} slots = {} tasks at once; Celery: prefork, -c {}, Redis broker without persistence",
        cfg.drain_n, cfg.drain_workers, cfg.drain_slots, concurrency, concurrency
    );
    let mut rows = vec![
        Row {
            figure: "1. drain, SQLite store (tasks/s)".into(),
            cloudai: summary(&ours),
            peer: None,
            target: Target::AtLeast(20_000.0),
            note: setup.clone(),
        },
        Row {
            figure: "1. drain vs Celery+Redis (tasks/s)".into(),
            cloudai: summary(&ours),
            peer: (!peer.is_empty()).then(|| summary(&peer)),
            target: Target::RatioAtLeast(20.0),
            note: if peer.is_empty() {
                "peer not run (no --celery-python/--redis-url)".into()
            } else {
                String::new()
            },
        },
        Row {
            figure: "1. drain, SQLite: master CPU per task (µs)".into(),
            cloudai: summary(&ours_cpu),
            peer: None,
            target: Target::AtMost(35.0),
            note: "the master process's user + system time over the drain, divided by N".into(),
        },
    ];
    if let Some(mongo) = &cfg.mongo_uri {
        let mut m = Vec::new();
        let mut m_cpu = Vec::new();
        let mut m_commands = Vec::new();
        for rep in 0..cfg.reps.min(2) {
            // The master's CPU and the rate without command counting (the driver's
            // monitoring costs CPU); then the commands, from a drain that counts them.
            let mut drains = Vec::new();
            for (i, count_commands) in [false, true].into_iter().enumerate() {
                drains.push(
                    drain::run_once(&drain::DrainOpts {
                        store: mongo_db(
                            mongo,
                            &format!("cloudai_bench_{}_{rep}_{i}", std::process::id()),
                        ),
                        n: cfg.mongo_n,
                        workers: cfg.drain_workers,
                        slots: cfg.drain_slots,
                        count_commands,
                    })
                    .await?,
                );
            }
            let counted = drains.pop().expect("two drains");
            let mut r = drains.pop().expect("two drains");
            r.commands_per_task = counted.commands_per_task;
            r.commands = counted.commands;
            say!(
                "drain mongo rep {rep}: {:.1} tasks/s, master CPU {:.0} µs/task ({:.0} while counting commands), {:.2} store commands/task {:?}",
                r.rate,
                r.master_cpu_us,
                counted.master_cpu_us,
                r.commands_per_task,
                r.commands
            );
            m_cpu.push(r.master_cpu_us);
            m_commands.push(r.commands_per_task);
            m.push(r.rate);
        }
        rows.push(Row {
            figure: "1. drain, Mongo store on SecantusDB (tasks/s)".into(),
            cloudai: summary(&m),
            peer: None,
            target: Target::None,
            note: format!(
                "N = {}; against the SecantusDB test wire server (Python, ~25 claims/s): a correctness-grade figure, no yardstick of MongoDB",
                cfg.mongo_n
            ),
        });
        rows.push(Row {
            figure: "1. drain, Mongo: master CPU per task (µs)".into(),
            cloudai: summary(&m_cpu),
            peer: None,
            target: Target::AtMost(150.0),
            note: "the master's own CPU (not the server's), over the drain, divided by N; store commands not counted".into(),
        });
        rows.push(Row {
            figure: "1. drain, Mongo: store commands per task".into(),
            cloudai: summary(&m_commands),
            peer: None,
            target: Target::AtMost(3.0),
            note: "commands the master's client sent over a second drain that counts them (the driver's command monitoring: every find, update, commitTransaction …), divided by N".into(),
        });
    }
    Ok(rows)
}

/// `mongodb://h:p/…?opts` with the database replaced by `db`.
pub fn mongo_db(uri: &str, db: &str) -> String {
    let (base, query) = match uri.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (uri, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Workload 2: unary and batched enqueue.
pub async fn enqueue(cfg: &Config) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (name, n, batch, in_flight, target) in [
        ("unary", cfg.enqueue_n, 1, 256, 10_000.0),
        ("batched ×1000", cfg.enqueue_n * 4, 1000, 4, 50_000.0),
    ] {
        let mut v = Vec::new();
        for rep in 0..cfg.reps {
            let (uri, path) = sqlite(&cfg.workdir, "enqueue", rep);
            let r = enqueue::run_once(&enqueue::EnqueueOpts {
                store: uri,
                n,
                batch,
                in_flight,
                connections: 4,
            })
            .await;
            cleanup(&path);
            let r = r?;
            say!("enqueue {name} rep {rep}: {r:.0} tasks/s");
            v.push(r);
        }
        rows.push(Row {
            figure: format!("2. enqueue {name} over gRPC (tasks/s)"),
            cloudai: summary(&v),
            peer: None,
            target: Target::AtLeast(target),
            note: format!("N = {n}, {in_flight} calls in flight over 4 connections, each acknowledged once durable (SQLite, synchronous=FULL)"),
        });
    }
    Ok(rows)
}

/// Workload 3: enqueue → start latency at each offered rate, beside Celery.
pub async fn latency(cfg: &Config) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &rate in &cfg.latency_rates {
        let n = ((rate * cfg.latency_secs) as usize).max(50);
        let (mut p50, mut p99) = (Vec::new(), Vec::new());
        for rep in 0..cfg.reps {
            let (uri, path) = sqlite(&cfg.workdir, "latency", rep);
            let lat = latency::run_once(&latency::LatencyOpts {
                store: uri,
                rate,
                n,
            })
            .await;
            cleanup(&path);
            let all = lat?;
            let lat = all.start;
            let (a, b) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
            let (ack50, ack99) = (percentile(&all.ack, 50.0), percentile(&all.ack, 99.0));
            say!("latency cloudai {rate}/s rep {rep}: p50 {a:?} ms, p99 {b:?} ms (of which durable enqueue ack: p50 {ack50:?} ms, p99 {ack99:?} ms)");
            p50.extend(a);
            p99.extend(b);
        }
        let (mut c50, mut c99) = (Vec::new(), Vec::new());
        if let Some(c) = celery_opts(cfg) {
            for rep in 0..cfg.reps {
                let lat = celery::latency(&c, n, rate, cfg.latency_celery_concurrency)?;
                let (a, b) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
                say!("latency celery {rate}/s rep {rep}: p50 {a:?} ms, p99 {b:?} ms");
                c50.extend(a);
                c99.extend(b);
            }
        }
        for (pct, ours, peer, target) in [("p50", &p50, &c50, 2.0), ("p99", &p99, &c99, 5.0)] {
            rows.push(Row {
                figure: format!("3. latency {pct} at {rate}/s, enqueue → start (ms)"),
                cloudai: summary(ours),
                peer: (!peer.is_empty()).then(|| summary(peer)),
                target: Target::AtMostAndBelowPeer(target),
                note: if pct == "p50" {
                    format!("{n} tasks per repetition after a 20-task warm-up; cloudai: durable unary Enqueue to the fake executor's start; Celery: apply_async to the task body's first line, -c {}", cfg.latency_celery_concurrency)
                } else {
                    String::new()
                },
            });
        }
    }
    Ok(rows)
}

/// Workload 4: the container path, sequential and parallel, beside `docker run --rm`.
pub async fn container(cfg: &Config) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for parallel in [1, cfg.container_parallel] {
        let (mut ours, mut cli) = (Vec::new(), Vec::new());
        for rep in 0..cfg.reps {
            let (uri, path) = sqlite(&cfg.workdir, "container", rep);
            let opts = container::ContainerOpts {
                store: uri,
                image: cfg.container_image.clone(),
                n: cfg.container_n,
                parallel,
            };
            let r = container::cloudai_once(&opts).await;
            cleanup(&path);
            let r = r?;
            let c = tokio::task::spawn_blocking(move || container::cli_once(&opts)).await??;
            say!("container ×{parallel} rep {rep}: cloudai {r:.2} s, docker run {c:.2} s");
            ours.push(r);
            cli.push(c);
        }
        rows.push(Row {
            figure: format!(
                "4. container path, {} × `sh -c :`, {parallel} at once (s)",
                cfg.container_n
            ),
            cloudai: summary(&ours),
            peer: Some(summary(&cli)),
            target: Target::RatioAtMost(1.0),
            note: if parallel == 1 {
                format!("peer: `docker run --rm {} sh -c :` in a loop ({} loops for the parallel row); cloudai: one worker with the Docker executor, enqueue to all succeeded", cfg.container_image, cfg.container_parallel)
            } else {
                String::new()
            },
        });
    }
    Ok(rows)
}

/// Submitters in the scale run with fair share.
const FAIR_SUBMITTERS: usize = 4;

/// Workload 5: scale. Five runs per repetition: deep queue with fast heartbeats, the same
/// constrained, constrained with fair share between several submitters, shallow queue
/// with fast heartbeats, shallow queue with slow heartbeats.
pub async fn scale(cfg: &Config) -> Result<Vec<Row>> {
    let fast = std::time::Duration::from_secs(1);
    let slow = std::time::Duration::from_secs(60);
    let shallow = cfg.scale_window * 2;
    let (mut rss, mut deep_rate, mut shallow_rate, mut quiet_rate, mut constrained_rate) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut fair_rate = Vec::new();
    let mut notes = Vec::new();
    for rep in 0..cfg.scale_reps {
        for (kind, queued, hb) in [
            ("deep", cfg.scale_queued, fast),
            ("constrained", cfg.scale_queued, fast),
            ("fair", cfg.scale_queued, fast),
            ("shallow", shallow, fast),
            ("quiet", shallow, slow),
        ] {
            let (uri, path) = sqlite(&cfg.workdir, &format!("scale-{kind}"), rep);
            let r = scale::run_once(&scale::ScaleOpts {
                store: uri,
                queued,
                workers: cfg.scale_workers,
                connections: cfg.scale_connections,
                heartbeat: hb,
                window: cfg.scale_window,
                constrained: matches!(kind, "constrained" | "fair"),
                submitters: if kind == "fair" { FAIR_SUBMITTERS } else { 0 },
            })
            .await;
            cleanup(&path);
            let r = r?;
            say!(
                "scale {kind} rep {rep}: {:.0} tasks/s at depth {}, master CPU {:.2} cores ({:.1} µs/task), rss {} MiB (peak {} MiB), {:.0} heartbeats/s, {} unhealthy, registered in {:.1} s, preload {:.1} s",
                r.rate, r.depth_at_start, r.master_cpu, r.master_cpu * 1e6 / r.rate.max(1e-9), r.rss >> 20, r.peak_rss >> 20, r.heartbeats_per_sec, r.unhealthy, r.register_secs, r.preload_secs
            );
            match kind {
                "deep" => {
                    rss.push((r.peak_rss >> 20) as f64);
                    deep_rate.push(r.rate);
                }
                "shallow" => shallow_rate.push(r.rate),
                "constrained" => constrained_rate.push(r.rate),
                "fair" => fair_rate.push(r.rate),
                _ => quiet_rate.push(r.rate),
            }
            if r.unhealthy > 0 {
                notes.push(format!(
                    "{kind} rep {rep}: {} workers not healthy",
                    r.unhealthy
                ));
            }
        }
    }
    let unhealthy = if notes.is_empty() {
        "every worker stayed healthy".to_string()
    } else {
        notes.join("; ")
    };
    Ok(vec![
        Row {
            figure: format!("5. scale: master peak RSS, {} workers, {} queued (MiB)", cfg.scale_workers, cfg.scale_queued),
            cloudai: summary(&rss),
            peer: None,
            target: Target::AtMost(300.0),
            note: format!("{} raw simulated worker streams in one process over {} connections; VmHWM of the master process", cfg.scale_workers, cfg.scale_connections),
        },
        Row {
            figure: format!("5. scale: dispatch rate, {} queued vs {} queued (tasks/s)", cfg.scale_queued, shallow),
            cloudai: summary(&deep_rate),
            peer: Some(summary(&shallow_rate)),
            target: Target::RatioAtLeast(0.8),
            note: format!("peer column = the same master with a {shallow}-task queue; rate = acknowledged results/s over {} tasks once every worker is registered; heartbeats every 1 s", cfg.scale_window),
        },
        Row {
            figure: format!("5. scale: dispatch rate with constraints and a preference vs plain, {} queued (tasks/s)", cfg.scale_queued),
            cloudai: summary(&constrained_rate),
            peer: Some(summary(&deep_rate)),
            target: Target::RatioAtLeast(0.8),
            note: "peer column = the plain deep run; every task has 3 constraints and 1 preference, every worker 3 labels and matches them; one submitter".into(),
        },
        Row {
            figure: format!("5. scale: dispatch rate with constraints, a preference and fair share between {FAIR_SUBMITTERS} submitters vs plain, {} queued (tasks/s)", cfg.scale_queued),
            cloudai: summary(&fair_rate),
            peer: Some(summary(&deep_rate)),
            target: Target::RatioAtLeast(0.8),
            note: format!("peer column = the plain deep run; the constrained run's tasks, enqueued by {FAIR_SUBMITTERS} submitters in turn, so each pass reads each one's head and orders them by dominant share"),
        },
        Row {
            figure: "5. scale: dispatch rate, heartbeats 1000/s vs ~17/s (tasks/s)".into(),
            cloudai: summary(&shallow_rate),
            peer: Some(summary(&quiet_rate)),
            target: Target::RatioAtLeast(0.8),
            note: format!("peer column = heartbeats every 60 s instead of 1 s; {unhealthy}"),
        },
    ])
}

/// Workload 6 (needs `--mongo-uri`): failover time, and the drain with three masters vs
/// one on the same store, alternating so that drift in the server hits both alike.
pub async fn failover(cfg: &Config) -> Result<Vec<Row>> {
    let Some(mongo) = &cfg.mongo_uri else {
        say!("failover: skipped (no --mongo-uri)");
        return Ok(Vec::new());
    };
    let pid = std::process::id();
    let uri = mongo_db(mongo, &format!("cloudai_bench_failover_{pid}"));
    let times = crate::failover::failover_times(&uri, cfg.failover_runs).await?;
    let (mut one, mut three) = (Vec::new(), Vec::new());
    for rep in 0..cfg.reps.min(2) {
        for (masters, out) in [(1, &mut one), (3, &mut three)] {
            let uri = mongo_db(mongo, &format!("cloudai_bench_ha_{pid}_{masters}_{rep}"));
            let r = crate::failover::drain_with(&uri, masters, cfg.mongo_n).await?;
            say!("drain with {masters} master(s) rep {rep}: {r:.1} tasks/s");
            out.push(r);
        }
    }
    let s = summary(&times);
    Ok(vec![
        Row {
            figure: "6. failover: kill -9 of the leader to the new leader's first assignment (s)"
                .into(),
            cloudai: s.clone(),
            peer: None,
            target: Target::AtMost(7.0),
            note: format!(
                "{} kills, 3 masters, default --leader-ttl 5s / --leader-renew 1s; median {:.2} s, max {:.2} s; on SecantusDB",
                s.n, s.median, s.max
            ),
        },
        Row {
            figure: "6. drain, 3 masters vs 1 on one store (tasks/s)".into(),
            cloudai: summary(&three),
            peer: Some(summary(&one)),
            target: Target::RatioAtLeast(0.95),
            note: format!(
                "N = {}, 4 fake workers × 4 slots; 'peer' is the same drain with one master; on SecantusDB (correctness-grade)",
                cfg.mongo_n
            ),
        },
    ])
}

/// Workload 7: the HTTP API on a filled store (the dashboard's task list, the overview,
/// `/metrics`), then `/metrics` under the simulated fleet. The store is filled once; each
/// repetition is a fresh master on it. One row per request kind: p50 of each repetition,
/// p95 and p99 (medians over the repetitions) in its note.
pub async fn api(cfg: &Config) -> Result<Vec<Row>> {
    let (uri, path) = sqlite(&cfg.workdir, "api-tasks", 0);
    let measured = async {
        let f = api::fill(&uri, cfg.api_tasks, 40).await?;
        say!("api: filled {} tasks ({} succeeded, {} failed, {} cancelled, the rest queued) in {:.1} s", f.tasks, f.succeeded, f.failed, f.cancelled, f.secs);
        let mut reps = Vec::new();
        for rep in 0..cfg.reps {
            let r = api::tasks_page(&uri, cfg.api_requests).await?;
            r.iter().for_each(|t| say!("api rep {rep}: {}", line(t)));
            reps.push(r);
        }
        anyhow::Ok((f, reps))
    }
    .await;
    cleanup(&path);
    let (filled, reps) = measured?;
    let (w, conns) = (cfg.api_workers, cfg.scale_connections);
    let mut under = Vec::new();
    for rep in 0..cfg.reps {
        let (uri, path) = sqlite(&cfg.workdir, "api-metrics", rep);
        let r = api::metrics_under_workers(&uri, w, conns, cfg.api_requests).await;
        cleanup(&path);
        let r = r?;
        say!("api rep {rep}, {w} workers: {}", line(&r));
        under.push(r);
    }
    let n = cfg.api_tasks;
    let mut rows = Vec::new();
    for (i, first) in reps.first().into_iter().flatten().enumerate() {
        let of: Vec<&api::Timed> = reps.iter().filter_map(|r| r.get(i)).collect();
        let (target, what) = match first.name {
            "stats" | "history" => (Target::None, ""),
            "metrics" => (Target::None, ", no worker"),
            _ => (Target::AtMost(100.0), ""),
        };
        let mut note = pcts(&of, cfg.api_requests);
        if i == 0 {
            note.push_str(&format!(
                "; store: SQLite, {n} tasks written through the store API before the master starts ({} succeeded, {} failed, {} cancelled, the rest queued), 4 images, 2 labels, 3 kinds of command; no worker; one request at a time on one kept-alive loopback connection, wall time to the last body byte",
                filled.succeeded, filled.failed, filled.cancelled
            ));
        }
        rows.push(Row {
            figure: format!("7. api: GET {} over {n} tasks{what}, p50 (ms)", first.label),
            cloudai: summary(&pct(&of, 50.0)),
            peer: None,
            target,
            note,
        });
    }
    let of: Vec<&api::Timed> = under.iter().collect();
    rows.push(Row {
        figure: format!("7. api: GET /metrics, {w} simulated workers heartbeating, p50 (ms)"),
        cloudai: summary(&pct(&of, 50.0)),
        peer: None,
        target: Target::AtMost(50.0),
        note: format!(
            "{}; empty store (the fleet would drain a queue), heartbeats every 1 s over {conns} connections",
            pcts(&of, cfg.api_requests)
        ),
    });
    let kib: Vec<f64> = under.iter().map(|t| t.bytes as f64 / 1024.0).collect();
    rows.push(Row {
        figure: format!("7. api: /metrics body, {w} workers (KiB)"),
        cloudai: summary(&kib),
        peer: None,
        target: Target::None,
        note: String::new(),
    });
    Ok(rows)
}

/// The `p`-th percentile of each repetition.
fn pct(of: &[&api::Timed], p: f64) -> Vec<f64> {
    of.iter().filter_map(|t| percentile(&t.ms, p)).collect()
}

/// p95 and p99 (medians over the repetitions), requests, body size: a row's note.
fn pcts(of: &[&api::Timed], requests: usize) -> String {
    let at = |p| crate::report::num(summary(&pct(of, p)).median);
    let bytes = of.last().map_or(0, |t| t.bytes);
    format!(
        "p95 {} ms, p99 {} ms (median over repetitions), {requests} requests per repetition after {} warm-ups, body {bytes} bytes",
        at(95.0),
        at(99.0),
        api::WARMUP
    )
}

/// One repetition of one request kind, for the progress log.
fn line(t: &api::Timed) -> String {
    let p = |q| percentile(&t.ms, q).map_or("-".into(), crate::report::num);
    let (a, b, c, d) = (p(50.0), p(95.0), p(99.0), p(100.0));
    format!(
        "{}: p50 {a} ms, p95 {b} ms, p99 {c} ms, max {d} ms, {} bytes",
        t.label, t.bytes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mongo_uri_gets_a_fresh_database() {
        assert_eq!(
            mongo_db("mongodb://127.0.0.1:27017/", "x"),
            "mongodb://127.0.0.1:27017/x"
        );
        assert_eq!(
            mongo_db("mongodb://127.0.0.1:27017", "x"),
            "mongodb://127.0.0.1:27017/x"
        );
        assert_eq!(
            mongo_db("mongodb://u:p@h:1/old?replicaSet=rs", "x"),
            "mongodb://u:p@h:1/x?replicaSet=rs"
        );
    }
}
