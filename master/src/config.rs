//! [`MasterConfig`]: every knob of the master in one typed struct, parsed by clap with a
//! `CLOUDAI_*` environment variable per flag. Defaults are the `DEFAULT_*` constants below.

use std::net::SocketAddr;
use std::time::Duration;

/// Default listen address: loopback, the conventional gRPC port. Loopback is local-dev
/// mode (no auth); listening on another address requires tokens (see `auth`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default heartbeat interval told to workers: 5 s.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Default number of missed heartbeat intervals before a worker is declared dead.
pub const DEFAULT_DEAD_AFTER: u32 = 3;
/// Default reconnect window after a master start: 30 s, enough for workers with the
/// default heartbeat (5 s) and reconnect backoff to find the new master.
pub const DEFAULT_RECONNECT_WINDOW: Duration = Duration::from_secs(30);
/// Default of `--starvation-after`.
pub const DEFAULT_STARVATION_AFTER: Duration = Duration::from_secs(30);
/// Default gRPC message size limit, both directions: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Default enqueue rate per client: 1000 tasks/s, generous for people and scripts, a
/// ceiling for a runaway loop.
pub const DEFAULT_ENQUEUE_RATE: u32 = 1000;
/// Default enqueue burst per client: 10 000 tasks (also the largest batch accepted).
pub const DEFAULT_ENQUEUE_BURST: u32 = 10_000;
/// Default longest wait of a client call for the store: 5 s.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default leader lease TTL: 5 s.
pub const DEFAULT_LEADER_TTL: Duration = Duration::from_secs(5);
/// Default campaign period: 1 s.
pub const DEFAULT_LEADER_RENEW: Duration = Duration::from_secs(1);

/// How the dispatcher chooses among workers that fit a task (see `PLACEMENT.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PlacementPolicy {
    /// The worker left with the least free capacity after placing (packs workers, keeps
    /// big holes for big tasks). The default.
    #[default]
    BestFit,
    /// The worker with the most free capacity (spreads load evenly).
    Spread,
}

/// How the dispatcher shares the cluster between submitters at equal priority
/// (PLACEMENT.md, "Fair share and quotas").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FairShare {
    /// Dominant resource fairness: the submitter holding the smallest share of its most
    /// used resource goes next. The default.
    #[default]
    Drf,
    /// Oldest first, whoever enqueued it.
    Off,
}

/// Configuration of `cloudai master`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct MasterConfig {
    /// Address to listen on for workers, clients and agents.
    #[arg(long, env = "CLOUDAI_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// HTTP address for /metrics (Prometheus): HOST:PORT, or `off`. Default 127.0.0.1:8080
    /// when that port is free (a second master on the host then serves no HTTP, and says
    /// so). The gRPC port's auth rules apply: with auth required a scrape needs a token;
    /// without auth only loopback is served.
    #[arg(long, env = "CLOUDAI_HTTP_LISTEN", value_name = "ADDR|off",
          value_parser = crate::http::parse_http_listen, default_value = "default", hide_default_value = true)]
    pub http_listen: crate::http::HttpListen,

    /// Store URI: `sqlite://PATH` (relative), `sqlite:///ABS/PATH`, or `mongodb://…`.
    #[arg(long, env = "CLOUDAI_STORE", default_value = cloudai_queue::DEFAULT_STORE_URI)]
    pub store: String,

    /// How often workers send heartbeats (e.g. `5s`, `500ms`).
    #[arg(long, env = "CLOUDAI_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Missed heartbeat intervals after which a worker is dead and its attempts are lost.
    #[arg(long, env = "CLOUDAI_DEAD_AFTER", default_value_t = DEFAULT_DEAD_AFTER,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub dead_after: u32,

    /// Placement policy among workers that fit a task.
    #[arg(long, env = "CLOUDAI_PLACEMENT", value_enum, default_value_t = PlacementPolicy::BestFit)]
    pub placement: PlacementPolicy,

    /// Fair share between submitters at equal priority: `drf` (each submitter's turn by
    /// its dominant share of the cluster) or `off` (oldest first). Quotas apply either way.
    #[arg(long, env = "CLOUDAI_FAIR_SHARE", value_enum, default_value_t = FairShare::Drf)]
    pub fair_share: FairShare,

    /// No starvation: once the first task in dispatch order that fits no free room has
    /// waited this long since its enqueue, the worker closest to fitting it is held for
    /// it and gets nothing else until it starts (PLACEMENT.md). 0 turns it off: smaller
    /// tasks may then pass a big one forever (pure backfill).
    #[arg(long, env = "CLOUDAI_STARVATION_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub starvation_after: Duration,

    /// After a master start, how long workers known from the store have to reconnect
    /// before their attempts are declared lost.
    #[arg(long, env = "CLOUDAI_RECONNECT_WINDOW", default_value = "30s", value_parser = parse_duration)]
    pub reconnect_window: Duration,

    /// Leave placement to an external agent: the built-in dispatcher assigns nothing and
    /// only `AgentService.SubmitAssignments` does. Default: off.
    #[arg(long, env = "CLOUDAI_AGENT_ONLY")]
    pub agent_only: bool,

    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "CLOUDAI_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Tasks per second one client (its user, or else its IP address) may enqueue; over it,
    /// `RESOURCE_EXHAUSTED` says when to retry. 0 turns the limit off.
    #[arg(long, env = "CLOUDAI_ENQUEUE_RATE", default_value_t = DEFAULT_ENQUEUE_RATE)]
    pub enqueue_rate: u32,

    /// Tasks one client may enqueue at once above its rate (the largest batch accepted).
    #[arg(long, env = "CLOUDAI_ENQUEUE_BURST", default_value_t = DEFAULT_ENQUEUE_BURST)]
    pub enqueue_burst: u32,

    /// Most tasks queued at once, all clients together; over it, enqueue is refused with
    /// `RESOURCE_EXHAUSTED`. Default: no cap.
    #[arg(long, env = "CLOUDAI_MAX_QUEUED")]
    pub max_queued: Option<u64>,

    /// Count the store commands this master sends, by name, as
    /// `cloudai_store_commands_total{command}` on /metrics (MongoDB only). Off by default:
    /// the driver's command monitoring costs ~12 % of a busy master's CPU.
    #[arg(long, env = "CLOUDAI_COUNT_STORE_COMMANDS")]
    pub count_store_commands: bool,

    /// This master's id among the masters that share a store. Default: `<host>:<port>` of
    /// --listen (the host name when it listens on every address).
    #[arg(long, env = "CLOUDAI_MASTER_ID")]
    pub master_id: Option<String>,

    /// The URL workers and clients reach this master at, given to them when another master
    /// sends them here. Default: `http(s)://<host>:<port>` of --listen (the host name when
    /// it listens on every address).
    #[arg(long, env = "CLOUDAI_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// How long the leader's lease holds without a renewal; a standby takes over once it
    /// has seen the lease go this long unrenewed. Default: 5s.
    #[arg(long, env = "CLOUDAI_LEADER_TTL", default_value = "5s", value_parser = parse_duration)]
    pub leader_ttl: Duration,

    /// How often every master campaigns (the leader renews, standbys watch). Default: 1s.
    #[arg(long, env = "CLOUDAI_LEADER_RENEW", default_value = "1s", value_parser = parse_duration)]
    pub leader_renew: Duration,

    /// Longest a client call (enqueue, get, list, cancel, logs, stats) waits for the store;
    /// past it the call fails with UNAVAILABLE and says so, instead of hanging while the
    /// store is down. Writes about attempts are not bound by it: they are retried until
    /// stored.
    #[arg(long, env = "CLOUDAI_STORE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub store_timeout: Duration,

    /// Log bytes kept per task; beyond it the oldest output is dropped and a marker says
    /// how much. Default: 10 MiB.
    #[arg(long, env = "CLOUDAI_MAX_LOG_BYTES_PER_TASK",
          default_value_t = cloudai_queue::store::DEFAULT_MAX_LOG_BYTES_PER_TASK)]
    pub max_log_bytes_per_task: u64,

    /// Authentication and TLS (see `auth`).
    #[command(flatten)]
    pub security: crate::auth::SecurityConfig,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            http_listen: crate::http::HttpListen::Default,
            store: cloudai_queue::DEFAULT_STORE_URI.to_string(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            dead_after: DEFAULT_DEAD_AFTER,
            placement: PlacementPolicy::BestFit,
            fair_share: FairShare::Drf,
            starvation_after: DEFAULT_STARVATION_AFTER,
            reconnect_window: DEFAULT_RECONNECT_WINDOW,
            agent_only: false,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            enqueue_rate: DEFAULT_ENQUEUE_RATE,
            enqueue_burst: DEFAULT_ENQUEUE_BURST,
            max_queued: None,
            count_store_commands: false,
            store_timeout: DEFAULT_STORE_TIMEOUT,
            master_id: None,
            advertise_url: None,
            leader_ttl: DEFAULT_LEADER_TTL,
            leader_renew: DEFAULT_LEADER_RENEW,
            max_log_bytes_per_task: cloudai_queue::store::DEFAULT_MAX_LOG_BYTES_PER_TASK,
            security: crate::auth::SecurityConfig::default(),
        }
    }
}

impl MasterConfig {
    /// Settings that cannot work together, named: `Err` says which and why.
    pub fn check(&self) -> Result<(), String> {
        if self.leader_renew.saturating_mul(3) > self.leader_ttl {
            return Err(format!(
                "--leader-renew ({:?}) must be at most a third of --leader-ttl ({:?}): the leader needs several tries to renew before its lease runs out",
                self.leader_renew, self.leader_ttl
            ));
        }
        self.security.check_files()
    }

    /// Time without a heartbeat after which a worker is dead.
    pub fn dead_timeout(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(self.dead_after)
    }

    /// The lease granted to workers: they may run attempts while their last acknowledged
    /// heartbeat was sent less than this long ago. Two thirds of the dead timeout (10 s by
    /// default), so that a cut-off worker has stopped its containers, within
    /// [`MasterConfig::worker_stop_within`], before the master may declare it dead and run
    /// them elsewhere (PROTOCOL.md, "The lease").
    pub fn worker_lease(&self) -> Duration {
        self.dead_timeout() * 2 / 3
    }

    /// What is left of the dead timeout after the lease: the time a worker has to stop its
    /// containers (5 s by default).
    pub fn worker_stop_within(&self) -> Duration {
        self.dead_timeout().saturating_sub(self.worker_lease())
    }

    /// This master's id: `--master-id`, else `<host>:<port>` of the listen address.
    pub fn master_id(&self) -> String {
        self.master_id
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.advertised_host(), self.listen.port()))
    }

    /// This master's URL: `--advertise-url`, else from the listen address.
    pub fn advertised_url(&self) -> String {
        self.advertise_url.clone().unwrap_or_else(|| {
            let scheme = if self.security.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!(
                "{scheme}://{}:{}",
                self.advertised_host(),
                self.listen.port()
            )
        })
    }

    /// The listen address's host, or the host name when it listens on every address.
    fn advertised_host(&self) -> String {
        let ip = self.listen.ip();
        if ip.is_unspecified() {
            sysinfo::System::host_name().unwrap_or_else(|| "localhost".into())
        } else if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        }
    }

    /// What the store must honour for this master (the log cap, the queue cap).
    pub fn store_options(&self) -> cloudai_queue::StoreOptions {
        cloudai_queue::StoreOptions {
            max_log_bytes_per_task: self.max_log_bytes_per_task,
            max_queued: self.max_queued,
            count_commands: self.count_store_commands,
        }
    }
}

/// Parses `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 5s, 2m or 1h"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ))
        }
    };
    if d.is_zero() {
        return Err("duration must be greater than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        master: MasterConfig,
    }

    #[test]
    fn defaults_match_the_documented_constants() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.master, MasterConfig::default());
        assert_eq!(cli.master.dead_timeout(), Duration::from_secs(15));
        assert_eq!(cli.master.worker_lease(), Duration::from_secs(10));
        assert_eq!(cli.master.worker_stop_within(), Duration::from_secs(5));
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::try_parse_from([
            "x",
            "--listen",
            "127.0.0.1:1",
            "--heartbeat-interval",
            "200ms",
            "--dead-after",
            "2",
            "--placement",
            "spread",
            "--reconnect-window",
            "1m",
        ])
        .unwrap();
        assert_eq!(cli.master.listen.port(), 1);
        assert_eq!(cli.master.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(cli.master.dead_after, 2);
        assert_eq!(cli.master.placement, PlacementPolicy::Spread);
        assert_eq!(cli.master.reconnect_window, Duration::from_secs(60));
        assert!(Cli::try_parse_from(["x", "--dead-after", "0"]).is_err());
    }

    #[test]
    fn limit_flags_fill_the_config_and_the_store_options() {
        let cli = Cli::try_parse_from([
            "x",
            "--enqueue-rate",
            "5",
            "--enqueue-burst",
            "7",
            "--max-queued",
            "100",
            "--max-log-bytes-per-task",
            "1024",
        ])
        .unwrap();
        let c = cli.master;
        assert_eq!(
            (c.enqueue_rate, c.enqueue_burst, c.max_queued),
            (5, 7, Some(100))
        );
        assert_eq!(c.store_options().max_log_bytes_per_task, 1024);
        assert_eq!(c.store_options().max_queued, Some(100));
        let d = MasterConfig::default();
        assert_eq!(d.max_queued, None);
        assert_eq!(d.store_options(), cloudai_queue::StoreOptions::default());
    }

    #[test]
    fn durations_parse_and_reject_garbage() {
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "s", "5x", "-1s", "0s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
