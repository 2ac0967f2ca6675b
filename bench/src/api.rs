//! Workload 7, api: the HTTP side of a real master process, one request at a time over a
//! kept-alive loopback connection (a minimal HTTP/1.1 client, [`Http`]).
//!
//! - [`fill`]: a big SQLite store written straight through the store API before the
//!   master starts: tasks with a few images, labels and commands, most queued, some
//!   succeeded, failed (assigned and reported) or cancelled.
//! - [`tasks_page`]: the dashboard's task list (`/api/v1/tasks?limit=50`, filtered,
//!   searched, oldest first, a deep page), the overview's stats and history, and
//!   `/metrics`, on that store with no worker (so every task stays as it was).
//! - [`metrics_under_workers`]: `/metrics` with a fleet of raw simulated workers
//!   ([`crate::sim`]) registered and heartbeating, on an empty store (a queue would be
//!   drained by them).
//!
//! The master runs as a child process, as in [`crate::master`], through the hidden
//! `serve-api-master` subcommand ([`serve_child`]), which also serves HTTP on a loopback
//! port of its own and reports both addresses.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cloudai_master::{http::HttpListen, MasterConfig};
use cloudai_queue::{AttemptEnd, NewTask, ReportBody, ReportEvent, StoreOptions, TaskSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::sim::SimFleet;

/// Requests of each kind sent (and not timed) before the timed ones.
pub const WARMUP: usize = 5;
/// Pages followed before the timed deep page (the dashboard's "Next page" 20 times).
pub const DEEP_PAGE: usize = 20;
/// The free-text needle: in the command of one task in [`NEEDLE_EVERY`], nowhere else.
pub const NEEDLE: &str = "needle-7f3a";
/// One task in this many carries [`NEEDLE`].
pub const NEEDLE_EVERY: usize = 100;
/// The image prefix filtered on (30% of the tasks, see [`spec`]).
pub const IMAGE_PREFIX: &str = "registry.example/web/*";
/// Tasks per `enqueue_batch`.
const CHUNK: usize = 5000;

/// The `i`-th task of the filled store: 40% `ml/train`, 20% `ml/eval`, 30% `web/api`,
/// 10% busybox; three teams, two environments; one command in [`NEEDLE_EVERY`] has the
/// needle.
pub fn spec(i: usize) -> TaskSpec {
    let image = match i % 10 {
        0..=3 => "registry.example/ml/train:v3",
        4 | 5 => "registry.example/ml/eval:v3",
        6..=8 => "registry.example/web/api:1.4",
        _ => "cloudai/busybox:test",
    };
    let mut s = TaskSpec::new(image);
    s.command = if i % NEEDLE_EVERY == 7 {
        vec![
            "python".into(),
            "report.py".into(),
            format!("--tag={NEEDLE}"),
        ]
    } else {
        match i % 3 {
            0 => vec!["python".into(), "train.py".into(), format!("--seed={i}")],
            1 => vec!["sh".into(), "-c".into(), "echo hello && sleep 1".into()],
            _ => Vec::new(),
        }
    };
    s.labels
        .insert("team".into(), ["a", "b", "c"][i % 3].into());
    s.labels.insert(
        "env".into(),
        if i.is_multiple_of(4) { "prod" } else { "dev" }.into(),
    );
    s.resources.cpu_millis = 500;
    s.resources.memory_bytes = 256 << 20;
    s
}

/// What [`fill`] wrote.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filled {
    /// Tasks in the store.
    pub tasks: usize,
    /// Of which succeeded, failed, cancelled (the rest are queued).
    pub succeeded: usize,
    /// Failed (exit 1).
    pub failed: usize,
    /// Cancelled while queued.
    pub cancelled: usize,
    /// Seconds it took (not part of any figure).
    pub secs: f64,
}

/// Writes `n` tasks of [`spec`] into the store at `uri`, then ends one task in
/// `finish_every`: three in four of those succeed, one in eight fails, one in eight is
/// cancelled (each through the store API, as the master would write it).
pub async fn fill(uri: &str, n: usize, finish_every: usize) -> Result<Filled> {
    let t = Instant::now();
    let store = cloudai_queue::open_store(uri, StoreOptions::default())
        .await
        .with_context(|| format!("cannot open store {uri}"))?;
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(CHUNK) {
        let batch: Vec<NewTask> = (start..(start + CHUNK).min(n))
            .map(|i| spec(i).into())
            .collect();
        ids.extend(
            store
                .enqueue_batch(batch)
                .await?
                .into_iter()
                .map(|e| e.task.id),
        );
    }
    let mut f = Filled {
        tasks: n,
        ..Filled::default()
    };
    for (k, &id) in ids.iter().step_by(finish_every.max(1)).skip(1).enumerate() {
        let now = chrono::Utc::now();
        if k % 8 == 3 {
            store.request_cancel(id, now).await?;
            f.cancelled += 1;
            continue;
        }
        let task = store.assign(id, "bench-api", now).await?;
        let code = if k % 8 == 5 { 1 } else { 0 };
        let events = vec![
            ReportEvent {
                seq: 1,
                time: now,
                body: ReportBody::Started {
                    container_id: format!("c-{k}"),
                },
            },
            ReportEvent {
                seq: 2,
                time: chrono::Utc::now(),
                body: ReportBody::Finished(AttemptEnd::Exited(code)),
            },
        ];
        store
            .report(id, task.token(), "bench-api", events, chrono::Utc::now())
            .await?;
        if code == 0 {
            f.succeeded += 1;
        } else {
            f.failed += 1;
        }
    }
    f.secs = t.elapsed().as_secs_f64();
    Ok(f)
}

/// Wall times of one kind of request, in ms, and the size of its last body.
#[derive(Clone, Debug)]
pub struct Timed {
    /// Short name, e.g. "tasks".
    pub name: &'static str,
    /// The path and query asked, as a reader should see it.
    pub label: String,
    /// One per timed request, ms.
    pub ms: Vec<f64>,
    /// Bytes of the last body.
    pub bytes: usize,
}

/// Starts a master on the filled store at `uri` (no worker) and times each request kind
/// `requests` times, after [`WARMUP`] untimed ones.
pub async fn tasks_page(uri: &str, requests: usize) -> Result<Vec<Timed>> {
    let master = ApiMaster::start(uri, Duration::from_secs(5))?;
    let mut http = Http::connect(master.http).await?;
    // The deep page's token: "Next page" followed DEEP_PAGE - 1 times from the first.
    let mut token = String::new();
    for _ in 1..DEEP_PAGE {
        let page: serde_json::Value = serde_json::from_slice(
            &http
                .get_ok(&format!(
                    "/api/v1/tasks?limit=50&page_token={}",
                    encode(&token)
                ))
                .await?,
        )?;
        token = page["next_page_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .context("the task list ended before the deep page")?
            .to_string();
    }
    let deep = format!("/api/v1/tasks?limit=50&page_token={}", encode(&token));
    let kinds: Vec<(&'static str, String)> = vec![
        ("tasks", "/api/v1/tasks?limit=50".into()),
        ("queued", "/api/v1/tasks?status=queued&limit=50".into()),
        ("search", format!("/api/v1/tasks?q={NEEDLE}&limit=50")),
        (
            "search-none",
            "/api/v1/tasks?q=no-such-text&limit=50".into(),
        ),
        (
            "image",
            format!("/api/v1/tasks?image={IMAGE_PREFIX}&limit=50"),
        ),
        ("asc", "/api/v1/tasks?order=asc&limit=50".into()),
        ("deep", deep.clone()),
        ("stats", "/api/v1/queue/stats".into()),
        ("history", "/api/v1/queue/history?minutes=60".into()),
        ("metrics", "/metrics".into()),
    ];
    let mut out = Vec::new();
    for (name, path) in kinds {
        let body: serde_json::Value =
            serde_json::from_slice(&http.get_ok(&path).await?).unwrap_or_default();
        if let Some(tasks) = body.get("tasks").and_then(|t| t.as_array()) {
            let want = if name == "search-none" { 0 } else { 50 };
            if tasks.len() != want {
                bail!("{path} answered {} tasks, not {want}", tasks.len());
            }
        }
        let mut t = time(&mut http, name, &path, requests).await?;
        if path == deep {
            t.label = format!("/api/v1/tasks?limit=50&page_token=<page {DEEP_PAGE}>");
        }
        out.push(t);
    }
    drop(master);
    Ok(out)
}

/// Starts a master on the empty store at `uri`, registers `workers` simulated workers
/// over `connections` connections heartbeating every second, and times `/metrics`.
pub async fn metrics_under_workers(
    uri: &str,
    workers: usize,
    connections: usize,
    requests: usize,
) -> Result<Timed> {
    let heartbeat = Duration::from_secs(1);
    let master = ApiMaster::start(uri, heartbeat)?;
    let fleet = SimFleet::start(&master.url(), workers, connections, heartbeat).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while fleet.counters.registered.load(Ordering::Relaxed) < workers as u64 {
        if Instant::now() > deadline {
            bail!("only some of {workers} simulated workers registered");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every worker heartbeats at least once before the scrapes (its series are complete).
    tokio::time::sleep(heartbeat + Duration::from_millis(200)).await;
    let mut http = Http::connect(master.http).await?;
    let body = http.get_ok("/metrics").await?;
    let series = String::from_utf8_lossy(&body)
        .matches("worker=\"sim-")
        .count();
    if series < workers {
        bail!("/metrics has {series} per-worker series for {workers} workers");
    }
    let r = time(&mut http, "metrics-workers", "/metrics", requests).await;
    fleet.stop().await;
    drop(master);
    r
}

async fn time(http: &mut Http, name: &'static str, path: &str, n: usize) -> Result<Timed> {
    for _ in 0..WARMUP {
        http.get(path).await?;
    }
    let mut ms = Vec::with_capacity(n);
    let mut bytes = 0;
    for _ in 0..n {
        let t = Instant::now();
        let (status, body) = http.get(path).await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if status != 200 {
            bail!(
                "{path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        bytes = body.len();
    }
    Ok(Timed {
        name,
        label: path.to_string(),
        ms,
        bytes,
    })
}

/// Percent-encodes what a page token may hold that a query value may not.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A minimal HTTP/1.1 client on one kept-alive connection: GET, status, body (by
/// `content-length`).
pub struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    /// Connects, retrying for up to 10 s while the master's HTTP listener comes up.
    pub async fn connect(addr: SocketAddr) -> Result<Http> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(Http {
                        stream,
                        buf: Vec::new(),
                    });
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("no HTTP listener at {addr}"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// `GET path`: the status and the whole body.
    pub async fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>)> {
        let req = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: */*\r\n\r\n");
        self.stream.write_all(req.as_bytes()).await?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        self.buf.drain(..head_end + 4);
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line in {head:?}"))?;
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_ascii_lowercase())
            })
        };
        if let Some(len) = header("content-length") {
            let len: usize = len.parse().context("bad content-length")?;
            while self.buf.len() < len {
                self.fill().await?;
            }
            return Ok((status, self.buf.drain(..len).collect()));
        }
        // axum sets it on every body the master sends (JSON and text, known in full).
        bail!("response to {path} has no content-length")
    }

    /// `GET path`, which must answer 200: the body.
    pub async fn get_ok(&mut self, path: &str) -> Result<Vec<u8>> {
        let (status, body) = self.get(path).await?;
        if status != 200 {
            bail!(
                "{path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the master closed the HTTP connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A master process serving gRPC and HTTP on loopback; killed when dropped.
struct ApiMaster {
    grpc: SocketAddr,
    http: SocketAddr,
    child: Child,
    _stdin: ChildStdin,
}

impl ApiMaster {
    fn start(store: &str, heartbeat: Duration) -> Result<ApiMaster> {
        let exe = std::env::current_exe().context("cannot find the bench binary")?;
        let mut child = Command::new(exe)
            .arg("serve-api-master")
            .arg("--store")
            .arg(store)
            .arg("--heartbeat-ms")
            .arg(heartbeat.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the master process")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("master did not report its addresses")?;
        let addrs: Option<(SocketAddr, SocketAddr)> = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|s| s.split_once(' '))
            .and_then(|(g, h)| Some((g.parse().ok()?, h.parse().ok()?)));
        let Some((grpc, http)) = addrs else {
            let _ = child.kill();
            bail!("master did not start: {line:?}");
        };
        Ok(ApiMaster {
            grpc,
            http,
            child,
            _stdin: stdin,
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

impl Drop for ApiMaster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hidden `serve-api-master` subcommand: a master as [`crate::master::serve_child`]
/// serves it, plus HTTP on a free loopback port; prints `LISTENING GRPC HTTP`, serves
/// until stdin closes.
pub fn serve_child(store: &str, heartbeat_ms: u64) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = cloudai_queue::open_store(store, Default::default()).await?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        // A free port for HTTP: taken and let go (the master binds it right after).
        let http = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?;
        println!("LISTENING {} {http}", listener.local_addr()?);
        let config = MasterConfig {
            http_listen: HttpListen::At(http),
            heartbeat_interval: Duration::from_millis(heartbeat_ms),
            reconnect_window: Duration::from_millis(500),
            enqueue_rate: 0,
            ..MasterConfig::default()
        };
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = String::new();
                while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {}
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
    fn the_needle_is_in_one_task_in_a_hundred_and_only_in_its_command() {
        let with: Vec<usize> = (0..1000)
            .filter(|&i| spec(i).command.iter().any(|c| c.contains(NEEDLE)))
            .collect();
        assert_eq!(with.len(), 10);
        assert!((0..1000).all(|i| !spec(i).image.contains(NEEDLE)));
        let web = (0..1000)
            .filter(|&i| {
                spec(i)
                    .image
                    .starts_with(IMAGE_PREFIX.trim_end_matches('*'))
            })
            .count();
        assert_eq!(web, 300);
    }

    #[test]
    fn page_tokens_are_percent_encoded() {
        assert_eq!(encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(encode("01a2-x_y.z~"), "01a2-x_y.z~");
    }
}
