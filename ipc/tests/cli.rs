//! `nipc` end to end, as a process: every subcommand against real sockets,
//! and the error messages and exit codes users and scripts see.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use serde_json::Value;

const NIPC: &str = env!("CARGO_BIN_EXE_nipc");
const WAIT: Duration = Duration::from_secs(20);

/// Runs `nipc args…` to completion (bounded).
fn nipc(args: &[&str]) -> Output {
    let mut child = Command::new(NIPC)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t = std::thread::spawn(move || {
        let mut o = Vec::new();
        let mut e = Vec::new();
        let h = std::thread::spawn(move || {
            std::io::Read::read_to_end(&mut err, &mut e).ok();
            e
        });
        std::io::Read::read_to_end(&mut out, &mut o).ok();
        let e = h.join().unwrap();
        let _ = tx.send((o, e));
    });
    let (stdout, stderr) = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(v) => v,
        Err(_) => {
            let _ = child.kill();
            panic!("nipc {args:?} did not finish within 60 s");
        }
    };
    t.join().unwrap();
    let status = child.wait().unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A failing command: exit status 1 and exactly one line on stderr that
/// contains `needle`, no panic, nothing on stdout.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "expected one line, got: {err}");
    assert!(err.starts_with("nipc: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
}

/// A long-running `nipc` (serve/listen) with its stdout as JSON lines.
struct Running {
    child: Child,
    lines: Receiver<String>,
    stdin: Option<ChildStdin>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        Running::start_env(args, &[])
    }

    fn start_env(args: &[&str], env: &[(&str, &Path)]) -> Running {
        let mut child = Command::new(NIPC)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            stdin,
        }
    }

    /// The next JSON line for which `pred` holds (earlier ones are skipped).
    fn expect(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line with {what} within {WAIT:?}"));
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}"));
            if pred(&v) {
                return v;
            }
        }
    }

    /// Waits for the `start` line and returns the endpoint served.
    fn started(&self) -> String {
        let v = self.expect("start", |v| v["event"] == "start");
        v["endpoint"].as_str().unwrap().to_owned()
    }

    fn send_stdin(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits (bounded) for the process to exit by itself.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sock(dir: &Path, name: &str) -> String {
    format!("unix:{}", dir.join(name).display())
}

#[test]
fn demo_runs_to_completion_and_shows_reconnect() {
    let out = nipc(&["demo"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for needle in [
        "listening on unix:",
        "received welcome",
        "received news",
        "stops (simulated restart)",
        "reconnected",
        "after the restart",
        "demo complete",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert_eq!(stdout.matches("reconnected").count(), 3, "{stdout}");
}

#[test]
fn serve_prints_events_and_emit_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "s.sock");
    let serve = Running::start(&["serve", &ep]);
    assert_eq!(serve.started(), ep);
    let out = nipc(&["emit", &ep, "greeting", r#"{"a":[1,2],"b":"x"}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serve.expect("connect", |v| v["event"] == "connect");
    let m = serve.expect("message", |v| v["event"] == "message");
    assert_eq!(m["type"], "greeting");
    assert_eq!(m["data"], serde_json::json!({"a":[1,2],"b":"x"}));
    serve.expect("socket.disconnected", |v| {
        v["event"] == "socket.disconnected"
    });
    serve.expect("close", |v| v["event"] == "close");
}

#[test]
fn serve_echo_answers_listen_and_request_and_ping() {
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "echo.sock");
    let serve = Running::start(&["serve", &ep, "--echo"]);
    serve.started();

    let req = nipc(&["request", &ep, r#"{"q":42}"#]);
    assert!(req.status.success(), "{}", text(&req.stderr));
    let v: Value = serde_json::from_str(text(&req.stdout).trim()).unwrap();
    assert_eq!(v, serde_json::json!({"q":42}));

    let ping = nipc(&["ping", &ep, "--count", "2"]);
    assert!(ping.status.success(), "{}", text(&ping.stderr));
    assert_eq!(text(&ping.stdout).matches("pong from").count(), 2);
}

#[test]
fn broadcast_stdin_reaches_a_listener() {
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "b.sock");
    let mut serve = Running::start(&["serve", &ep, "--broadcast-stdin"]);
    serve.started();
    let mut listen = Running::start(&["listen", &ep, "--count", "1"]);
    listen.expect("connect", |v| v["event"] == "connect");
    serve.expect("server connect", |v| v["event"] == "connect");
    serve.send_stdin("not json at all");
    serve.send_stdin(r#"{"type":"news","data":{"n":1}}"#);
    let m = listen.expect("news", |v| v["event"] == "message");
    assert_eq!(m["type"], "news");
    assert_eq!(m["data"], serde_json::json!({"n":1}));
    assert!(listen.wait_exit().success());
}

#[test]
fn sub_receives_what_pub_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "p.sock");
    let serve = Running::start(&["serve", &ep]);
    serve.started();
    let mut sub = Running::start(&["sub", &ep, "weather", "--count", "1"]);
    serve.expect("subscriber connect", |v| v["event"] == "connect");
    // The subscription is acknowledged before `sub` waits; retry the
    // publication until the subscriber has it (bounded).
    let deadline = std::time::Instant::now() + WAIT;
    let got = loop {
        let out = nipc(&["pub", &ep, "weather", r#""sunny""#]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        if let Ok(line) = sub.lines.recv_timeout(Duration::from_millis(500)) {
            break line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no publication arrived"
        );
    };
    let v: Value = serde_json::from_str(&got).unwrap();
    assert_eq!(v, serde_json::json!({"topic":"weather","data":"sunny"}));
    assert!(sub.wait_exit().success());
}

#[test]
fn id_endpoints_use_node_ipc_14_default_paths() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("XDG_RUNTIME_DIR", dir.path())];
    let serve = Running::start_env(&["serve", "id:world"], &env);
    let ep = serve.started();
    let expected = dir.path().join("node-ipc").join("app.world");
    assert_eq!(ep, format!("unix:{}", expected.display()));
    let out = Command::new(NIPC)
        .args(["emit", "id:world", "message", r#""by id""#])
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = serve.expect("message", |v| v["event"] == "message");
    assert_eq!(m["data"], "by id");
}

#[test]
fn tcp_with_port_zero_reports_the_real_port() {
    let serve = Running::start(&["serve", "tcp://127.0.0.1:0"]);
    let ep = serve.started();
    assert!(ep.starts_with("tcp://127.0.0.1:"), "{ep}");
    assert!(!ep.ends_with(":0"), "{ep}");
    let out = nipc(&["emit", &ep, "message", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = serve.expect("message", |v| v["event"] == "message");
    assert_eq!(m["data"], 1);
}

#[cfg(feature = "udp")]
#[test]
fn udp_emit_reaches_a_udp_server() {
    let serve = Running::start(&["serve", "udp4://127.0.0.1:0"]);
    let ep = serve.started();
    let out = nipc(&["emit", &ep, "message", r#""over udp""#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = serve.expect("message", |v| v["event"] == "message");
    assert_eq!(m["data"], "over udp");
    assert!(m["from"].as_str().unwrap().starts_with("127.0.0.1:"), "{m}");
}

#[cfg(feature = "tls")]
#[test]
fn tls_serve_and_emit_with_generated_certificates() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(p("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(p("server.pem"), cert.pem()).unwrap();
    std::fs::write(p("server.key"), key.serialize_pem()).unwrap();

    let serve = Running::start(&[
        "serve",
        "tls://127.0.0.1:0",
        "--cert",
        &p("server.pem"),
        "--key",
        &p("server.key"),
    ]);
    let ep = serve.started();
    let out = nipc(&[
        "emit",
        &ep,
        "message",
        r#""secret""#,
        "--ca",
        &p("ca.pem"),
        "--servername",
        "localhost",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = serve.expect("message", |v| v["event"] == "message");
    assert_eq!(m["data"], "secret");

    // Without a CA there is nothing to verify the server with.
    let out = nipc(&["emit", &ep, "message", "1", "--servername", "localhost"]);
    assert_one_line_error(&out, "needs --ca");

    // A CA that did not sign the server's certificate: verification fails.
    let other_key = KeyPair::generate().unwrap();
    let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    std::fs::write(p("other.pem"), other.self_signed(&other_key).unwrap().pem()).unwrap();
    let out = nipc(&[
        "emit",
        &ep,
        "message",
        "1",
        "--ca",
        &p("other.pem"),
        "--servername",
        "localhost",
    ]);
    assert_one_line_error(&out, "TLS with tls://");

    // Serving TLS without a certificate says what is missing.
    let out = nipc(&["serve", "tls://127.0.0.1:0"]);
    assert_one_line_error(&out, "--cert");
}

#[test]
fn bench_prints_progress_and_a_summary_table() {
    let out = nipc(&[
        "bench", "--quick", "--frames", "2000", "--rtts", "50", "--fanout", "200",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("| workload |"), "{stdout}");
    assert!(stdout.contains("throughput"), "{stdout}");
    assert!(stdout.contains("p50"), "{stdout}");
    assert!(stdout.contains("fan-out to 8 clients"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("throughput: 2000/2000 (100%)"), "{stderr}");
}

#[test]
fn bad_json_is_one_clear_line() {
    let out = nipc(&["emit", "unix:/nonexistent/x.sock", "message", "{oops"]);
    assert_one_line_error(&out, "is not valid JSON");
}

#[test]
fn bad_endpoint_is_one_clear_line() {
    for ep in ["bogus://x", "tcp://127.0.0.1", "unix:", "udp6://::1:80"] {
        let out = nipc(&["emit", ep, "message", "1"]);
        assert_one_line_error(&out, "invalid endpoint");
    }
}

#[test]
fn nothing_listening_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "nobody.sock");
    for cmd in [
        vec!["emit", &ep, "message", "1"],
        vec!["listen", &ep],
        vec!["ping", &ep],
    ] {
        let out = nipc(&cmd);
        assert_one_line_error(&out, "nothing answers at unix:");
        assert!(
            text(&out.stderr).contains("nipc serve"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn listen_on_udp_explains_that_udp_has_no_clients() {
    let out = nipc(&["listen", "udp4://127.0.0.1:9"]);
    assert_one_line_error(&out, "UDP has no clients");
}

#[test]
fn serving_a_busy_endpoint_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "busy.sock");
    let first = Running::start(&["serve", &ep]);
    first.started();
    let out = nipc(&["serve", &ep]);
    assert_one_line_error(&out, "cannot serve");
}

#[test]
fn usage_errors_exit_2() {
    let out = nipc(&["emit", "unix:/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Usage"), "{}", text(&out.stderr));
    let out = nipc(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}
