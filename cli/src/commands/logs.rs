//! `cloudai logs <id> [-f]`: the container's stdout to stdout, its stderr to stderr, as
//! they were written; cloudai's own notes (e.g. dropped old output) to stderr. Each
//! attempt's output is kept apart: by default the deciding attempt's (the last), with
//! `--attempt N` one attempt's, with `--all-attempts` all, each after a separator line.

use std::io::Write;

use cloudai_queue::{LogChunk, LogStream};
use futures::StreamExt;

use crate::args::LogsArgs;
use crate::client::Client;
use crate::exit::{CliError, CliResult, Kind};
use crate::output::{self, OutputFormat};
use crate::view::{AttemptView, LogView, TaskView};

/// Writes one chunk where it belongs.
pub fn write_chunk(c: &LogChunk) {
    match c.stream {
        LogStream::Stdout => {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&c.data);
            let _ = o.flush();
        }
        LogStream::Stderr => {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(&c.data);
            let _ = e.flush();
        }
        LogStream::System => {
            let text = String::from_utf8_lossy(&c.data);
            eprintln!("[cloudai] {}", text.trim_end());
        }
    }
}

/// True when `c` passes the `--stdout-only` / `--stderr-only` filter.
pub fn wanted(c: &LogChunk, stdout_only: bool, stderr_only: bool) -> bool {
    match c.stream {
        LogStream::Stdout => !stderr_only,
        LogStream::Stderr => !stdout_only,
        LogStream::System => true,
    }
}

/// Which attempts' output to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Ask the master for this attempt only.
    pub only: Option<u32>,
    /// Skip output of attempts before this one.
    pub from: u32,
    /// Print a separator before the first attempt too (not only when it changes).
    pub head_first: bool,
}

/// What `--attempt`, `--all-attempts` and `-f` select for a task with `attempts` attempts.
pub fn select(a: &LogsArgs, attempts: usize) -> Result<Selection, String> {
    let last = attempts as u32;
    Ok(match (a.attempt, a.all_attempts) {
        (Some(n), _) if n > last => {
            return Err(format!(
                "task {} has {last} attempt(s); --attempt takes 1 to {last}",
                a.id
            ))
        }
        (Some(n), _) => Selection {
            only: Some(n),
            from: 0,
            head_first: false,
        },
        (None, true) => Selection {
            only: None,
            from: 0,
            head_first: attempts > 1,
        },
        // Following: the current attempt, and any retry after it.
        (None, false) if a.follow => Selection {
            only: None,
            from: last.max(1),
            head_first: false,
        },
        (None, false) => Selection {
            only: Some(last).filter(|n| *n > 0),
            from: 0,
            head_first: false,
        },
    })
}

/// The line printed before an attempt's output.
pub fn separator(task_id: &str, a: Option<&AttemptView>, number: u32) -> String {
    let Some(a) = a else {
        return format!("--- attempt {number} of task {task_id} ---");
    };
    let end = match (a.outcome, &a.error) {
        (Some(o), Some(e)) => format!(": {o} ({e})"),
        (Some(o), None) => format!(": {o}"),
        (None, _) => String::new(),
    };
    format!(
        "--- attempt {number} of task {task_id}, worker {}{end} ---",
        a.worker
    )
}

/// Streams the logs of `a.id` to the terminal (or, with json, collects them into one
/// document printed at the end).
pub async fn run(c: &Client, a: &LogsArgs, fmt: OutputFormat) -> CliResult<()> {
    let mut task = c.task(&a.id).await?;
    let sel =
        select(a, task.attempts.len()).map_err(|m| CliError::new(Kind::InvalidArgument, m))?;
    if fmt == OutputFormat::Table && !a.all_attempts && a.attempt.is_none() && !a.follow {
        if let Some(n) = sel.only.filter(|n| *n > 1) {
            eprintln!(
                "[cloudai] attempt {n} of {n}; earlier attempts: --attempt N, or --all-attempts"
            );
        }
    }
    let mut stream = Box::pin(
        c.logs(&task.id, a.follow, !a.stderr_only, !a.stdout_only, sel.only)
            .await?,
    );
    let mut collected = Vec::new();
    let mut shown: Option<u32> = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if !wanted(&chunk, a.stdout_only, a.stderr_only) {
            continue;
        }
        if chunk.seq != 0 && chunk.attempt < sel.from {
            continue;
        }
        if fmt == OutputFormat::Json {
            collected.push(LogView::from(chunk));
            continue;
        }
        if chunk.seq != 0 && shown != Some(chunk.attempt) {
            if shown.is_some() || sel.head_first {
                if !task.attempts.iter().any(|x| x.number == chunk.attempt) {
                    task = c.task(&task.id).await?;
                }
                let at = task.attempts.iter().find(|x| x.number == chunk.attempt);
                println!("{}", separator(&task.id, at, chunk.attempt));
            }
            shown = Some(chunk.attempt);
        }
        write_chunk(&chunk);
    }
    if fmt == OutputFormat::Json {
        super::print(&output::json(&collected));
    }
    Ok(())
}

/// Follows a task's output as `enqueue --wait` shows it: the current attempt and any
/// retry after it, with a separator line when the attempt changes.
pub async fn follow(c: &Client, task: &TaskView) -> CliResult<()> {
    let args = LogsArgs {
        id: task.id.clone(),
        follow: true,
        stdout_only: false,
        stderr_only: false,
        attempt: None,
        all_attempts: false,
    };
    run(c, &args, OutputFormat::Table).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_streams_but_keeps_system_notes() {
        let chunk = |stream| LogChunk {
            seq: 1,
            attempt: 1,
            stream,
            time: chrono::Utc::now(),
            data: b"x".to_vec(),
        };
        assert!(wanted(&chunk(LogStream::Stdout), true, false));
        assert!(!wanted(&chunk(LogStream::Stderr), true, false));
        assert!(!wanted(&chunk(LogStream::Stdout), false, true));
        assert!(wanted(&chunk(LogStream::System), true, false));
        assert!(wanted(&chunk(LogStream::Stderr), false, false));
    }

    fn args(attempt: Option<u32>, all: bool, follow: bool) -> LogsArgs {
        LogsArgs {
            id: "t1".into(),
            follow,
            stdout_only: false,
            stderr_only: false,
            attempt,
            all_attempts: all,
        }
    }

    #[test]
    fn the_deciding_attempt_by_default_one_or_all_on_request() {
        let s = select(&args(None, false, false), 3).unwrap();
        assert_eq!((s.only, s.from, s.head_first), (Some(3), 0, false));
        let s = select(&args(Some(1), false, false), 3).unwrap();
        assert_eq!(s.only, Some(1));
        let s = select(&args(None, true, false), 3).unwrap();
        assert_eq!((s.only, s.head_first), (None, true));
        let s = select(&args(None, true, false), 1).unwrap();
        assert!(!s.head_first, "one attempt needs no separator");
        let s = select(&args(None, false, true), 2).unwrap();
        assert_eq!(
            (s.only, s.from),
            (None, 2),
            "follow: the current and later ones"
        );
        let err = select(&args(Some(4), false, false), 3).unwrap_err();
        assert!(err.contains("1 to 3"), "{err}");
        let s = select(&args(None, false, false), 0).unwrap();
        assert_eq!(
            s.only, None,
            "nothing ran yet: everything (the marker only)"
        );
    }

    #[test]
    fn a_separator_names_the_attempt_its_worker_and_how_it_ended() {
        let a = AttemptView {
            number: 2,
            worker: "w1".into(),
            assigned_at: chrono::Utc::now(),
            started_at: None,
            finished_at: None,
            outcome: Some(cloudai_queue::TaskStatus::Lost),
            exit_code: None,
            error: Some("worker w1 went silent past the dead timeout".into()),
        };
        assert_eq!(
            separator("t1", Some(&a), 2),
            "--- attempt 2 of task t1, worker w1: lost (worker w1 went silent past the dead timeout) ---"
        );
        assert_eq!(separator("t1", None, 3), "--- attempt 3 of task t1 ---");
    }
}
