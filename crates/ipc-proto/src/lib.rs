//! # ipc-proto — node-ipc's wire protocol, sans I/O
//!
//! **Owns:** every protocol decision of the workspace: the `{"type":…,"data":…}`
//! envelope and its byte-exact JSON encoding, delimiter framing, the `raw`,
//! `fast`, `guarded` and `assured` profiles with their limits, the
//! `ERR_IPC_*` error codes, raw-mode string encodings, the optional
//! MessagePack framing and the bounded per-peer UDP reassembly.
//!
//! **Does not own:** sockets, files, clocks or a runtime. Bytes go in and
//! messages come out; messages go in and bytes come out. Time enters only as a
//! `now: Instant` argument. Transports live in `ipc-transport`, behaviour
//! (lifecycle, retry, queues) in `ipc-client` and `ipc-server`.
#![forbid(unsafe_code)]

pub mod code;

pub use code::ErrorCode;
