#![doc = include_str!("../README.md")]
//! Project automation, run as `cargo xtask <command>`.
//!
//! * `test` — the project's test command: the documentation build
//!   (`cargo doc`, warnings denied), every crate's tests with all
//!   features, the Windows cross-check when its target is installed (required
//!   under `CI=true`), then the node-ipc interop suite when Node and npm are
//!   available (required under `CI=true`; otherwise a missing Node prints a
//!   NOTICE and the suite is skipped).
//! * `interop` — sets up the pinned Node peers (`npm ci` in `interop/` and
//!   `interop/node22/`, skipped when up to date), verifies the pins, runs
//!   `cargo test -p ipc-interop` and prints the matrix of cells.
//! * `bench [--quick] [--codec] [--reps N] [--subjects a,b] [--workloads w1,w2]`
//!   — the end-to-end workloads against node-ipc and the raw ceilings, or
//!   (`--codec`) the criterion codec benches; see `bench.rs`.
//! * `fuzz [seconds]` — runs every cargo-fuzz target for the given time.
//! * `soak [--minutes N]` — mixed traffic for N minutes (default 10) with
//!   zero lost messages and flat memory; see `soak.rs` (not run in CI).
//! * `windows` — the named-pipe suites and node-ipc pipe interop, built for
//!   `x86_64-pc-windows-gnu` and run under Wine; see `windows.rs`.

mod bench;
mod interop;
mod soak;
mod windows;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("usage: cargo xtask <test|interop|bench|fuzz|soak|windows> [args]");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "test" => test(),
        "interop" => interop::interop(),
        "fuzz" => fuzz(&args[1..]),
        "bench" => bench::bench(&args[1..]),
        "soak" => soak::soak(&args[1..]),
        "windows" => windows::windows(),
        other => Err(format!(
            "unknown xtask command `{other}`; available: test, interop, bench, fuzz, soak, windows"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn in_ci() -> bool {
    env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn target_installed(triple: &str) -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == triple)
        })
        .unwrap_or(false)
}

fn test() -> Result<(), String> {
    const WIN: &str = "x86_64-pc-windows-gnu";
    if target_installed(WIN) {
        run(cargo().args([
            "check",
            "-p",
            "ipc-transport",
            "--target",
            WIN,
            "--all-features",
        ]))?;
    } else if in_ci() {
        return Err(format!("CI=true but the {WIN} target is not installed"));
    } else {
        eprintln!(
            "xtask: NOTICE: skipping the Windows check (`rustup target add {WIN}` and Debian's gcc-mingw-w64-x86-64 enable it)"
        );
    }
    // The documentation builds without a warning (broken intra-doc links,
    // bad HTML, crate pages from the READMEs); reported with the tests.
    let docs = run(cargo()
        .args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings"));
    // The interop crate runs last, after its Node setup; it runs even when
    // the workspace tests failed, so one run reports both.
    let workspace = run(cargo().args([
        "test",
        "--workspace",
        "--all-features",
        "--exclude",
        "ipc-interop",
    ]));
    let interop = interop::interop_for_test();
    let failed: Vec<String> = [docs, workspace, interop]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\nxtask: "))
    }
}

fn fuzz(args: &[String]) -> Result<(), String> {
    let secs: u64 = match args.first() {
        Some(s) => s
            .parse()
            .map_err(|_| format!("`{s}` is not a number of seconds"))?,
        None => 60,
    };
    let out = Command::new("cargo")
        .args(["+nightly", "fuzz", "list"])
        .current_dir(root())
        .output()
        .map_err(|e| {
            format!("cannot run cargo fuzz (install with `cargo install cargo-fuzz`): {e}")
        })?;
    if !out.status.success() {
        return Err(format!(
            "`cargo +nightly fuzz list` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let targets = String::from_utf8_lossy(&out.stdout).to_string();
    for target in targets.lines().map(str::trim).filter(|t| !t.is_empty()) {
        run(Command::new("cargo").args([
            "+nightly",
            "fuzz",
            "run",
            target,
            "--",
            &format!("-max_total_time={secs}"),
        ]))?;
    }
    Ok(())
}
