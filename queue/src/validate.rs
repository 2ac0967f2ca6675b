//! Validation of task specs and ids: bad input gets a typed error naming the field.

use std::time::Duration;

use crate::error::{QueueError, Result};
use crate::model::TaskSpec;

/// Most CPU a task may request: 1024 cores.
pub const MAX_CPU_MILLIS: u64 = 1024 * 1000;
/// Most memory a task may request: 16 TiB.
pub const MAX_MEMORY_BYTES: u64 = 16 << 40;
/// Most GPUs a task may request.
pub const MAX_GPUS: u32 = 64;
/// Most disk one task may reserve: 1 PiB.
pub const MAX_DISK_BYTES: u64 = 1 << 50;
/// Longest timeout: 30 days.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most bytes in the command (and, separately, in the entrypoint).
pub const MAX_COMMAND_BYTES: usize = 128 * 1024;
/// Most environment variables.
pub const MAX_ENV: usize = 1024;
/// Most bytes of all environment keys and values together.
pub const MAX_ENV_BYTES: usize = 256 * 1024;
/// Most labels.
pub const MAX_LABELS: usize = 64;
/// Most bytes in a label key; values may have 8 times this.
pub const MAX_LABEL_KEY: usize = 128;
/// Most attempts (and lost retries) a task may ask for.
pub const MAX_ATTEMPTS: u32 = 100;

/// Checks every field of `spec`; the first problem found is returned.
pub fn validate_spec(spec: &TaskSpec) -> Result<()> {
    validate_image(&spec.image)?;
    for (field, words) in [("command", &spec.command), ("entrypoint", &spec.entrypoint)] {
        if words.iter().map(|a| a.len() + 1).sum::<usize>() > MAX_COMMAND_BYTES {
            return Err(QueueError::invalid(
                field,
                format!("longer than {MAX_COMMAND_BYTES} bytes"),
            ));
        }
        if words.iter().any(|a| a.contains('\0')) {
            return Err(QueueError::invalid(field, "contains a NUL byte"));
        }
    }
    if spec.env.len() > MAX_ENV
        || spec
            .env
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            > MAX_ENV_BYTES
    {
        return Err(QueueError::invalid(
            "env",
            format!("more than {MAX_ENV} variables or {MAX_ENV_BYTES} bytes"),
        ));
    }
    for (k, v) in &spec.env {
        validate_env_key(k)?;
        if v.contains('\0') {
            return Err(QueueError::invalid(
                "env",
                format!("value of {k} contains a NUL byte"),
            ));
        }
    }
    let r = &spec.resources;
    if r.cpu_millis > MAX_CPU_MILLIS {
        return Err(QueueError::invalid(
            "cpu",
            format!(
                "{} millicores is more than the limit of {MAX_CPU_MILLIS}",
                r.cpu_millis
            ),
        ));
    }
    if r.memory_bytes > MAX_MEMORY_BYTES {
        return Err(QueueError::invalid(
            "memory",
            format!("{} bytes is more than the limit of 16 TiB", r.memory_bytes),
        ));
    }
    if r.gpus > MAX_GPUS {
        return Err(QueueError::invalid(
            "gpus",
            format!("{} is more than the limit of {MAX_GPUS}", r.gpus),
        ));
    }
    if r.disk_bytes > MAX_DISK_BYTES {
        return Err(QueueError::invalid(
            "disk",
            format!("{} bytes is more than the limit of 1 PiB", r.disk_bytes),
        ));
    }
    if spec.max_attempts == 0 || spec.max_attempts > MAX_ATTEMPTS {
        return Err(QueueError::invalid(
            "max_attempts",
            format!("{} is not between 1 and {MAX_ATTEMPTS}", spec.max_attempts),
        ));
    }
    if spec.max_lost_retries > MAX_ATTEMPTS {
        return Err(QueueError::invalid(
            "max_lost_retries",
            format!("{} is more than {MAX_ATTEMPTS}", spec.max_lost_retries),
        ));
    }
    if let Some(t) = spec.timeout {
        if t.is_zero() || t > MAX_TIMEOUT {
            return Err(QueueError::invalid(
                "timeout",
                format!("{t:?} is not between 1ms and 30 days"),
            ));
        }
    }
    if let Some(w) = &spec.pinned_worker {
        validate_worker_id(w)?;
    }
    if spec.labels.len() > MAX_LABELS {
        return Err(QueueError::invalid(
            "labels",
            format!("more than {MAX_LABELS}"),
        ));
    }
    for (k, v) in &spec.labels {
        if k.is_empty() || k.len() > MAX_LABEL_KEY || v.len() > 8 * MAX_LABEL_KEY {
            return Err(QueueError::invalid(
                "labels",
                format!("label {k:?} must have a 1..={MAX_LABEL_KEY} byte key and a value of at most {} bytes", 8 * MAX_LABEL_KEY),
            ));
        }
    }
    crate::constraint::validate_all(&spec.constraints, &spec.prefer)?;
    if let Some(k) = &spec.idempotency_key {
        if k.is_empty() || k.len() > 256 {
            return Err(QueueError::invalid(
                "idempotency_key",
                "must have 1 to 256 bytes",
            ));
        }
    }
    Ok(())
}

/// A worker id: 1 to 253 characters of letters, digits, `.`, `_`, `-`.
pub fn validate_worker_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(QueueError::invalid(
            "worker id",
            format!("{id:?} must be 1-253 characters of letters, digits, '.', '_' or '-'"),
        ))
    }
}

/// An environment variable name: non-empty, no `=`, no NUL, at most 256 bytes.
pub fn validate_env_key(k: &str) -> Result<()> {
    if k.is_empty() || k.len() > 256 || k.contains('=') || k.contains('\0') {
        return Err(QueueError::invalid(
            "env",
            format!("{k:?} is not a valid variable name (non-empty, no '=', at most 256 bytes)"),
        ));
    }
    Ok(())
}

/// A Docker image reference: `[host[:port]/]path[:tag][@algo:hex]`, as the distribution
/// reference grammar defines it (lowercase path components, tag of `[\w][\w.-]{0,127}`).
pub fn validate_image(image: &str) -> Result<()> {
    let bad = |why: &str| Err(QueueError::invalid("image", format!("{image:?} {why}")));
    if image.is_empty() {
        return bad("is empty");
    }
    if image.len() > 512 {
        return bad("is longer than 512 bytes");
    }
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return bad("has a digest without 'algorithm:hex'");
        };
        let algo_ok = !algo.is_empty()
            && algo
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
        if !algo_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad("has a malformed digest");
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let b = tag.as_bytes();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        if b.is_empty()
            || b.len() > 128
            || !word(b[0])
            || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
        {
            return bad("has an invalid tag (letters, digits, '_', '.', '-'; at most 128)");
        }
    }
    if name.is_empty() || name.len() > 255 {
        return bad("has an empty or too long name");
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let first = parts[0];
    let is_domain =
        parts.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost");
    if is_domain {
        let (host, port) = match first.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (first, None),
        };
        let host_ok = !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok || !port_ok {
            return bad("has an invalid registry host");
        }
        parts.remove(0);
    }
    for comp in parts {
        if !path_component_ok(comp) {
            return bad(
                "has an invalid path component (lowercase letters and digits, separated by '.', '_', '__' or '-')",
            );
        }
    }
    Ok(())
}

fn path_component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // separator: '.', '_', '__', or one or more '-'
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_image_references() {
        for ok in [
            "busybox",
            "cloudai-busybox:test",
            "library/ubuntu:22.04",
            "ghcr.io/org/app:v1.2.3",
            "localhost:5000/team/app",
            "registry.example.com:443/a/b/c:latest",
            "my_app__x/y-z.w:tag_1",
            "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(validate_image(ok).is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn rejects_malformed_image_references() {
        for bad in [
            "",
            "UPPER",
            "busybox:",
            "busybox::x",
            "-lead",
            "trail-",
            "a//b",
            "a/b/",
            "busybox:.tag",
            "bad host.com:x/app",
            "app@sha256:short",
            "app@nocolon",
            "has space",
            "a___b",
        ] {
            let err = validate_image(bad).unwrap_err();
            assert!(
                matches!(err, QueueError::Invalid { field: "image", .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn rejects_out_of_bounds_specs() {
        let base = TaskSpec::new("busybox");
        assert!(validate_spec(&base).is_ok());
        type Mutate = Box<dyn Fn(&mut TaskSpec)>;
        let cases: Vec<(&str, Mutate)> = vec![
            (
                "cpu",
                Box::new(|s| s.resources.cpu_millis = MAX_CPU_MILLIS + 1),
            ),
            ("memory", Box::new(|s| s.resources.memory_bytes = u64::MAX)),
            ("gpus", Box::new(|s| s.resources.gpus = 1000)),
            ("disk", Box::new(|s| s.resources.disk_bytes = u64::MAX)),
            (
                "disk",
                Box::new(|s| s.resources.disk_bytes = MAX_DISK_BYTES + 1),
            ),
            ("max_attempts", Box::new(|s| s.max_attempts = 0)),
            ("timeout", Box::new(|s| s.timeout = Some(Duration::ZERO))),
            (
                "env",
                Box::new(|s| {
                    s.env.insert("A=B".into(), "x".into());
                }),
            ),
            (
                "worker id",
                Box::new(|s| s.pinned_worker = Some("bad id".into())),
            ),
            (
                "command",
                Box::new(|s| s.command = vec!["x".repeat(MAX_COMMAND_BYTES + 1)]),
            ),
            (
                "entrypoint",
                Box::new(|s| s.entrypoint = vec!["/bin/\0sh".into()]),
            ),
            (
                "labels",
                Box::new(|s| {
                    s.labels.insert(String::new(), "v".into());
                }),
            ),
            (
                "idempotency_key",
                Box::new(|s| s.idempotency_key = Some(String::new())),
            ),
        ];
        for (field, mutate) in cases {
            let mut s = base.clone();
            mutate(&mut s);
            match validate_spec(&s) {
                Err(QueueError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected invalid, got {other:?}"),
            }
        }
    }
}
