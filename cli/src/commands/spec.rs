//! Turning enqueue flags into a `TaskSpec`, with client-side checks so that a typo gets
//! its precise error (and exit code) before any network round trip. Pure.

use cloudai_queue::validate::{validate_image, validate_spec, validate_worker_id};
use cloudai_queue::{DependencyCondition, QueueError, TaskSpec};

use crate::args::EnqueueArgs;
use crate::exit::{CliError, CliResult, Kind};
use crate::units::{parse_cpu, parse_duration, parse_key_value, parse_memory};

fn queue_error(e: QueueError) -> CliError {
    let kind = match &e {
        QueueError::Invalid { field: "image", .. } => Kind::InvalidImage,
        _ => Kind::InvalidArgument,
    };
    CliError::new(kind, e.to_string())
}

/// Builds and validates the spec `enqueue` sends.
pub fn build(a: &EnqueueArgs) -> CliResult<TaskSpec> {
    validate_image(&a.image).map_err(queue_error)?;
    let mut spec = TaskSpec::new(a.image.clone());
    if let Some(w) = &a.worker {
        validate_worker_id(w).map_err(queue_error)?;
        spec.pinned_worker = Some(w.clone());
    }
    let s = &a.spec;
    if let Some(c) = &s.cpu {
        spec.resources.cpu_millis = parse_cpu(c)?;
    }
    if let Some(m) = &s.memory {
        spec.resources.memory_bytes = parse_memory(m)?;
    }
    if let Some(d) = &s.disk {
        spec.resources.disk_bytes = parse_memory(d)?;
    }
    if let Some(t) = &s.timeout {
        spec.timeout = Some(parse_duration(t)?);
    }
    spec.resources.gpus = s.gpus.unwrap_or(0);
    for e in &s.env {
        let (k, v) = parse_key_value("env", e).map_err(|e| CliError::invalid(e.0))?;
        spec.env.insert(k, v);
    }
    for c in &s.constraints {
        spec.constraints.push(c.parse().map_err(queue_error)?);
    }
    for p in &s.prefer {
        spec.prefer.push(p.parse().map_err(queue_error)?);
    }
    for l in &s.labels {
        let (k, v) = parse_key_value("label", l).map_err(|e| CliError::invalid(e.0))?;
        spec.labels.insert(k, v);
    }
    spec.priority = s.priority;
    spec.max_attempts = s
        .retries
        .checked_add(1)
        .ok_or_else(|| CliError::invalid("--retries is too large"))?;
    spec.idempotency_key = s.idempotency_key.clone();
    spec.command = s.command.clone();
    // One program, as `docker run --entrypoint`; `''` becomes Docker's `[""]` (cleared).
    spec.entrypoint = s.entrypoint.iter().cloned().collect();
    spec.not_before = match (&s.at, &s.in_) {
        (Some(at), _) => Some(
            chrono::DateTime::parse_from_rfc3339(at.trim())
                .map_err(|e| {
                    CliError::invalid(format!(
                        "--at {at:?} is not an RFC 3339 time such as 2026-12-01T18:00:00Z: {e}"
                    ))
                })?
                .with_timezone(&chrono::Utc),
        ),
        (None, Some(d)) => {
            let d = chrono::Duration::from_std(parse_duration(d)?)
                .map_err(|_| CliError::invalid(format!("--in {d:?} is too long")))?;
            Some(chrono::Utc::now() + d)
        }
        (None, None) => None,
    };
    validate_spec(&spec).map_err(queue_error)?;
    Ok(spec)
}

/// `--after` as (id or prefix, condition) pairs; the master resolves the prefixes.
pub fn parents(a: &EnqueueArgs) -> CliResult<Vec<(String, DependencyCondition)>> {
    let mut out = Vec::new();
    for item in a.spec.after.iter().flat_map(|s| s.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (id, cond) = match item.rsplit_once(':') {
            Some((id, c)) => (id, c.parse::<DependencyCondition>().map_err(queue_error)?),
            None => (item, DependencyCondition::Ok),
        };
        if id.is_empty() {
            return Err(CliError::invalid(format!("--after {item:?} names no task")));
        }
        out.push((id.to_string(), cond));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::TaskSpecArgs;
    use std::time::Duration;

    fn args(image: &str) -> EnqueueArgs {
        EnqueueArgs {
            image: image.into(),
            worker: None,
            array: None,
            strict: false,
            spec: TaskSpecArgs {
                cpu: None,
                memory: None,
                gpus: None,
                disk: None,
                constraints: vec![],
                prefer: vec![],
                env: vec![],
                priority: 0,
                retries: 0,
                timeout: None,
                labels: vec![],
                idempotency_key: None,
                wait: false,
                after: vec![],
                at: None,
                in_: None,
                entrypoint: None,
                command: vec![],
            },
        }
    }

    #[test]
    fn flags_become_a_spec() {
        let mut a = args("cloudai/busybox:test");
        a.worker = Some("w-1".into());
        a.spec.cpu = Some("0.5".into());
        a.spec.memory = Some("256M".into());
        a.spec.gpus = Some(1);
        a.spec.disk = Some("10G".into());
        a.spec.env = vec!["A=1".into()];
        a.spec.labels = vec!["team=ml".into()];
        a.spec.retries = 2;
        a.spec.timeout = Some("1m30s".into());
        a.spec.priority = 7;
        a.spec.idempotency_key = Some("k1".into());
        a.spec.command = vec!["echo".into(), "hi".into()];
        a.spec.constraints = vec!["gpu.model in (a100,h100)".into(), "disk!=hdd".into()];
        a.spec.prefer = vec!["zone=a".into()];
        let s = build(&a).unwrap();
        assert_eq!(s.constraints.len(), 2);
        assert_eq!(s.constraints[0].to_string(), "gpu.model in (a100,h100)");
        assert_eq!(s.prefer[0].to_string(), "zone=a");
        assert_eq!(s.pinned_worker.as_deref(), Some("w-1"));
        assert_eq!(s.resources.cpu_millis, 500);
        assert_eq!(s.resources.memory_bytes, 256 << 20);
        assert_eq!(s.resources.gpus, 1);
        assert_eq!(s.resources.disk_bytes, 10 << 30);
        assert_eq!(s.env["A"], "1");
        assert_eq!(s.labels["team"], "ml");
        assert_eq!(s.max_attempts, 3);
        assert_eq!(s.timeout, Some(Duration::from_secs(90)));
        assert_eq!(s.priority, 7);
        assert_eq!(s.idempotency_key.as_deref(), Some("k1"));
        assert_eq!(s.command, ["echo", "hi"]);
        assert!(s.entrypoint.is_empty(), "the image's own entrypoint");
    }

    #[test]
    fn the_entrypoint_is_one_program_and_empty_clears_it() {
        let mut a = args("cloudai/sample-task:latest");
        a.spec.entrypoint = Some("/bin/echo".into());
        a.spec.command = vec!["hi".into()];
        let s = build(&a).unwrap();
        assert_eq!(s.entrypoint, ["/bin/echo"]);
        assert_eq!(s.command, ["hi"]);
        a.spec.entrypoint = Some(String::new());
        assert_eq!(build(&a).unwrap().entrypoint, [""]);
        a.spec.entrypoint = Some("/bin/\0sh".into());
        assert_eq!(build(&a).unwrap_err().kind, Kind::InvalidArgument);
    }

    #[test]
    fn each_mistake_has_its_kind() {
        let kind = |f: &dyn Fn(&mut EnqueueArgs)| {
            let mut a = args("busybox");
            f(&mut a);
            build(&a).unwrap_err().kind
        };
        assert_eq!(kind(&|a| a.image = "Not/Valid".into()), Kind::InvalidImage);
        assert_eq!(
            kind(&|a| a.spec.memory = Some("12XB".into())),
            Kind::InvalidUnit
        );
        assert_eq!(
            kind(&|a| a.spec.constraints = vec!["zone in a,b".into()]),
            Kind::InvalidArgument
        );
        assert_eq!(
            kind(&|a| a.spec.prefer = vec!["zone".into()]),
            Kind::InvalidArgument
        );
        assert_eq!(
            kind(&|a| a.spec.timeout = Some("soon".into())),
            Kind::InvalidUnit
        );
        assert_eq!(
            kind(&|a| a.spec.cpu = Some("lots".into())),
            Kind::InvalidUnit
        );
        assert_eq!(
            kind(&|a| a.spec.env = vec!["NOVALUE".into()]),
            Kind::InvalidArgument
        );
        assert_eq!(
            kind(&|a| a.worker = Some("bad id".into())),
            Kind::InvalidArgument
        );
        assert_eq!(
            kind(&|a| a.spec.timeout = Some("0s".into())),
            Kind::InvalidArgument
        );
        assert_eq!(kind(&|a| a.spec.gpus = Some(1000)), Kind::InvalidArgument);
        assert_eq!(
            kind(&|a| a.spec.disk = Some("2048T".into())),
            Kind::InvalidArgument
        );
        assert_eq!(
            kind(&|a| a.spec.disk = Some("lots".into())),
            Kind::InvalidUnit
        );
    }
}
