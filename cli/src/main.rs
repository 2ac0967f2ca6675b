//! The `cloudai` binary: one command with subcommands for the master, the workers and
//! the people who use them. `cloudai --help` lists them; `exit` documents exit codes.
//!
//! - [`args`]: the command line grammar (clap).
//! - [`commands`]: one module per subcommand.
//! - [`client`]: the gRPC client of the master, shared with the shell.
//! - [`credentials`]: the API token and the CA the client presents and checks.
//! - [`shell`]: the interactive `master>` shell.
//! - [`view`], [`output`]: what is shown, as tables or JSON.
//! - [`units`]: human units (256M, 30s, 0.5 cpu).
//! - [`exit`]: user-facing errors and their exit codes.

mod args;
mod client;
mod commands;
mod credentials;
mod criteria;
mod exit;
mod output;
mod shell;
mod task_args;
mod units;
mod view;

use std::io::IsTerminal;

use clap::error::ErrorKind;
use clap::Parser;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command};
use crate::exit::clap_one_line;

/// Sets up logging to `writer`; `RUST_LOG` overrides `default_level`.
pub fn init_tracing<W>(default_level: &str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .try_init();
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprintln!("error: {}", clap_one_line(&e.render().to_string()));
                std::process::exit(exit::Kind::InvalidArgument.exit_code());
            }
        },
    };
    if !matches!(cli.command, Command::Master(_) | Command::Worker(_)) {
        init_tracing("warn", std::io::stderr);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(commands::run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    // The shell thread may still sit in a blocking read; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}
