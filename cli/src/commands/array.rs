//! `cloudai enqueue --array 0-99%8 …` and `cloudai array ID`: a job array is one spec
//! run once per index (`CLOUDAI_ARRAY_INDEX` in each element's env), enqueued in one call;
//! `%8` lets at most 8 be queued or running at once. Its elements are ordinary tasks
//! (`cloudai tasks --array ID`, `cloudai cancel --array ID`); the summary counts them by
//! status.

use clap::Args;
use cloudai_proto::pb;
use cloudai_queue::array::ArraySpec;
use cloudai_queue::{DependencyCondition, TaskSpec, TaskStatus};
use serde::Serialize;

use crate::args::{ConnectArgs, OutputArgs};
use crate::client::Client;
use crate::exit::{CliError, CliResult};
use crate::output::{self, OutputFormat};

/// `cloudai array ID`.
#[derive(Debug, Args)]
pub struct ArrayCmd {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The array's id (the whole id `enqueue --array` printed).
    pub id: String,
    /// Format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The index expression of `--array`, checked here so that a typo fails before any
/// connection (the master checks it again).
pub fn parse(expr: &str) -> CliResult<ArraySpec> {
    expr.parse::<ArraySpec>()
        .map_err(|e| CliError::invalid(format!("--array {expr:?}: {e}")))
}

/// Enqueues the array and prints its id (stdout, for scripts) and what was made (stderr).
pub async fn enqueue(
    c: &Client,
    spec: TaskSpec,
    parents: &[(String, DependencyCondition)],
    indices: &ArraySpec,
    strict: bool,
) -> CliResult<i32> {
    let r = c
        .enqueue_array(spec, parents, &indices.to_string(), strict)
        .await?;
    super::print(&format!("{}\n", r.array_id));
    if !r.warning.is_empty() {
        eprintln!(
            "warning: {} (queued anyway; --strict refuses instead)",
            r.warning
        );
    }
    let cap = match r.max_running {
        0 => String::new(),
        n => format!(", at most {n} at once"),
    };
    if r.created == 0 {
        eprintln!(
            "note: the idempotency key matched existing array {} ({} tasks)",
            r.array_id, r.size
        );
    } else {
        eprintln!(
            "array {}: {} tasks{cap}; `cloudai array {}` counts them, `cloudai tasks --array {}` lists them",
            r.array_id, r.size, r.array_id, r.array_id
        );
    }
    Ok(0)
}

/// An array's summary, as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct ArrayView {
    /// Its id.
    pub id: String,
    /// Elements in it.
    pub size: u32,
    /// Most queued or running at once; 0: no cap.
    pub max_running: u32,
    /// The elements' image.
    pub image: String,
    /// The elements' command.
    pub command: Vec<String>,
    /// Elements per status (every status, zeros too).
    pub counts: std::collections::BTreeMap<String, u64>,
}

impl ArrayView {
    fn from_pb(a: pb::ArraySummary) -> CliResult<ArrayView> {
        let mut counts: std::collections::BTreeMap<String, u64> = TaskStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for c in a.counts {
            let s = cloudai_proto::convert::task_status("counts", c.status)
                .map_err(|e| CliError::invalid(e.to_string()))?;
            counts.insert(s.as_str().to_string(), c.count);
        }
        Ok(ArrayView {
            id: a.id,
            size: a.size,
            max_running: a.max_running,
            image: a.image,
            command: a.command,
            counts,
        })
    }

    fn text(&self) -> String {
        let cap = match self.max_running {
            0 => "no cap".to_string(),
            n => format!("at most {n} at once"),
        };
        let mut out = format!(
            "array {}: {} tasks, {cap}\nimage: {}\ncommand: {}\n",
            self.id,
            self.size,
            self.image,
            if self.command.is_empty() {
                "(the image's own)".to_string()
            } else {
                self.command.join(" ")
            }
        );
        let done: u64 = TaskStatus::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| self.counts[s.as_str()])
            .sum();
        out.push_str(&format!("ended: {done} of {}\n", self.size));
        for s in TaskStatus::ALL {
            let n = self.counts[s.as_str()];
            if n > 0 {
                out.push_str(&format!("  {:<10} {n}\n", s.as_str()));
            }
        }
        out
    }
}

/// `cloudai array ID`.
pub async fn show(c: &Client, id: &str, fmt: OutputFormat) -> CliResult<String> {
    let view = ArrayView::from_pb(c.array(id).await?)?;
    Ok(match fmt {
        OutputFormat::Json => output::json(&view),
        OutputFormat::Table => view.text(),
    })
}
