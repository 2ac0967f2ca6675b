//! The Python client (`clients/python/`) against this build of the binary: the check that
//! its checked-in gRPC stubs are what `proto/` generates, `mypy --strict` on the package,
//! and its pytest suite, whose fixtures start real masters and fake-executor workers from
//! `CLOUDAI_BIN` (set here to the binary under test).
//!
//! Runs when `CLOUDAI_TEST_PYTHON_CLIENT` names a Python that has the package's
//! dependencies, pytest, mypy, grpcio-tools and grpcio-reflection (`.ci/run` makes one);
//! otherwise it says it skipped.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::Proc;

/// The whole pytest run, on a busy 2-core machine.
const SUITE: Duration = Duration::from_secs(900);
/// The drift check and mypy.
const CHECK: Duration = Duration::from_secs(300);

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .join("clients/python")
}

/// Runs `python args...`; panics with its output unless it exits 0.
fn run(python: &str, what: &str, args: &[&str], deadline: Duration) {
    let mut p = Proc::spawn_program(
        what,
        python,
        args,
        &[
            ("CLOUDAI_BIN", env!("CARGO_BIN_EXE_cloudai")),
            ("PYTHONDONTWRITEBYTECODE", "1"),
        ],
    );
    p.close_stdin();
    let code = p.wait_exit(deadline);
    // Shown with --nocapture, and on failure.
    println!("== {what}\n{}{}", p.stdout(), p.stderr());
    assert_eq!(
        code,
        0,
        "{what} failed (exit code {code})\nstdout:\n{}\nstderr:\n{}",
        p.stdout(),
        p.stderr()
    );
}

#[test]
fn python_client_stubs_types_and_suite() {
    let python = match std::env::var("CLOUDAI_TEST_PYTHON_CLIENT") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            eprintln!("skipped the Python client tests: CLOUDAI_TEST_PYTHON_CLIENT is not set");
            return;
        }
    };
    let dir = client_dir();
    let path = |p: &str| dir.join(p).display().to_string();

    run(
        &python,
        "the stubs' drift check (regen.py --check)",
        &[&path("regen.py"), "--check"],
        CHECK,
    );
    run(
        &python,
        "mypy --strict",
        &[
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            &path("pyproject.toml"),
            "--cache-dir",
            &path(".mypy_cache"),
            &path("cloudai"),
        ],
        CHECK,
    );
    run(
        &python,
        "pytest",
        &[
            "-m",
            "pytest",
            &path("tests"),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        SUITE,
    );
}
