//! `cloudai enqueue`: prints only the new task's id, so scripts can capture it. With
//! `--wait` it then shows the status on a spinner line (stderr), streams the logs once
//! the task runs, and returns the task's exit code.

use std::io::IsTerminal;
use std::time::Duration;

use cloudai_queue::{DependencyCondition, TaskSpec, TaskStatus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::Client;
use crate::exit::{CliResult, EXIT_TASK_NO_CODE, EXIT_TASK_TIMED_OUT};
use crate::units::format_duration;
use crate::view::TaskView;

const POLL: Duration = Duration::from_millis(200);

/// Enqueues `spec`, prints the id (and any warning, on stderr); with `wait`, waits and
/// returns the task's exit code.
pub async fn run(
    c: &Client,
    spec: TaskSpec,
    parents: &[(String, DependencyCondition)],
    strict: bool,
    wait: bool,
) -> CliResult<i32> {
    let e = c.enqueue(spec, parents, strict).await?;
    let id = e.id;
    super::print(&format!("{id}\n"));
    if !e.created {
        eprintln!("note: the idempotency key matched existing task {id}");
    }
    if let Some(w) = &e.warning {
        eprintln!("warning: {w} (queued anyway; --strict refuses instead)");
    }
    if !wait {
        return Ok(0);
    }
    let task = wait_for(c, &id).await?;
    Ok(exit_code_for(&task))
}

/// The exit code `--wait` returns for a finished task.
pub fn exit_code_for(t: &TaskView) -> i32 {
    match (t.status, t.exit_code) {
        (TaskStatus::Succeeded, _) => 0,
        (TaskStatus::Failed, Some(code)) if code != 0 => code,
        (TaskStatus::TimedOut, _) => EXIT_TASK_TIMED_OUT,
        _ => EXIT_TASK_NO_CODE,
    }
}

/// The one-line summary printed to stderr when a waited-for task ends.
pub fn summary(t: &TaskView) -> String {
    let mut s = format!("task {} {}", t.id, t.status);
    if let Some(c) = t.exit_code {
        s.push_str(&format!(" (exit code {c})"));
    }
    if let Some(ms) = t.duration_ms {
        s.push_str(&format!(
            " after {}",
            format_duration(Duration::from_millis(ms))
        ));
    }
    if let Some(w) = &t.worker {
        s.push_str(&format!(" on {w}"));
    }
    if let Some(e) = t
        .error
        .as_deref()
        .filter(|_| t.status != TaskStatus::Succeeded)
    {
        s.push_str(&format!(": {e}"));
    }
    s
}

fn status_line(t: &TaskView) -> String {
    match (&t.status, &t.worker) {
        (TaskStatus::Waiting, _) => format!("waiting for {}", t.after.join(", ")),
        (TaskStatus::Queued, _) if t.attempts.is_empty() && t.not_before > chrono::Utc::now() => {
            format!("queued, not before {}", t.not_before.to_rfc3339())
        }
        (TaskStatus::Queued, _) if t.attempts.is_empty() => "queued, waiting for a worker".into(),
        (TaskStatus::Queued, _) => {
            format!("queued for a retry (attempt {} done)", t.attempts.len())
        }
        (s, Some(w)) => format!("{s} on {w}"),
        (s, None) => s.to_string(),
    }
}

/// Waits for task `id` to end, showing progress; returns it as it ended.
pub async fn wait_for(c: &Client, id: &str) -> CliResult<TaskView> {
    let tty = std::io::stderr().is_terminal();
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(100));
    pb.set_message("submitted");
    let mut last = String::new();
    loop {
        // Until it runs: status on the spinner line.
        let t = c.task(id).await?;
        let line = status_line(&t);
        if line != last {
            pb.set_message(line.clone());
            // Without a terminal, each change is a line; the end gets its own summary.
            if !tty && !t.status.is_terminal() {
                eprintln!("{line}");
            }
            last = line;
        }
        if matches!(
            t.status,
            TaskStatus::Waiting | TaskStatus::Queued | TaskStatus::Assigned
        ) {
            tokio::time::sleep(POLL).await;
            continue;
        }
        pb.finish_and_clear();
        // Running or finished: its output, live until it ends (a retry's output after a
        // separator line).
        super::logs::follow(c, &t).await?;
        // The log stream ends with the task; a retry sends it back to the queue.
        let t = c.task(id).await?;
        if t.status.is_terminal() {
            eprintln!("{}", summary(&t));
            return Ok(t);
        }
        if t.status == TaskStatus::Running {
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::tests_support::sample_view;

    #[test]
    fn exit_codes_follow_the_task() {
        let mut t = sample_view();
        assert_eq!(exit_code_for(&t), 0);
        t.status = TaskStatus::Failed;
        t.exit_code = Some(3);
        assert_eq!(exit_code_for(&t), 3);
        t.exit_code = None;
        assert_eq!(exit_code_for(&t), EXIT_TASK_NO_CODE);
        t.status = TaskStatus::TimedOut;
        assert_eq!(exit_code_for(&t), EXIT_TASK_TIMED_OUT);
        t.status = TaskStatus::Cancelled;
        assert_eq!(exit_code_for(&t), EXIT_TASK_NO_CODE);
    }

    #[test]
    fn summary_is_one_line() {
        let t = sample_view();
        let s = summary(&t);
        assert!(s.contains("succeeded (exit code 0) after 3s on w1"), "{s}");
        assert!(!s.contains('\n'));
    }
}
