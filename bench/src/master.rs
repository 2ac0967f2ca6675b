//! The master under test runs in its own process (so its RSS and CPU are its own): this
//! binary re-executes itself with the hidden `serve-master` subcommand, which calls
//! [`cloudai_master::serve`] on a loopback listener and prints the address it bound.
//! The child exits when its stdin closes, so a crashed harness leaves no master behind.
//! A `COMMANDS` line on its stdin makes it print the store commands its client has sent
//! so far (`COMMANDS find=12 update=30 …`, from the store's command monitoring).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cloudai_master::MasterConfig;
use cloudai_proto::pb;
use tonic::transport::{Channel, Endpoint};

/// How the child master is configured.
#[derive(Clone, Debug)]
pub struct MasterOpts {
    /// Store URI (`sqlite:///abs/path.db` or `mongodb://…`).
    pub store: String,
    /// Heartbeat interval the master tells workers.
    pub heartbeat: Duration,
    /// Where to listen; `None`: a free loopback port.
    pub listen: Option<SocketAddr>,
    /// Count the store commands it sends (costs the master CPU on MongoDB).
    pub count_commands: bool,
}

/// A running master process; killed when dropped.
pub struct MasterProc {
    /// Where it serves.
    pub addr: SocketAddr,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl MasterProc {
    /// Starts a master on `opts` and waits until it listens.
    pub fn start(opts: &MasterOpts) -> Result<MasterProc> {
        let exe = std::env::current_exe().context("cannot find the bench binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg("serve-master")
            .arg("--store")
            .arg(&opts.store)
            .arg("--heartbeat-ms")
            .arg(opts.heartbeat.as_millis().to_string());
        if let Some(a) = opts.listen {
            cmd.arg("--listen").arg(a.to_string());
        }
        if opts.count_commands {
            cmd.arg("--count-commands");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the master process")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        stdout
            .read_line(&mut line)
            .context("master did not report its address")?;
        let Some(addr) = line.trim().strip_prefix("LISTENING ") else {
            let _ = child.kill();
            bail!("master did not start: {line:?}");
        };
        Ok(MasterProc {
            addr: addr.parse().context("bad master address")?,
            child,
            stdin,
            stdout,
        })
    }

    /// The store commands the master has sent so far, summed over every command name
    /// (0 for SQLite, which sends none), and by name.
    pub fn store_commands(&mut self) -> Result<(u64, Vec<(String, u64)>)> {
        writeln!(self.stdin, "COMMANDS").context("master stdin")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .context("master did not answer COMMANDS")?;
        parse_commands(&line)
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The master's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A fresh HTTP/2 connection to the master.
    pub async fn channel(&self) -> Result<Channel> {
        Ok(Endpoint::from_shared(self.url())?
            .tcp_nodelay(true)
            .connect()
            .await?)
    }

    /// A client on a fresh connection.
    pub async fn client(&self) -> Result<pb::client_service_client::ClientServiceClient<Channel>> {
        Ok(pb::client_service_client::ClientServiceClient::new(
            self.channel().await?,
        ))
    }

    /// Waits (up to 10 s) until at least one worker is registered, so the first tasks of a
    /// workload do not also measure a worker's start-up; `what` names it in the error.
    pub async fn wait_for_a_worker(&self, what: &str) -> Result<()> {
        let mut client = self.client().await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while client
            .list_workers(pb::ListWorkersRequest {})
            .await?
            .into_inner()
            .workers
            .is_empty()
        {
            if std::time::Instant::now() > deadline {
                bail!("{what} did not register");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Resident and peak resident memory of the master process, in bytes.
    pub fn memory(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        Ok((
            proc_kib(&status, "VmRSS:").unwrap_or(0) * 1024,
            proc_kib(&status, "VmHWM:").unwrap_or(0) * 1024,
        ))
    }

    /// CPU time (user + system) the master has used so far, in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds_of(&self.pid().to_string())
    }
}

/// CPU time (user + system) of process `pid` ("self" for this one), in seconds.
pub fn cpu_seconds_of(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(stat_cpu_ticks(&stat) / 100.0)
}

/// utime + stime (clock ticks) from a `/proc/PID/stat` line.
pub fn stat_cpu_ticks(stat: &str) -> f64 {
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
}

impl Drop for MasterProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The total and the counts of a `COMMANDS name=n …` line.
pub fn parse_commands(line: &str) -> Result<(u64, Vec<(String, u64)>)> {
    let Some(rest) = line.trim().strip_prefix("COMMANDS") else {
        bail!("not a COMMANDS line: {line:?}");
    };
    let mut counts = Vec::new();
    for pair in rest.split_whitespace() {
        let (name, n) = pair
            .split_once('=')
            .with_context(|| format!("bad count {pair:?}"))?;
        counts.push((name.to_string(), n.parse()?));
    }
    Ok((counts.iter().map(|(_, n)| n).sum(), counts))
}

/// A `/proc/PID/status` field in KiB.
pub fn proc_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The hidden `serve-master` subcommand: serves until stdin closes.
pub fn serve_child(
    store: &str,
    heartbeat_ms: u64,
    listen: Option<SocketAddr>,
    count_commands: bool,
) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let opts = cloudai_queue::StoreOptions {
            count_commands,
            ..Default::default()
        };
        let store = cloudai_queue::open_store(store, opts).await?;
        let at = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(at).await?;
        println!("LISTENING {}", listener.local_addr()?);
        let config = MasterConfig {
            heartbeat_interval: Duration::from_millis(heartbeat_ms),
            reconnect_window: Duration::from_millis(500),
            // A benchmark measures raw capacity: no per-client enqueue rate limit.
            enqueue_rate: 0,
            ..MasterConfig::default()
        };
        let counted = store.clone();
        let stdin_closed = async move {
            let _ = tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {
                    if line.trim() == "COMMANDS" {
                        let counts: Vec<String> = counted
                            .commands_sent()
                            .iter()
                            .map(|(name, n)| format!("{name}={n}"))
                            .collect();
                        println!("COMMANDS {}", counts.join(" "));
                    }
                    line.clear();
                }
            })
            .await;
        };
        cloudai_master::serve(listener, stdin_closed, store, config).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_command_counts() {
        let (total, by) = parse_commands("COMMANDS find=3 update=5\n").unwrap();
        assert_eq!(total, 8);
        assert_eq!(by, vec![("find".into(), 3), ("update".into(), 5)]);
        assert_eq!(parse_commands("COMMANDS\n").unwrap().0, 0);
        assert!(parse_commands("LISTENING x").is_err());
        assert!(parse_commands("COMMANDS find=x").is_err());
    }

    #[test]
    fn reads_proc_status_fields() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(proc_kib(s, "VmRSS:"), Some(1024));
        assert_eq!(proc_kib(s, "VmHWM:"), Some(2048));
        assert_eq!(proc_kib(s, "VmSwap:"), None);
    }

    #[test]
    fn reads_cpu_ticks_past_a_command_with_spaces() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(stat_cpu_ticks(stat), 300.0);
    }
}
