//! The command line grammar of `cloudai` (clap derive). Values with human units
//! (`--memory 256M`, `--timeout 30s`, `--cpu 0.5`) are kept as text here and parsed by
//! `units` in the commands, so a bad value gets its own exit code (see `exit`).

use clap::{Args, Parser, Subcommand};

use crate::client::DEFAULT_MASTER_URL;
use crate::output::OutputFormat;

const ABOUT: &str = "cloudai: a persistent, queue-driven job system for containers";

const LONG_ABOUT: &str = "\
cloudai: a persistent, queue-driven job system for containers.

Start a master (it keeps the queue in ./cloudai.db), start workers that run tasks
through Docker, then enqueue tasks and watch them from any terminal.";

/// Shown at the end of `cloudai --help`.
pub const MAIN_AFTER_HELP: &str = "\
Quick start:
  cloudai master                                  # terminal 1: master with its shell
  cloudai worker --master http://127.0.0.1:50051  # terminal 2: a worker
  cloudai enqueue cloudai/sample-task:latest --wait

Exit codes:
  0    success
  1    any other error
  2    invalid argument or usage
  10   cannot reach the master (start one with `cloudai master`, or pass --master)
  11   unknown task id
  12   ambiguous task id prefix
  13   invalid image reference
  14   invalid memory, cpu or duration syntax
  15   unknown worker
  16   not possible in the task's state, idempotency key conflict, or refused by
       --strict (no registered worker could ever take the task)
  17   not authenticated (no API token, an unknown or empty one, a wrong join token)
  18   permission denied (the token's role may not do this)
  19   busy: over the enqueue rate limit or the queue is full; retry later
  enqueue --wait exits with the task's exit code (124: timed out, 125: cancelled,
  lost or could not start)";

/// The `cloudai` command.
#[derive(Debug, Parser)]
#[command(name = "cloudai", version, about = ABOUT, long_about = LONG_ABOUT,
          after_help = MAIN_AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the master (with an interactive `master>` shell on a terminal)
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  cloudai master\n  cloudai master --no-shell --listen 0.0.0.0:50051 --store sqlite:///var/lib/cloudai.db\n  cloudai master --no-shell --listen 0.0.0.0:50051 --store mongodb://db1,db2,db3/cloudai?replicaSet=rs0   # one of a group\n  cloudai master status --master http://m1:50051,http://m2:50051"
    )]
    Master(MasterArgs),
    /// Run a worker that executes tasks with Docker
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  cloudai worker --master http://10.0.0.1:50051 --id gpu-box-1\n  \
cloudai worker cordon gpu-box-1            # no new tasks there\n  \
cloudai worker drain gpu-box-1 --deadline 10m   # and stop what still runs then\n  \
cloudai worker uncordon gpu-box-1"
    )]
    Worker(WorkerArgs),
    /// Enqueue a task; prints its id
    #[command(
        after_help = "Examples:\n  cloudai enqueue cloudai/sample-task:latest\n  cloudai enqueue cloudai/sample-task:latest -- foo bar         # the image's entrypoint gets foo bar\n  cloudai enqueue --entrypoint /bin/echo cloudai/sample-task:latest -- hi\n  cloudai enqueue cloudai/busybox:test --cpu 0.5 --memory 256M --timeout 30s -e MODE=fast --wait -- sh -c 'echo hi'\n  cloudai enqueue cloudai/busybox:test --after 01a227db:ok,01a227dc:any -- echo next   # waits for both (cli/WORKFLOWS.md)\n  cloudai enqueue cloudai/sample-task:latest --in 10m            # or --at 2026-12-01T18:00:00Z\n  cloudai enqueue --array 0-99%8 cloudai/busybox:test -- sh -c 'echo part $CLOUDAI_ARRAY_INDEX'   # 100 tasks, 8 at once"
    )]
    Enqueue(EnqueueCmd),
    /// Show a job array: its size, cap and tasks per status
    #[command(
        after_help = "Its tasks are ordinary tasks with the label cloudai.array=ID.\n\nExamples:\n  cloudai array 01a2345b-0c9d-7e6f-8a7b-6c5d4e3f2a1b\n  cloudai tasks --array 01a2345b-0c9d-7e6f-8a7b-6c5d4e3f2a1b --status failed\n  cloudai cancel --array 01a2345b-0c9d-7e6f-8a7b-6c5d4e3f2a1b   # what has not ended"
    )]
    Array(crate::commands::array::ArrayCmd),
    /// List tasks, newest first
    #[command(
        after_help = "Examples:\n  cloudai tasks\n  cloudai tasks --status running --status queued --worker w1 --limit 20 --output json\n  cloudai tasks --submitter alice"
    )]
    Tasks(TasksCmd),
    /// Show everything about one task, with its attempts
    #[command(
        after_help = "Example:\n  cloudai task 0192f3c4-6d1e   # an unambiguous prefix is enough"
    )]
    Task(TaskCmd),
    /// Print a task's logs; -f follows until it ends
    #[command(
        after_help = "Examples:\n  cloudai logs 0192f3c4-6d1e\n  cloudai logs -f --stderr-only 0192f3c4-6d1e\n  cloudai logs --attempt 1 0192f3c4-6d1e      # the first try of a retried task\n  cloudai logs --all-attempts 0192f3c4-6d1e"
    )]
    Logs(LogsCmd),
    /// Cancel a task, or every unfinished task a filter matches
    #[command(after_help = "Examples:\n  cloudai cancel 0192f3c4-6d1e\n  \
cloudai cancel --status queued --image registry.example/ml/* --dry-run   # which, first\n  \
cloudai cancel --status queued --image registry.example/ml/*\n\n\
A filter needs an admin's token when auth is on.")]
    Cancel(CancelCmd),
    /// Run an ended task again (a new task), or every ended task a filter matches
    #[command(
        after_help = "The new task has the same spec and the label cloudai.retry-of=OLD_ID; \
the old task is left as it is.\n\nExamples:\n  cloudai retry 0192f3c4-6d1e\n  \
cloudai retry --status failed --image cloudai/sample-task:latest --dry-run\n  \
cloudai retry --status failed,timed_out --worker gpu-01"
    )]
    Retry(crate::commands::admin::RetryCmd),
    /// Submit a workflow file: named steps that run after one another
    #[command(
        after_help = "The file is checked whole first (its schema, units, unknown and \
cyclic `needs`), and errors name its line. Prints the workflow's id; `cloudai workflow show ID` \
then lists the steps. The format, with an example: cli/WORKFLOWS.md and \
sample_task/flow.yaml.\n\nExamples:\n  cloudai submit sample_task/flow.yaml\n  \
cloudai submit flow.yaml --dry-run    # check it, print the steps in order"
    )]
    Submit(crate::commands::workflow::SubmitCmd),
    /// Show or cancel a submitted workflow
    #[command(subcommand)]
    Workflow(crate::commands::workflow::WorkflowCmd),
    /// Cron schedules: a task enqueued at the times a pattern names
    #[command(
        subcommand,
        after_help = "Examples:\n  cloudai schedule add nightly --cron '0 3 * * *' --tz Europe/Berlin cloudai/sample-task:latest\n  cloudai schedule list\n  cloudai schedule show nightly      # next time, history of fires\n  cloudai schedule pause nightly     # resume, rm, run-now likewise"
    )]
    Schedule(crate::commands::schedule::ScheduleCmd),
    /// List workers with health, capacity and load
    #[command(after_help = "Example:\n  cloudai workers --output json")]
    Workers(WorkersCmd),
    /// Inspect the queue
    #[command(subcommand, after_help = "Example:\n  cloudai queue stats")]
    Queue(QueueCmd),
    /// Manage API users through the master (an admin's token), or with --store directly
    #[command(
        subcommand,
        after_help = "Through the master: --master and an admin's --token (or CLOUDAI_MASTER, \
CLOUDAI_TOKEN), like every client command.\n\
Bootstrap and recovery only (the first admin before any exists, or a lost admin token): \
--store URI (and --secret-file) writes the master's store directly, on the master's host.\n\n\
Examples:\n  cloudai users add root --role admin --store sqlite:///var/lib/cloudai.db --secret-file /var/lib/cloudai.secret\n  \
cloudai users add ci --role submitter --token $ADMIN_TOKEN\n  \
cloudai users list\n  cloudai users remove ci"
    )]
    Users(crate::commands::users::UsersCmd),
    /// Manage the worker join token through the master (an admin's token), or with --store
    #[command(
        subcommand,
        after_help = "Examples:\n  cloudai token rotate --grace 1h --token $ADMIN_TOKEN\n  \
cloudai token rotate --store sqlite:///var/lib/cloudai.db   # recovery, on the master's host"
    )]
    Token(crate::commands::security::TokenCmd),
    /// Create TLS certificates (a CA, the master's and the workers')
    #[command(subcommand)]
    Certs(crate::commands::security::CertsCmd),
}

/// How to reach the master.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The master's URL.
    #[arg(long, env = "CLOUDAI_MASTER", default_value = DEFAULT_MASTER_URL, value_name = "URL")]
    pub master: String,
    /// API token (from `cloudai users add`); needed when the master requires auth.
    #[arg(
        long,
        env = "CLOUDAI_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// CA that signed the master's certificate, for an https:// master.
    #[arg(long, env = "CLOUDAI_CA", value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
}

impl ConnectArgs {
    /// The credentials these flags give.
    pub fn credentials(&self) -> crate::credentials::Credentials {
        crate::credentials::Credentials {
            token: self.token.clone(),
            ca: self.ca.clone(),
        }
    }
}

/// `--output table|json`.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `cloudai master`.
#[derive(Debug, Args)]
pub struct MasterArgs {
    /// Instead of running a master: ask one about its group.
    #[command(subcommand)]
    pub action: Option<MasterAction>,
    /// Master configuration.
    #[command(flatten)]
    pub config: cloudai_master::MasterConfig,
    /// Run as a plain daemon even on a terminal.
    #[arg(long, env = "CLOUDAI_NO_SHELL", conflicts_with = "shell")]
    pub no_shell: bool,
    /// Open the `master>` shell even when stdin is not a terminal (scripted sessions).
    #[arg(long)]
    pub shell: bool,
    /// Where the shell keeps its history (default: ~/.cloudai_history).
    #[arg(long, env = "CLOUDAI_HISTORY", value_name = "PATH")]
    pub history_file: Option<std::path::PathBuf>,
}

/// What `cloudai master` can do besides running one.
#[derive(Debug, Subcommand)]
pub enum MasterAction {
    /// Show the masters sharing the store: which one leads, under which epoch, and when
    /// each last renewed
    #[command(
        after_help = "Examples:\n  cloudai master status\n  cloudai master status --master http://m1:50051,http://m2:50051 --output json"
    )]
    Status(MasterStatusCmd),
}

/// `cloudai master status`.
#[derive(Debug, Args)]
pub struct MasterStatusCmd {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `cloudai worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Worker configuration.
    #[command(flatten)]
    pub config: cloudai_worker::WorkerConfig,
    /// Run tasks with a fake executor that sleeps instead of Docker (tests, benchmarks).
    #[arg(long, hide = true)]
    pub fake_executor: bool,
    /// Take a worker out of service (or back) instead of running one.
    #[command(subcommand)]
    pub action: Option<crate::commands::admin::WorkerAction>,
}

pub use crate::task_args::TaskSpecArgs;

/// `cloudai enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueCmd {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Shared enqueue flags.
    #[command(flatten)]
    pub enqueue: EnqueueArgs,
}

/// `enqueue <image> [--worker ID] ...` without the connection.
#[derive(Debug, Clone, Args)]
pub struct EnqueueArgs {
    /// Docker image reference, e.g. cloudai/sample-task:latest.
    pub image: String,
    /// Run only on this worker.
    #[arg(long, value_name = "ID")]
    pub worker: Option<String>,
    /// A job array: the task once per index, each with CLOUDAI_ARRAY_INDEX (and
    /// CLOUDAI_ARRAY_ID) in its env. Indices: N, N-M or N-M:STEP, comma-separated (at most
    /// 100000); `%N` at the end runs at most N at once (0-99%8). Prints the array's id.
    #[arg(long, value_name = "INDICES", conflicts_with = "wait")]
    pub array: Option<String>,
    /// Refuse the task (exit 16) when no registered worker could ever take it, by size
    /// or constraints, instead of enqueueing it with a warning on stderr (an --array is
    /// refused whole).
    #[arg(long)]
    pub strict: bool,
    /// Spec flags.
    #[command(flatten)]
    pub spec: TaskSpecArgs,
}

/// Filters of `tasks`, shared with the shell.
#[derive(Debug, Clone, Args)]
pub struct TasksFilter {
    /// Which tasks.
    #[command(flatten)]
    pub criteria: crate::criteria::TaskCriteria,
    /// Oldest first (default: newest first).
    #[arg(long)]
    pub oldest_first: bool,
    /// At most this many.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
}

/// `cloudai tasks`.
#[derive(Debug, Args)]
pub struct TasksCmd {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Filters.
    #[command(flatten)]
    pub filter: TasksFilter,
    /// Format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `cloudai task <id>`.
#[derive(Debug, Args)]
pub struct TaskCmd {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Task id or unambiguous prefix.
    pub id: String,
    /// Format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Options of `logs`, shared with the shell.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Task id or unambiguous prefix.
    pub id: String,
    /// Keep printing new output until the task ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the container's stdout.
    #[arg(long, conflicts_with = "stderr_only")]
    pub stdout_only: bool,
    /// Only the container's stderr.
    #[arg(long)]
    pub stderr_only: bool,
    /// Only the output of attempt N (1 is the first; `cloudai task ID` lists them).
    /// Default: the deciding attempt (the last one); with -f, the current one and any
    /// retry after it.
    #[arg(long, value_name = "N", conflicts_with = "all_attempts",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub attempt: Option<u32>,
    /// Every attempt's output, each after a `--- attempt N ... ---` line.
    #[arg(long)]
    pub all_attempts: bool,
}

/// `cloudai logs`.
#[derive(Debug, Args)]
pub struct LogsCmd {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// What to print.
    #[command(flatten)]
    pub logs: LogsArgs,
    /// Format (json: one array of chunks once the stream ends).
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `cloudai cancel <id>`.
#[derive(Debug, Args)]
pub struct CancelCmd {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Task id or unambiguous prefix; or give a filter instead.
    pub id: Option<String>,
    /// Which tasks, instead of an id.
    #[command(flatten)]
    pub filter: crate::commands::admin::BulkFilter,
    /// Format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `cloudai workers`.
#[derive(Debug, Args)]
pub struct WorkersCmd {
    /// Connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `cloudai queue ...`.
#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Counts per status, oldest queued age, tasks finished in the last minute
    #[command(after_help = "Example:\n  cloudai queue stats --output json")]
    Stats(WorkersCmd),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn enqueue_takes_a_trailing_command() {
        let cli = Cli::try_parse_from([
            "cloudai",
            "enqueue",
            "busybox",
            "--cpu",
            "0.5",
            "-e",
            "A=1",
            "-e",
            "B=2",
            "--priority",
            "-3",
            "--wait",
            "--",
            "sh",
            "-c",
            "echo hi",
        ])
        .unwrap();
        let Command::Enqueue(e) = cli.command else {
            panic!("not enqueue")
        };
        assert_eq!(e.enqueue.image, "busybox");
        assert_eq!(e.enqueue.spec.env, ["A=1", "B=2"]);
        assert_eq!(e.enqueue.spec.priority, -3);
        assert!(e.enqueue.spec.wait);
        assert_eq!(e.enqueue.spec.command, ["sh", "-c", "echo hi"]);
        assert_eq!(e.enqueue.spec.entrypoint, None);
        assert_eq!(e.connect.master, DEFAULT_MASTER_URL);
    }

    #[test]
    fn enqueue_takes_one_entrypoint_and_tasks_a_submitter() {
        let cli = Cli::try_parse_from([
            "cloudai",
            "enqueue",
            "--entrypoint",
            "/bin/echo",
            "cloudai/sample-task:latest",
            "--",
            "hi",
            "there",
        ])
        .unwrap();
        let Command::Enqueue(e) = cli.command else {
            panic!("not enqueue")
        };
        assert_eq!(e.enqueue.spec.entrypoint.as_deref(), Some("/bin/echo"));
        assert_eq!(e.enqueue.spec.command, ["hi", "there"]);
        let cli = Cli::try_parse_from(["cloudai", "tasks", "--submitter", "alice"]).unwrap();
        let Command::Tasks(t) = cli.command else {
            panic!("not tasks")
        };
        assert_eq!(t.filter.criteria.submitter.as_deref(), Some("alice"));
    }

    #[test]
    fn output_json_everywhere() {
        for args in [
            vec!["cloudai", "tasks", "--output", "json"],
            vec!["cloudai", "task", "abc", "-o", "json"],
            vec!["cloudai", "workers", "--output", "json"],
            vec!["cloudai", "queue", "stats", "--output", "json"],
            vec!["cloudai", "logs", "abc", "--output", "json"],
            vec!["cloudai", "cancel", "abc", "--output", "json"],
        ] {
            assert!(Cli::try_parse_from(&args).is_ok(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["cloudai", "tasks", "--output", "yaml"]).is_err());
    }

    #[test]
    fn stdout_and_stderr_only_conflict() {
        assert!(
            Cli::try_parse_from(["cloudai", "logs", "x", "--stdout-only", "--stderr-only"])
                .is_err()
        );
    }
}
