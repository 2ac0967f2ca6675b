//! Rendering of views as tables and text (the default) or JSON (`--output json`).
//! Pure: every function returns a `String`, so the CLI and the shell print the same.

use std::time::Duration;

use chrono::{DateTime, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

use crate::units::{format_age, format_bytes, format_cpu, format_duration};
use crate::view::{GroupView, ResourcesView, StatsView, TaskView, WorkerView};

/// `table` (default) for people, `json` for scripts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns and text.
    #[default]
    Table,
    /// One JSON document with stable snake_case fields.
    Json,
}

/// Pretty JSON with a trailing newline.
pub fn json<T: Serialize + ?Sized>(v: &T) -> String {
    let mut s =
        serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    t
}

fn finish(t: Table) -> String {
    let mut s: String = t
        .to_string()
        .lines()
        .map(|l| l.trim_end().trim_start_matches(' '))
        .collect::<Vec<_>>()
        .join("\n");
    s.push('\n');
    s
}

fn age(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format_age((now - t).num_milliseconds())
}

fn dur_ms(ms: Option<u64>) -> String {
    ms.map(|m| format_duration(Duration::from_millis(m)))
        .unwrap_or_else(|| "-".into())
}

/// `cpu 0.5, mem 256MiB, gpus 1` (zero GPUs omitted).
pub fn resources(r: &ResourcesView) -> String {
    let mut s = format!(
        "cpu {}, mem {}",
        format_cpu(r.cpu_millis),
        format_bytes(r.memory_bytes)
    );
    if r.gpus > 0 {
        s.push_str(&format!(", gpus {}", r.gpus));
    }
    s
}

/// A task's entrypoint as `cloudai task` shows it: the image's own, none (`--entrypoint
/// ''`), or the program.
fn entrypoint(e: &[String]) -> String {
    match e {
        [] => "(image default)".into(),
        [only] if only.is_empty() => "(none)".into(),
        words => words.join(" "),
    }
}

/// The `cloudai tasks` table.
pub fn tasks_table(tasks: &[TaskView], now: DateTime<Utc>) -> String {
    if tasks.is_empty() {
        return "no tasks\n".into();
    }
    let mut t = table(&[
        "ID",
        "IMAGE",
        "STATUS",
        "REASON",
        "WORKER",
        "SUBMITTER",
        "ATTEMPTS",
        "AGE",
        "DURATION",
    ]);
    for task in tasks {
        t.add_row(vec![
            task.id.clone(),
            task.image.clone(),
            task.status.to_string(),
            task.wait_reason
                .as_ref()
                .map(|r| r.code.clone())
                .unwrap_or_else(|| "-".into()),
            task.worker.clone().unwrap_or_else(|| "-".into()),
            task.submitted_by.clone().unwrap_or_else(|| "-".into()),
            task.attempts.len().to_string(),
            age(task.created_at, now),
            dur_ms(task.duration_ms),
        ]);
    }
    finish(t)
}

/// `cloudai task <id>`: every field, then the attempts.
pub fn task_detail(t: &TaskView, now: DateTime<Utc>) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let ts = |v: Option<DateTime<Utc>>| {
        v.map(|t| {
            format!(
                "{} ({})",
                t.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
                age(t, now)
            )
        })
        .unwrap_or_else(|| "-".into())
    };
    let kv = |m: &std::collections::BTreeMap<String, String>| {
        if m.is_empty() {
            "-".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut lines = vec![
        ("id", t.id.clone()),
        ("image", t.image.clone()),
        ("entrypoint", entrypoint(&t.entrypoint)),
        (
            "command",
            if t.command.is_empty() {
                "(image default)".into()
            } else {
                t.command.join(" ")
            },
        ),
        ("status", t.status.to_string()),
        (
            "reason",
            match &t.wait_reason {
                None => "-".to_string(),
                Some(r) => {
                    let mut s = r.code.clone();
                    if let Some(u) = r.until {
                        s.push_str(&format!(" until {}", u.format("%Y-%m-%d %H:%M:%S UTC")));
                    }
                    if !r.detail.is_empty() {
                        s.push_str(&format!(": {}", r.detail));
                    }
                    s
                }
            },
        ),
        ("worker", opt(&t.worker)),
        ("submitted by", opt(&t.submitted_by)),
        (
            "exit code",
            t.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
        ),
    ];
    if let Some(e) = &t.error {
        lines.push(("error", e.clone()));
    }
    lines.extend([
        ("created", ts(Some(t.created_at))),
        ("started", ts(t.started_at)),
        ("finished", ts(t.finished_at)),
        ("duration", dur_ms(t.duration_ms)),
        ("resources", resources(&t.resources)),
        ("reserved", resources(&t.reserved)),
        ("priority", t.priority.to_string()),
        ("max attempts", t.max_attempts.to_string()),
        ("timeout", dur_ms(t.timeout_ms)),
        ("pinned worker", opt(&t.pinned_worker)),
        ("env", kv(&t.env)),
        ("labels", kv(&t.labels)),
        ("constraints", list(&t.constraints)),
        ("prefer", list(&t.prefer)),
        ("idempotency key", opt(&t.idempotency_key)),
        (
            "after",
            if t.after.is_empty() {
                "-".to_string()
            } else {
                t.after.join(", ")
            },
        ),
        (
            "not before",
            if t.not_before > t.created_at + chrono::Duration::milliseconds(1) {
                ts(Some(t.not_before))
            } else {
                "-".to_string()
            },
        ),
    ]);
    if let Some(a) = &t.array {
        let cap = match a.max_running {
            0 => String::new(),
            n => format!(", at most {n} at once"),
        };
        lines.push((
            "array",
            format!("{} (index {}; {} tasks{cap})", a.id, a.index, a.size),
        ));
    }
    if t.cancel_requested {
        lines.push(("cancel", "requested".into()));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut s = String::new();
    for (k, v) in lines {
        s.push_str(&format!("{:<width$} {v}\n", format!("{k}:")));
    }
    s.push_str(&format!("attempts: {}\n", t.attempts.len()));
    if !t.attempts.is_empty() {
        let mut at = table(&[
            "#", "WORKER", "ASSIGNED", "DURATION", "OUTCOME", "EXIT", "ERROR",
        ]);
        for a in &t.attempts {
            let d = a.started_at.map(|s| {
                let end = a.finished_at.unwrap_or(now);
                (end - s).num_milliseconds().max(0) as u64
            });
            at.add_row(vec![
                a.number.to_string(),
                a.worker.clone(),
                age(a.assigned_at, now),
                dur_ms(d),
                a.outcome
                    .map(|o| o.to_string())
                    .unwrap_or_else(|| "(live)".into()),
                a.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                a.error.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        for l in finish(at).lines() {
            s.push_str("  ");
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}

/// The `cloudai workers` table.
pub fn workers_table(workers: &[WorkerView], now: DateTime<Utc>) -> String {
    if workers.is_empty() {
        return "no workers (start one with `cloudai worker --master URL`)\n".into();
    }
    let mut t = table(&[
        "ID",
        "HEALTH",
        "CAPACITY",
        "FREE",
        "RUNNING",
        "HEARTBEAT",
        "ATTRIBUTES",
    ]);
    for w in workers {
        t.add_row(vec![
            w.id.clone(),
            match (w.drain_deadline, w.cordoned) {
                (Some(_), _) => format!("{} (draining)", w.health.as_str()),
                (None, true) => format!("{} (cordoned)", w.health.as_str()),
                _ => w.health.as_str().to_string(),
            },
            resources(&w.capacity),
            resources(&w.free),
            w.running_task_ids.len().to_string(),
            w.last_heartbeat
                .map(|h| age(h, now))
                .unwrap_or_else(|| "never".into()),
            // Labels, then the built-ins that tell workers apart (the host name is the
            // id by default, `-o json` has them all).
            w.labels
                .iter()
                .chain(
                    w.attributes
                        .iter()
                        .filter(|(k, _)| k.as_str() != "hostname"),
                )
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    finish(t)
}

/// `cloudai master status` (and the shell's `status`).
pub fn group_text(g: &GroupView, now: DateTime<Utc>) -> String {
    let mut t = table(&["MASTER", "URL", "ROLE", "LAST RENEWAL"]);
    for m in &g.masters {
        t.add_row(vec![
            m.id.clone(),
            m.url.clone(),
            m.role.clone(),
            m.last_seen
                .map(|s| age(s, now))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut out = finish(t);
    match (&g.leader, &g.leader_url) {
        (Some(l), Some(u)) => out.push_str(&format!("leader: {l} at {u} (epoch {})\n", g.epoch)),
        _ => out.push_str(&format!("no master leads right now (epoch {})\n", g.epoch)),
    }
    out
}

/// `cloudai queue stats`.
pub fn stats_text(s: &StatsView) -> String {
    let mut t = table(&["STATUS", "COUNT"]);
    for st in cloudai_queue::TaskStatus::ALL {
        t.add_row(vec![st.as_str().to_string(), s.count(st).to_string()]);
    }
    let mut out = finish(t);
    out.push_str(&format!("total: {}\n", s.total));
    out.push_str(&format!(
        "oldest queued: {}\n",
        s.oldest_queued_age_ms
            .map(|ms| format_age(ms as i64))
            .unwrap_or_else(|| "-".into())
    ));
    out.push_str(&format!(
        "finished in the last minute: {}\n",
        s.finished_last_minute
    ));
    out
}

/// The shell's `status`: one screen on the whole cluster.
pub fn cluster_summary(url: &str, g: &GroupView, workers: &[WorkerView], s: &StatsView) -> String {
    use cloudai_queue::{TaskStatus as S, WorkerHealth as H};
    let n = |h| workers.iter().filter(|w| w.health == h).count();
    let sum = |f: &dyn Fn(&WorkerView) -> ResourcesView| {
        workers.iter().filter(|w| w.health != H::Dead).map(f).fold(
            ResourcesView::default(),
            |a, r| ResourcesView {
                cpu_millis: a.cpu_millis + r.cpu_millis,
                memory_bytes: a.memory_bytes + r.memory_bytes,
                gpus: a.gpus + r.gpus,
            },
        )
    };
    let leader = match (&g.leader, &g.leader_url) {
        (Some(l), Some(u)) => format!("{l} at {u} (epoch {})", g.epoch),
        _ => format!("none right now (epoch {})", g.epoch),
    };
    format!(
        "master:   {url}\nleader:   {leader}, {} master(s) in the group\nworkers:  {} ({} healthy, {} suspect, {} dead)\ncapacity: {}\nfree:     {}\ntasks:    {} queued, {} running, {} assigned, {} succeeded, {} failed, {} cancelled, {} timed out, {} lost\nfinished in the last minute: {}\n",
        g.masters.len(),
        workers.len(),
        n(H::Healthy),
        n(H::Suspect),
        n(H::Dead),
        resources(&sum(&|w| w.capacity)),
        resources(&sum(&|w| w.free)),
        s.count(S::Queued),
        s.count(S::Running),
        s.count(S::Assigned),
        s.count(S::Succeeded),
        s.count(S::Failed),
        s.count(S::Cancelled),
        s.count(S::TimedOut),
        s.count(S::Lost),
        s.finished_last_minute,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::tests_support::sample_view;

    #[test]
    fn tasks_table_has_columns_and_rows() {
        let v = sample_view();
        let now = v.created_at + chrono::Duration::seconds(90);
        let s = tasks_table(std::slice::from_ref(&v), now);
        let mut lines = s.lines();
        let header = lines.next().unwrap();
        for col in [
            "ID",
            "IMAGE",
            "STATUS",
            "REASON",
            "WORKER",
            "SUBMITTER",
            "ATTEMPTS",
            "AGE",
            "DURATION",
        ] {
            assert!(header.contains(col), "{header}");
        }
        let row = lines.next().unwrap();
        assert!(row.starts_with(&v.id), "{row}");
        assert!(
            row.contains("succeeded")
                && row.contains("w1")
                && row.contains("1m ago")
                && row.contains("3s")
        );
        let cells = |row: &str| {
            row.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cells(row)[3],
            "-",
            "an ended task has no wait reason: {row}"
        );
        assert_eq!(cells(row)[5], "-", "no submitter: {row}");
        let mut alices = v.clone();
        alices.submitted_by = Some("alice".into());
        let s = tasks_table(&[alices], now);
        assert_eq!(cells(s.lines().nth(1).unwrap())[5], "alice", "{s}");
        assert_eq!(tasks_table(&[], now), "no tasks\n");
    }

    #[test]
    fn task_detail_shows_attempts() {
        let v = sample_view();
        let s = task_detail(&v, v.created_at);
        assert!(s.contains("status:"));
        assert!(s.contains("exit code:"));
        assert!(s.contains("echo hi"));
        assert!(s.contains("attempts: 1"));
        assert!(s.contains("OUTCOME"));
        let line = |s: &str, key: &str| {
            s.lines()
                .find(|l| l.starts_with(key))
                .map(|l| l[key.len()..].trim().to_string())
        };
        assert_eq!(line(&s, "submitted by:").as_deref(), Some("-"));
        assert_eq!(line(&s, "entrypoint:").as_deref(), Some("(image default)"));
        let mut other = v.clone();
        other.submitted_by = Some("alice".into());
        other.entrypoint = vec!["/bin/echo".into()];
        let s = task_detail(&other, other.created_at);
        assert_eq!(line(&s, "submitted by:").as_deref(), Some("alice"));
        assert_eq!(line(&s, "entrypoint:").as_deref(), Some("/bin/echo"));
        other.entrypoint = vec![String::new()];
        let s = task_detail(&other, other.created_at);
        assert_eq!(line(&s, "entrypoint:").as_deref(), Some("(none)"));
    }

    #[test]
    fn json_round_trips() {
        let v = sample_view();
        let back: serde_json::Value =
            serde_json::from_str(&json(std::slice::from_ref(&v))).unwrap();
        assert_eq!(back[0]["id"], v.id);
    }

    #[test]
    fn resources_are_human() {
        let r = ResourcesView {
            cpu_millis: 1500,
            memory_bytes: 256 << 20,
            gpus: 0,
        };
        assert_eq!(resources(&r), "cpu 1.5, mem 256MiB");
    }
}
