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
    errs: Receiver<String>,
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
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stdin = child.stdin.take();
        let (etx, errs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = etx.send(line);
            }
        });
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
            errs,
            stdin,
        }
    }

    /// The next stderr line containing `needle` (earlier ones are skipped).
    fn expect_stderr(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .errs
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no stderr line with {needle:?} within {WAIT:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The next JSON line for which `pred` holds (earlier ones are skipped).
    fn expect(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect_line(what, pred).1
    }

    /// Like `expect`, with the line's text as printed.
    fn expect_line(&self, what: &str, pred: impl Fn(&Value) -> bool) -> (String, Value) {
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
                return (line, v);
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

/// Every JSON line of a finished command's stdout.
fn json_lines(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

#[test]
fn every_help_has_an_example_and_links_the_protocol_reference() {
    for cmd in [
        "serve", "emit", "listen", "request", "ping", "sub", "pub", "bench", "demo",
    ] {
        let out = nipc(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd}");
        let help = text(&out.stdout);
        assert!(
            help.contains("Example"),
            "{cmd} --help has no example:\n{help}"
        );
        assert!(help.contains("docs/protocol.md"), "{cmd} --help:\n{help}");
    }
    let top = text(&nipc(&["--help"]).stdout);
    for needle in [
        "pipe:",
        "Exit status",
        "docs/protocol.md",
        "\"event\":\"message\"",
    ] {
        assert!(top.contains(needle), "missing {needle:?} in:\n{top}");
    }
}

#[test]
fn emit_waits_for_replies_and_for_a_type() {
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "r.sock");
    let serve = Running::start(&["serve", &ep, "--echo"]);
    serve.started();
    let out = nipc(&["emit", &ep, "ask", r#"{"q":[1, 2]}"#, "--replies", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["type"], "ask");
    assert_eq!(lines[0]["data"], serde_json::json!({"q":[1,2]}));

    let out = nipc(&["emit", &ep, "ask", "7", "--wait-for", "ask"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["data"], 7);

    // Without data the message carries `{}` (node-ipc's `emit(type)`).
    let out = nipc(&["emit", &ep, "bare", "--replies", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["data"], serde_json::json!({}));
}

#[test]
fn emit_without_an_answer_times_out_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "quiet.sock");
    let serve = Running::start(&["serve", &ep]);
    serve.started();
    let out = nipc(&[
        "emit",
        &ep,
        "ask",
        "1",
        "--replies",
        "1",
        "--timeout",
        "300",
    ]);
    assert_one_line_error(&out, "no reply from unix:");
}

#[test]
fn broadcast_stdin_without_data_sends_an_empty_object() {
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "bd.sock");
    let mut serve = Running::start(&["serve", &ep, "--broadcast-stdin"]);
    serve.started();
    let mut listen = Running::start(&["listen", &ep, "--count", "1"]);
    listen.expect("connect", |v| v["event"] == "connect");
    serve.expect("server connect", |v| v["event"] == "connect");
    serve.send_stdin(r#"{"type":"tick"}"#);
    let m = listen.expect("tick", |v| v["event"] == "message");
    assert_eq!(m["type"], "tick");
    assert_eq!(m["data"], serde_json::json!({}));
    assert!(listen.wait_exit().success());
}

#[test]
fn config_file_and_flags_set_the_local_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let cfg = dir.path().join("ipc.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"socketRoot":"{}/","appspace":"demo.","id":"world"}}"#,
            root.display()
        ),
    )
    .unwrap();
    let cfg_s = cfg.display().to_string();
    // No endpoint: node-ipc's serve() path, socketRoot + appspace + id.
    let serve = Running::start(&["serve", "--config", &cfg_s]);
    let ep = serve.started();
    assert_eq!(ep, format!("unix:{}", root.join("demo.world").display()));
    // A client finds it by id with the same file…
    let out = nipc(&["emit", "id:world", "message", "1", "--config", &cfg_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serve.expect("message", |v| v["event"] == "message" && v["data"] == 1);
    // …or with flags only.
    let root_s = root.display().to_string();
    let out = nipc(&[
        "emit",
        "id:world",
        "message",
        "2",
        "--socket-root",
        &root_s,
        "--appspace",
        "demo.",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serve.expect("message", |v| v["event"] == "message" && v["data"] == 2);

    std::fs::write(&cfg, r#"{"retyr":100}"#).unwrap();
    let out = nipc(&["serve", "--config", &cfg_s]);
    assert_one_line_error(&out, "retyr");
}

#[test]
fn raw_mode_with_an_encoding_sends_and_prints_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "raw.sock");
    let serve = Running::start(&["serve", &ep, "--raw", "--echo"]);
    serve.started();
    let out = nipc(&[
        "emit",
        &ep,
        "--raw",
        "--encoding",
        "hex",
        "0a0bff",
        "--replies",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let d = serve.expect("data", |v| v["event"] == "data");
    assert_eq!(d["hex"], "0a0bff");
    // The echo comes back as the same bytes.
    assert_eq!(json_lines(&out)[0]["hex"], "0a0bff");
    // A type and data make no sense in raw mode.
    let out = nipc(&["emit", &ep, "--raw", "a", "1"]);
    assert_one_line_error(&out, "--raw");
}

#[test]
fn a_custom_delimiter_frames_messages() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "nl.sock");
    let serve = Running::start(&["serve", &ep, "--delimiter", "\\n", "--echo"]);
    serve.started();
    let mut s = UnixStream::connect(dir.path().join("nl.sock")).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"{\"type\":\"a\",\"data\":\"x\"}\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "{\"type\":\"a\",\"data\":\"x\"}\n");
    let m = serve.expect("message", |v| v["event"] == "message");
    assert_eq!(m["data"], "x");
    // nipc's own client with the same delimiter.
    let out = nipc(&[
        "emit",
        &ep,
        "b",
        "2",
        "--delimiter",
        "\\n",
        "--replies",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["data"], 2);
}

#[test]
fn data_is_printed_as_sent_on_one_line() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "ws.sock");
    let serve = Running::start(&["serve", &ep]);
    serve.started();
    let mut s = UnixStream::connect(dir.path().join("ws.sock")).unwrap();
    // Whitespace and newlines between tokens, a big integer a Value would
    // round, and a string with spaces.
    s.write_all(
        b"{\"type\":\"w\",\"data\":{ \"a\" :\n[1, 123456789012345678901],\n\"s\":\"x y\"}}\x0c",
    )
    .unwrap();
    let (line, _) = serve.expect_line("message", |v| v["event"] == "message");
    assert!(
        line.contains(r#""data":{"a":[1,123456789012345678901],"s":"x y"}"#),
        "{line}"
    );
}

#[test]
fn guarded_parser_and_max_message_size_refuse_big_frames() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "g.sock");
    let serve = Running::start(&[
        "serve",
        &ep,
        "--parser",
        "guarded",
        "--max-message-size",
        "100",
        "--echo",
    ]);
    serve.started();
    let mut s = UnixStream::connect(dir.path().join("g.sock")).unwrap();
    let big = format!("{{\"type\":\"x\",\"data\":\"{}\"}}\x0c", "a".repeat(200));
    s.write_all(big.as_bytes()).unwrap();
    let e = serve.expect("error", |v| v["event"] == "error");
    assert_eq!(e["code"], "ERR_IPC_FRAME_TOO_LARGE", "{e}");
    // Reserved names are refused by guarded too.
    let mut s2 = UnixStream::connect(dir.path().join("g.sock")).unwrap();
    s2.write_all(b"{\"type\":\"connect\",\"data\":1}\x0c")
        .unwrap();
    let e = serve.expect("error", |v| v["event"] == "error");
    assert_eq!(e["code"], "ERR_IPC_RESERVED_EVENT", "{e}");
    // A well-behaved client is still served.
    let out = nipc(&["emit", &ep, "ok", "1", "--replies", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn max_connections_and_idle_timeout_bound_connections() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "m.sock");
    let serve = Running::start(&[
        "serve",
        &ep,
        "--echo",
        "--max-connections",
        "1",
        "--idle-timeout",
        "300",
    ]);
    serve.started();
    let mut idle = UnixStream::connect(dir.path().join("m.sock")).unwrap();
    serve.expect("connect", |v| v["event"] == "connect");
    // The one slot is taken: a second client is turned away.
    let out = nipc(&["emit", &ep, "x", "1", "--replies", "1", "--timeout", "5000"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // The silent connection is closed by the idle timeout (EOF)…
    idle.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(idle.read(&mut buf).unwrap(), 0);
    serve.expect("close", |v| v["event"] == "close");
    // …which frees the slot.
    let out = nipc(&["emit", &ep, "x", "2", "--replies", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["data"], 2);
}

#[test]
fn echo_cuts_off_a_peer_that_does_not_read_and_keeps_serving() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "slow.sock");
    let serve = Running::start(&["serve", &ep, "--echo", "--max-pending-bytes", "65536"]);
    serve.started();
    // A peer that sends a lot and never reads its echoes.
    let mut slow = UnixStream::connect(dir.path().join("slow.sock")).unwrap();
    slow.set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let frame = format!(
        "{{\"type\":\"flood\",\"data\":\"{}\"}}\x0c",
        "z".repeat(1000)
    );
    let writer = std::thread::spawn(move || {
        for _ in 0..20_000 {
            if slow.write_all(frame.as_bytes()).is_err() {
                break;
            }
        }
        slow
    });
    let e = serve.expect("backpressure error", |v| {
        v["event"] == "error" && v["code"] == "ERR_IPC_BACKPRESSURE"
    });
    assert!(e["from"].is_u64(), "{e}");
    drop(writer.join().unwrap());
    // A well-behaved client is served meanwhile and afterwards.
    let out = nipc(&["emit", &ep, "ok", r#""fine""#, "--replies", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["data"], "fine");
}

#[test]
fn sigterm_and_sigint_stop_serve_and_remove_the_socket() {
    use std::os::unix::net::UnixStream;
    for sig in ["-TERM", "-INT"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sig.sock");
        let ep = sock(dir.path(), "sig.sock");
        let mut serve = Running::start(&["serve", &ep, "--echo", "--max-pending-bytes", "65536"]);
        serve.started();
        // A connected peer that never reads, with echoes queued for it.
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let frame = format!("{{\"type\":\"f\",\"data\":\"{}\"}}\x0c", "q".repeat(500));
        for _ in 0..200 {
            if s.write_all(frame.as_bytes()).is_err() {
                break;
            }
        }
        let pid = serve.child.id().to_string();
        let k = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(k.success());
        let status = serve.wait_exit();
        assert!(status.success(), "{sig}: {status:?}");
        assert!(!path.exists(), "{sig}: socket file left behind");
    }
}

#[test]
fn listen_retries_until_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "late.sock");
    let mut listen = Running::start(&[
        "listen",
        &ep,
        "--count",
        "1",
        "--max-retries",
        "Infinity",
        "--retry",
        "50",
    ]);
    // The first attempts fail (nothing there yet) without ending `listen`.
    listen.expect_stderr("retrying every 50 ms");
    let mut serve = Running::start(&["serve", &ep, "--broadcast-stdin"]);
    serve.started();
    serve.expect("connect", |v| v["event"] == "connect");
    serve.send_stdin(r#"{"type":"hi","data":1}"#);
    let m = listen.expect("hi", |v| v["event"] == "message");
    assert_eq!(m["data"], 1);
    assert!(listen.wait_exit().success());
}

#[test]
fn sync_mode_client_still_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "sync.sock");
    let serve = Running::start(&["serve", &ep, "--echo"]);
    serve.started();
    let out = nipc(&["emit", &ep, "s", "3", "--sync", "--replies", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["data"], 3);
}

#[test]
fn sigterm_stops_serve_even_when_nobody_reads_its_stdout() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stuck.sock");
    let ep = sock(dir.path(), "stuck.sock");
    // stdout is a pipe this test never reads: once it is full, every line
    // nipc prints blocks.
    let mut child = Command::new(NIPC)
        .args(["serve", &ep])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Far more output than a pipe holds (each message is printed).
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let frame = format!("{{\"type\":\"m\",\"data\":\"{}\"}}\x0c", "x".repeat(1000));
    for _ in 0..1000 {
        if s.write_all(frame.as_bytes()).is_err() {
            break;
        }
    }
    let k = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nipc serve ignored SIGTERM while its stdout was full");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// Peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_frame_with_a_million_keys_is_printed_and_echoed_without_a_value_tree() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let ep = sock(dir.path(), "keys.sock");
    let serve = Running::start(&["serve", &ep, "--echo", "--max-pending-bytes", "67108864"]);
    serve.started();
    // ~11 MiB: {"type":"k","data":{"k0":0,"k1":0,…}} with 1,000,000 keys. A
    // serde_json::Value of it takes ~20 times its size; printing and echoing
    // from the frame's bytes keeps the peak to a few copies of the frame.
    let mut frame = String::from("{\"type\":\"k\",\"data\":{");
    for i in 0..1_000_000 {
        if i > 0 {
            frame.push(',');
        }
        frame.push_str(&format!("\"k{i}\":0"));
    }
    frame.push_str("}}\x0c");
    let mut s = UnixStream::connect(dir.path().join("keys.sock")).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = s.try_clone().unwrap();
    let echo = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while !got.ends_with(b"\x0c") {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    });
    s.write_all(frame.as_bytes()).unwrap();
    let (line, _) = serve.expect_line("the message", |v| v["event"] == "message");
    assert!(
        line.contains("\"k999999\":0"),
        "{}",
        &line[line.len() - 100..]
    );
    let got = echo.join().unwrap();
    assert_eq!(got.len(), frame.len(), "the echo is the frame itself");
    assert_eq!(&got[..], frame.as_bytes());
    let peak_mib = peak_rss_kib(serve.child.id()) / 1024;
    let frame_mib = (frame.len() / (1024 * 1024)) as u64;
    assert!(
        peak_mib < 12 * frame_mib,
        "peak RSS {peak_mib} MiB for a {frame_mib} MiB frame"
    );
}

#[test]
fn secure_socket_root_decides_whether_a_shared_root_is_taken_over() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    for (secure, want) in [("false", 0o1777), ("true", 0o700)] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("shared");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let root_s = root.display().to_string();
        let serve = Running::start(&[
            "serve",
            "--socket-root",
            &root_s,
            "--secure-socket-root",
            secure,
            "--id",
            "world",
        ]);
        let ep = serve.started();
        assert_eq!(ep, format!("unix:{}", root.join("app.world").display()));
        assert_eq!(mode(&root), want, "--secure-socket-root {secure}");
    }
}
