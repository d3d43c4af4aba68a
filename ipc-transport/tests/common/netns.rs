//! Harness for tests that cut a network: the test re-runs itself inside a
//! private network namespace (`unshare --net`, root only), where it may
//! change routing without touching the host's network. Shared by the
//! half-open tests of `ipc-client` and `ipc-server` (included with
//! `#[path]`).
//!
//! Without root, `unshare` (util-linux) or `ip` (iproute2) a test prints
//! `skipped: <reason>` and passes, unless `CI=true`/`CI=1` (as `cargo xtask
//! test` reads it) or `NIPC_REQUIRE_NETNS=1` is set: then it fails.

use std::process::Command;

/// Set in the environment of the namespaced re-run.
pub(crate) const CHILD: &str = "NIPC_NETNS_CHILD";

/// Runs a command; its stdout, or why it failed.
pub(crate) fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    match Command::new(cmd).args(args).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(format!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `{cmd}`: {e}")),
    }
}

/// In the namespace: brings the loopback interface up.
pub(crate) fn loopback_up() {
    run("ip", &["link", "set", "lo", "up"]).unwrap();
}

/// In the namespace: the host at 127.0.0.1 "loses power". Every packet to
/// it is dropped, nothing is answered, no RST. (The local routing table must
/// come after the blackhole rule, or it would still answer.)
pub(crate) fn cut_loopback() {
    run(
        "sh",
        &[
            "-c",
            "ip rule add pref 1 to 127.0.0.1 blackhole && ip rule del pref 0 && ip rule add pref 2 lookup local",
        ],
    )
    .unwrap();
}

/// In the namespace: undoes [`cut_loopback`]; 127.0.0.1 answers again.
pub(crate) fn restore_loopback() {
    run("ip", &["rule", "del", "pref", "1"]).unwrap();
}

/// Why the namespaced run is impossible here, if it is.
fn missing_precondition() -> Option<String> {
    match run("id", &["-u"]) {
        Ok(uid) if uid.trim() == "0" => {}
        Ok(uid) => return Some(format!("needs root (uid is {})", uid.trim())),
        Err(e) => return Some(e),
    }
    if let Err(e) = run("ip", &["-V"]) {
        return Some(format!("needs `ip` (Debian package iproute2): {e}"));
    }
    if let Err(e) = run("unshare", &["--net", "--", "ip", "link", "set", "lo", "up"]) {
        return Some(format!(
            "needs `unshare --net` (util-linux, CAP_SYS_ADMIN): {e}"
        ));
    }
    None
}

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("NIPC_REQUIRE_NETNS").is_ok_and(|v| v == "1")
}

/// Whether this process is the namespaced re-run (bring `lo` up, then run
/// the test's body).
pub(crate) fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// From the outer run: re-runs the test named `test` of this binary inside a
/// private network namespace and asserts that it passed there. Returns
/// without running it (printing why) when the preconditions are missing and
/// not required.
pub(crate) async fn rerun_in_namespace(test: &'static str) {
    if let Some(reason) = missing_precondition() {
        if required() {
            panic!("CI=true or NIPC_REQUIRE_NETNS=1, but the namespaced test cannot run: {reason}");
        }
        println!("skipped: {reason}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("unshare")
            .arg("--net")
            .arg("--")
            .arg(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "namespaced run failed:\n{stdout}\n{stderr}"
    );
}
