//! # ipc-transport — where node-ipc peers meet
//!
//! **Owns:** endpoints (where to listen or connect), connected byte streams,
//! listeners and datagram sockets for every transport node-ipc has: Unix
//! sockets (feature `unix`), TCP (`tcp`), TLS through rustls (`tls`), UDP
//! (`udp`) and Windows named pipes. Paths, permissions, unlinking, peer
//! credentials and certificates live here.
//!
//! **Does not own:** events, framing or JSON (that is `ipc-proto`), nor
//! lifecycle, retry or queues (`ipc-client`, `ipc-server`).
#![deny(unsafe_code)]
