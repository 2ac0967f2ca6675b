//! [`WorkerConfig`]: every setting of a worker, as one typed struct that is also the
//! `cloudai worker` command line (each flag has a `CLOUDAI_*` environment variable).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use cloudai_queue::Resources;

/// Default master address.
pub const DEFAULT_MASTER: &str = "http://127.0.0.1:50051";
/// Default heartbeat interval when the master does not say one.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Default time between the stop signal and the kill.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// Default memory for unacknowledged reports before they spill to disk: 64 MiB.
pub const DEFAULT_MAX_REPORT_MEMORY: u64 = 64 << 20;
/// Default disk for spilled reports: 1 GiB.
pub const DEFAULT_MAX_REPORT_SPILL: u64 = 1 << 30;

/// How a worker runs.
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct WorkerConfig {
    /// Master gRPC address; several, comma-separated, for a group of masters sharing a
    /// store (the worker goes to the one that leads, and fails over to the others).
    #[arg(long, env = "CLOUDAI_MASTER", default_value = DEFAULT_MASTER)]
    pub master: String,

    /// Worker id, unique in the cluster. Default: the host name.
    #[arg(long = "id", env = "CLOUDAI_WORKER_ID")]
    pub id: Option<String>,

    /// Labels as `k=v,...`, for pinning and placement. Default: none.
    #[arg(long, env = "CLOUDAI_WORKER_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// CPU cores offered (e.g. 1.5); caps what the host has. Default: all cores.
    #[arg(long, env = "CLOUDAI_WORKER_CPU", value_parser = parse_cpu)]
    pub cpu: Option<f64>,

    /// Memory offered (e.g. 512M, 2G); caps what the host has. Default: all memory.
    #[arg(long, env = "CLOUDAI_WORKER_MEMORY", value_parser = parse_bytes)]
    pub memory: Option<u64>,

    /// Heartbeat interval (e.g. 5s, 500ms), overriding the master's. Default: the master's
    /// (5s when it gives none).
    #[arg(long, env = "CLOUDAI_WORKER_HEARTBEAT_INTERVAL", value_parser = parse_duration)]
    pub heartbeat_interval: Option<Duration>,

    /// Time a stopping container gets between SIGTERM and SIGKILL.
    #[arg(long, env = "CLOUDAI_WORKER_STOP_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub stop_grace: Duration,

    /// Directory for the worker's own files: reports spilled to disk while the master has
    /// not acknowledged them. Default: `cloudai-worker-<id>` under the system's temporary
    /// directory.
    #[arg(long, env = "CLOUDAI_WORKER_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,

    /// Bytes of unacknowledged reports (output, starts, ends) kept in memory; past it they
    /// spill to files under --data-dir, so a master or store outage loses nothing.
    #[arg(long, env = "CLOUDAI_WORKER_MAX_REPORT_MEMORY", default_value = "64M", value_parser = parse_bytes)]
    pub max_report_memory: u64,

    /// Bytes of spilled reports kept on disk; past it, attempts wait (their output is read
    /// more slowly) until the master acknowledges what it has.
    #[arg(long, env = "CLOUDAI_WORKER_MAX_REPORT_SPILL", default_value = "1G", value_parser = parse_bytes)]
    pub max_report_spill: u64,

    /// Join token sent with the registration, when the master requires one. On a shared
    /// host prefer CLOUDAI_JOIN_TOKEN or --join-token-file: `ps` shows command lines.
    #[arg(
        long,
        visible_alias = "token",
        env = "CLOUDAI_JOIN_TOKEN",
        hide_env_values = true
    )]
    pub join_token: Option<String>,

    /// File holding the join token (its first line; e.g. a mounted secret), instead of
    /// --join-token.
    #[arg(
        long,
        env = "CLOUDAI_JOIN_TOKEN_FILE",
        value_name = "PATH",
        conflicts_with = "join_token"
    )]
    pub join_token_file: Option<std::path::PathBuf>,

    /// PEM CA that signed the master's certificate; needs an `https://` master URL.
    /// Default: none (plain `http://`).
    #[arg(long, env = "CLOUDAI_CA")]
    pub ca: Option<std::path::PathBuf>,

    /// PEM client certificate of this worker, for a master with `--client-ca` (mTLS).
    #[arg(long, env = "CLOUDAI_WORKER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "CLOUDAI_WORKER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// What this worker's containers may do (safe defaults; flags loosen them per worker).
    #[command(flatten)]
    pub container: crate::executor::ContainerPolicy,

    /// Image pulls this worker starts per minute (also the burst after a quiet minute);
    /// more wait their turn. Default: 10.
    #[arg(long, env = "CLOUDAI_WORKER_PULLS_PER_MINUTE",
          default_value_t = NonZeroU32::new(crate::executor::pull_limit::DEFAULT_PULLS_PER_MINUTE).expect("non-zero"))]
    pub pulls_per_minute: NonZeroU32,

    /// Address to serve Prometheus metrics on, as `GET /metrics` (e.g. 127.0.0.1:9102):
    /// running attempts, image pull and container start durations, report re-sends. No
    /// authentication: keep it on loopback or a private network. Default: off (no
    /// listener).
    #[arg(long, env = "CLOUDAI_WORKER_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Exact capacity to report instead of measuring the host (tests and simulations).
    #[arg(skip)]
    pub capacity_override: Option<Resources>,
}

impl WorkerConfig {
    /// A config with every default, dialling `master`: what tests and embedders start from.
    pub fn new(master: impl Into<String>) -> Self {
        WorkerConfig {
            master: master.into(),
            id: None,
            labels: Vec::new(),
            cpu: None,
            memory: None,
            heartbeat_interval: None,
            stop_grace: DEFAULT_STOP_GRACE,
            data_dir: None,
            max_report_memory: DEFAULT_MAX_REPORT_MEMORY,
            max_report_spill: DEFAULT_MAX_REPORT_SPILL,
            join_token: None,
            join_token_file: None,
            ca: None,
            tls_cert: None,
            tls_key: None,
            container: crate::executor::ContainerPolicy::default(),
            pulls_per_minute: NonZeroU32::new(
                crate::executor::pull_limit::DEFAULT_PULLS_PER_MINUTE,
            )
            .expect("non-zero"),
            metrics_listen: None,
            capacity_override: None,
        }
    }

    /// This config with `--join-token-file` read into the join token: the file's first
    /// line, trimmed; an empty or unreadable file is a config error naming it. An empty
    /// `--join-token` (or `CLOUDAI_JOIN_TOKEN=`) is one too.
    pub fn with_join_token_file(mut self) -> Result<Self, crate::WorkerError> {
        if let Some(path) = &self.join_token_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                crate::WorkerError::config("join-token-file", format!("{}: {e}", path.display()))
            })?;
            let token = text.lines().next().unwrap_or("").trim().to_string();
            if token.is_empty() {
                return Err(crate::WorkerError::config(
                    "join-token-file",
                    format!("{} is empty", path.display()),
                ));
            }
            self.join_token = Some(token);
        }
        if self
            .join_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(crate::WorkerError::config(
                "join-token",
                "the join token is empty (--join-token or CLOUDAI_JOIN_TOKEN is set to nothing); \
                 pass the token the master printed, or unset it for a master without auth",
            ));
        }
        Ok(self)
    }

    /// The master URLs, in the order given.
    pub fn master_urls(&self) -> Vec<String> {
        self.master
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The labels as a map (a later duplicate key wins).
    pub fn label_map(&self) -> BTreeMap<String, String> {
        self.labels.iter().cloned().collect()
    }
}

/// Parses one `k=v` label.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not k=v"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("label {s:?} has an empty key"));
    }
    Ok((k.to_string(), v.trim().to_string()))
}

/// Parses a positive, finite number of cores.
pub fn parse_cpu(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("cpu {s:?} is not a number"))?;
    if !v.is_finite() || v <= 0.0 || v > 100_000.0 {
        return Err(format!("cpu {s:?} must be between 0 and 100000 cores"));
    }
    Ok(v)
}

/// Parses a byte size: a number with an optional K, M, G or T suffix (powers of 1024,
/// with or without a trailing `B`/`iB`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    let digits = upper.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &upper[digits.len()..];
    let shift = match unit {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("size {s:?} has an unknown unit (use K, M, G or T)")),
    };
    let n: f64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("size {s:?} is not a number"))?;
    let bytes = n * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes <= 0.0 || bytes >= u64::MAX as f64 {
        return Err(format!("size {s:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// Parses a duration: a number with `ms`, `s`, `m` or `h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: f64 = digits
        .parse()
        .map_err(|_| format!("duration {s:?} is not a number with ms, s, m or h"))?;
    let secs = match &t[digits.len()..] {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "duration {s:?} has an unknown unit (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration {s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        worker: WorkerConfig,
    }

    #[test]
    fn labels_parse_and_reject_garbage() {
        assert_eq!(parse_label("zone=eu"), Ok(("zone".into(), "eu".into())));
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_label("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("=v").is_err());
    }

    #[test]
    fn sizes_cpu_and_durations_parse() {
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("-1G").is_err());
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("0").is_err());
        assert_eq!(parse_cpu("1.5"), Ok(1.5));
        assert!(parse_cpu("0").is_err());
        assert!(parse_cpu("NaN").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn flags_fill_the_struct_and_defaults_match_new() {
        let c = Cli::try_parse_from([
            "w",
            "--master",
            "http://m:1",
            "--id",
            "w1",
            "--labels",
            "zone=eu,gpu=none",
            "--cpu",
            "1.5",
            "--memory",
            "512M",
            "--heartbeat-interval",
            "200ms",
        ])
        .unwrap()
        .worker;
        assert_eq!(c.id.as_deref(), Some("w1"));
        assert_eq!(c.label_map()["zone"], "eu");
        assert_eq!(c.cpu, Some(1.5));
        assert_eq!(c.memory, Some(512 << 20));
        assert_eq!(c.heartbeat_interval, Some(Duration::from_millis(200)));
        assert_eq!(c.stop_grace, DEFAULT_STOP_GRACE);
        let defaults = Cli::try_parse_from(["w"]).unwrap().worker;
        assert_eq!(defaults, WorkerConfig::new(DEFAULT_MASTER));
        assert!(Cli::try_parse_from(["w", "--labels", "bad"]).is_err());
        assert_eq!(
            defaults.metrics_listen, None,
            "no metrics listener unless asked"
        );
        let m = Cli::try_parse_from(["w", "--metrics-listen", "127.0.0.1:9102"])
            .unwrap()
            .worker;
        assert_eq!(m.metrics_listen, Some("127.0.0.1:9102".parse().unwrap()));
        assert!(Cli::try_parse_from(["w", "--metrics-listen", "nowhere"]).is_err());
        let mut g = c.clone();
        g.master = "http://a:1, http://b:2,,http://c:3".into();
        assert_eq!(g.master_urls(), ["http://a:1", "http://b:2", "http://c:3"]);
    }
}
