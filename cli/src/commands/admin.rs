//! `cloudai retry` and the bulk forms of `cancel` and `retry`: the master's
//! `AdminService`. A bulk action takes a filter (`criteria::TaskCriteria`: `--status`,
//! `--image`, `--label`, `--search`...), never none, and `--dry-run` shows what it would
//! touch first.

use clap::{Args, Subcommand};
use cloudai_proto::pb;
use serde::Serialize;

use crate::args::{ConnectArgs, OutputArgs};
use crate::client::Client;
use crate::exit::{CliError, CliResult};
use crate::output::{self, OutputFormat};

/// Which tasks a bulk cancel or retry acts on. With no --status: for cancel, every
/// unfinished one; for retry, failed, timed_out, lost and cancelled.
#[derive(Debug, Clone, Default, Args)]
pub struct BulkFilter {
    /// Which tasks.
    #[command(flatten)]
    pub criteria: crate::criteria::TaskCriteria,
    /// Show which tasks would be changed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Act on at most this many (the newest first); the answer says when more matched.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: u32,
}

impl BulkFilter {
    /// True when no criterion is given.
    pub fn is_empty(&self) -> bool {
        self.criteria.is_empty()
    }

    fn request(&self) -> CliResult<pb::MatchRequest> {
        Ok(pb::MatchRequest {
            filter: Some(self.criteria.to_filter(chrono::Utc::now())?),
            dry_run: self.dry_run,
            limit: self.limit,
        })
    }
}

/// `cloudai retry <id>` or `cloudai retry --status failed --image X`.
#[derive(Debug, Args)]
pub struct RetryCmd {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The ended task to run again (full id or prefix); or give a filter instead.
    pub id: Option<String>,
    /// Which tasks, instead of an id.
    #[command(flatten)]
    pub filter: BulkFilter,
    /// Format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Checks that exactly one of an id and a filter is given.
pub fn one_target(id: Option<&str>, filter: &BulkFilter, verb: &str) -> CliResult<()> {
    match (id, filter.is_empty()) {
        (Some(_), false) => Err(CliError::invalid(format!(
            "give a task id or a filter to {verb}, not both"
        ))),
        (None, true) => Err(CliError::invalid(format!(
            "give a task id, or a filter (--status, --worker, --submitter, --image, --label, \
             --since, --until, --search) to {verb} every task it matches"
        ))),
        (Some(_), true) if filter.dry_run => Err(CliError::invalid(
            "--dry-run goes with a filter: a single task is shown by `cloudai task ID`",
        )),
        _ => Ok(()),
    }
}

/// What a bulk call did, as shown.
#[derive(Debug, Serialize)]
struct BulkView {
    dry_run: bool,
    task_ids: Vec<String>,
    new_task_ids: Vec<String>,
    truncated: bool,
    skipped: Vec<String>,
}

/// `cloudai cancel --status ...` (`cancel` true) or `cloudai retry --status ...`.
pub async fn bulk(
    c: &Client,
    cancel: bool,
    f: &BulkFilter,
    fmt: OutputFormat,
) -> CliResult<String> {
    let r = c.matching(cancel, f.request()?).await?;
    let v = BulkView {
        dry_run: f.dry_run,
        task_ids: r.task_ids,
        new_task_ids: r.new_task_ids,
        truncated: r.truncated,
        skipped: r.skipped,
    };
    if fmt == OutputFormat::Json {
        return Ok(output::json(&v));
    }
    let verb = match (cancel, v.dry_run) {
        (true, true) => "would cancel",
        (true, false) => "cancel requested for",
        (false, true) => "would retry",
        (false, false) => "retried",
    };
    let mut out = format!("{verb} {} task(s)\n", v.task_ids.len());
    for (i, id) in v.task_ids.iter().enumerate() {
        match v.new_task_ids.get(i) {
            Some(new) => out.push_str(&format!("{id} -> {new}\n")),
            None => out.push_str(&format!("{id}\n")),
        }
    }
    for s in &v.skipped {
        out.push_str(&format!("skipped {s}\n"));
    }
    if v.truncated {
        out.push_str(&format!(
            "more tasks match than --limit {}: run it again for the rest\n",
            f.limit
        ));
    }
    Ok(out)
}

/// `cloudai retry <id>`: prints the new task's id.
pub async fn retry_one(c: &Client, id: &str) -> CliResult<String> {
    Ok(format!("{}\n", c.retry(id).await?))
}

/// `cloudai worker cordon|drain|uncordon ID`: a worker out of service, or back.
#[derive(Debug, Subcommand)]
pub enum WorkerAction {
    /// No new task goes to the worker; what runs there goes on (kept across restarts)
    Cordon(WorkerTarget),
    /// Cordon the worker, and at the deadline stop what still runs there and retry it
    /// elsewhere
    Drain {
        /// The worker.
        #[command(flatten)]
        target: WorkerTarget,
        /// How long running tasks may go on (0: stop them now).
        #[arg(long, default_value = "10m", value_parser = parse_deadline)]
        deadline: std::time::Duration,
    },
    /// Lift a cordon or a drain
    Uncordon(WorkerTarget),
}

/// Which worker, on which master.
#[derive(Debug, Args)]
pub struct WorkerTarget {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The worker's id.
    pub id: String,
    /// Format.
    #[command(flatten)]
    pub output: OutputArgs,
}

fn parse_deadline(s: &str) -> Result<std::time::Duration, String> {
    if s.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    crate::units::parse_duration(s).map_err(|e| e.0)
}

/// Runs a `cloudai worker cordon|drain|uncordon`.
pub async fn worker_action(a: WorkerAction) -> CliResult<i32> {
    let (t, drain) = match &a {
        WorkerAction::Cordon(t) | WorkerAction::Uncordon(t) => (t, None),
        WorkerAction::Drain { target, deadline } => (target, Some(*deadline)),
    };
    let c = Client::connect_with(&t.connect.master, &t.connect.credentials()).await?;
    let cordon = !matches!(a, WorkerAction::Uncordon(_));
    let w = c.cordon(&t.id, cordon, drain).await?;
    let text = match t.output.output {
        OutputFormat::Json => output::json(&w),
        OutputFormat::Table => match (&a, &w.drain_deadline) {
            (WorkerAction::Uncordon(_), _) => format!("worker {} uncordoned: it takes new tasks\n", w.id),
            (_, Some(d)) => format!(
                "worker {} draining: no new tasks; what still runs at {} is stopped and retried elsewhere\n",
                w.id,
                d.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            _ => format!("worker {} cordoned: no new tasks; running ones go on\n", w.id),
        },
    };
    super::print(&text);
    Ok(0)
}
