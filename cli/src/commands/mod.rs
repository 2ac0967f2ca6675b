//! The subcommands. Client commands build their output as text through `output`, so the
//! interactive shell runs exactly the same code.
//!
//! - [`spec`]: flags → a validated `TaskSpec` (pure).
//! - [`enqueue`]: `enqueue` and its `--wait` progress; [`array`]: `enqueue --array` and
//!   `array ID`.
//! - [`inspect`]: `tasks`, `task`, `workers`, `queue stats`, `cancel`.
//! - [`logs`]: `logs [-f]`.
//! - [`schedule`]: `schedule add|list|show|pause|resume|rm|run-now` (cron schedules).
//! - [`master`], [`worker`]: the long-running processes.
//! - [`security`]: `users`, `token` and `certs`, the operator commands of a secure cluster.
//! - [`admin`]: `retry`, and `cancel`/`retry` of every task a filter matches.

pub mod admin;
pub mod array;
pub mod enqueue;
pub mod flow_file;
pub mod inspect;
pub mod logs;
pub mod master;
pub mod schedule;
pub mod security;
pub mod spec;
pub mod users;
pub mod worker;
pub mod workflow;

use std::io::Write;

use crate::args::{Command, MasterAction, MasterArgs, QueueCmd};
use crate::client::Client;
use crate::exit::CliResult;

/// Prints text to stdout; a closed pipe (`| head`) is not an error worth a message.
pub fn print(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// Runs one subcommand; returns the process exit code on success.
pub async fn run(command: Command) -> CliResult<i32> {
    match command {
        Command::Master(MasterArgs {
            action: Some(MasterAction::Status(a)),
            ..
        }) => {
            let client = Client::connect_with(&a.connect.master, &a.connect.credentials()).await?;
            print(&inspect::group(&client, a.output.output).await?);
            Ok(0)
        }
        Command::Master(a) => master::run(a).await,
        Command::Worker(a) => match a.action {
            Some(action) => admin::worker_action(action).await,
            None => worker::run(a).await,
        },
        Command::Enqueue(a) => {
            let spec = spec::build(&a.enqueue)?;
            let parents = spec::parents(&a.enqueue)?;
            let indices = a.enqueue.array.as_deref().map(array::parse).transpose()?;
            let client = Client::connect_with(&a.connect.master, &a.connect.credentials()).await?;
            let strict = a.enqueue.strict;
            match indices {
                Some(ix) => array::enqueue(&client, spec, &parents, &ix, strict).await,
                None => enqueue::run(&client, spec, &parents, strict, a.enqueue.spec.wait).await,
            }
        }
        Command::Array(a) => {
            let client = Client::connect_with(&a.connect.master, &a.connect.credentials()).await?;
            print(&array::show(&client, &a.id, a.output.output).await?);
            Ok(0)
        }
        Command::Tasks(a) => {
            // Bad criteria fail before any connection is tried.
            a.filter.criteria.to_filter(chrono::Utc::now())?;
            let client = Client::connect_with(&a.connect.master, &a.connect.credentials()).await?;
            print(&inspect::tasks(&client, &a.filter, a.output.output).await?);
            Ok(0)
        }
        Command::Task(a) => {
            let client = Client::connect_with(&a.connect.master, &a.connect.credentials()).await?;
            print(&inspect::task(&client, &a.id, a.output.output).await?);
            Ok(0)
        }
        Command::Logs(a) => {
            let client = Client::connect_with(&a.connect.master, &a.connect.credentials()).await?;
            logs::run(&client, &a.logs, a.output.output).await?;
            Ok(0)
        }
        Command::Cancel(a) => {
            admin::one_target(a.id.as_deref(), &a.filter, "cancel")?;
            let client = Client::connect_with(&a.connect.master, &a.connect.credentials()).await?;
            let out = match &a.id {
                Some(id) => inspect::cancel(&client, id, a.output.output).await?,
                None => admin::bulk(&client, true, &a.filter, a.output.output).await?,
            };
            print(&out);
            Ok(0)
        }
        Command::Retry(a) => {
            admin::one_target(a.id.as_deref(), &a.filter, "retry")?;
            let client = Client::connect_with(&a.connect.master, &a.connect.credentials()).await?;
            let out = match &a.id {
                Some(id) => admin::retry_one(&client, id).await?,
                None => admin::bulk(&client, false, &a.filter, a.output.output).await?,
            };
            print(&out);
            Ok(0)
        }
        Command::Submit(a) => {
            // The whole file is checked before any connection.
            let flow = workflow::load(&a.file)?;
            if a.dry_run {
                print(&workflow::plan_text(&flow));
                return Ok(0);
            }
            let client = Client::connect_with(&a.connect.master, &a.connect.credentials()).await?;
            print(&workflow::submit(&client, flow, a.output.output).await?);
            Ok(0)
        }
        Command::Schedule(cmd) => {
            schedule::check(&cmd)?;
            let a = schedule::connect_args(&cmd);
            let client = Client::connect_with(&a.master, &a.credentials()).await?;
            print(&schedule::run(&client, cmd).await?);
            Ok(0)
        }
        Command::Workflow(w) => {
            let (a, show) = match &w {
                workflow::WorkflowCmd::Show(a) => (a, true),
                workflow::WorkflowCmd::Cancel(a) => (a, false),
            };
            let client = Client::connect_with(&a.connect.master, &a.connect.credentials()).await?;
            let out = if show {
                workflow::show(&client, &a.id, a.output.output).await?
            } else {
                workflow::cancel(&client, &a.id, a.output.output).await?
            };
            print(&out);
            Ok(0)
        }
        Command::Workers(a) => {
            let client = Client::connect_with(&a.connect.master, &a.connect.credentials()).await?;
            print(&inspect::workers(&client, a.output.output).await?);
            Ok(0)
        }
        Command::Queue(QueueCmd::Stats(a)) => {
            let client = Client::connect_with(&a.connect.master, &a.connect.credentials()).await?;
            print(&inspect::stats(&client, a.output.output).await?);
            Ok(0)
        }
        Command::Users(c) => users::users(c).await,
        Command::Token(c) => security::token(c).await,
        Command::Certs(c) => security::certs(c).await,
    }
}
