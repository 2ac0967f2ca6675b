//! `cloudai logs <id> [-f]`: the container's stdout to stdout, its stderr to stderr, as
//! they were written; cloudai's own notes (e.g. dropped old output) to stderr.

use std::io::Write;

use cloudai_queue::{LogChunk, LogStream};
use futures::StreamExt;

use crate::args::LogsArgs;
use crate::client::Client;
use crate::exit::CliResult;
use crate::output::{self, OutputFormat};
use crate::view::LogView;

/// Writes one chunk where it belongs.
pub fn write_chunk(c: &LogChunk) {
    match c.stream {
        LogStream::Stdout => {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&c.data);
            let _ = o.flush();
        }
        LogStream::Stderr => {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(&c.data);
            let _ = e.flush();
        }
        LogStream::System => {
            let text = String::from_utf8_lossy(&c.data);
            eprintln!("[cloudai] {}", text.trim_end());
        }
    }
}

/// True when `c` passes the `--stdout-only` / `--stderr-only` filter.
pub fn wanted(c: &LogChunk, stdout_only: bool, stderr_only: bool) -> bool {
    match c.stream {
        LogStream::Stdout => !stderr_only,
        LogStream::Stderr => !stdout_only,
        LogStream::System => true,
    }
}

/// Streams the logs of `a.id` to the terminal (or, with json, collects them into one
/// document printed at the end).
pub async fn run(c: &Client, a: &LogsArgs, fmt: OutputFormat) -> CliResult<()> {
    let mut stream = Box::pin(
        c.logs(&a.id, a.follow, !a.stderr_only, !a.stdout_only)
            .await?,
    );
    let mut collected = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if !wanted(&chunk, a.stdout_only, a.stderr_only) {
            continue;
        }
        match fmt {
            OutputFormat::Table => write_chunk(&chunk),
            OutputFormat::Json => collected.push(LogView::from(chunk)),
        }
    }
    if fmt == OutputFormat::Json {
        super::print(&output::json(&collected));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_streams_but_keeps_system_notes() {
        let chunk = |stream| LogChunk {
            seq: 1,
            attempt: 1,
            stream,
            time: chrono::Utc::now(),
            data: b"x".to_vec(),
        };
        assert!(wanted(&chunk(LogStream::Stdout), true, false));
        assert!(!wanted(&chunk(LogStream::Stderr), true, false));
        assert!(!wanted(&chunk(LogStream::Stdout), false, true));
        assert!(wanted(&chunk(LogStream::System), true, false));
        assert!(wanted(&chunk(LogStream::Stderr), false, false));
    }
}
