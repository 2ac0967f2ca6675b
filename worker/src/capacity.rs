//! What this host offers (CPU, memory, disk, GPUs), capped by the operator's flags, and
//! the usage telemetry sent with each heartbeat. Measuring is IO; capping and parsing are
//! pure and unit-tested.

use std::path::Path;
use std::time::Duration;

use cloudai_queue::Resources;
use sysinfo::{Disks, System};

use crate::config::WorkerConfig;

/// Where Docker keeps images and containers: the disk that matters for tasks.
const DOCKER_ROOT: &str = "/var/lib/docker";

/// GPUs of the host: how many, which model, and each device (empty when none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuInfo {
    /// Number of GPUs.
    pub count: u32,
    /// Model name of the first GPU.
    pub model: String,
    /// Memory of the first GPU in MiB (0 when unknown or none).
    pub memory_mib: u64,
    /// Each device, by index; empty when they could not all be told apart by UUID (the
    /// master then sends GPU tasks here by count, and Docker picks the devices).
    pub devices: Vec<GpuDevice>,
}

/// One GPU as `nvidia-smi` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuDevice {
    /// Its index on the host.
    pub index: u32,
    /// Its `GPU-...` UUID: what the master assigns and Docker's `DeviceIDs` take.
    pub uuid: String,
    /// Model name.
    pub model: String,
    /// Memory in MiB (0 when unknown).
    pub memory_mib: u64,
}

impl GpuInfo {
    /// At most the first `n` GPUs (the operator's `--capacity` gave fewer than found);
    /// devices are dropped when there are fewer than `n` of them to name.
    pub fn limited_to(mut self, n: u32) -> GpuInfo {
        if n == 0 {
            return GpuInfo::default();
        }
        if self.devices.len() < n as usize {
            self.devices.clear();
        }
        self.devices.truncate(n as usize);
        GpuInfo { count: n, ..self }
    }
}

/// A heartbeat's usage sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// Host CPU busy, 0..100.
    pub cpu_percent: f64,
    /// Memory in use.
    pub memory_used_bytes: u64,
    /// Memory installed.
    pub memory_total_bytes: u64,
}

/// Caps measured resources by the `--cpu` (cores) and `--memory` (bytes) flags; a flag
/// can only lower what the host has.
pub fn cap(measured: Resources, cpu_cores: Option<f64>, memory: Option<u64>) -> Resources {
    let mut r = measured;
    if let Some(cores) = cpu_cores {
        r.cpu_millis = r.cpu_millis.min((cores * 1000.0).round() as u64);
    }
    if let Some(mem) = memory {
        r.memory_bytes = r.memory_bytes.min(mem);
    }
    r
}

/// The query `detect_gpus` runs: one line per GPU, `INDEX, UUID, NAME, MEMORY_MIB`.
pub const NVIDIA_SMI_ARGS: [&str; 2] = [
    "--query-gpu=index,uuid,name,memory.total",
    "--format=csv,noheader,nounits",
];

/// Parses the output of `nvidia-smi` run with [`NVIDIA_SMI_ARGS`]: one `index, uuid,
/// name, memory` line per GPU (a model name may itself hold commas: the index and UUID
/// are before the first two, the memory after the last). A line that does not have
/// that shape still counts as a GPU, but then no device is named (count only).
pub fn parse_nvidia_smi(output: &str) -> GpuInfo {
    let lines: Vec<Option<GpuDevice>> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(parse_device)
        .collect();
    let devices: Option<Vec<GpuDevice>> = lines.iter().cloned().collect();
    let first = lines.first().cloned().flatten().unwrap_or_default();
    GpuInfo {
        count: lines.len() as u32,
        model: first.model,
        memory_mib: first.memory_mib,
        devices: devices.unwrap_or_default(),
    }
}

fn parse_device(line: &str) -> Option<GpuDevice> {
    let (index, rest) = line.split_once(',')?;
    let (uuid, rest) = rest.split_once(',')?;
    let (model, mem) = rest.rsplit_once(',').unwrap_or((rest, ""));
    let uuid = uuid.trim();
    if uuid.is_empty() || uuid.contains(char::is_whitespace) {
        return None;
    }
    Some(GpuDevice {
        index: index.trim().parse().ok()?,
        uuid: uuid.to_string(),
        model: model.trim().to_string(),
        memory_mib: mem.trim().parse().unwrap_or(0),
    })
}

/// Asks `nvidia-smi` (from PATH) for the GPUs; no GPUs when it is absent, fails or hangs.
pub async fn detect_gpus() -> GpuInfo {
    detect_gpus_with(Path::new("nvidia-smi")).await
}

/// [`detect_gpus`] with the program given (tests use a fake one).
pub async fn detect_gpus_with(program: &Path) -> GpuInfo {
    let run = tokio::process::Command::new(program)
        .args(NVIDIA_SMI_ARGS)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(out)) if out.status.success() => {
            parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout))
        }
        _ => GpuInfo::default(),
    }
}

/// The built-in attributes this worker registers with (`cloudai_queue::constraint::
/// BUILTIN_ATTRIBUTES`): `os` and `arch` as Rust names them (`linux`, `x86_64`,
/// `aarch64`), `hostname`, `docker.version` when the daemon answered, and `gpu.model`
/// and `gpu.memory` (MiB) of the first GPU when there is one.
pub fn attributes(
    hostname: &str,
    docker_version: Option<&str>,
    gpu: &GpuInfo,
) -> std::collections::BTreeMap<String, String> {
    let mut a = std::collections::BTreeMap::new();
    a.insert("os".into(), std::env::consts::OS.into());
    a.insert("arch".into(), std::env::consts::ARCH.into());
    a.insert("hostname".into(), hostname.into());
    if let Some(v) = docker_version.filter(|v| !v.is_empty()) {
        a.insert("docker.version".into(), v.into());
    }
    if gpu.count > 0 && !gpu.model.is_empty() {
        a.insert("gpu.model".into(), gpu.model.clone());
        if gpu.memory_mib > 0 {
            a.insert("gpu.memory".into(), gpu.memory_mib.to_string());
        }
    }
    a
}

/// The disk whose mount point is the longest prefix of `path`, by available bytes.
fn disk_available(disks: &[(String, u64)], path: &str) -> u64 {
    disks
        .iter()
        .filter(|(mount, _)| Path::new(path).starts_with(mount))
        .max_by_key(|(mount, _)| mount.len())
        .map(|(_, avail)| *avail)
        .unwrap_or(0)
}

/// Measures the host: all cores, all memory, free disk under Docker's root.
pub fn measure_host() -> Resources {
    let mut sys = System::new();
    sys.refresh_cpu_all();
    sys.refresh_memory();
    let disks = Disks::new_with_refreshed_list();
    let disks: Vec<(String, u64)> = disks
        .list()
        .iter()
        .map(|d| {
            (
                d.mount_point().to_string_lossy().into_owned(),
                d.available_space(),
            )
        })
        .collect();
    Resources {
        cpu_millis: sys.cpus().len() as u64 * 1000,
        memory_bytes: sys.total_memory(),
        gpus: 0,
        disk_bytes: disk_available(&disks, DOCKER_ROOT),
    }
}

/// The capacity to register with: the override if the config has one, otherwise the
/// measured host capped by the flags, with the detected GPUs.
pub async fn capacity(config: &WorkerConfig) -> (Resources, GpuInfo) {
    let gpu = detect_gpus().await;
    if let Some(r) = config.capacity_override {
        return (r, gpu.limited_to(r.gpus));
    }
    let mut r = tokio::task::spawn_blocking(measure_host)
        .await
        .unwrap_or_default();
    r.gpus = gpu.count;
    (cap(r, config.cpu, config.memory), gpu)
}

/// Samples host usage for heartbeats. Keeps its `System` so CPU % is measured over the
/// time since the previous sample.
pub struct Telemetry {
    sys: System,
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut sys = System::new();
        sys.refresh_cpu_usage();
        Telemetry { sys }
    }
}

impl Telemetry {
    /// Takes a sample.
    pub fn sample(&mut self) -> Usage {
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        Usage {
            cpu_percent: f64::from(self.sys.global_cpu_usage()).clamp(0.0, 100.0),
            memory_used_bytes: self.sys.used_memory(),
            memory_total_bytes: self.sys.total_memory(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_only_lower_capacity() {
        let host = Resources {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            gpus: 1,
            disk_bytes: 100,
        };
        let capped = cap(host, Some(1.5), Some(512 << 20));
        assert_eq!(capped.cpu_millis, 1500);
        assert_eq!(capped.memory_bytes, 512 << 20);
        assert_eq!((capped.gpus, capped.disk_bytes), (1, 100));
        let not_raised = cap(host, Some(64.0), Some(1 << 40));
        assert_eq!(not_raised, host);
        assert_eq!(cap(host, None, None), host);
    }

    #[test]
    fn nvidia_smi_output_gives_each_device() {
        let g = parse_nvidia_smi(
            "0, GPU-aaaa-1, NVIDIA A100-SXM4-40GB, 40960\n1, GPU-bbbb-2, NVIDIA A100-SXM4-40GB, 40960\n",
        );
        assert_eq!(g.count, 2);
        assert_eq!(g.model, "NVIDIA A100-SXM4-40GB");
        assert_eq!(g.memory_mib, 40960);
        let ids: Vec<(u32, &str)> = g
            .devices
            .iter()
            .map(|d| (d.index, d.uuid.as_str()))
            .collect();
        assert_eq!(ids, vec![(0, "GPU-aaaa-1"), (1, "GPU-bbbb-2")]);
        let odd = parse_nvidia_smi("0, GPU-k, Tesla K80, rev 2, 11441\n");
        assert_eq!(
            (odd.model.as_str(), odd.memory_mib),
            ("Tesla K80, rev 2", 11441)
        );
        let no_mem = parse_nvidia_smi("0, GPU-t, Tesla T4, [N/A]\n");
        assert_eq!((no_mem.count, no_mem.memory_mib), (1, 0));
        assert_eq!(no_mem.devices.len(), 1);
        // One line without an index and UUID: still two GPUs, but none is named.
        let unnamed = parse_nvidia_smi("0, GPU-a, T4, 15360\nT4, 15360\n");
        assert_eq!((unnamed.count, unnamed.devices.len()), (2, 0));
        assert_eq!(parse_nvidia_smi(""), GpuInfo::default());
        assert_eq!(parse_nvidia_smi("\n  \n").count, 0);
    }

    #[test]
    fn a_capacity_override_keeps_the_first_devices() {
        let g = parse_nvidia_smi("0, GPU-a, T4, 1\n1, GPU-b, T4, 1\n2, GPU-c, T4, 1\n");
        let two = g.clone().limited_to(2);
        assert_eq!(two.count, 2);
        assert_eq!(
            two.devices
                .iter()
                .map(|d| d.uuid.as_str())
                .collect::<Vec<_>>(),
            ["GPU-a", "GPU-b"]
        );
        let more = g.clone().limited_to(5);
        assert_eq!(
            (more.count, more.devices.len()),
            (5, 0),
            "more than can be named"
        );
        assert_eq!(g.limited_to(0), GpuInfo::default());
    }

    /// A fake `nvidia-smi` that answers only the query the worker makes, and one that
    /// fails: discovery reads the first, and reports no GPUs for the second.
    #[tokio::test]
    async fn discovery_runs_nvidia_smi_with_its_query() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("nvidia-smi");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\n[ \"$1 $2\" = \"{} {}\" ] || exit 9\n\
                 echo '0, GPU-5f1c, NVIDIA H100 80GB HBM3, 81559'\n\
                 echo '1, GPU-9e0d, NVIDIA H100 80GB HBM3, 81559'\n",
                NVIDIA_SMI_ARGS[0], NVIDIA_SMI_ARGS[1]
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let g = detect_gpus_with(&fake).await;
        assert_eq!(
            (g.count, g.model.as_str(), g.memory_mib),
            (2, "NVIDIA H100 80GB HBM3", 81559)
        );
        assert_eq!(g.devices[1].uuid, "GPU-9e0d");
        let failing = dir.path().join("broken");
        std::fs::write(&failing, "#!/bin/sh\nexit 1\n").unwrap();
        std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(detect_gpus_with(&failing).await, GpuInfo::default());
        assert_eq!(
            detect_gpus_with(&dir.path().join("absent")).await,
            GpuInfo::default()
        );
    }

    #[test]
    fn attributes_name_the_host_and_its_first_gpu() {
        let none = attributes("h1", None, &GpuInfo::default());
        assert_eq!(none["hostname"], "h1");
        assert_eq!(none["os"], std::env::consts::OS);
        assert_eq!(none["arch"], std::env::consts::ARCH);
        assert!(!none.contains_key("docker.version") && !none.contains_key("gpu.model"));
        let gpu = GpuInfo {
            count: 1,
            model: "NVIDIA A100".into(),
            memory_mib: 40960,
            devices: Vec::new(),
        };
        let a = attributes("h1", Some("20.10.24"), &gpu);
        assert_eq!(a["docker.version"], "20.10.24");
        assert_eq!(a["gpu.model"], "NVIDIA A100");
        assert_eq!(a["gpu.memory"], "40960");
        for k in a.keys() {
            assert!(
                cloudai_queue::constraint::BUILTIN_ATTRIBUTES.contains(&k.as_str()),
                "{k} is documented as built-in"
            );
        }
    }

    #[test]
    fn disk_is_the_longest_matching_mount() {
        let disks = vec![
            ("/".to_string(), 10),
            ("/var".to_string(), 20),
            ("/var/lib/docker".to_string(), 30),
            ("/variant".to_string(), 40),
        ];
        assert_eq!(disk_available(&disks, "/var/lib/docker"), 30);
        assert_eq!(disk_available(&disks[..2], "/var/lib/docker"), 20);
        assert_eq!(disk_available(&disks[..1], "/var/lib/docker"), 10);
        assert_eq!(disk_available(&[], "/var/lib/docker"), 0);
    }
}
