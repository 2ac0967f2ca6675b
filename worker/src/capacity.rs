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

/// GPUs of the host: how many and which model (empty when none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuInfo {
    /// Number of GPUs.
    pub count: u32,
    /// Model name of the first GPU.
    pub model: String,
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

/// Parses `nvidia-smi --query-gpu=name --format=csv,noheader`: one model per line.
pub fn parse_nvidia_smi(output: &str) -> GpuInfo {
    let models: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    GpuInfo {
        count: models.len() as u32,
        model: models.first().map(|m| m.to_string()).unwrap_or_default(),
    }
}

/// Asks `nvidia-smi` for the GPUs; no GPUs when it is absent, fails or hangs.
pub async fn detect_gpus() -> GpuInfo {
    let run = tokio::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(out)) if out.status.success() => {
            parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout))
        }
        _ => GpuInfo::default(),
    }
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
        let gpu = GpuInfo {
            count: r.gpus,
            model: if r.gpus > 0 { gpu.model } else { String::new() },
        };
        return (r, gpu);
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
    fn nvidia_smi_output_gives_count_and_model() {
        let g = parse_nvidia_smi("NVIDIA A100-SXM4-40GB\nNVIDIA A100-SXM4-40GB\n");
        assert_eq!(g.count, 2);
        assert_eq!(g.model, "NVIDIA A100-SXM4-40GB");
        assert_eq!(parse_nvidia_smi(""), GpuInfo::default());
        assert_eq!(parse_nvidia_smi("\n  \n").count, 0);
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
