//! node-ipc's README "Multiple IPC Instances", line for line: two
//! independent instances, one silent and JSON-based, the other a raw binary
//! socket with `hex` encoding.

use ipc::prelude::*;

/// Runs the example.
pub(crate) fn main() -> Result<(), IpcError> {
    let ipc = Ipc::new();
    let some_other_explicit_ipc = Ipc::new();

    // setting explicit configs
    // keep one silent and the other verbose
    ipc.configure(|c| c.silent = true);
    some_other_explicit_ipc.configure(|c| c.silent = true);

    // make one a raw binary and the other json based ipc
    ipc.configure(|c| c.raw_buffer = false);
    some_other_explicit_ipc.configure(|c| c.raw_buffer = true);
    some_other_explicit_ipc.configure(|c| c.encoding = ipc::RawEncoding::Hex);

    // They share nothing.
    assert!(!ipc.config().raw_buffer);
    assert_eq!(
        some_other_explicit_ipc.config().encoding,
        ipc::RawEncoding::Hex
    );
    assert_eq!(ipc.config().encoding, ipc::RawEncoding::Utf8);
    Ok(())
}
