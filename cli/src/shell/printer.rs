//! Routes the master's tracing output around the interactive prompt. While the shell
//! runs on a terminal, every log line goes through rustyline's external printer, which
//! redraws the `master>` prompt and the half-typed line below it; otherwise (daemon,
//! piped stdin, before the editor exists) lines go straight to stderr.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use rustyline::ExternalPrinter;
use tracing_subscriber::fmt::MakeWriter;

type Printer = Box<dyn ExternalPrinter + Send>;

/// A `MakeWriter` for tracing that can be pointed at the prompt's external printer.
#[derive(Clone, Default)]
pub struct SharedPrinter {
    inner: Arc<Mutex<Option<Printer>>>,
}

impl SharedPrinter {
    /// Starts printing through `p` (the shell calls this once its editor exists).
    pub fn attach(&self, p: Printer) {
        if let Ok(mut g) = self.inner.lock() {
            *g = Some(p);
        }
    }

    /// Back to plain stderr (the shell calls this before it ends).
    pub fn detach(&self) {
        if let Ok(mut g) = self.inner.lock() {
            *g = None;
        }
    }

    fn emit(&self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(line).into_owned();
        if let Ok(mut g) = self.inner.lock() {
            if let Some(p) = g.as_mut() {
                if p.print(text.clone()).is_ok() {
                    return;
                }
            }
        }
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }
}

/// One event's worth of output; sent as a whole when dropped, so a log line is never
/// split around the prompt.
pub struct LineWriter {
    printer: SharedPrinter,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.printer.emit(&buf);
    }
}

impl<'a> MakeWriter<'a> for SharedPrinter {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            printer: self.clone(),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Capture(Arc<Mutex<Vec<String>>>);
    impl ExternalPrinter for Capture {
        fn print(&mut self, msg: String) -> rustyline::Result<()> {
            self.0.lock().unwrap().push(msg);
            Ok(())
        }
    }

    #[test]
    fn whole_lines_go_to_the_attached_printer() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let p = SharedPrinter::default();
        p.attach(Box::new(Capture(seen.clone())));
        {
            let mut w = p.make_writer();
            write!(w, "INFO master ").unwrap();
            writeln!(w, "listening").unwrap();
        }
        assert_eq!(*seen.lock().unwrap(), ["INFO master listening\n"]);
        p.detach();
        drop(p.make_writer());
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
