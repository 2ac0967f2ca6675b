//! The create request of an attempt's container, built from its spec: pure, so the rules
//! are unit-tested without a daemon. The worker's [`super::ContainerPolicy`] is merged
//! into its host settings afterwards (`DockerExecutor::create`).
//!
//! Entrypoint and command follow `docker run`: the spec's `command` becomes the
//! container's Cmd, passed to the image's entrypoint (`docker run IMAGE ARGS...`), and
//! the spec's `entrypoint`, when given, replaces the image's (`docker run --entrypoint`).
//! Either one left empty keeps the image's own.

use bollard::container::Config;
use bollard::models::{DeviceRequest, HostConfig, HostConfigLogConfig};

use super::StartRequest;

/// The container config of `req`, before the worker's policy is applied.
pub(crate) fn container_config(req: &StartRequest) -> Config<String> {
    let spec = &req.spec;
    let r = &spec.resources;
    // The devices the master gave, by UUID, so no two running tasks share one; by count
    // only when this worker could not name its devices (Docker then picks).
    let device_requests = (r.gpus > 0).then(|| {
        let (count, device_ids) = if req.devices.is_empty() {
            (Some(i64::from(r.gpus)), None)
        } else {
            (None, Some(req.devices.clone()))
        };
        vec![DeviceRequest {
            driver: Some("nvidia".into()),
            count,
            device_ids,
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]
    });
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if r.gpus > 0 && !req.devices.is_empty() {
        // What the NVIDIA runtime reads; set last, so the task's own env cannot widen it.
        env.retain(|e| !e.starts_with("NVIDIA_VISIBLE_DEVICES="));
        env.push(format!("NVIDIA_VISIBLE_DEVICES={}", req.devices.join(",")));
    }
    Config {
        image: Some(spec.image.clone()),
        // Unset (not empty) when the spec gives none: the daemon then keeps the image's.
        entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(env),
        labels: Some(req.labels().into_iter().collect()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        host_config: Some(HostConfig {
            nano_cpus: (r.cpu_millis > 0).then(|| (r.cpu_millis as i64).saturating_mul(1_000_000)),
            memory: (r.memory_bytes > 0).then(|| r.memory_bytes.min(i64::MAX as u64) as i64),
            device_requests,
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{labels, ContainerPolicy};
    use cloudai_queue::{Resources, TaskSpec};

    fn request(spec: TaskSpec) -> StartRequest {
        StartRequest {
            task_id: "t".into(),
            attempt: 1,
            token: 4,
            worker_id: "w".into(),
            spec,
            devices: Vec::new(),
        }
    }

    #[test]
    fn container_config_carries_limits_command_env_and_labels() {
        let mut spec = TaskSpec::new("img:1");
        spec.command = vec!["sh".into(), "-c".into(), "echo hi".into()];
        spec.env.insert("A".into(), "1".into());
        spec.resources = Resources {
            cpu_millis: 1500,
            memory_bytes: 256 << 20,
            gpus: 1,
            disk_bytes: 0,
        };
        let c = container_config(&request(spec));
        assert_eq!(c.env, Some(vec!["A=1".to_string()]));
        assert_eq!(c.tty, Some(false));
        let hc = c.host_config.unwrap();
        assert_eq!(hc.nano_cpus, Some(1_500_000_000));
        assert_eq!(hc.memory, Some(256 << 20));
        assert_eq!(hc.device_requests.unwrap()[0].count, Some(1));
        assert_eq!(c.labels.unwrap()[labels::TASK_ID], "t");

        let plain = container_config(&request(TaskSpec::new("img")));
        let hc = plain.host_config.unwrap();
        assert_eq!(
            (hc.nano_cpus, hc.memory, hc.device_requests),
            (None, None, None)
        );
    }

    #[test]
    fn assigned_devices_are_requested_by_id_and_made_visible() {
        let mut spec = TaskSpec::new("img");
        spec.resources.gpus = 2;
        spec.env
            .insert("NVIDIA_VISIBLE_DEVICES".into(), "all".into());
        let mut req = request(spec);
        req.devices = vec!["GPU-b".into(), "GPU-c".into()];
        let c = container_config(&req);
        let dr = &c.host_config.unwrap().device_requests.unwrap()[0];
        assert_eq!(
            dr.device_ids.as_deref(),
            Some(["GPU-b".to_string(), "GPU-c".to_string()].as_slice())
        );
        assert_eq!(dr.count, None, "by id, not by count");
        assert_eq!(
            c.env.unwrap(),
            vec!["NVIDIA_VISIBLE_DEVICES=GPU-b,GPU-c".to_string()],
            "the task's own value cannot widen what it sees"
        );
    }

    #[test]
    fn the_command_is_cmd_and_the_entrypoint_is_set_only_when_given() {
        // `docker run IMAGE foo bar`: the arguments go to the image's entrypoint.
        let mut args = TaskSpec::new("cloudai/sample-task:latest");
        args.command = vec!["foo".into(), "bar".into()];
        let c = container_config(&request(args.clone()));
        assert_eq!(c.entrypoint, None, "the image's own entrypoint");
        assert_eq!(c.cmd, Some(vec!["foo".to_string(), "bar".to_string()]));

        // `docker run --entrypoint /bin/echo IMAGE hi`.
        let mut replaced = args.clone();
        replaced.entrypoint = vec!["/bin/echo".into()];
        replaced.command = vec!["hi".into()];
        let c = container_config(&request(replaced));
        assert_eq!(c.entrypoint, Some(vec!["/bin/echo".to_string()]));
        assert_eq!(c.cmd, Some(vec!["hi".to_string()]));

        // `--entrypoint ''` clears the image's entrypoint: Docker's `[""]`, passed as is.
        let mut cleared = args.clone();
        cleared.entrypoint = vec![String::new()];
        assert_eq!(
            container_config(&request(cleared)).entrypoint,
            Some(vec![String::new()])
        );

        // Neither given: both unset, the image runs as built.
        let c = container_config(&request(TaskSpec::new("img")));
        assert_eq!((c.entrypoint, c.cmd), (None, None));

        // An entrypoint alone keeps the image's Cmd.
        let mut only = TaskSpec::new("img");
        only.entrypoint = vec!["/bin/true".into()];
        assert_eq!(container_config(&request(only)).cmd, None);
    }

    #[test]
    fn containers_get_an_init_process_unless_the_worker_turns_it_off() {
        let mut hc = container_config(&request(TaskSpec::new("img")))
            .host_config
            .unwrap();
        ContainerPolicy::default().apply(&mut hc);
        assert_eq!(hc.init, Some(true), "on by default, as docker run --init");
        let off = ContainerPolicy {
            no_init: true,
            ..Default::default()
        };
        off.apply(&mut hc);
        assert_eq!(
            hc.init,
            Some(false),
            "off even where the daemon defaults to on"
        );
    }
}
