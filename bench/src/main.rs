//! `cloudai-bench`: the benchmark harness. Runs cloudai's workloads against a real
//! master process, beside their peers, and prints one Markdown table (figure, cloudai,
//! peer, ratio, target, met). `bench/run` sets up the peers and calls this.
//!
//! - [`config`]: every flag (sizes, repetitions, peers), `--quick`.
//! - [`suite`]: runs each workload's repetitions and makes the table rows.
//! - [`drain`], [`enqueue`], [`latency`], [`container`], [`scale`], [`failover`], [`api`],
//!   [`workflow`]: the workloads.
//! - [`master`]: the master under test, as a child process of this binary.
//! - [`workers`]: real worker runtimes on the fake executor, with start and exit
//!   timestamps.
//! - [`sim`]: raw protocol-level simulated workers, a thousand per process.
//! - [`celery`]: the Celery + Redis peer (`peers/celery_peer.py`).
//! - [`stats`], [`report`]: percentiles, median and spread; the table.

mod api;
mod celery;
mod config;
mod container;
mod drain;
mod enqueue;
mod failover;
mod latency;
mod master;
mod report;
mod scale;
mod sim;
mod stats;
mod suite;
mod workers;
mod workflow;

use std::io::Write;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cloudai-bench",
    about = "cloudai benchmarks, side by side with peers"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every workload, then the table.
    All(Run),
    /// 1: drain preloaded no-op tasks (SQLite, Mongo, Celery).
    Drain(Run),
    /// 2: enqueue over gRPC, unary and batched.
    Enqueue(Run),
    /// 3: enqueue → start latency at fixed offered rates (and Celery).
    Latency(Run),
    /// 4: busybox containers through cloudai vs `docker run --rm`.
    Container(Run),
    /// 5: 1,000 simulated workers, 1,000,000 queued tasks.
    Scale(Run),
    /// 6: masters sharing a Mongo store: failover time, drain with 3 masters vs 1.
    Failover(Run),
    /// 7: the HTTP API over 100,000 tasks (the dashboard's pages), `/metrics` under 1,000
    /// simulated workers.
    Api(Run),
    /// 8: workflows: parent end → child start (beside Celery's chain), and a 1,000-step
    /// chain against 1,000 independent tasks.
    Workflow(Run),
    /// Internal: serve a master (used by the harness itself).
    #[command(hide = true)]
    ServeMaster {
        #[arg(long)]
        store: String,
        #[arg(long, default_value_t = 5000)]
        heartbeat_ms: u64,
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        #[arg(long)]
        count_commands: bool,
    },
    /// Internal: serve a master with HTTP on a free loopback port (the api workload).
    #[command(hide = true)]
    ServeApiMaster {
        #[arg(long)]
        store: String,
        #[arg(long, default_value_t = 5000)]
        heartbeat_ms: u64,
    },
}

#[derive(clap::Args)]
struct Run {
    #[command(flatten)]
    config: config::Config,
    /// Also write the rows as JSON to this file.
    #[arg(long, env = "CLOUDAI_BENCH_JSON")]
    json: Option<std::path::PathBuf>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let (which, run) = match cli.command {
        Cmd::ServeMaster {
            store,
            heartbeat_ms,
            listen,
            count_commands,
        } => return master::serve_child(&store, heartbeat_ms, listen, count_commands),
        Cmd::ServeApiMaster {
            store,
            heartbeat_ms,
        } => return api::serve_child(&store, heartbeat_ms),
        Cmd::All(r) => ("all", r),
        Cmd::Drain(r) => ("drain", r),
        Cmd::Enqueue(r) => ("enqueue", r),
        Cmd::Latency(r) => ("latency", r),
        Cmd::Container(r) => ("container", r),
        Cmd::Scale(r) => ("scale", r),
        Cmd::Failover(r) => ("failover", r),
        Cmd::Api(r) => ("api", r),
        Cmd::Workflow(r) => ("workflow", r),
    };
    let cfg = run.config.resolve();
    std::fs::create_dir_all(&cfg.workdir)?;
    let rt = tokio::runtime::Runtime::new()?;
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        let all = which == "all";
        if all || which == "drain" {
            rows.extend(suite::drain(&cfg).await?);
        }
        if all || which == "enqueue" {
            rows.extend(suite::enqueue(&cfg).await?);
        }
        if all || which == "latency" {
            rows.extend(suite::latency(&cfg).await?);
        }
        if all || which == "container" {
            rows.extend(suite::container(&cfg).await?);
        }
        if all || which == "scale" {
            rows.extend(suite::scale(&cfg).await?);
        }
        if all || which == "failover" {
            rows.extend(suite::failover(&cfg).await?);
        }
        if all || which == "api" {
            rows.extend(suite::api(&cfg).await?);
        }
        if all || which == "workflow" {
            rows.extend(workflow::rows(&cfg).await?);
        }
        anyhow::Ok(rows)
    })?;
    if let Some(path) = &run.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report::render(&rows))?;
    Ok(())
}
