//! Tab completion for the shell: command names, worker ids and task ids. The ids come
//! from a cache the shell refreshes in the background, so completing never waits on the
//! network. [`complete`] is pure and unit-tested; [`ShellHelper`] plugs it into rustyline.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use rustyline::completion::Completer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use super::parse::COMMANDS;

/// What can be completed besides command names.
#[derive(Debug, Default, Clone)]
pub struct Candidates {
    /// Known worker ids.
    pub workers: Vec<String>,
    /// Recent task ids, newest first.
    pub tasks: Vec<String>,
}

/// What the word under the cursor should be.
#[derive(Debug, PartialEq, Eq)]
enum Slot {
    Command,
    Worker,
    Task,
    Nothing,
}

fn slot(words_before: &[&str]) -> Slot {
    let Some(cmd) = words_before.first() else {
        return Slot::Command;
    };
    if words_before.contains(&"--") {
        return Slot::Nothing;
    }
    if words_before.last() == Some(&"--worker") {
        return Slot::Worker;
    }
    let positional = words_before[1..]
        .iter()
        .filter(|w| !w.starts_with('-'))
        .count();
    match (*cmd, positional) {
        ("task", 0) => Slot::Worker,
        ("show" | "logs" | "cancel", 0) => Slot::Task,
        _ => Slot::Nothing,
    }
}

/// Completes the word that ends at `pos` in `line`: returns where it starts and the
/// candidates that extend it.
pub fn complete(line: &str, pos: usize, c: &Candidates) -> (usize, Vec<String>) {
    let mut pos = pos.min(line.len());
    while !line.is_char_boundary(pos) {
        pos -= 1;
    }
    let head = &line[..pos];
    let start = head.rfind(char::is_whitespace).map(|i| i + 1).unwrap_or(0);
    let word = &head[start..];
    let before: Vec<&str> = head[..start].split_whitespace().collect();
    let pool: Vec<&str> = match slot(&before) {
        Slot::Command => COMMANDS.iter().map(|(n, _)| *n).collect(),
        Slot::Worker => c.workers.iter().map(String::as_str).collect(),
        Slot::Task => c.tasks.iter().map(String::as_str).collect(),
        Slot::Nothing => Vec::new(),
    };
    let found = pool
        .into_iter()
        .filter(|p| p.starts_with(word))
        .map(str::to_string)
        .collect();
    (start, found)
}

/// The rustyline helper: completion from a shared, background-refreshed cache.
pub struct ShellHelper {
    /// The cache; the shell's refresher writes it.
    pub candidates: Arc<Mutex<Candidates>>,
}

impl Completer for ShellHelper {
    type Candidate = String;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let c = self
            .candidates
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        Ok(complete(line, pos, &c))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands() -> Candidates {
        Candidates {
            workers: vec!["w-alpha".into(), "w-beta".into(), "gpu1".into()],
            tasks: vec!["0192aa".into(), "0192ab".into(), "0300ff".into()],
        }
    }

    #[test]
    fn completes_command_names() {
        assert_eq!(complete("st", 2, &cands()), (0, vec!["status".to_string()]));
        let (_, all) = complete("", 0, &cands());
        assert_eq!(all.len(), COMMANDS.len());
        let (_, t) = complete("ta", 2, &cands());
        assert_eq!(t, ["task", "tasks"]);
    }

    #[test]
    fn completes_worker_ids_where_a_worker_goes() {
        assert_eq!(
            complete("task w-", 7, &cands()),
            (5, vec!["w-alpha".to_string(), "w-beta".to_string()])
        );
        assert_eq!(
            complete("enqueue img --worker g", 22, &cands()),
            (21, vec!["gpu1".to_string()])
        );
        assert_eq!(complete("tasks --worker ", 15, &cands()).1.len(), 3);
        // The image slot after the worker completes nothing.
        assert!(complete("task gpu1 bu", 12, &cands()).1.is_empty());
    }

    #[test]
    fn completes_task_ids_for_show_logs_cancel() {
        for cmd in ["show", "logs", "cancel"] {
            let line = format!("{cmd} 0192a");
            let (start, found) = complete(&line, line.len(), &cands());
            assert_eq!(start, cmd.len() + 1);
            assert_eq!(found, ["0192aa", "0192ab"]);
        }
        assert_eq!(complete("logs -f 03", 10, &cands()).1, ["0300ff"]);
        assert!(complete("show 0192aa x", 13, &cands()).1.is_empty());
        assert!(complete("task w1 img -- ec", 17, &cands()).1.is_empty());
        // A cursor past the end or inside a character never panics.
        assert!(complete("show é", 99, &cands()).1.is_empty());
        assert_eq!(complete("show é", 6, &cands()), (5, cands().tasks));
    }
}
