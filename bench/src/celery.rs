//! The Celery peer: runs `peers/celery_peer.py` (Celery, prefork pool, Redis broker) with
//! the venv's Python the bench script made, and reads the one JSON line it prints.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Where the peer runs.
#[derive(Clone, Debug)]
pub struct CeleryOpts {
    /// Python of a venv with `celery[redis]` installed.
    pub python: PathBuf,
    /// `redis://HOST:PORT` of a Redis only this benchmark uses (it is flushed).
    pub redis: String,
    /// The peer script.
    pub script: PathBuf,
}

/// The default location of the peer script, beside this crate's sources.
pub fn default_script() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers/celery_peer.py"))
}

#[derive(Deserialize)]
struct Out {
    rate: Option<f64>,
    latencies_ms: Option<Vec<f64>>,
}

fn run(opts: &CeleryOpts, args: &[String]) -> Result<Out> {
    let out = Command::new(&opts.python)
        .arg(&opts.script)
        .args(args)
        .arg("--redis")
        .arg(&opts.redis)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", opts.python.display()))?;
    if !out.status.success() {
        bail!("celery peer failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("celery peer printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("bad celery peer output {line:?}"))
}

/// Drains `n` preloaded no-op tasks with `concurrency` prefork processes; tasks/s.
pub fn drain(opts: &CeleryOpts, n: usize, concurrency: usize) -> Result<f64> {
    let args = [
        "drain",
        "--n",
        &n.to_string(),
        "--concurrency",
        &concurrency.to_string(),
    ];
    run(opts, &args.map(String::from))?
        .rate
        .context("celery peer gave no rate")
}

/// Publish → task start latencies (ms) at `rate`/s for `n` tasks.
pub fn latency(opts: &CeleryOpts, n: usize, rate: f64, concurrency: usize) -> Result<Vec<f64>> {
    let args = [
        "latency",
        "--n",
        &n.to_string(),
        "--rate",
        &rate.to_string(),
        "--concurrency",
        &concurrency.to_string(),
    ];
    run(opts, &args.map(String::from))?
        .latencies_ms
        .context("celery peer gave no latencies")
}

/// Parent end → child start latencies (ms) of `n` two-task chains run one at a time,
/// each parent sleeping `parent_ms` first.
pub fn chain(opts: &CeleryOpts, n: usize, parent_ms: u64, concurrency: usize) -> Result<Vec<f64>> {
    let args = [
        "chain",
        "--n",
        &n.to_string(),
        "--parent-ms",
        &parent_ms.to_string(),
        "--concurrency",
        &concurrency.to_string(),
    ];
    run(opts, &args.map(String::from))?
        .latencies_ms
        .context("celery peer gave no latencies")
}
