//! The flags that say what to run ([`TaskSpecArgs`]), shared by `cloudai enqueue`, the
//! shell's `enqueue` and `schedule add`; `commands::spec` turns them into a `TaskSpec`.

use clap::Args;

/// What to run, shared by `cloudai enqueue` and the shell's `enqueue` and `task`.
#[derive(Debug, Clone, Args)]
pub struct TaskSpecArgs {
    /// CPU to reserve: cores (0.5) or millicores (500m).
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<String>,
    /// Memory to reserve and limit: 256M, 1.5G, 512MiB (K/M/G/T are powers of 1024).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// GPUs to reserve.
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// Disk to reserve on the worker: 10G, 500M. Only reserved (placement keeps the sum
    /// within what the worker reports), not enforced on the container.
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<String>,
    /// Run only on workers with this attribute (repeatable; all must hold): KEY=VALUE,
    /// KEY!=VALUE, 'KEY in (A,B)', 'KEY not in (A,B)' or 'KEY exists'. Keys are the
    /// worker's --labels and its built-in attributes (os, arch, hostname,
    /// docker.version, gpu.model, gpu.memory in MiB; see `cloudai workers -o json`).
    /// A worker without the key fails =, in and exists, and passes != and not in.
    #[arg(long = "constraint", value_name = "EXPR")]
    pub constraints: Vec<String>,
    /// Prefer workers with this attribute (repeatable): KEY=VALUE. Among the workers
    /// that may take the task, those matching more preferences come first; a task never
    /// waits for a preferred worker.
    #[arg(long = "prefer", value_name = "KEY=VALUE")]
    pub prefer: Vec<String>,
    /// Environment variable for the container (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VAL")]
    pub env: Vec<String>,
    /// Higher runs first; equal priority runs oldest first.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub priority: i32,
    /// Retries after a failure or timeout (total attempts = retries + 1).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// Wall-clock limit of one attempt: 30s, 5m, 1h30m.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Label on the task (repeatable): for you and your filters (`tasks --label`);
    /// placement never reads task labels (use --constraint for that).
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Enqueueing again with the same key returns the first task instead of a new one.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Run after these tasks have ended (repeatable, or comma-separated): ID (it must
    /// succeed), ID:notok (it must fail, time out, be lost or cancelled) or ID:any. Ids
    /// may be prefixes. Until then the task is `waiting`; when a parent ends otherwise,
    /// it is cancelled, and so are the tasks after it.
    #[arg(long, value_name = "ID[:ok|notok|any]")]
    pub after: Vec<String>,
    /// Start no earlier than this time (RFC 3339: 2026-12-01T18:00:00Z).
    #[arg(long, value_name = "TIME", conflicts_with = "in_")]
    pub at: Option<String>,
    /// Start no earlier than this long from now: 10m, 2h.
    #[arg(long = "in", value_name = "DURATION")]
    pub in_: Option<String>,
    /// Wait for the task: live status, then its logs; exit with its exit code.
    #[arg(long)]
    pub wait: bool,
    /// Replace the image's entrypoint with this program, as `docker run --entrypoint`
    /// does: one program, its arguments go after `--`. `--entrypoint ''` clears the
    /// image's entrypoint, so the first word after `--` is the program. Default: the
    /// image's own.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Arguments after `--`: the container's command, passed to the image's entrypoint as
    /// in `docker run IMAGE ARGS...` (default: the image's own command). For an image with
    /// no entrypoint (e.g. cloudai/busybox:test) the first one is the program.
    #[arg(last = true, value_name = "ARGS")]
    pub command: Vec<String>,
}
