//! [`Config`]: every knob of the harness, one typed struct parsed by clap, each flag with
//! a `CLOUDAI_BENCH_*` variable. `--quick` lowers the sizes that were not set explicitly.

use std::path::PathBuf;

/// Settings of a benchmark run. Defaults are the full run recorded in BENCHMARKS.md.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Small sizes and one repetition: a smoke run of every workload in a few minutes.
    #[arg(long, env = "CLOUDAI_BENCH_QUICK")]
    pub quick: bool,
    /// Repetitions of each figure (median and min–max are reported). Default 3 (1 quick).
    #[arg(long = "reps", env = "CLOUDAI_BENCH_REPS")]
    pub reps_flag: Option<usize>,
    /// Where store files go (a fresh file per repetition, removed after it).
    #[arg(
        long,
        env = "CLOUDAI_BENCH_WORKDIR",
        default_value = "/tmp/cloudai-bench/work"
    )]
    pub workdir: PathBuf,
    /// Tasks drained per repetition. Default 100000 (10000 quick).
    #[arg(long = "drain-n", env = "CLOUDAI_BENCH_DRAIN_N")]
    pub drain_n_flag: Option<usize>,
    /// Simulated (fake-executor) workers in the drain.
    #[arg(long, env = "CLOUDAI_BENCH_DRAIN_WORKERS", default_value_t = 8)]
    pub drain_workers: usize,
    /// Tasks at once per drain worker (Celery gets workers × slots processes).
    #[arg(long, env = "CLOUDAI_BENCH_DRAIN_SLOTS", default_value_t = 8)]
    pub drain_slots: u64,
    /// MongoDB URI for the Mongo drain (a fresh database per repetition); unset: skipped.
    #[arg(long, env = "CLOUDAI_TEST_MONGODB_URI", hide_env_values = true)]
    pub mongo_uri: Option<String>,
    /// Tasks drained through the Mongo store. Default 300 (100 quick).
    #[arg(long = "mongo-n", env = "CLOUDAI_BENCH_MONGO_N")]
    pub mongo_n_flag: Option<usize>,
    /// Python of a venv with `celery[redis]`; unset: Celery figures are skipped.
    #[arg(long, env = "CLOUDAI_BENCH_CELERY_PYTHON")]
    pub celery_python: Option<PathBuf>,
    /// The Celery peer script (default: bench/peers/celery_peer.py).
    #[arg(long, env = "CLOUDAI_BENCH_CELERY_SCRIPT")]
    pub celery_script: Option<PathBuf>,
    /// Repetitions of the Celery drain (it takes minutes at 100,000). Default: 2, at most
    /// `--reps`.
    #[arg(long = "celery-drain-reps", env = "CLOUDAI_BENCH_CELERY_DRAIN_REPS")]
    pub celery_drain_reps_flag: Option<usize>,
    /// `redis://HOST:PORT` of a Redis the Celery peer may flush.
    #[arg(long, env = "CLOUDAI_BENCH_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Unary enqueues per repetition (batched: 4×). Default 50000 (10000 quick).
    #[arg(long = "enqueue-n", env = "CLOUDAI_BENCH_ENQUEUE_N")]
    pub enqueue_n_flag: Option<usize>,
    /// Offered rates of the latency workload, tasks/s.
    #[arg(long, env = "CLOUDAI_BENCH_LATENCY_RATES", value_delimiter = ',', default_values_t = [50.0, 1000.0])]
    pub latency_rates: Vec<f64>,
    /// Seconds of offered load per latency repetition. Default 10 (3 quick).
    #[arg(long = "latency-secs", env = "CLOUDAI_BENCH_LATENCY_SECS")]
    pub latency_secs_flag: Option<f64>,
    /// Celery prefork processes in the latency workload.
    #[arg(
        long,
        env = "CLOUDAI_BENCH_LATENCY_CELERY_CONCURRENCY",
        default_value_t = 4
    )]
    pub latency_celery_concurrency: usize,
    /// Containers per container-path repetition.
    #[arg(long, env = "CLOUDAI_BENCH_CONTAINER_N", default_value_t = 50)]
    pub container_n: usize,
    /// Containers at once in the parallel container-path row.
    #[arg(long, env = "CLOUDAI_BENCH_CONTAINER_PARALLEL", default_value_t = 4)]
    pub container_parallel: usize,
    /// Local image for the container path.
    #[arg(
        long,
        env = "CLOUDAI_BENCH_CONTAINER_IMAGE",
        default_value = "cloudai/busybox:test"
    )]
    pub container_image: String,
    /// Simulated workers in the scale workload.
    #[arg(long, env = "CLOUDAI_BENCH_SCALE_WORKERS", default_value_t = 1000)]
    pub scale_workers: usize,
    /// HTTP/2 connections the simulated workers share.
    #[arg(long, env = "CLOUDAI_BENCH_SCALE_CONNECTIONS", default_value_t = 50)]
    pub scale_connections: usize,
    /// Tasks queued in the deep-queue scale run. Default 1000000 (100000 quick).
    #[arg(long = "scale-queued", env = "CLOUDAI_BENCH_SCALE_QUEUED")]
    pub scale_queued_flag: Option<usize>,
    /// Tasks in the measured scale window (the shallow queue holds twice this).
    #[arg(long, env = "CLOUDAI_BENCH_SCALE_WINDOW", default_value_t = 30_000)]
    pub scale_window: usize,
    /// Repetitions of the scale workload (each preloads the deep queue again, ~20 s for
    /// 1,000,000). Default: `--reps`.
    #[arg(long = "scale-reps", env = "CLOUDAI_BENCH_SCALE_REPS")]
    pub scale_reps_flag: Option<usize>,

    /// Kills of the leader in the failover workload. Default: 10 (3 with --quick).
    #[arg(long = "failover-runs", env = "CLOUDAI_BENCH_FAILOVER_RUNS")]
    pub failover_runs_flag: Option<usize>,

    /// Tasks in the store of the api workload (at least 5000). Default 100000 (10000 quick).
    #[arg(long = "api-tasks", env = "CLOUDAI_BENCH_API_TASKS")]
    pub api_tasks_flag: Option<usize>,
    /// Timed requests of each kind in the api workload. Default 200 (50 quick).
    #[arg(long = "api-requests", env = "CLOUDAI_BENCH_API_REQUESTS")]
    pub api_requests_flag: Option<usize>,
    /// Simulated workers registered while `/metrics` is timed.
    #[arg(long, env = "CLOUDAI_BENCH_API_WORKERS", default_value_t = 1000)]
    pub api_workers: usize,

    /// Parent → child pairs per repetition of the workflow workload. Default 200 (50 quick).
    #[arg(long = "chain-n", env = "CLOUDAI_BENCH_CHAIN_N")]
    pub chain_n_flag: Option<usize>,
    /// How long each parent of those pairs runs (ms), so its child is surely enqueued and
    /// waiting before it ends.
    #[arg(long, env = "CLOUDAI_BENCH_CHAIN_PARENT_MS", default_value_t = 30)]
    pub chain_parent_ms: u64,
    /// Steps of the workflow workload's linear chain (and independent tasks it is compared
    /// with). Default 1000 (200 quick).
    #[arg(long = "dag-n", env = "CLOUDAI_BENCH_DAG_N")]
    pub dag_n_flag: Option<usize>,

    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub chain_n: usize,
    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub dag_n: usize,
    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub api_tasks: usize,
    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub api_requests: usize,
    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub failover_runs: usize,
    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub reps: usize,
    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub drain_n: usize,
    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub celery_drain_reps: usize,
    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub mongo_n: usize,
    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub scale_reps: usize,
    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub enqueue_n: usize,
    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub latency_secs: f64,
    /// Resolved by [`Config::resolve`].
    #[arg(skip)]
    pub scale_queued: usize,
}

impl Config {
    /// Fills the sizes from the flags, or the full or `--quick` defaults.
    pub fn resolve(mut self) -> Config {
        let q = self.quick;
        let pick = |flag: Option<usize>, full: usize, quick: usize| {
            flag.unwrap_or(if q { quick } else { full })
        };
        self.reps = pick(self.reps_flag, 3, 1).max(1);
        self.celery_drain_reps = self
            .celery_drain_reps_flag
            .unwrap_or(self.reps.min(2))
            .max(1);
        self.scale_reps = self.scale_reps_flag.unwrap_or(self.reps).max(1);
        self.drain_n = pick(self.drain_n_flag, 100_000, 10_000);
        // A few hundred documents: the test wire server scans in Python and slows as the
        // collection grows (about 15-40 claims/s here).
        self.mongo_n = pick(self.mongo_n_flag, 300, 100);
        self.enqueue_n = pick(self.enqueue_n_flag, 50_000, 10_000);
        self.latency_secs = self.latency_secs_flag.unwrap_or(if q { 3.0 } else { 10.0 });
        self.scale_queued = pick(self.scale_queued_flag, 1_000_000, 100_000);
        self.failover_runs = pick(self.failover_runs_flag, 10, 3).max(1);
        self.api_tasks = pick(self.api_tasks_flag, 100_000, 10_000).max(5000);
        self.api_requests = pick(self.api_requests_flag, 200, 50).max(1);
        self.chain_n = pick(self.chain_n_flag, 200, 50).max(1);
        self.dag_n = pick(self.dag_n_flag, 1000, 200).max(2);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        c: Config,
    }

    #[test]
    fn quick_lowers_only_unset_sizes() {
        let full = Cli::try_parse_from(["x"]).unwrap().c.resolve();
        assert_eq!(
            (full.reps, full.drain_n, full.scale_queued),
            (3, 100_000, 1_000_000)
        );
        let quick = Cli::try_parse_from(["x", "--quick", "--drain-n", "500"])
            .unwrap()
            .c
            .resolve();
        assert_eq!(
            (quick.reps, quick.drain_n, quick.scale_queued),
            (1, 500, 100_000)
        );
        assert_eq!(quick.latency_rates, vec![50.0, 1000.0]);
        assert_eq!((full.api_tasks, full.api_requests), (100_000, 200));
        assert_eq!((quick.api_tasks, quick.api_requests), (10_000, 50));
        assert_eq!((full.chain_n, full.dag_n), (200, 1000));
        assert_eq!((quick.chain_n, quick.dag_n), (50, 200));
    }
}
