//! `cargo xtask soak [--minutes N]`: mixed traffic against one server for N
//! minutes (default 10): several clients emitting numbered messages,
//! periodic broadcasts, clients disconnecting and reconnecting. It runs the
//! ignored `soak_mixed_traffic` test of `ipc-server`'s `tests/faults.rs` in
//! release mode, which asserts zero lost or duplicated messages and flat
//! memory and prints its figures. Not part of CI (it takes minutes).

use std::process::Command;

use crate::{cargo, run};

pub(crate) fn soak(args: &[String]) -> Result<(), String> {
    let mut minutes: f64 = 10.0;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => {
                let v = it
                    .next()
                    .ok_or("`--minutes` needs a value")?
                    .parse::<f64>()
                    .map_err(|e| format!("`--minutes`: {e}"))?;
                if !(v > 0.0 && v.is_finite()) {
                    return Err("`--minutes` must be positive".into());
                }
                minutes = v;
            }
            other => return Err(format!("unknown soak argument `{other}`")),
        }
    }
    let secs = (minutes * 60.0).round().max(1.0) as u64;
    eprintln!("xtask: soak for {secs} s");
    let mut cmd: Command = cargo();
    cmd.args([
        "test",
        "-p",
        "ipc-server",
        "--release",
        "--all-features",
        "--test",
        "faults",
        "--",
        "--ignored",
        "--exact",
        "soak_mixed_traffic",
        "--nocapture",
    ])
    .env("IPC_SOAK_SECS", secs.to_string());
    run(&mut cmd)
}
