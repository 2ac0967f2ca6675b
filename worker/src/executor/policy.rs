//! [`ContainerPolicy`]: what containers may do on this worker. Safe by default (no
//! privileged mode, no host network/PID/IPC namespaces, no host bind mounts, a PID limit
//! against fork bombs, a memory limit even for a task that gives none (what placement
//! reserved for it), `no-new-privileges`) and loosened only by the operator's flags on
//! the worker, never by a task. An optional image allow-list (glob patterns) restricts
//! what tasks may run here; a task asking for anything else is rejected with the reason,
//! not silently changed.
//!
//! Containers also run with an init process (`docker run --init`) as PID 1, which forwards
//! signals to the task and reaps zombies: a task that is PID 1 itself gets no default
//! signal handlers, ignores the SIGTERM of a timeout or cancel and is only killed after
//! the stop grace. `--container-no-init` turns it off (not a loosening of any restriction).

use bollard::models::HostConfig;
use cloudai_queue::TaskSpec;

/// Default PID limit per container: room for real programs, none for a fork bomb.
pub const DEFAULT_PIDS_LIMIT: i64 = 1024;

/// Container restrictions of one worker (flags of `cloudai worker`).
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct ContainerPolicy {
    /// Most processes (PIDs) one container may have; 0 removes the limit.
    #[arg(long = "container-pids-limit", env = "CLOUDAI_CONTAINER_PIDS_LIMIT",
          default_value_t = DEFAULT_PIDS_LIMIT)]
    pub pids_limit: i64,

    /// Only images matching one of these glob patterns run here (`*` any text, `?` one
    /// character; a pattern without a tag matches every tag), e.g.
    /// `cloudai/*,registry.example/ml/*`. Default: every image.
    #[arg(
        long = "allowed-images",
        env = "CLOUDAI_ALLOWED_IMAGES",
        value_delimiter = ','
    )]
    pub allowed_images: Vec<String>,

    /// Loosen: run this worker's containers privileged. Default: never.
    #[arg(long = "container-privileged", env = "CLOUDAI_CONTAINER_PRIVILEGED")]
    pub privileged: bool,

    /// Loosen: run this worker's containers in the host's network namespace.
    #[arg(
        long = "container-host-network",
        env = "CLOUDAI_CONTAINER_HOST_NETWORK"
    )]
    pub host_network: bool,

    /// Loosen: run this worker's containers in the host's PID namespace.
    #[arg(long = "container-host-pid", env = "CLOUDAI_CONTAINER_HOST_PID")]
    pub host_pid: bool,

    /// Loosen: run this worker's containers in the host's IPC namespace.
    #[arg(long = "container-host-ipc", env = "CLOUDAI_CONTAINER_HOST_IPC")]
    pub host_ipc: bool,

    /// Loosen: let processes gain privileges (setuid binaries); off = `no-new-privileges`.
    #[arg(
        long = "container-allow-new-privileges",
        env = "CLOUDAI_CONTAINER_ALLOW_NEW_PRIVILEGES"
    )]
    pub allow_new_privileges: bool,

    /// Loosen: bind-mount these host paths into every container (`SRC:DST[:ro]`).
    #[arg(
        long = "container-bind",
        env = "CLOUDAI_CONTAINER_BINDS",
        value_delimiter = ','
    )]
    pub binds: Vec<String>,

    /// Run the task itself as PID 1, without Docker's init process (`docker run --init`).
    /// Default: with one, so the SIGTERM of a timeout or cancel reaches the task; without
    /// it a task that does not handle SIGTERM runs on until the stop grace's SIGKILL.
    #[arg(long = "container-no-init", env = "CLOUDAI_CONTAINER_NO_INIT")]
    pub no_init: bool,
}

impl Default for ContainerPolicy {
    fn default() -> Self {
        ContainerPolicy {
            pids_limit: DEFAULT_PIDS_LIMIT,
            allowed_images: Vec::new(),
            privileged: false,
            host_network: false,
            host_pid: false,
            host_ipc: false,
            allow_new_privileges: false,
            binds: Vec::new(),
            no_init: false,
        }
    }
}

impl ContainerPolicy {
    /// `Err(reason)` when this worker must not run `spec`.
    pub fn check(&self, spec: &TaskSpec) -> Result<(), String> {
        if !self.image_allowed(&spec.image) {
            return Err(format!(
                "image {} is not allowed on this worker (allowed: {})",
                spec.image,
                self.allowed_images.join(", ")
            ));
        }
        Ok(())
    }

    /// True when the allow-list is empty or a pattern matches `image`.
    pub fn image_allowed(&self, image: &str) -> bool {
        self.allowed_images.is_empty()
            || self.allowed_images.iter().any(|p| image_matches(p, image))
    }

    /// The restrictions as Docker host settings, merged into `hc` (which carries the
    /// task's own CPU/memory/GPU requests). A task that gives no memory gets
    /// [`cloudai_queue::DEFAULT_TASK_MEMORY_BYTES`], the amount placement reserved for it
    /// (the master sends it in the spec already; this covers a spec without it).
    pub fn apply(&self, hc: &mut HostConfig) {
        if hc.memory.is_none() {
            hc.memory = Some(cloudai_queue::DEFAULT_TASK_MEMORY_BYTES as i64);
        }
        // Swap as large as memory means "no swap beyond the limit".
        if let Some(m) = hc.memory {
            hc.memory_swap = Some(m);
        }
        hc.pids_limit = (self.pids_limit > 0).then_some(self.pids_limit);
        hc.privileged = Some(self.privileged);
        hc.network_mode = Some(if self.host_network { "host" } else { "bridge" }.into());
        hc.pid_mode = self.host_pid.then(|| "host".into());
        hc.ipc_mode = Some(if self.host_ipc { "host" } else { "private" }.into());
        hc.security_opt =
            (!self.allow_new_privileges).then(|| vec!["no-new-privileges:true".into()]);
        hc.binds = (!self.binds.is_empty()).then(|| self.binds.clone());
        // Explicit either way, so a daemon configured with `"init": true` obeys the flag.
        hc.init = Some(!self.no_init);
        hc.mounts = None;
        hc.volumes_from = None;
        hc.devices = None;
        hc.cap_add = None;
    }

    /// What was loosened, for the worker's start-up log (empty when nothing was). Running
    /// without an init process is not in it: it changes how signals reach the task, not
    /// what the container may do.
    pub fn loosened(&self) -> Vec<&'static str> {
        [
            (self.privileged, "privileged"),
            (self.host_network, "host network"),
            (self.host_pid, "host pid namespace"),
            (self.host_ipc, "host ipc namespace"),
            (self.allow_new_privileges, "new privileges"),
            (!self.binds.is_empty(), "host bind mounts"),
            (self.pids_limit <= 0, "no pid limit"),
        ]
        .into_iter()
        .filter_map(|(on, what)| on.then_some(what))
        .collect()
    }
}

/// True when `image` matches the glob `pattern`. A pattern with no tag or digest also
/// matches the image at any tag or digest.
pub fn image_matches(pattern: &str, image: &str) -> bool {
    if glob(pattern.as_bytes(), image.as_bytes()) {
        return true;
    }
    !has_tag_or_digest(pattern) && glob(pattern.as_bytes(), strip_tag(image).as_bytes())
}

fn has_tag_or_digest(r: &str) -> bool {
    let last = r.rsplit('/').next().unwrap_or(r);
    last.contains(':') || r.contains('@')
}

/// `repo/name:tag` or `repo/name@sha256:…` → `repo/name` (a registry port is kept).
fn strip_tag(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let slash = no_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match no_digest[slash..].find(':') {
        Some(colon) => &no_digest[..slash + colon],
        None => no_digest,
    }
}

/// Glob match with `*` (any run of characters, `/` included) and `?` (one character).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"*", b"anything/at:all"));
        assert!(glob(b"cloudai/*", b"cloudai/busybox:test"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"*/ml/*:v?", b"reg.example:5000/ml/train:v1"));
        assert!(!glob(b"cloudai/*", b"evil/cloudai/x"));
        assert!(glob(b"a*b*c", b"aXXbYYbc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
        assert!(glob(b"", b""));
        assert!(!glob(b"", b"x"));
    }

    #[test]
    fn patterns_without_a_tag_match_every_tag() {
        assert!(image_matches("cloudai/busybox", "cloudai/busybox:test"));
        assert!(image_matches(
            "cloudai/busybox",
            "cloudai/busybox@sha256:abc"
        ));
        assert!(image_matches("cloudai/busybox", "cloudai/busybox"));
        assert!(!image_matches("cloudai/busybox:1", "cloudai/busybox:2"));
        assert!(image_matches("reg:5000/app", "reg:5000/app:v3"));
        assert!(!image_matches(
            "cloudai/busybox",
            "cloudai/busybox-evil:test"
        ));
        assert_eq!(strip_tag("reg:5000/app"), "reg:5000/app");
        assert_eq!(strip_tag("reg:5000/app:v1"), "reg:5000/app");
    }

    #[test]
    fn allow_list_rejects_with_a_reason() {
        let open = ContainerPolicy::default();
        assert!(open.check(&TaskSpec::new("anything:1")).is_ok());
        let strict = ContainerPolicy {
            allowed_images: vec!["cloudai/*".into()],
            ..Default::default()
        };
        assert!(strict.check(&TaskSpec::new("cloudai/busybox:test")).is_ok());
        let why = strict.check(&TaskSpec::new("alpine:3")).unwrap_err();
        assert_eq!(
            why,
            "image alpine:3 is not allowed on this worker (allowed: cloudai/*)"
        );
    }

    #[test]
    fn safe_defaults_become_host_config() {
        let mut hc = HostConfig::default();
        ContainerPolicy::default().apply(&mut hc);
        assert_eq!(hc.pids_limit, Some(DEFAULT_PIDS_LIMIT));
        assert_eq!(
            hc.memory,
            Some(cloudai_queue::DEFAULT_TASK_MEMORY_BYTES as i64),
            "the limit is the memory placement reserves for a task that gives none"
        );
        assert_eq!(hc.memory_swap, hc.memory);
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.network_mode.as_deref(), Some("bridge"));
        assert_eq!(hc.pid_mode, None);
        assert_eq!(hc.ipc_mode.as_deref(), Some("private"));
        assert_eq!(
            hc.security_opt,
            Some(vec!["no-new-privileges:true".to_string()])
        );
        assert_eq!(hc.binds, None);
        assert_eq!(hc.init, Some(true));
        assert!(ContainerPolicy::default().loosened().is_empty());

        let mut asked = HostConfig {
            memory: Some(64 << 20),
            ..Default::default()
        };
        ContainerPolicy::default().apply(&mut asked);
        assert_eq!(asked.memory, Some(64 << 20), "the task's own limit is kept");
    }

    #[test]
    fn flags_loosen_per_worker() {
        let loose = ContainerPolicy {
            pids_limit: 0,
            privileged: true,
            host_network: true,
            host_pid: true,
            host_ipc: true,
            allow_new_privileges: true,
            binds: vec!["/data:/data:ro".into()],
            ..Default::default()
        };
        let mut hc = HostConfig::default();
        loose.apply(&mut hc);
        assert_eq!(hc.pids_limit, None);
        assert_eq!(hc.privileged, Some(true));
        assert_eq!(hc.network_mode.as_deref(), Some("host"));
        assert_eq!(hc.pid_mode.as_deref(), Some("host"));
        assert_eq!(hc.ipc_mode.as_deref(), Some("host"));
        assert_eq!(hc.security_opt, None);
        assert_eq!(hc.binds, Some(vec!["/data:/data:ro".to_string()]));
        assert_eq!(loose.loosened().len(), 7);
        let no_init = ContainerPolicy {
            no_init: true,
            ..Default::default()
        };
        let mut hc = HostConfig::default();
        no_init.apply(&mut hc);
        assert_eq!(hc.init, Some(false));
        assert!(no_init.loosened().is_empty(), "no init is not a loosening");
    }

    #[test]
    fn flags_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            p: ContainerPolicy,
        }
        let d = Cli::try_parse_from(["x"]).unwrap().p;
        assert_eq!(d, ContainerPolicy::default());
        let c = Cli::try_parse_from([
            "x",
            "--container-pids-limit",
            "64",
            "--allowed-images",
            "cloudai/*,alpine",
            "--container-host-network",
        ])
        .unwrap()
        .p;
        assert_eq!(c.pids_limit, 64);
        assert_eq!(c.allowed_images, vec!["cloudai/*", "alpine"]);
        assert!(c.host_network);
        assert!(
            Cli::try_parse_from(["x", "--container-default-memory", "1G"]).is_err(),
            "one number: the master's reservation is the limit"
        );
        assert!(!d.no_init);
        let n = Cli::try_parse_from(["x", "--container-no-init"]).unwrap().p;
        assert!(n.no_init);
    }
}
