//! Helpers for the end-to-end tests: run the real `cloudai` binary as processes, with a
//! guard that kills them on drop, temp dirs, free ports, and polling with deadlines.

#![allow(dead_code)]

pub mod http;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cloudai");

/// The generous deadline for anything that involves Docker.
pub const SLOW: Duration = Duration::from_secs(90);

/// A port nothing listens on (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A worker id unique to this test process.
pub fn unique_worker_id(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "e2e-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What a finished command printed and returned.
#[derive(Debug)]
pub struct Out {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Out {
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        &self.stdout
    }

    /// Parses stdout as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Collects a pipe into a shared string on a thread.
fn drain(mut r: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = buf.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => b
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
    });
    buf
}

/// A child process that is killed when dropped.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    /// Starts `cloudai args...` with piped stdio.
    pub fn spawn(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        Self::spawn_program(name, BIN, args, envs)
    }

    /// Starts `program args...` with piped stdio.
    pub fn spawn_program(name: &str, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("CLOUDAI_MASTER")
            .env_remove("CLOUDAI_STORE")
            .env("RUST_LOG", "info");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn cloudai");
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        Proc {
            name: name.into(),
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    /// Everything it printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Everything it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Writes raw bytes to its stdin (keystrokes, for a pseudo-terminal).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).expect("write to stdin");
        stdin.flush().unwrap();
    }

    /// Writes a line to its stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to stdin");
        stdin.flush().unwrap();
    }

    /// Closes its stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits until stdout contains `needle`; panics with both streams after `deadline`.
    pub fn wait_stdout(&self, needle: &str, deadline: Duration) -> String {
        self.wait_stdout_after(0, needle, deadline)
    }

    /// How much it printed on stdout so far: a mark for [`Proc::wait_stdout_after`].
    pub fn mark(&self) -> usize {
        self.stdout.lock().unwrap().len()
    }

    /// Waits until the stdout printed after `mark` contains `needle`; returns that part.
    pub fn wait_stdout_after(&self, mark: usize, needle: &str, deadline: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.stdout()[mark..].to_string();
            if s.contains(needle) {
                return s;
            }
            assert!(
                t0.elapsed() < deadline,
                "{}: {needle:?} not on stdout after {deadline:?}\nstdout:\n{s}\nstderr:\n{}",
                self.name,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for it to exit by itself; returns the exit code.
    pub fn wait_exit(&mut self, deadline: Duration) -> i32 {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Give the pipe readers a moment to see the last bytes.
                thread::sleep(Duration::from_millis(100));
                return st.code().unwrap_or(-1);
            }
            assert!(
                t0.elapsed() < deadline,
                "{} did not exit within {deadline:?}\nstdout:\n{}\nstderr:\n{}",
                self.name,
                self.stdout(),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM (through the `kill` command: no unsafe code here).
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends `signal` (e.g. `-STOP`) through the `kill` command; panics if it fails.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args([signal, &pid]).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill {signal} {pid}");
    }

    /// SIGKILL, as a crashed host: no cleanup, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// True while it runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            // SIGTERM first so a worker removes its containers; then make sure.
            self.terminate();
            let t0 = Instant::now();
            while self.running() && t0.elapsed() < Duration::from_secs(15) {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cloudai args...` to completion (killed after `deadline`), with extra env.
pub fn run_env(args: &[&str], envs: &[(&str, &str)], deadline: Duration) -> Out {
    let mut p = Proc::spawn(&format!("cloudai {}", args.join(" ")), args, envs);
    p.close_stdin();
    let code = p.wait_exit(deadline);
    Out {
        code,
        stdout: p.stdout(),
        stderr: p.stderr(),
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `deadline`.
pub fn eventually<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// A master (and optionally a worker) on loopback, in a temp dir, killed on drop.
pub struct Cluster {
    /// The master's URL.
    pub url: String,
    /// The worker's id.
    pub worker_id: String,
    /// The master process (dropped last: fields drop in order, worker first).
    pub worker: Option<Proc>,
    /// The master process.
    pub master: Proc,
    /// Holds the store file.
    pub dir: tempfile::TempDir,
}

/// Master flags for a test master on `port` with its store in `dir`.
pub fn master_args(port: u16, dir: &Path) -> Vec<String> {
    vec![
        "master".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--store".into(),
        format!("sqlite://{}", dir.join("x.db").display()),
        "--heartbeat-interval".into(),
        "500ms".into(),
    ]
}

impl Cluster {
    /// Starts a master in daemon mode and waits until it answers.
    pub fn master_only() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut args = master_args(port, dir.path());
        args.push("--no-shell".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let master = Proc::spawn("master", &args, &[]);
        let url = format!("http://127.0.0.1:{port}");
        let c = Cluster {
            url,
            worker_id: unique_worker_id("w"),
            worker: None,
            master,
            dir,
        };
        eventually("the master to answer", Duration::from_secs(30), || {
            (c.run(&["queue", "stats"]).code == 0).then_some(())
        });
        c
    }

    /// Starts a master and one Docker worker, and waits until the worker is healthy.
    pub fn with_worker() -> Cluster {
        let mut c = Cluster::master_only();
        c.start_worker();
        c
    }

    /// Starts a master and one fake-executor worker (id `TAG-…`, 500 ms heartbeats), and
    /// waits until the worker is healthy.
    pub fn with_fake_worker(tag: &str) -> Cluster {
        let mut c = Cluster::master_only();
        let id = unique_worker_id(tag);
        c.worker = Some(Proc::spawn(
            "worker",
            &[
                "worker",
                "--fake-executor",
                "--master",
                &c.url,
                "--id",
                &id,
                "--heartbeat-interval",
                "500ms",
            ],
            &[],
        ));
        c.worker_id = id.clone();
        wait_worker_healthy(&c, &id);
        c
    }

    /// Starts the worker and waits for it to be healthy.
    pub fn start_worker(&mut self) {
        let w = Proc::spawn(
            "worker",
            &[
                "worker",
                "--master",
                &self.url,
                "--id",
                &self.worker_id,
                "--heartbeat-interval",
                "500ms",
                "--stop-grace",
                "1s",
            ],
            &[],
        );
        self.worker = Some(w);
        wait_worker_healthy(self, &self.worker_id.clone());
    }

    /// Runs a client command against this master (`CLOUDAI_MASTER` set).
    pub fn run(&self, args: &[&str]) -> Out {
        run_env(args, &[("CLOUDAI_MASTER", &self.url)], SLOW)
    }

    /// The task as `cloudai task <id> --output json` shows it.
    pub fn task_json(&self, id: &str) -> serde_json::Value {
        self.run(&["task", id, "--output", "json"]).json()
    }

    /// Waits until the task's status is `status`.
    pub fn wait_status(&self, id: &str, status: &str) -> serde_json::Value {
        eventually(&format!("task {id} to be {status}"), SLOW, || {
            let t = self.task_json(id);
            (t["status"] == status).then_some(t)
        })
    }
}

/// Adds API user `name` with `role` straight into the store of a master started with
/// `master_args(_, dir)` and `--secret-file dir/secret` (the bootstrap path); its token.
pub fn add_user(dir: &Path, name: &str, role: &str) -> String {
    let store = format!("sqlite://{}", dir.join("x.db").display());
    let secret = dir.join("secret").display().to_string();
    let args = [
        "users",
        "add",
        name,
        "--role",
        role,
        "--store",
        &store,
        "--secret-file",
        &secret,
    ];
    run_env(&args, &[], SLOW).ok().trim().to_string()
}

/// The worker join token a master printed at its first start.
pub fn join_token(master: &Proc) -> String {
    eventually("the master to print the join token", SLOW, || {
        master
            .stdout()
            .lines()
            .find(|l| l.starts_with("caj_"))
            .map(|l| l.trim().to_string())
    })
}

/// Waits until `cloudai workers` shows `id` healthy.
pub fn wait_worker_healthy(c: &Cluster, id: &str) {
    eventually(
        &format!("worker {id} to be healthy"),
        Duration::from_secs(60),
        || {
            let out = c.run(&["workers", "--output", "json"]);
            if out.code != 0 {
                return None;
            }
            let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            v.as_array()?
                .iter()
                .any(|w| w["id"] == id && w["health"] == "healthy")
                .then_some(())
        },
    );
}
