//! The documents an operator follows agree with what the code accepts, so that an
//! unedited copy of them does not fail in a way the docs never mention (issue 18,
//! "Documents"):
//!
//! - `database/.env.example`'s `MONGO_REPLICA_KEY` is valid key file content for mongod
//!   (base64 characters only, 6 to 1024 of them): the compose file writes it to the
//!   members' key file, and mongod refuses to start on anything else (a `-` included).
//! - `database/docker-compose.yml` has no top-level `name:` key, which Docker Compose v1
//!   (1.29, Debian's `docker-compose`) rejects; `.env.example` names the project instead.
//! - `cli/COMMANDS.md` gives the `--listen` default that `cloudai master --help` prints,
//!   and mentions every long flag that `cloudai master --help` and `cloudai worker --help`
//!   print (so a new flag, TLS and auth ones included, cannot go undocumented).
//!
//! Reads the files from the repository and runs the real binary; needs no master.

use std::collections::BTreeSet;
use std::process::Command;

fn repo_file(rel: &str) -> String {
    let path = format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The value of `KEY=` in a dotenv file (surrounding quotes removed).
fn dotenv_value(text: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
}

/// `cloudai ARGS --help`, with no `CLOUDAI_*` variable of the caller's leaking in.
fn help(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudai"));
    cmd.args(args).arg("--help");
    for (k, _) in std::env::vars() {
        if k.starts_with("CLOUDAI_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("run cloudai");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 help");
    assert!(
        out.status.success(),
        "cloudai {args:?} --help failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn is_flag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// The long flag at the start of `s` (`--name`), if any.
fn leading_flag(s: &str) -> Option<&str> {
    let rest = s.strip_prefix("--")?;
    let end = rest.find(|c| !is_flag_char(c)).unwrap_or(rest.len());
    (end > 0).then(|| &s[..end + 2])
}

/// True for the line of an option in clap's help (`  -o, --output <X>`, `      --listen`),
/// not a line of a description.
fn is_option_line(line: &str) -> bool {
    let indent = line.len() - line.trim_start().len();
    indent <= 6 && line.trim_start().starts_with('-')
}

/// Every long flag a help text lists, with the aliases it names, without `--help` and
/// `--version` (clap's own, the same on every command).
fn long_flags(help: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in help.lines() {
        if is_option_line(line) {
            let t = line.trim_start();
            let t = t.split_once(", ").map_or(t, |(_, long)| long);
            if let Some(f) = leading_flag(t) {
                flags.insert(f.to_string());
            }
        }
        for marker in ["[alias: ", "[aliases: "] {
            if let Some((_, rest)) = line.split_once(marker) {
                let list = rest.split(']').next().unwrap_or("");
                for a in list.split(',').map(str::trim) {
                    if let Some(f) = leading_flag(a) {
                        flags.insert(f.to_string());
                    }
                }
            }
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

/// True when `doc` names `flag` as a whole word (`--shell` is not found in `--no-shell`).
fn mentions(doc: &str, flag: &str) -> bool {
    doc.match_indices(flag).any(|(i, m)| {
        let before = doc[..i].chars().next_back();
        let after = doc[i + m.len()..].chars().next();
        !before.is_some_and(is_flag_char) && !after.is_some_and(is_flag_char)
    })
}

/// The `[default: X]` of `flag` in a help text.
fn help_default(help: &str, flag: &str) -> Option<String> {
    let mut lines = help.lines().skip_while(|l| {
        !(is_option_line(l) && l.trim_start().split_once(' ').map(|(f, _)| f) == Some(flag))
    });
    lines.next()?;
    for line in lines {
        if is_option_line(line) {
            return None;
        }
        if let Some((_, rest)) = line.split_once("[default: ") {
            return Some(rest.split(']').next()?.to_string());
        }
    }
    None
}

#[test]
fn env_example_replica_key_is_a_valid_mongodb_key_file() {
    let env = repo_file("database/.env.example");
    let key = dotenv_value(&env, "MONGO_REPLICA_KEY")
        .expect("database/.env.example sets MONGO_REPLICA_KEY");
    assert!(
        (6..=1024).contains(&key.len()),
        "MONGO_REPLICA_KEY placeholder {key:?} is {} characters; a MongoDB key file needs 6 to 1024",
        key.len()
    );
    let bad: BTreeSet<char> = key
        .chars()
        .filter(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
        .collect();
    assert!(
        bad.is_empty(),
        "MONGO_REPLICA_KEY placeholder {key:?} holds {bad:?}: a MongoDB key file may hold \
         base64 characters only (A-Z a-z 0-9 + / =), so mongod would refuse an unedited copy"
    );
}

#[test]
fn compose_file_has_no_top_level_name_which_compose_v1_rejects() {
    let compose = repo_file("database/docker-compose.yml");
    let line = compose.lines().position(|l| l.starts_with("name:"));
    assert_eq!(
        line.map(|i| i + 1),
        None,
        "database/docker-compose.yml has a top-level `name:` (line shown), which \
         docker-compose 1.29 rejects; name the project in .env (COMPOSE_PROJECT_NAME)"
    );
    let env = repo_file("database/.env.example");
    assert!(
        dotenv_value(&env, "COMPOSE_PROJECT_NAME").is_some_and(|v| !v.is_empty()),
        "database/.env.example should set COMPOSE_PROJECT_NAME, the project name the \
         compose file no longer sets"
    );
}

#[test]
fn commands_md_gives_the_real_listen_default() {
    let doc = repo_file("cli/COMMANDS.md");
    let real = help_default(&help(&["master"]), "--listen")
        .expect("`cloudai master --help` prints a default for --listen");
    let marker = "`--listen` (default `";
    let (_, rest) = doc
        .split_once(marker)
        .unwrap_or_else(|| panic!("cli/COMMANDS.md should say {marker}...`"));
    let written = rest.split('`').next().unwrap_or("");
    assert_eq!(
        written, real,
        "cli/COMMANDS.md gives `--listen` default {written:?}; `cloudai master --help` says {real:?}"
    );
}

#[test]
fn commands_md_mentions_every_master_and_worker_flag() {
    let doc = repo_file("cli/COMMANDS.md");
    let mut missing = Vec::new();
    for cmd in ["master", "worker"] {
        let flags = long_flags(&help(&[cmd]));
        assert!(
            flags.len() > 10 && flags.contains("--tls-cert"),
            "parsed too few flags from `cloudai {cmd} --help`: {flags:?}"
        );
        for f in flags {
            if !mentions(&doc, &f) {
                missing.push(format!("cloudai {cmd} {f}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "cli/COMMANDS.md does not mention these flags of the real --help: {missing:?}"
    );
}

#[test]
fn the_helpers_parse_clap_help() {
    let h = "Options:\n      --listen <LISTEN>\n          Address\n          \n          \
             [env: CLOUDAI_LISTEN=]\n          [default: 127.0.0.1:50051]\n\n  \
             -o, --output <OUTPUT>\n          --not-a-flag here [default: no]\n      \
             --join-token <T>  Join token [alias: --token]\n  -h, --help  Print help\n";
    assert_eq!(
        help_default(h, "--listen").as_deref(),
        Some("127.0.0.1:50051")
    );
    assert_eq!(help_default(h, "--join-token"), None);
    let flags: Vec<String> = long_flags(h).into_iter().collect();
    assert_eq!(flags, ["--join-token", "--listen", "--output", "--token"]);
    assert!(mentions("use `--no-shell`", "--no-shell"));
    assert!(!mentions("use `--no-shell`", "--shell"));
    assert!(!mentions("--tls-cert-file", "--tls-cert"));
    assert_eq!(
        dotenv_value("# c\nA=1\nKEY='x y'\n", "KEY").as_deref(),
        Some("x y")
    );
}
