//! One side (server or client) of one benchmark workload for one Rust
//! subject, run as its own process by `cargo xtask bench`.
//!
//! ```text
//! bench-peer <subject> <server|client> <w1|w2|w3|w4> <ADDR> [n=N] [warm=N] [clients=N] [ca=PATH] [window=N] [ack=N]
//! ```
//!
//! `ADDR` is `unix:PATH`, `tcp:HOST:PORT`, `tls:HOST:PORT` or
//! `udp4:HOST:PORT` (TLS and UDP: W1 only, subjects `ours`, `serde` and
//! `raw`). A TLS server generates a throwaway CA and a server certificate for
//! `localhost`/`127.0.0.1` at startup and writes the CA's PEM to `ca=PATH`
//! (default: `bench-peer-HOST-PORT.ca.pem` in the temporary directory) before
//! it reports `ready`; the client trusts that file.
//!
//! UDP is lossy and has no flow control, so the W1 sender is paced by a
//! window: at most [`UDP_WINDOW`] (`window=N`) datagrams beyond the
//! receiver's last acknowledged count (the receiver acknowledges every
//! [`UDP_ACK_EVERY`] (`ack=N`) messages; a window that gets no acknowledgement for [`UDP_STALL`] is
//! written off as lost). After the data the sender sends an `end` datagram
//! carrying the number sent (three times); the receiver's `done` then carries
//! `count` (delivered), `sent` and the time of the last delivery.
//!
//! Subjects: `raw` (bytes counted at the delimiter), `serde` (a
//! `serde_json` parse per frame), `rs14` (the `node-ipc` 14.0.0
//! crate, blocking), `ours` (this project's client and server), `ours-ct`
//! (the same with the server on a current-thread runtime) and
//! `blocking` (this project's blocking client and server).
//!
//! Every line on stdout is one JSON object: `{"ev":"ready"}` once a server
//! listens, then result events (`sent`, `done`, `start`, `accepted`). Times
//! are wall-clock microseconds since the Unix epoch (`*_us`), so the driver
//! can subtract a client's start from a server's end. The process exits when
//! its stdin reaches end of file (the driver keeps it open until it has read
//! the peak RSS) or after a hard lifetime.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipc_benches::{standard_frame, STANDARD_PAYLOAD};
use serde_json::{json, Value};

mod blocking;
mod ours;
mod raw;
mod rs14;
mod tls;

/// Hard upper bound on a peer's lifetime.
const LIFETIME: Duration = Duration::from_secs(600);
/// Frames per batched write for the raw ceilings (about 64 KiB).
const BATCH_FRAMES: usize = 700;

/// UDP W1: most datagrams the sender keeps beyond the receiver's last
/// acknowledged count (well under what the default 208 KiB receive buffer
/// holds of small datagrams).
const UDP_WINDOW: u64 = 128;
/// UDP W1: the receiver acknowledges every this many delivered messages.
const UDP_ACK_EVERY: u64 = 32;
/// UDP W1: a window without any acknowledgement for this long is written off.
const UDP_STALL: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
enum Addr {
    Unix(PathBuf),
    Tcp(String),
    /// TLS over TCP, `HOST:PORT`.
    Tls(String),
    /// UDP over IPv4, `HOST:PORT`.
    Udp4(String),
}

#[derive(Clone, Debug)]
struct Args {
    subject: String,
    role: String,
    workload: String,
    addr: Addr,
    n: u64,
    warm: u64,
    clients: usize,
    /// Where a TLS server writes its CA certificate and its client reads it.
    ca: PathBuf,
    /// UDP W1: the sender's window (default [`UDP_WINDOW`]).
    window: u64,
    /// UDP W1: the receiver's acknowledgement interval (default [`UDP_ACK_EVERY`]).
    ack_every: u64,
}

impl Args {
    /// `HOST:PORT` of a TCP, TLS or UDP address.
    fn host_port(&self) -> Result<(String, u16), String> {
        let a = match &self.addr {
            Addr::Tcp(a) | Addr::Tls(a) | Addr::Udp4(a) => a,
            Addr::Unix(p) => return Err(format!("{} is not HOST:PORT", p.display())),
        };
        let (host, port) = a
            .rsplit_once(':')
            .ok_or_else(|| format!("bad address `{a}`"))?;
        let port = port.parse().map_err(|_| format!("bad port in `{a}`"))?;
        Ok((host.to_string(), port))
    }
}

fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.len() < 4 {
        return Err("usage: bench-peer <subject> <server|client> <w1|w2|w3|w4> <unix:PATH|tcp:HOST:PORT|tls:HOST:PORT|udp4:HOST:PORT> [n=N] [warm=N] [clients=N] [ca=PATH] [window=N] [ack=N]".into());
    }
    let addr = if let Some(p) = argv[3].strip_prefix("unix:") {
        Addr::Unix(PathBuf::from(p))
    } else if let Some(a) = argv[3].strip_prefix("tcp:") {
        Addr::Tcp(a.to_string())
    } else if let Some(a) = argv[3].strip_prefix("tls:") {
        Addr::Tls(a.to_string())
    } else if let Some(a) = argv[3].strip_prefix("udp4:") {
        Addr::Udp4(a.to_string())
    } else {
        return Err(format!("bad address `{}`", argv[3]));
    };
    let mut args = Args {
        subject: argv[0].clone(),
        role: argv[1].clone(),
        workload: argv[2].clone(),
        addr,
        n: 1_000_000,
        warm: 2_000,
        clients: 8,
        ca: default_ca_path(&argv[3]),
        window: UDP_WINDOW,
        ack_every: UDP_ACK_EVERY,
    };
    for kv in &argv[4..] {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("bad option `{kv}`"))?;
        if k == "ca" {
            args.ca = PathBuf::from(v);
            continue;
        }
        let num: u64 = v.parse().map_err(|_| format!("bad number in `{kv}`"))?;
        match k {
            "n" => args.n = num,
            "warm" => args.warm = num,
            "clients" => args.clients = usize::try_from(num).map_err(|e| e.to_string())?,
            "window" => args.window = num.max(1),
            "ack" => args.ack_every = num.max(1),
            _ => return Err(format!("unknown option `{k}`")),
        }
    }
    Ok(args)
}

/// The CA file of a TLS address when no `ca=PATH` is given.
fn default_ca_path(addr: &str) -> PathBuf {
    let name: String = addr
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    std::env::temp_dir().join(format!("bench-peer-{name}.ca.pem"))
}

/// Whether the address is a datagram one (W1 then follows the UDP protocol).
fn is_udp(addr: &Addr) -> bool {
    matches!(addr, Addr::Udp4(_))
}

/// Reads a TLS server's CA file, waiting briefly for it to appear.
fn read_ca(path: &Path) -> Result<String, String> {
    let t0 = Instant::now();
    loop {
        match std::fs::read_to_string(path) {
            Ok(pem) if pem.contains("END CERTIFICATE") => return Ok(pem),
            Ok(_) | Err(_) if t0.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(_) => return Err(format!("{}: no certificate", path.display())),
            Err(e) => return Err(format!("read CA {}: {e}", path.display())),
        }
    }
}

/// The tokio runtime for a workload, the same for `ours` and the ceilings:
/// one connection (W1, W2) runs on one thread, with no cross-thread
/// wake-ups; fan-out and many connections run on the multi-threaded one.
fn runtime(args: &Args) -> Result<tokio::runtime::Runtime, String> {
    // `ours-ct`: this project's server on one thread (W3's broadcast on a
    // current-thread runtime); its clients run as `ours`'s do.
    if matches!(args.workload.as_str(), "w1" | "w2")
        || (args.subject == "ours-ct" && args.role == "server")
    {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .map_err(|e| e.to_string())
}

/// Wall-clock microseconds since the Unix epoch.
fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e6)
        .unwrap_or(0.0)
}

/// Writes one JSON line to stdout and flushes it.
fn emit(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Latency summary in microseconds.
fn latency_summary(samples: &mut [u64]) -> Value {
    samples.sort_unstable();
    let pick = |q: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i.min(samples.len() - 1)] as f64 / 1000.0
    };
    json!({"ev":"done","count":samples.len(),"p50_us":pick(0.5),"p99_us":pick(0.99),"end_us":now_us()})
}

/// Parks the main thread until the stdin watcher ends the process.
fn hold() -> ! {
    loop {
        std::thread::park();
    }
}

/// The standard frame repeated `frames` times.
fn batch(frames: usize) -> Vec<u8> {
    let f = standard_frame();
    let mut b = Vec::with_capacity(f.len() * frames);
    for _ in 0..frames {
        b.extend_from_slice(&f);
    }
    b
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-peer: {e}");
            return ExitCode::from(2);
        }
    };
    // End of stdin (or the lifetime) ends the process, whatever it is doing.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(LIFETIME);
        eprintln!("bench-peer: lifetime exceeded");
        std::process::exit(3);
    });
    let res = match args.subject.as_str() {
        "raw" | "serde" => raw::run(&args),
        "rs14" => rs14::run(&args),
        "ours" | "ours-ct" => ours::run(&args),
        "blocking" => blocking::run(&args),
        "connector" => connector(&args),
        other => Err(format!("unknown subject `{other}`")),
    };
    match res {
        Ok(()) => hold(),
        Err(e) => {
            emit(json!({"ev":"fatal","message":e}));
            eprintln!("bench-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// W4's client for every subject: opens `n` idle Unix-socket connections
/// with blocking connects and holds them.
fn connector(args: &Args) -> Result<(), String> {
    let Addr::Unix(path) = &args.addr else {
        return Err("the connector supports unix sockets only".into());
    };
    let mut held = Vec::with_capacity(usize::try_from(args.n).unwrap_or(0));
    emit(json!({"ev":"start","start_us":now_us()}));
    let t0 = Instant::now();
    for i in 0..args.n {
        let s = std::os::unix::net::UnixStream::connect(path)
            .map_err(|e| format!("connect #{i} to {}: {e}", path.display()))?;
        held.push(s);
    }
    emit(
        json!({"ev":"sent","connected":held.len(),"connect_s":t0.elapsed().as_secs_f64(),"end_us":now_us()}),
    );
    // Keep the connections open until the process ends.
    let held = Arc::new(held);
    std::mem::forget(held);
    Ok(())
}

#[allow(dead_code)]
fn payload() -> &'static str {
    STANDARD_PAYLOAD
}
