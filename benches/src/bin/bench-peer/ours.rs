//! This project's client and server.

use crate::Args;

pub(crate) fn run(args: &Args) -> Result<(), String> {
    Err(format!(
        "subject `ours` ({} {}) is not wired yet: ipc-server has no API",
        args.role, args.workload
    ))
}
