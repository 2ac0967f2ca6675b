//! The chaos test's cluster: a master and workers as real `cloudai` processes on loopback,
//! each with its log in a temp dir, killed with SIGKILL and restarted on demand, and
//! stopped gracefully (SIGTERM) at the end or on drop.

// Shared by chaos.rs and chaos_mongo.rs; each uses a part of it.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_cloudai");

/// Heartbeat interval of the chaos master (short, so deaths are noticed quickly).
pub const HEARTBEAT: &str = "200ms";
/// Missed heartbeats before a worker is dead: 1.6 s, so the workers' lease (2/3 of it)
/// outlives most of the master's short deaths and their containers keep running.
pub const DEAD_AFTER: &str = "8";
/// Reconnect window after a master restart.
pub const RECONNECT_WINDOW: &str = "2s";

/// Time a process gets to start (and install its signal handlers) before a SIGTERM.
const STARTUP: Duration = Duration::from_secs(2);

/// One `cloudai` process and how to start it again.
pub struct Proc {
    pub name: String,
    args: Vec<String>,
    /// The network namespace it runs in (`ip netns exec`), if not the root one.
    netns: Option<String>,
    log: PathBuf,
    child: Option<Child>,
    started_at: Instant,
    /// How many times it was killed with SIGKILL.
    pub kills: u32,
    /// How many times it was frozen with SIGSTOP.
    pub pauses: u32,
}

impl Proc {
    pub fn new(name: &str, args: Vec<String>, dir: &Path) -> Proc {
        Self::new_in(name, None, args, dir)
    }

    /// The same in network namespace `netns` (`ip netns exec`), when given.
    pub fn new_in(name: &str, netns: Option<&str>, args: Vec<String>, dir: &Path) -> Proc {
        let mut p = Proc {
            name: name.to_string(),
            args,
            netns: netns.map(str::to_string),
            log: dir.join(format!("{name}.log")),
            child: None,
            started_at: Instant::now(),
            kills: 0,
            pauses: 0,
        };
        p.start();
        p
    }

    /// Starts the process (appending to its log).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        self.child = Some(child);
        self.started_at = Instant::now();
    }

    /// SIGKILL: no cleanup, no goodbye, exactly like a crashed host.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.kills += 1;
        }
    }

    /// SIGSTOP for `d`, then SIGCONT: a hung host or a long pause. Long enough and the
    /// master declares it dead while it still runs its attempts.
    pub fn pause(&mut self, d: Duration) {
        let Some(c) = &self.child else { return };
        let pid = c.id().to_string();
        let _ = Command::new("kill").args(["-STOP", &pid]).status();
        thread::sleep(d);
        let _ = Command::new("kill").args(["-CONT", &pid]).status();
        self.pauses += 1;
    }

    /// Sends `signal` (e.g. "TERM") and returns at once.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([format!("-{signal}"), c.id().to_string()])
                .status();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`. Returns its exit status
    /// code (None when it had to be killed or died by a signal).
    pub fn stop(&mut self, grace: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        // A SIGTERM before the process installed its handler would kill it outright; a
        // graceful stop is only meaningful once it is up.
        let up = self.started_at.elapsed();
        if up < STARTUP {
            thread::sleep(STARTUP - up);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `n` lines of its log.
    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Proc {
    /// Lines of its log (every run of it) containing `needle`.
    pub fn count_in_log(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Graceful, so a Docker worker removes its containers.
        self.stop(Duration::from_secs(20));
    }
}

/// A master (or a group of masters on one store) and its workers.
pub struct Cluster {
    // Dropped in this order: workers stop first (a Docker worker removes its containers),
    // then the masters, then the directory with the store and the logs.
    pub workers: Vec<Proc>,
    pub masters: Vec<Proc>,
    /// Where each master is reached.
    pub master_urls: Vec<String>,
    store_uri: String,
    pub dir: tempfile::TempDir,
}

/// The arguments of a master on `port` with the store at `uri`, then `extra`.
pub fn master_args(port: u16, uri: &str, extra: &[&str]) -> Vec<String> {
    let listen = format!("127.0.0.1:{port}");
    ["master", "--no-shell", "--listen", &listen, "--store", uri]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
}

/// The chaos master's timing: deaths noticed quickly, restarts reconciled quickly.
const CHAOS_TIMING: &[&str] = &[
    "--heartbeat-interval",
    HEARTBEAT,
    "--dead-after",
    DEAD_AFTER,
    "--reconnect-window",
    RECONNECT_WINDOW,
];

impl Cluster {
    /// Starts a master on a free loopback port with a SQLite store in a temp dir.
    pub fn start_master() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite://{}", dir.path().join("cloudai.db").display());
        Self::start_master_on(dir, uri)
    }

    /// Starts a master on a free loopback port with the store at `uri`; logs go to `dir`.
    pub fn start_master_on(dir: tempfile::TempDir, uri: String) -> Cluster {
        let port = master_port();
        let master = Proc::new("master", master_args(port, &uri, CHAOS_TIMING), dir.path());
        Cluster {
            workers: Vec::new(),
            masters: vec![master],
            master_urls: vec![format!("http://127.0.0.1:{port}")],
            store_uri: uri,
            dir,
        }
    }

    /// Starts `n` masters sharing the store at `uri` (`master1`..), each with `extra`
    /// arguments (and the defaults otherwise, not the chaos timing); the first is started
    /// first, so it usually leads.
    pub fn start_group_on(
        dir: tempfile::TempDir,
        uri: String,
        n: usize,
        extra: &[&str],
    ) -> Cluster {
        let mut masters = Vec::new();
        let mut master_urls = Vec::new();
        for i in 1..=n {
            let port = master_port();
            let name = format!("master{i}");
            masters.push(Proc::new(&name, master_args(port, &uri, extra), dir.path()));
            master_urls.push(format!("http://127.0.0.1:{port}"));
        }
        Self::of(masters, master_urls, uri, dir)
    }

    /// A cluster of masters started by the caller (e.g. in network namespaces).
    pub fn of(
        masters: Vec<Proc>,
        master_urls: Vec<String>,
        store_uri: String,
        dir: tempfile::TempDir,
    ) -> Cluster {
        Cluster {
            workers: Vec::new(),
            masters,
            master_urls,
            store_uri,
            dir,
        }
    }

    /// The first master's URL.
    pub fn url(&self) -> String {
        self.url_of(0)
    }

    /// Master `i`'s URL.
    pub fn url_of(&self, i: usize) -> String {
        self.master_urls[i].clone()
    }

    /// Every master's URL, comma-separated, as workers and clients take them.
    pub fn urls(&self) -> String {
        self.master_urls.join(",")
    }

    pub fn store_uri(&self) -> String {
        self.store_uri.clone()
    }

    /// Starts a worker; `fake` chooses the fake executor over Docker.
    pub fn add_worker(&mut self, id: &str, fake: bool, cpu: &str) {
        let mut args = [
            "worker",
            "--master",
            &self.urls(),
            "--id",
            id,
            "--cpu",
            cpu,
            "--memory",
            "2G",
            "--stop-grace",
            "1s",
        ]
        .map(String::from)
        .to_vec();
        if fake {
            args.push("--fake-executor".into());
        }
        let w = Proc::new(id, args, self.dir.path());
        self.workers.push(w);
    }

    /// Logs of every process, last lines, for a failure message.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for m in &self.masters {
            out += &format!("--- {} ---\n{}\n", m.name, m.tail(60));
        }
        for w in &self.workers {
            out += &format!("--- {} ---\n{}\n", w.name, w.tail(20));
        }
        out
    }
}

/// A free port below Linux's ephemeral range (32768 and up), so that while the master is
/// dead no outgoing connection or `bind(0)` elsewhere can take its port before it restarts.
pub fn master_port() -> u16 {
    let mut rng = Rng(u64::from(std::process::id()) << 32
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64);
    for _ in 0..1000 {
        let port = rng.range(20_000, 32_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// SplitMix64: a tiny seeded generator, so a failing run can be replayed with its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}
