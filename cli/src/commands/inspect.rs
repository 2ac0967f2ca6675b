//! `tasks`, `task`, `workers`, `queue stats`, `cancel`: ask the master, render a view.
//! Each returns the text to print, so the shell prints the same thing.

use chrono::Utc;
use cloudai_queue::TaskStatus;

use crate::args::TasksFilter;
use crate::client::Client;
use crate::exit::{CliError, CliResult};
use crate::output::{self, OutputFormat};

/// Parses `--status` values (also accepts `timed-out`).
pub fn parse_statuses(v: &[String]) -> CliResult<Vec<TaskStatus>> {
    v.iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim()
                .replace('-', "_")
                .to_ascii_lowercase()
                .parse::<TaskStatus>()
                .map_err(|e| CliError::invalid(e.to_string()))
        })
        .collect()
}

/// `cloudai tasks`.
pub async fn tasks(c: &Client, f: &TasksFilter, fmt: OutputFormat) -> CliResult<String> {
    let filter = f.criteria.to_filter(Utc::now())?;
    let tasks = c.tasks(filter, f.oldest_first, f.limit).await?;
    Ok(match fmt {
        OutputFormat::Json => output::json(&tasks),
        OutputFormat::Table => output::tasks_table(&tasks, Utc::now()),
    })
}

/// `cloudai task <id>`.
pub async fn task(c: &Client, id: &str, fmt: OutputFormat) -> CliResult<String> {
    let t = c.task(id).await?;
    Ok(match fmt {
        OutputFormat::Json => output::json(&t),
        OutputFormat::Table => output::task_detail(&t, Utc::now()),
    })
}

/// `cloudai cancel <id>`.
pub async fn cancel(c: &Client, id: &str, fmt: OutputFormat) -> CliResult<String> {
    let t = c.cancel(id).await?;
    Ok(match fmt {
        OutputFormat::Json => output::json(&t),
        OutputFormat::Table if t.status.is_terminal() => format!("{} {}\n", t.id, t.status),
        OutputFormat::Table => format!("{} cancel requested (was {})\n", t.id, t.status),
    })
}

/// `cloudai workers`.
pub async fn workers(c: &Client, fmt: OutputFormat) -> CliResult<String> {
    let w = c.workers().await?;
    Ok(match fmt {
        OutputFormat::Json => output::json(&w),
        OutputFormat::Table => output::workers_table(&w, Utc::now()),
    })
}

/// `cloudai master status`.
pub async fn group(c: &Client, fmt: OutputFormat) -> CliResult<String> {
    let g = crate::view::GroupView::from_pb(c.master_status().await?);
    Ok(match fmt {
        OutputFormat::Json => output::json(&g),
        OutputFormat::Table => output::group_text(&g, Utc::now()),
    })
}

/// `cloudai queue stats`.
pub async fn stats(c: &Client, fmt: OutputFormat) -> CliResult<String> {
    let s = c.stats().await?;
    Ok(match fmt {
        OutputFormat::Json => output::json(&s),
        OutputFormat::Table => output::stats_text(&s),
    })
}

/// The shell's `status`.
pub async fn cluster(c: &Client) -> CliResult<String> {
    let (w, s, g) = tokio::try_join!(c.workers(), c.stats(), c.master_status())?;
    let g = crate::view::GroupView::from_pb(g);
    Ok(output::cluster_summary(c.url(), &g, &w, &s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_with_commas_and_dashes() {
        let s = parse_statuses(&["running,queued".into(), "timed-out".into()]).unwrap();
        assert_eq!(
            s,
            [
                TaskStatus::Running,
                TaskStatus::Queued,
                TaskStatus::TimedOut
            ]
        );
        assert!(parse_statuses(&["done".into()]).is_err());
        assert!(parse_statuses(&[]).unwrap().is_empty());
    }
}
