//! Workload 4, the container path: N busybox `sh -c :` tasks through cloudai (one real
//! worker on the Docker executor, `parallel` tasks at once) against the same N containers
//! run by `docker run --rm` from `parallel` loops on the same daemon.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cloudai_proto::pb;
use cloudai_queue::{Resources, TaskSpec};
use cloudai_worker::{DockerExecutor, WorkerConfig};
use tokio::sync::oneshot;

use crate::drain::wait_succeeded;
use crate::master::{MasterOpts, MasterProc};
use crate::workers::SLOT_CPU_MILLIS;

/// How to run one container-path measurement.
#[derive(Clone, Debug)]
pub struct ContainerOpts {
    /// Store URI of a fresh store.
    pub store: String,
    /// Image to run (must be local: there is no registry).
    pub image: String,
    /// Containers to run.
    pub n: usize,
    /// Containers at once.
    pub parallel: usize,
}

/// cloudai: seconds from the `EnqueueBatch` until the master reports all succeeded.
pub async fn cloudai_once(opts: &ContainerOpts) -> Result<f64> {
    let master = MasterProc::start(&MasterOpts {
        count_commands: false,
        store: opts.store.clone(),
        heartbeat: Duration::from_secs(5),
        listen: None,
    })?;
    let exec = DockerExecutor::connect()
        .await
        .context("cannot reach the Docker daemon")?;
    let mut config = WorkerConfig::new(master.url());
    config.id = Some("bench-docker".into());
    config.stop_grace = Duration::from_secs(1);
    config.capacity_override = Some(Resources {
        cpu_millis: opts.parallel as u64 * SLOT_CPU_MILLIS,
        memory_bytes: 1 << 40,
        gpus: 0,
        disk_bytes: 1 << 40,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(cloudai_worker::run(config, Arc::new(exec), async move {
        let _ = stopped.await;
    }));
    master.wait_for_a_worker("the docker worker").await?;
    let mut client = master.client().await?;
    let mut spec = TaskSpec::new(opts.image.clone());
    spec.command = vec!["sh".into(), "-c".into(), ":".into()];
    spec.resources.cpu_millis = SLOT_CPU_MILLIS;
    let spec: pb::TaskSpec = spec.into();
    let start = Instant::now();
    client
        .enqueue_batch(pb::EnqueueBatchRequest {
            specs: vec![spec; opts.n],
        })
        .await?;
    let done = wait_succeeded(&mut client, opts.n as u64, Duration::from_secs(300)).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
    drop(master);
    Ok(done?.duration_since(start).as_secs_f64())
}

/// The CLI: seconds to run the N containers with `docker run --rm` from `parallel` loops.
pub fn cli_once(opts: &ContainerOpts) -> Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let loops: Vec<_> = (0..opts.parallel.max(1))
        .map(|_| {
            let next = next.clone();
            let image = opts.image.clone();
            let n = opts.n;
            std::thread::spawn(move || -> Result<()> {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let status = Command::new("docker")
                        .args(["run", "--rm", &image, "sh", "-c", ":"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::inherit())
                        .status()
                        .context("cannot run docker")?;
                    if !status.success() {
                        bail!("docker run failed: {status}");
                    }
                }
                Ok(())
            })
        })
        .collect();
    for l in loops {
        l.join()
            .map_err(|_| anyhow::anyhow!("docker loop panicked"))??;
    }
    Ok(start.elapsed().as_secs_f64())
}
