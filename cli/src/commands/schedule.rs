//! `cloudai schedule add|list|show|pause|resume|rm|run-now`: cron schedules, each an
//! ordinary task enqueued at the times a cron pattern names (the leader fires them; a
//! time missed while no master ran starts one run, and the history says so).

use clap::{Args, Subcommand};
use cloudai_proto::{convert, pb};
use serde::Serialize;

use crate::args::{ConnectArgs, EnqueueArgs, OutputArgs};
use crate::client::Client;
use crate::exit::{CliError, CliResult};
use crate::output::{self, OutputFormat};

/// `cloudai schedule ...`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Add a schedule: the task, enqueued at each time the cron pattern names
    #[command(
        after_help = "The pattern has 5 fields, minute hour day-of-month month \
day-of-week (0 3 * * * is 03:00 every day; */15 * * * * every quarter hour; 0 9 * * MON-FRI), \
or 6 with seconds first (*/10 * * * * * every 10 s). Times missed while no master ran start \
one run, not one per time.\n\nExamples:\n  \
cloudai schedule add nightly --cron '0 3 * * *' --tz Europe/Berlin cloudai/sample-task:latest\n  \
cloudai schedule add sync --cron '*/15 * * * *' --overlap cancel-previous cloudai/busybox:test -- sh -c 'echo sync'"
    )]
    Add(Box<AddArgs>),
    /// Every schedule, with its next time
    #[command(after_help = "Example:\n  cloudai schedule list --output json")]
    List(ListArgs),
    /// One schedule: its pattern, task, next time and the history of its fires
    #[command(after_help = "Example:\n  cloudai schedule show nightly")]
    Show(NameArgs),
    /// Stop firing until resumed
    #[command(after_help = "Example:\n  cloudai schedule pause nightly")]
    Pause(NameArgs),
    /// Fire again, from the next time after now (times paused over are not made up)
    #[command(after_help = "Example:\n  cloudai schedule resume nightly")]
    Resume(NameArgs),
    /// Remove a schedule (its runs stay)
    #[command(after_help = "Example:\n  cloudai schedule rm nightly")]
    Rm(NameArgs),
    /// One run now, outside the pattern; prints the run's task id
    #[command(
        name = "run-now",
        after_help = "Example:\n  cloudai schedule run-now nightly"
    )]
    RunNow(NameArgs),
}

/// `schedule add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The schedule's name: letters, digits, '.', '_', '-', '@'.
    pub name: String,
    /// The cron pattern, quoted: '0 3 * * *'.
    #[arg(long, value_name = "PATTERN")]
    pub cron: String,
    /// The time zone the pattern is read in (IANA: Europe/Berlin, America/New_York).
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub tz: String,
    /// While the previous run has not ended: skip this time, allow both, or cancel the
    /// previous run first.
    #[arg(long, value_name = "POLICY", default_value = "skip",
          value_parser = ["skip", "allow", "cancel-previous"])]
    pub overlap: String,
    /// The task (as `cloudai enqueue` takes it).
    #[command(flatten)]
    pub task: EnqueueArgs,
    /// Format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `schedule list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The schedule a command acts on.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The schedule's name.
    pub name: String,
    /// Format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// One fire, as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct FireView {
    /// The time the pattern named.
    pub tick: Option<String>,
    /// When it fired.
    pub fired_at: Option<String>,
    /// The run; null when skipped.
    pub task_id: Option<String>,
    /// What else happened.
    pub note: String,
}

/// A schedule, as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct ScheduleView {
    /// Its name.
    pub name: String,
    /// The pattern.
    pub cron: String,
    /// Its time zone.
    pub timezone: String,
    /// The overlap policy.
    pub overlap: String,
    /// Paused.
    pub paused: bool,
    /// The next time it fires (RFC 3339); null when paused past or none is left.
    pub next_at: Option<String>,
    /// The image and command of its runs.
    pub image: String,
    /// The command.
    pub command: Vec<String>,
    /// Who added it.
    pub created_by: Option<String>,
    /// Its newest run.
    pub last_task_id: Option<String>,
    /// The newest fires, oldest first.
    pub history: Vec<FireView>,
}

fn time(t: &Option<prost_types::Timestamp>) -> Option<String> {
    t.as_ref()
        .and_then(|t| convert::from_timestamp("t", t).ok())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn nonempty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl ScheduleView {
    fn from_pb(s: pb::Schedule) -> ScheduleView {
        let spec = s.spec.unwrap_or_default();
        ScheduleView {
            name: s.name,
            cron: s.cron,
            timezone: s.timezone,
            overlap: s.overlap,
            paused: s.paused,
            next_at: time(&s.next_at),
            image: spec.image,
            command: spec.command,
            created_by: nonempty(s.created_by),
            last_task_id: nonempty(s.last_task_id),
            history: s
                .history
                .into_iter()
                .map(|f| FireView {
                    tick: time(&f.tick),
                    fired_at: time(&f.fired_at),
                    task_id: nonempty(f.task_id),
                    note: f.note,
                })
                .collect(),
        }
    }

    fn next(&self) -> String {
        match (&self.next_at, self.paused) {
            (_, true) => "paused".into(),
            (Some(t), false) => t.clone(),
            (None, false) => "-".into(),
        }
    }

    fn text(&self) -> String {
        let mut out = format!(
            "schedule {}: '{}' in {} (overlap: {})\nnext: {}\ntask: {} {}\n",
            self.name,
            self.cron,
            self.timezone,
            self.overlap,
            self.next(),
            self.image,
            self.command.join(" ")
        );
        if self.history.is_empty() {
            out.push_str("history: none yet\n");
        } else {
            out.push_str("history (oldest first):\n");
            for f in &self.history {
                out.push_str(&format!(
                    "  {}  {}{}\n",
                    f.tick.as_deref().unwrap_or("-"),
                    f.task_id.as_deref().unwrap_or("(no run)"),
                    if f.note.is_empty() {
                        String::new()
                    } else {
                        format!("  {}", f.note)
                    }
                ));
            }
        }
        out
    }
}

fn show(s: pb::Schedule, fmt: OutputFormat) -> String {
    let v = ScheduleView::from_pb(s);
    match fmt {
        OutputFormat::Json => output::json(&v),
        OutputFormat::Table => v.text(),
    }
}

/// The connection a subcommand names.
pub fn connect_args(cmd: &ScheduleCmd) -> &ConnectArgs {
    match cmd {
        ScheduleCmd::Add(a) => &a.connect,
        ScheduleCmd::List(a) => &a.connect,
        ScheduleCmd::Show(a)
        | ScheduleCmd::Pause(a)
        | ScheduleCmd::Resume(a)
        | ScheduleCmd::Rm(a)
        | ScheduleCmd::RunNow(a) => &a.connect,
    }
}

/// Checks what can be checked before connecting (the task's flags).
pub fn check(cmd: &ScheduleCmd) -> CliResult<()> {
    if let ScheduleCmd::Add(a) = cmd {
        super::spec::build(&a.task)?;
        if a.task.array.is_some() || !a.task.spec.after.is_empty() || a.task.spec.wait {
            return Err(CliError::invalid(
                "a schedule's task takes no --array, --after or --wait",
            ));
        }
    }
    Ok(())
}

/// Runs a `schedule` subcommand; the text to print.
pub async fn run(c: &Client, cmd: ScheduleCmd) -> CliResult<String> {
    let mut s = c.service();
    let req = |name: &str| pb::ScheduleRequest {
        name: name.to_string(),
    };
    Ok(match cmd {
        ScheduleCmd::Add(a) => {
            let spec = super::spec::build(&a.task)?;
            let r = s
                .add_schedule(pb::AddScheduleRequest {
                    name: a.name,
                    cron: a.cron,
                    timezone: a.tz,
                    overlap: a.overlap,
                    spec: Some(spec.into()),
                })
                .await
                .map_err(|e| c.status(e))?
                .into_inner();
            show(r, a.output.output)
        }
        ScheduleCmd::List(a) => {
            let all = s
                .list_schedules(pb::ListSchedulesRequest {})
                .await
                .map_err(|e| c.status(e))?
                .into_inner()
                .schedules;
            let views: Vec<ScheduleView> = all.into_iter().map(ScheduleView::from_pb).collect();
            match a.output.output {
                OutputFormat::Json => output::json(&views),
                OutputFormat::Table => {
                    let mut out = String::from("NAME\tCRON\tTZ\tNEXT\tLAST RUN\n");
                    for v in &views {
                        out.push_str(&format!(
                            "{}\t{}\t{}\t{}\t{}\n",
                            v.name,
                            v.cron,
                            v.timezone,
                            v.next(),
                            v.last_task_id.as_deref().unwrap_or("-")
                        ));
                    }
                    out
                }
            }
        }
        ScheduleCmd::Show(a) => show(
            s.get_schedule(req(&a.name))
                .await
                .map_err(|e| c.status(e))?
                .into_inner(),
            a.output.output,
        ),
        ScheduleCmd::Pause(a) => show(
            s.pause_schedule(req(&a.name))
                .await
                .map_err(|e| c.status(e))?
                .into_inner(),
            a.output.output,
        ),
        ScheduleCmd::Resume(a) => show(
            s.resume_schedule(req(&a.name))
                .await
                .map_err(|e| c.status(e))?
                .into_inner(),
            a.output.output,
        ),
        ScheduleCmd::Rm(a) => {
            s.remove_schedule(req(&a.name))
                .await
                .map_err(|e| c.status(e))?;
            format!("removed schedule {} (its runs stay)\n", a.name)
        }
        ScheduleCmd::RunNow(a) => {
            let r = s
                .run_schedule(req(&a.name))
                .await
                .map_err(|e| c.status(e))?
                .into_inner();
            format!("{}\n", r.task_id)
        }
    })
}
