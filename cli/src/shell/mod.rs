//! The interactive `master>` shell that `cloudai master` opens on a terminal.
//!
//! It runs on its own thread (rustyline blocks) and is a gRPC client of its own master
//! over loopback, running the same code as the CLI commands. Ctrl-C while a command runs
//! stops that command (e.g. `logs -f`), never the master; `exit` or Ctrl-D stops the
//! master gracefully.
//!
//! - [`parse`]: splitting a line into words and the command grammar.
//! - [`complete`]: tab completion of commands, worker ids and task ids.
//! - [`printer`]: routing the master's log lines around the prompt.

pub mod complete;
pub mod parse;
pub mod printer;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;
use rustyline::config::{CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::Editor;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};

use crate::args::EnqueueArgs;
use crate::client::Client;
use crate::commands::{inspect, logs, print, spec};
use crate::exit::{clap_one_line, CliResult};
use crate::output::OutputFormat;
use complete::{Candidates, ShellHelper};
use parse::{help_text, split_words, ShellCmd, ShellLine};
use printer::SharedPrinter;

/// The prompt.
pub const PROMPT: &str = "master> ";

/// What the shell needs from `cloudai master`.
pub struct ShellOptions {
    /// Loopback URL of the master it belongs to.
    pub url: String,
    /// History file; `None` keeps no history.
    pub history: Option<PathBuf>,
    /// Where the master's log lines go.
    pub printer: SharedPrinter,
}

/// Default history file: `~/.cloudai_history`.
pub fn default_history() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cloudai_history"))
}

/// Starts the shell on its own thread. The receiver resolves when the user leaves it
/// (`exit`, Ctrl-D, end of piped input).
pub fn spawn(opts: ShellOptions, rt: Handle) -> oneshot::Receiver<()> {
    let (done_tx, done_rx) = oneshot::channel();
    let interrupt = Arc::new(Notify::new());
    // Ctrl-C only reaches us while a command runs: at the prompt the terminal is raw
    // and rustyline sees it as a key.
    let notify = interrupt.clone();
    rt.spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            notify.notify_waiters();
        }
    });
    std::thread::Builder::new()
        .name("master-shell".into())
        .spawn(move || {
            run(opts, &rt, &interrupt);
            let _ = done_tx.send(());
        })
        .expect("spawning the shell thread");
    done_rx
}

fn run(opts: ShellOptions, rt: &Handle, interrupt: &Notify) {
    let client = match rt.block_on(connect_with_retry(&opts.url)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return;
        }
    };
    let config = Config::builder()
        .auto_add_history(true)
        .max_history_size(1000)
        .and_then(|b| b.history_ignore_dups(true))
        .map(|b| b.completion_type(CompletionType::List).build())
        .unwrap_or_default();
    let mut editor: Editor<ShellHelper, FileHistory> = match Editor::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot start the shell: {e}");
            return;
        }
    };
    let candidates = Arc::new(Mutex::new(Candidates::default()));
    editor.set_helper(Some(ShellHelper {
        candidates: candidates.clone(),
    }));
    if let Some(h) = &opts.history {
        let _ = editor.load_history(h);
    }
    let tty = std::io::stdin().is_terminal();
    if tty {
        if let Ok(p) = editor.create_external_printer() {
            opts.printer.attach(Box::new(p));
        }
    }
    let stop_refresh = Arc::new(AtomicBool::new(false));
    rt.spawn(refresh_loop(
        client.clone(),
        candidates.clone(),
        stop_refresh.clone(),
    ));
    if tty {
        print(&format!(
            "cloudai master shell on {}; type `help` for commands, `exit` to stop\n",
            opts.url
        ));
    }
    loop {
        let line = match editor.readline(PROMPT) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                eprintln!("(type `exit` or press Ctrl-D to stop the master)");
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: reading the prompt: {e}");
                break;
            }
        };
        let words = match split_words(&line) {
            Ok(w) if w.is_empty() => continue,
            Ok(w) => w,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        let cmd = match ShellLine::try_parse_from(&words) {
            Ok(l) => l.cmd,
            Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
                print(&e.render().to_string());
                continue;
            }
            Err(e) => {
                eprintln!(
                    "error: {} (type `help`)",
                    clap_one_line(&e.render().to_string())
                );
                continue;
            }
        };
        if matches!(cmd, ShellCmd::Exit) {
            break;
        }
        let result = rt.block_on(async {
            tokio::select! {
                r = execute(&client, cmd) => r,
                _ = interrupt.notified() => {
                    eprintln!("^C (stopped; the master keeps running)");
                    Ok(())
                }
            }
        });
        if let Err(e) = result {
            eprintln!("error: {e}");
        }
        rt.spawn(refresh(client.clone(), candidates.clone()));
    }
    stop_refresh.store(true, Ordering::Relaxed);
    opts.printer.detach();
    if let Some(h) = &opts.history {
        let _ = editor.save_history(h);
    }
    print("stopping the master\n");
}

async fn connect_with_retry(url: &str) -> CliResult<Client> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Client::connect(url).await {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn refresh(client: Client, into: Arc<Mutex<Candidates>>) {
    let workers = client.workers().await;
    let tasks = client
        .tasks(cloudai_proto::pb::TaskFilter::default(), false, 200)
        .await;
    if let Ok(mut c) = into.lock() {
        if let Ok(w) = workers {
            c.workers = w.into_iter().map(|w| w.id).collect();
        }
        if let Ok(t) = tasks {
            c.tasks = t.into_iter().map(|t| t.id).collect();
        }
    }
}

async fn refresh_loop(client: Client, into: Arc<Mutex<Candidates>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        refresh(client.clone(), into.clone()).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

async fn enqueue(c: &Client, args: EnqueueArgs) -> CliResult<()> {
    let spec = spec::build(&args)?;
    let parents = spec::parents(&args)?;
    if let Some(expr) = &args.array {
        let indices = crate::commands::array::parse(expr)?;
        crate::commands::array::enqueue(c, spec, &parents, &indices, args.strict).await?;
        return Ok(());
    }
    let pinned = spec.pinned_worker.clone();
    let e = c.enqueue(spec, &parents, args.strict).await?;
    let id = e.id;
    let note = if e.created {
        ""
    } else {
        " (existing task, same idempotency key)"
    };
    match pinned {
        Some(w) => print(&format!("enqueued {id} on worker {w}{note}\n")),
        None => print(&format!("enqueued {id}{note}\n")),
    }
    if let Some(w) = &e.warning {
        print(&format!("warning: {w}\n"));
    }
    if args.spec.wait {
        crate::commands::enqueue::wait_for(c, &id).await?;
    }
    Ok(())
}

/// Runs one shell command (everything but `exit`).
pub async fn execute(c: &Client, cmd: ShellCmd) -> CliResult<()> {
    match cmd {
        ShellCmd::Help => print(&help_text()),
        ShellCmd::Status => print(&inspect::cluster(c).await?),
        ShellCmd::Workers(o) => print(&inspect::workers(c, o.output).await?),
        ShellCmd::Task {
            worker_id,
            image,
            spec,
        } => {
            enqueue(
                c,
                EnqueueArgs {
                    image,
                    worker: Some(worker_id),
                    array: None,
                    strict: false,
                    spec,
                },
            )
            .await?
        }
        ShellCmd::Enqueue(args) => enqueue(c, args).await?,
        ShellCmd::Queue { output, .. } => print(&inspect::stats(c, output.output).await?),
        ShellCmd::Tasks { filter, output } => {
            print(&inspect::tasks(c, &filter, output.output).await?)
        }
        ShellCmd::Show { id, output } => print(&inspect::task(c, &id, output.output).await?),
        ShellCmd::Array { id, output } => {
            print(&crate::commands::array::show(c, &id, output.output).await?)
        }
        ShellCmd::Schedule(cmd) => {
            crate::commands::schedule::check(&cmd)?;
            print(&crate::commands::schedule::run(c, cmd).await?)
        }
        ShellCmd::Logs(a) => logs::run(c, &a, OutputFormat::Table).await?,
        ShellCmd::Cancel { id } => print(&inspect::cancel(c, &id, OutputFormat::Table).await?),
        ShellCmd::Exit => {}
    }
    Ok(())
}
