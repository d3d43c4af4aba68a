//! One side (server or client) of one benchmark workload for one Rust
//! subject, run as its own process by `cargo xtask bench`.
//!
//! ```text
//! bench-peer <subject> <server|client> <w1|w2|w3|w4> <unix:PATH|tcp:HOST:PORT> [n=N] [warm=N] [clients=N]
//! ```
//!
//! Subjects: `raw` (bytes counted at the delimiter), `serde` (a
//! `serde_json` parse per frame), `rs14` (the `node-ipc` 14.0.0
//! crate, blocking) and `ours` (this project's client and server).
//!
//! Every line on stdout is one JSON object: `{"ev":"ready"}` once a server
//! listens, then result events (`sent`, `done`, `start`, `accepted`). Times
//! are wall-clock microseconds since the Unix epoch (`*_us`), so the driver
//! can subtract a client's start from a server's end. The process exits when
//! its stdin reaches end of file (the driver keeps it open until it has read
//! the peak RSS) or after a hard lifetime.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipc_benches::{standard_frame, STANDARD_PAYLOAD};
use serde_json::{json, Value};

mod ours;
mod raw;
mod rs14;

/// Hard upper bound on a peer's lifetime.
const LIFETIME: Duration = Duration::from_secs(600);
/// Frames per batched write for the raw ceilings (about 64 KiB).
const BATCH_FRAMES: usize = 700;

#[derive(Clone, Debug)]
enum Addr {
    Unix(PathBuf),
    Tcp(String),
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
}

fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.len() < 4 {
        return Err("usage: bench-peer <subject> <server|client> <w1|w2|w3|w4> <unix:PATH|tcp:HOST:PORT> [n=N] [warm=N] [clients=N]".into());
    }
    let addr = if let Some(p) = argv[3].strip_prefix("unix:") {
        Addr::Unix(PathBuf::from(p))
    } else if let Some(a) = argv[3].strip_prefix("tcp:") {
        Addr::Tcp(a.to_string())
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
    };
    for kv in &argv[4..] {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("bad option `{kv}`"))?;
        let num: u64 = v.parse().map_err(|_| format!("bad number in `{kv}`"))?;
        match k {
            "n" => args.n = num,
            "warm" => args.warm = num,
            "clients" => args.clients = usize::try_from(num).map_err(|e| e.to_string())?,
            _ => return Err(format!("unknown option `{k}`")),
        }
    }
    Ok(args)
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
        "ours" => ours::run(&args),
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
