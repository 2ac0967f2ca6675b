//! [`DockerExecutor`]: runs attempts as containers through the Docker Engine API (bollard).
//!
//! Output is read by attaching to the container *before* it starts, so nothing is missed,
//! and it is read only as fast as the consumer polls: the daemon buffers at most ~1 MB
//! per attached stream and then blocks the container's writes, so a flooding container
//! is slowed down instead of growing anyone's memory. Containers use the `none` log
//! driver: the worker streams output itself, and a flood must not fill the daemon's disk.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::{
    AttachContainerOptions, CreateContainerOptions, KillContainerOptions, ListContainersOptions,
    LogOutput, RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bollard::errors::Error as DockerError;
use bollard::image::CreateImageOptions;
use bollard::Docker;
use chrono::{DateTime, Utc};
use cloudai_queue::{LogStream, TaskSpec};
use futures::{stream, StreamExt};
use tokio::time::Instant;

use super::container::container_config;
use super::policy::ContainerPolicy;
use super::pull_limit::PullLimiter;
use super::{
    labels, split_chunks, Executor, Exit, Handle, OutputChunk, OutputStream, ProgressSink,
    StartRequest, MAX_CHUNK_BYTES,
};
use crate::error::ExecError;
use crate::metrics::PullMetrics;

/// Minimum time between two progress reports of one pull.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Runs containers on the local Docker daemon.
#[derive(Clone)]
pub struct DockerExecutor {
    docker: Docker,
    /// Output streams attached at start and not yet handed out by `logs`.
    attached: Arc<Mutex<HashMap<String, OutputStream>>>,
    /// What containers may do here (safe defaults unless the operator loosened them).
    policy: Arc<ContainerPolicy>,
    /// How many image pulls may start per minute.
    pulls: Arc<PullLimiter>,
    /// Where the pulls it makes are timed (the worker's `/metrics`).
    pull_metrics: PullMetrics,
    /// Images seen present: `prepare` does not ask the daemon again (one round trip per
    /// task less). One removed since is pulled again when the create finds it missing.
    known_images: Arc<Mutex<HashSet<String>>>,
}

impl fmt::Debug for DockerExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerExecutor").finish_non_exhaustive()
    }
}

impl DockerExecutor {
    /// Connects to the local daemon (`DOCKER_HOST` or the default socket) and negotiates the
    /// API version, so daemons older than bollard's default (e.g. 1.41) work.
    pub async fn connect() -> Result<Self, ExecError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| ExecError::Runtime(format!("connect to docker: {e}")))?
            .negotiate_version()
            .await
            .map_err(|e| ExecError::Runtime(format!("negotiate docker api version: {e}")))?;
        Ok(DockerExecutor {
            docker,
            attached: Arc::default(),
            policy: Arc::default(),
            pulls: Arc::default(),
            pull_metrics: PullMetrics::default(),
            known_images: Arc::default(),
        })
    }

    /// The same executor with `limit` on image pulls instead of the default
    /// ([`super::pull_limit::DEFAULT_PULLS_PER_MINUTE`]).
    pub fn with_pull_limit(mut self, limit: PullLimiter) -> Self {
        self.pulls = Arc::new(limit);
        self
    }

    /// The same executor with `policy` instead of the safe defaults.
    pub fn with_policy(mut self, policy: ContainerPolicy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// The container policy in force.
    pub fn policy(&self) -> &ContainerPolicy {
        &self.policy
    }

    fn attached(&self) -> std::sync::MutexGuard<'_, HashMap<String, OutputStream>> {
        self.attached.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn known_images(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known_images.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pulls `spec.image` in its turn under the pull rate limit, timed for the metrics.
    async fn fetch(&self, spec: &TaskSpec, progress: &ProgressSink) -> Result<(), ExecError> {
        self.pulls
            .acquire(|wait| {
                let _ = progress.try_send(format!(
                    "waiting {} ms for the pull rate limit",
                    wait.as_millis()
                ));
            })
            .await;
        // Timed from the moment the pull may start: the rate-limit wait is not the pull.
        let began = Instant::now();
        let pulled = self.pull(spec, progress).await;
        self.pull_metrics.observe(pulled.is_ok(), began.elapsed());
        if pulled.is_ok() {
            self.known_images().insert(spec.image.clone());
        }
        pulled
    }

    /// Attaches to stdout and stderr of a created container, before it starts.
    async fn attach(&self, id: &str) -> Result<OutputStream, DockerError> {
        let attached = self
            .docker
            .attach_container::<String>(
                id,
                Some(AttachContainerOptions {
                    stdout: Some(true),
                    stderr: Some(true),
                    stream: Some(true),
                    ..Default::default()
                }),
            )
            .await?;
        Ok(attached
            .output
            .flat_map(|frame| {
                let chunks = match frame {
                    Ok(frame) => frame_to_chunks(frame).into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(runtime(e))],
                };
                stream::iter(chunks)
            })
            .boxed())
    }

    /// The underlying client, for callers that need more than the trait offers.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Ids of all containers (running or not) carrying `label` (`key` or `key=value`).
    pub async fn containers_with_label(&self, label: &str) -> Result<Vec<String>, ExecError> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters,
                ..Default::default()
            }))
            .await
            .map_err(runtime)?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// How long Docker saw the container run (`State.StartedAt` to `FinishedAt`, both on
    /// the daemon's clock); `None` when it cannot say.
    async fn run_time(&self, id: &str) -> Option<Duration> {
        let info = self.docker.inspect_container(id, None).await.ok()?;
        let state = info.state?;
        let time = |t: Option<String>| {
            let at = DateTime::parse_from_rfc3339(&t?).ok()?.with_timezone(&Utc);
            // An unset time is Go's zero time, 0001-01-01.
            (at.timestamp() > 0).then_some(at)
        };
        let (started, finished) = (time(state.started_at)?, time(state.finished_at)?);
        (finished - started).to_std().ok()
    }

    async fn image_present(&self, image: &str) -> Result<bool, ExecError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(runtime(e)),
        }
    }

    async fn create(&self, req: &StartRequest) -> Result<String, DockerError> {
        let options = Some(CreateContainerOptions {
            name: req.container_name(),
            platform: None,
        });
        let mut config = container_config(req);
        if let Some(hc) = config.host_config.as_mut() {
            self.policy.apply(hc);
        }
        match self
            .docker
            .create_container(options.clone(), config.clone())
            .await
        {
            Ok(r) => Ok(r.id),
            // A container of this very attempt is left from an earlier try: replace it.
            Err(e) if status_of(&e) == Some(409) => {
                let _ = self
                    .remove(&Handle {
                        id: req.container_name(),
                    })
                    .await;
                Ok(self.docker.create_container(options, config).await?.id)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the attempt's container without starting it (the first step of
    /// `start`), policy applied: for checking what the daemon stored, e.g. the GPU
    /// devices of a host that has no GPU to start it on. The caller removes it.
    pub async fn create_only(&self, req: &StartRequest) -> Result<Handle, ExecError> {
        self.policy.check(&req.spec).map_err(ExecError::Forbidden)?;
        let id = self
            .create(req)
            .await
            .map_err(|e| ExecError::Create(docker_message(e)))?;
        Ok(Handle { id })
    }

    /// Pulls `spec.image` (its turn already taken), reporting progress at most every
    /// [`PROGRESS_EVERY`], and checks that it is there afterwards.
    async fn pull(&self, spec: &TaskSpec, progress: &ProgressSink) -> Result<(), ExecError> {
        let pull_error = |message: String| ExecError::Pull {
            image: spec.image.clone(),
            message,
        };
        let (from_image, tag) = split_image_ref(&spec.image);
        let _ = progress.try_send(format!("pulling {}", spec.image));
        let mut pull = self.docker.create_image(
            Some(CreateImageOptions {
                from_image,
                tag,
                ..Default::default()
            }),
            None,
            None,
        );
        let mut last_report = Instant::now();
        while let Some(item) = pull.next().await {
            let info = item.map_err(|e| pull_error(docker_message(e)))?;
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                let text = [info.id, info.status, info.progress]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                let _ = progress.try_send(text);
            }
        }
        if !self.image_present(&spec.image).await? {
            return Err(pull_error("image still missing after pull".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Executor for DockerExecutor {
    async fn prepare(&self, spec: &TaskSpec, progress: &ProgressSink) -> Result<(), ExecError> {
        self.policy.check(spec).map_err(ExecError::Forbidden)?;
        if self.known_images().contains(&spec.image) {
            return Ok(());
        }
        if self.image_present(&spec.image).await? {
            self.known_images().insert(spec.image.clone());
            return Ok(());
        }
        self.fetch(spec, progress).await
    }

    async fn start(&self, req: &StartRequest) -> Result<Handle, ExecError> {
        self.policy.check(&req.spec).map_err(ExecError::Forbidden)?;
        let created = match self.create(req).await {
            // An image `prepare` took on trust went away since (a `docker rmi`): pull it
            // again, as `prepare` would have, and create once more.
            Err(e) if status_of(&e) == Some(404) && self.known_images().remove(&req.spec.image) => {
                let (no_progress, _) = tokio::sync::mpsc::channel(1);
                self.fetch(&req.spec, &no_progress).await?;
                self.create(req).await
            }
            created => created,
        };
        let id = created.map_err(|e| ExecError::Create(docker_message(e)))?;
        let handle = Handle { id };
        let output = match self.attach(&handle.id).await {
            Ok(output) => output,
            Err(e) => {
                let _ = self.remove(&handle).await;
                return Err(ExecError::Start(format!("attach: {}", docker_message(e))));
            }
        };
        self.attached().insert(handle.id.clone(), output);
        if let Err(e) = self
            .docker
            .start_container::<String>(&handle.id, None)
            .await
        {
            let _ = self.remove(&handle).await;
            return Err(ExecError::Start(docker_message(e)));
        }
        Ok(handle)
    }

    /// The output attached at start; a second call gets an empty stream.
    fn logs(&self, handle: &Handle) -> OutputStream {
        self.attached()
            .remove(&handle.id)
            .unwrap_or_else(|| stream::empty().boxed())
    }

    async fn wait(&self, handle: &Handle) -> Result<Exit, ExecError> {
        let mut waits = self.docker.wait_container(
            &handle.id,
            Some(WaitContainerOptions {
                condition: "not-running",
            }),
        );
        let code = match waits.next().await {
            Some(Ok(r)) => r.status_code,
            // bollard reports a non-zero exit as an error; it is a normal exit for us.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(runtime(e)),
            None => {
                return Err(ExecError::Runtime(
                    "wait stream ended without a result".into(),
                ))
            }
        };
        Ok(Exit {
            code,
            ran: self.run_time(&handle.id).await,
        })
    }

    async fn stop(&self, handle: &Handle, grace: Duration) -> Result<(), ExecError> {
        let t = grace.as_secs_f64().ceil() as i64;
        match self
            .docker
            .stop_container(&handle.id, Some(StopContainerOptions { t }))
            .await
        {
            Ok(()) => Ok(()),
            // 304: already stopped; 404: already gone.
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => Ok(()),
            Err(e) => Err(runtime(e)),
        }
    }

    async fn kill(&self, handle: &Handle) -> Result<(), ExecError> {
        match self
            .docker
            .kill_container(&handle.id, Some(KillContainerOptions { signal: "SIGKILL" }))
            .await
        {
            Ok(()) => Ok(()),
            // 409: not running; 404: gone.
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(runtime(e)),
        }
    }

    async fn remove(&self, handle: &Handle) -> Result<(), ExecError> {
        self.attached().remove(&handle.id);
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self
            .docker
            .remove_container(&handle.id, Some(options))
            .await
        {
            Ok(()) => Ok(()),
            // 404: already gone; 409: removal already in progress.
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(runtime(e)),
        }
    }

    async fn runtime_version(&self) -> Option<String> {
        self.docker.version().await.ok().and_then(|v| v.version)
    }

    async fn remove_leftovers(&self, worker_id: &str) -> Result<usize, ExecError> {
        let ids = self
            .containers_with_label(&format!("{}={worker_id}", labels::WORKER))
            .await?;
        for id in &ids {
            self.remove(&Handle { id: id.clone() }).await?;
        }
        Ok(ids.len())
    }

    fn pull_metrics(&self) -> Option<PullMetrics> {
        Some(self.pull_metrics.clone())
    }
}

/// Splits one Docker log frame into chunks of at most [`MAX_CHUNK_BYTES`].
fn frame_to_chunks(frame: LogOutput) -> Vec<OutputChunk> {
    let (stream, data) = match frame {
        LogOutput::StdOut { message } => (LogStream::Stdout, message),
        LogOutput::StdErr { message } => (LogStream::Stderr, message),
        // No TTY and no stdin are attached, so these do not occur; keep the bytes anyway.
        LogOutput::Console { message } | LogOutput::StdIn { message } => {
            (LogStream::Stdout, message)
        }
    };
    let time = Utc::now();
    split_chunks(&data, MAX_CHUNK_BYTES)
        .map(|piece| OutputChunk {
            stream,
            time,
            data: piece.to_vec(),
        })
        .collect()
}

/// Splits an image reference into the `fromImage` and `tag` of the pull API. An empty tag
/// would pull every tag, so a reference without tag or digest pulls `latest`.
fn split_image_ref(image: &str) -> (String, String) {
    if image.contains('@') {
        return (image.to_string(), String::new());
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => {
            let at = name_start + i;
            (image[..at].to_string(), image[at + 1..].to_string())
        }
        None => (image.to_string(), "latest".to_string()),
    }
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The daemon's or registry's own words, without bollard's wrapping.
fn docker_message(e: DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message,
        DockerError::DockerStreamError { error } => error,
        other => other.to_string(),
    }
}

fn runtime(e: DockerError) -> ExecError {
    ExecError::Runtime(docker_message(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_split_into_name_and_tag() {
        let s = |r: &str| split_image_ref(r);
        assert_eq!(s("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(
            s("cloudai/busybox:test"),
            ("cloudai/busybox".into(), "test".into())
        );
        assert_eq!(
            s("localhost:5000/team/app"),
            ("localhost:5000/team/app".into(), "latest".into())
        );
        assert_eq!(
            s("localhost:5000/app:v2"),
            ("localhost:5000/app".into(), "v2".into())
        );
        assert_eq!(
            s("app@sha256:abc"),
            ("app@sha256:abc".into(), String::new())
        );
    }

    #[test]
    fn big_frames_are_split() {
        let chunks = frame_to_chunks(LogOutput::StdErr {
            message: vec![b'x'; MAX_CHUNK_BYTES + 1].into(),
        });
        assert_eq!(chunks.len(), 2);
        assert!(chunks.iter().all(|c| c.stream == LogStream::Stderr));
        assert_eq!(chunks[1].data.len(), 1);
    }
}
