//! `cloudai submit FILE`, `cloudai workflow show ID`, `cloudai workflow cancel ID`: a
//! workflow file's steps as ordinary tasks that run after one another (`--after`), tied
//! together by two labels: `cloudai.workflow` (the workflow's id) and `cloudai.step`
//! (the step's name). The file is checked whole first (`flow_file`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use cloudai_proto::pb;
use serde::Serialize;

use super::flow_file::{self, Flow};
use crate::args::{ConnectArgs, OutputArgs};
use crate::client::Client;
use crate::exit::{CliError, CliResult};
use crate::output::{self, OutputFormat};
use crate::view::TaskView;

/// The label holding a task's workflow id.
pub const WORKFLOW_LABEL: &str = "cloudai.workflow";
/// The label holding a task's step name.
pub const STEP_LABEL: &str = "cloudai.step";
/// The label holding the file's `name`, when it has one.
pub const NAME_LABEL: &str = "cloudai.workflow-name";

/// `cloudai submit FILE`.
#[derive(Debug, Args)]
pub struct SubmitCmd {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The workflow file (YAML; the format is in cli/WORKFLOWS.md).
    pub file: PathBuf,
    /// Check the file and print the steps in order; enqueue nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `cloudai workflow ...`.
#[derive(Debug, Subcommand)]
pub enum WorkflowCmd {
    /// The steps of a workflow in dependency order, each with its status
    #[command(
        after_help = "Example:\n  cloudai workflow show 01a2345b-0c9d-7e6f-8a7b-6c5d4e3f2a1b"
    )]
    Show(WorkflowArgs),
    /// Cancel every step of a workflow that has not ended (the last steps first)
    #[command(
        after_help = "Example:\n  cloudai workflow cancel 01a2345b-0c9d-7e6f-8a7b-6c5d4e3f2a1b"
    )]
    Cancel(WorkflowArgs),
}

/// The workflow a `workflow` command acts on.
#[derive(Debug, Args)]
pub struct WorkflowArgs {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The id `cloudai submit` printed.
    pub id: String,
    /// Format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Reads and checks a workflow file; errors name the file and line.
pub fn load(path: &PathBuf) -> CliResult<Flow> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::invalid(format!("cannot read {}: {e}", path.display())))?;
    flow_file::parse(&text).map_err(|e| {
        let at = e.line.map(|l| format!(":{l}")).unwrap_or_default();
        CliError::invalid(format!("{}{at}: {}", path.display(), e.message))
    })
}

#[derive(Serialize)]
struct Submitted {
    workflow: String,
    steps: BTreeMap<String, String>,
}

/// Enqueues every step, parents first; on a failure, cancels what it had enqueued.
pub async fn submit(c: &Client, flow: Flow, fmt: OutputFormat) -> CliResult<String> {
    let workflow = uuid::Uuid::now_v7().to_string();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut done: Vec<String> = Vec::new();
    for step in flow.steps {
        let mut spec = step.spec;
        if let Some(n) = &flow.name {
            spec.labels.insert(NAME_LABEL.into(), n.clone());
        }
        spec.labels.insert(WORKFLOW_LABEL.into(), workflow.clone());
        spec.labels.insert(STEP_LABEL.into(), step.name.clone());
        // A retried call finds the step it stored.
        spec.idempotency_key = Some(format!("{workflow}/{}", step.name));
        let parents: Vec<_> = step
            .needs
            .iter()
            .map(|(p, cond)| (ids[p].clone(), *cond))
            .collect();
        match c.enqueue(spec, &parents, false).await {
            Ok(e) => {
                let id = e.id;
                eprintln!("step {} -> task {id}", step.name);
                if let Some(w) = &e.warning {
                    eprintln!("warning: step {}: {w}", step.name);
                }
                done.push(id.clone());
                ids.insert(step.name, id);
            }
            Err(e) => {
                for id in done.iter().rev() {
                    let _ = c.cancel(id).await;
                }
                return Err(CliError::new(
                    e.kind,
                    format!(
                        "step {}: {}; the {} step(s) enqueued before it were cancelled",
                        step.name,
                        e.message,
                        done.len()
                    ),
                ));
            }
        }
    }
    Ok(match fmt {
        OutputFormat::Json => output::json(&Submitted {
            workflow,
            steps: ids,
        }),
        OutputFormat::Table => format!("{workflow}\n"),
    })
}

/// The file's steps in order, as `--dry-run` shows them.
pub fn plan_text(flow: &Flow) -> String {
    let mut out = String::new();
    for s in &flow.steps {
        let needs: Vec<String> = s.needs.iter().map(|(p, c)| format!("{p}:{c}")).collect();
        out.push_str(&format!(
            "{}{}\t{}\t{}\n",
            "  ".repeat(s.depth),
            s.name,
            s.spec.image,
            if needs.is_empty() {
                "-".into()
            } else {
                needs.join(", ")
            }
        ));
    }
    out
}

/// One step as `workflow show` lists it.
#[derive(Debug, Serialize)]
struct StepView {
    step: String,
    depth: usize,
    status: String,
    task_id: String,
    needs: Vec<String>,
    error: Option<String>,
}

/// The workflow's tasks (every page).
async fn steps(c: &Client, id: &str) -> CliResult<Vec<TaskView>> {
    let filter = pb::TaskFilter {
        labels: [(WORKFLOW_LABEL.to_string(), id.to_string())].into(),
        ..Default::default()
    };
    let tasks = c.tasks(filter, true, 0).await?;
    if tasks.is_empty() {
        return Err(CliError::new(
            crate::exit::Kind::UnknownTask,
            format!("no workflow {id:?}: no task carries {WORKFLOW_LABEL}={id}"),
        ));
    }
    Ok(tasks)
}

/// Steps in dependency order: (depth, name), parents before children.
fn ordered(tasks: &[TaskView]) -> Vec<StepView> {
    let name_of: BTreeMap<&str, &str> = tasks
        .iter()
        .map(|t| {
            let name = t.labels.get(STEP_LABEL).map(String::as_str).unwrap_or("?");
            (t.id.as_str(), name)
        })
        .collect();
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    // Oldest first: each step was enqueued after its parents.
    for t in tasks {
        let d = t
            .after
            .iter()
            .filter_map(|a| a.split(':').next())
            .filter_map(|p| depth.get(p))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
        depth.insert(t.id.as_str(), d);
    }
    let mut out: Vec<StepView> = tasks
        .iter()
        .map(|t| StepView {
            step: name_of[t.id.as_str()].to_string(),
            depth: depth[t.id.as_str()],
            status: t.status.to_string(),
            task_id: t.id.clone(),
            needs: t
                .after
                .iter()
                .map(|a| match a.split_once(':') {
                    Some((p, c)) => format!("{}:{c}", name_of.get(p).copied().unwrap_or(p)),
                    None => a.clone(),
                })
                .collect(),
            error: t.error.clone().filter(|_| !t.status.is_active()),
        })
        .collect();
    out.sort_by(|a, b| (a.depth, &a.step).cmp(&(b.depth, &b.step)));
    out
}

/// `cloudai workflow show ID`.
pub async fn show(c: &Client, id: &str, fmt: OutputFormat) -> CliResult<String> {
    let steps = ordered(&steps(c, id).await?);
    if fmt == OutputFormat::Json {
        return Ok(output::json(&steps));
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = String::from("STEP\tSTATUS\tTASK\tNEEDS\n");
    for s in &steps {
        *counts.entry(s.status.as_str()).or_default() += 1;
        out.push_str(&format!(
            "{}{}\t{}\t{}\t{}\n",
            "  ".repeat(s.depth),
            s.step,
            s.status,
            s.task_id,
            if s.needs.is_empty() {
                "-".into()
            } else {
                s.needs.join(", ")
            }
        ));
    }
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    out.push_str(&format!(
        "{} step(s): {}\n",
        steps.len(),
        summary.join(", ")
    ));
    Ok(out)
}

/// `cloudai workflow cancel ID`: the deepest steps first, so that a cancel never
/// releases a step that runs after another one `:notok` or `:any`.
pub async fn cancel(c: &Client, id: &str, fmt: OutputFormat) -> CliResult<String> {
    let tasks = steps(c, id).await?;
    let mut steps = ordered(&tasks);
    steps.reverse();
    let mut cancelled = Vec::new();
    for s in &steps {
        let open = tasks
            .iter()
            .any(|t| t.id == s.task_id && !t.status.is_terminal());
        if open && c.cancel(&s.task_id).await.is_ok() {
            cancelled.push(s.step.clone());
        }
    }
    Ok(match fmt {
        OutputFormat::Json => output::json(&cancelled),
        OutputFormat::Table => format!(
            "cancelled {} step(s) of workflow {id}{}\n",
            cancelled.len(),
            if cancelled.is_empty() {
                String::new()
            } else {
                format!(": {}", cancelled.join(", "))
            }
        ),
    })
}
