//! The shell's grammar: a line is split into words like a POSIX shell would (quotes,
//! backslashes) and parsed by clap, reusing the CLI's argument structs.

use clap::{Parser, Subcommand};

use crate::args::{EnqueueArgs, LogsArgs, OutputArgs, TaskSpecArgs, TasksFilter};

/// Every shell command, with a one-line description for `help`.
pub const COMMANDS: &[(&str, &str)] = &[
    ("help", "this list; `<command> --help` for its flags"),
    ("status", "cluster summary: workers, capacity, queue"),
    (
        "workers",
        "workers with health, capacity, free resources, load",
    ),
    (
        "task",
        "task <worker_id> <image> [-- cmd...]: run on that worker (explicit placement)",
    ),
    (
        "enqueue",
        "enqueue <image> [--worker ID] [--cpu 0.5] [--memory 256M] [--entrypoint CMD] ... [-- args...]",
    ),
    ("queue", "queue statistics"),
    (
        "tasks",
        "tasks [--status S] [--worker ID] [--submitter NAME] [--limit N]",
    ),
    ("show", "show <id>: everything about one task"),
    ("array", "array <id>: a job array's size, cap and tasks per status"),
    (
        "schedule",
        "schedule add|list|show|pause|resume|rm|run-now: cron schedules",
    ),
    (
        "logs",
        "logs <id> [-f]: a task's output (Ctrl-C stops following)",
    ),
    ("cancel", "cancel <id>"),
    ("exit", "stop the master gracefully (also Ctrl-D)"),
];

/// A parsed shell line.
#[derive(Debug, Parser)]
#[command(
    no_binary_name = true,
    disable_help_subcommand = true,
    disable_version_flag = true
)]
pub struct ShellLine {
    /// The command.
    #[command(subcommand)]
    pub cmd: ShellCmd,
}

/// The shell's commands.
#[derive(Debug, Subcommand)]
pub enum ShellCmd {
    /// List the commands
    Help,
    /// Cluster summary
    Status,
    /// List workers
    Workers(OutputArgs),
    /// Run a task on one worker (explicit placement)
    Task {
        /// Worker that must run it.
        worker_id: String,
        /// Docker image.
        image: String,
        /// Spec flags.
        #[command(flatten)]
        spec: TaskSpecArgs,
    },
    /// Enqueue a task
    Enqueue(EnqueueArgs),
    /// Queue statistics
    Queue {
        /// Optional `stats`, as in `cloudai queue stats`.
        #[arg(value_parser = ["stats"])]
        what: Option<String>,
        /// Format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List tasks
    Tasks {
        /// Filters.
        #[command(flatten)]
        filter: TasksFilter,
        /// Format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one task
    Show {
        /// Task id or prefix.
        id: String,
        /// Format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// A job array's summary
    Array {
        /// The array's id.
        id: String,
        /// Format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Cron schedules
    #[command(subcommand)]
    Schedule(crate::commands::schedule::ScheduleCmd),
    /// Print a task's logs
    Logs(LogsArgs),
    /// Cancel a task
    Cancel {
        /// Task id or prefix.
        id: String,
    },
    /// Stop the master
    #[command(alias = "quit")]
    Exit,
}

/// Splits a line into words: whitespace separates, '...' is literal, "..." allows
/// `\"` and `\\`, a backslash outside quotes escapes the next character.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The text of `help`.
pub fn help_text() -> String {
    let w = COMMANDS.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut s = String::from("commands:\n");
    for (name, about) in COMMANDS {
        s.push_str(&format!("  {name:<w$}  {about}\n"));
    }
    s.push_str("task ids may be abbreviated to an unambiguous prefix; Tab completes commands, worker and task ids\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> ShellCmd {
        ShellLine::try_parse_from(split_words(line).unwrap())
            .unwrap()
            .cmd
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(split_words("  a  b ").unwrap(), ["a", "b"]);
        assert_eq!(
            split_words(r#"task w1 img -- sh -c 'echo hi there'"#).unwrap(),
            ["task", "w1", "img", "--", "sh", "-c", "echo hi there"]
        );
        assert_eq!(
            split_words(r#""a \"b\"" c\ d"#).unwrap(),
            ["a \"b\"", "c d"]
        );
        assert_eq!(split_words("''").unwrap(), [""]);
        assert!(split_words("'open").is_err());
        assert!(split_words("\"open").is_err());
        assert!(split_words("x\\").is_err());
        assert!(split_words("").unwrap().is_empty());
    }

    #[test]
    fn commands_parse() {
        assert!(matches!(parse("help"), ShellCmd::Help));
        assert!(matches!(parse("exit"), ShellCmd::Exit));
        assert!(matches!(parse("quit"), ShellCmd::Exit));
        match parse("task w1 cloudai/busybox:test --cpu 0.5 -- echo hi") {
            ShellCmd::Task {
                worker_id,
                image,
                spec,
            } => {
                assert_eq!(worker_id, "w1");
                assert_eq!(image, "cloudai/busybox:test");
                assert_eq!(spec.cpu.as_deref(), Some("0.5"));
                assert_eq!(spec.command, ["echo", "hi"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("logs abc -f"),
            ShellCmd::Logs(LogsArgs { follow: true, .. })
        ));
        assert!(matches!(parse("queue stats"), ShellCmd::Queue { .. }));
        assert!(matches!(
            parse("tasks --status running"),
            ShellCmd::Tasks { .. }
        ));
        assert!(ShellLine::try_parse_from(["frobnicate"]).is_err());
    }

    #[test]
    fn help_lists_every_command() {
        let h = help_text();
        for (name, _) in COMMANDS {
            assert!(h.contains(name));
        }
    }
}
