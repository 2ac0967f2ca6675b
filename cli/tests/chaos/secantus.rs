//! A SecantusDB server of a test's own (started with `.ci/secantus.sh --sync-on-commit`),
//! killed and restarted on its data on demand. SecantusDB is GPL and installed at test time
//! only, in a venv; nothing of it is shipped.

// Shared by the Mongo chaos and HA tests; each uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

/// A SecantusDB server of this test's own.
pub struct Server {
    pub port: String,
    dir: String,
    pid: String,
    host: Option<String>,
    pub kills: u32,
}

impl Server {
    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/secantus.sh")
    }

    /// Starts it (on `port` and `dir` when given: a restart), listening on `host` (default
    /// 127.0.0.1; "0.0.0.0" for masters in network namespaces); returns the server.
    pub fn start(port: Option<&str>, dir: Option<&str>, host: Option<&str>) -> Server {
        let out = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(Self::script())
            .arg(out.path())
            .arg("--sync-on-commit")
            .env_remove("SECANTUS_PORT")
            .env_remove("SECANTUS_DIR");
        if let (Some(p), Some(d)) = (port, dir) {
            cmd.env("SECANTUS_PORT", p).env("SECANTUS_DIR", d);
        }
        if let Some(h) = host {
            cmd.env("SECANTUS_HOST", h);
        }
        let st = cmd.status().expect("bash runs .ci/secantus.sh");
        assert!(st.success(), "secantus.sh failed: {st}");
        let text = std::fs::read_to_string(out.path()).unwrap();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {k}=")))
                .unwrap_or_else(|| panic!("{k} in {text}"))
                .to_string()
        };
        let uri = get("CLOUDAI_TEST_MONGODB_URI");
        let port = uri
            .trim_start_matches("mongodb://127.0.0.1:")
            .trim_end_matches('/')
            .to_string();
        Server {
            port,
            dir: get("SECANTUS_DIR"),
            pid: get("SECANTUS_PID"),
            host: host.map(str::to_string),
            kills: 0,
        }
    }

    /// The URI of database `db` on it, over loopback.
    pub fn uri(&self, db: &str) -> String {
        format!("mongodb://127.0.0.1:{}/{db}", self.port)
    }

    /// SIGKILL: the store is gone, mid-transaction or not.
    pub fn kill(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.pid]).status();
        for _ in 0..100 {
            let alive = Command::new("kill")
                .args(["-0", &self.pid])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.kills += 1;
    }

    /// Starts it again on its port and data.
    pub fn restart(&mut self) {
        let host = self.host.clone();
        let mut again = Server::start(Some(&self.port), Some(&self.dir), host.as_deref());
        self.pid = std::mem::take(&mut again.pid);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.pid.is_empty() {
            let _ = Command::new("kill").args(["-TERM", &self.pid]).status();
        }
    }
}
