//! node-ipc's own example programs against `nipc`: for every example of
//! node-ipc's repository (`example/`: Unix, TCP, TLS, UDP, raw buffer, sync,
//! broadcast, cluster) and each of its sides, the `nipc` command line that
//! README.md documents plays that side against a JS peer that behaves like
//! the example (`interop/js/examples.mjs`, real node-ipc from npm).
//!
//! `nipc` is the binary `cargo build -p ipc --features cli` builds
//! (`cargo xtask interop` and `cargo xtask test` build it first); the path
//! can be given with `IPC_INTEROP_NIPC`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod ours;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{s, T};
use ipc_interop::{free_tcp_port, free_udp_port, interop_dir, Event, Flavor, Matrix, NodePeer};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// The `nipc` binary, or why it is missing.
fn nipc_bin() -> Result<PathBuf, String> {
    let p = match std::env::var_os("IPC_INTEROP_NIPC") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().map_err(s)?;
            // target/<profile>/deps/<test> → target/<profile>/nipc
            let dir = exe.parent().and_then(Path::parent).ok_or("no target dir")?;
            dir.join("nipc")
        }
    };
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found: build it with `cargo build -p ipc --features cli --bin nipc` \
             (cargo xtask interop does) or set IPC_INTEROP_NIPC",
            p.display()
        ))
    }
}

/// A running `nipc` (serve) with its stdout lines.
struct Nipc {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    stdin: Option<ChildStdin>,
}

impl Nipc {
    fn start(args: &[String]) -> Result<Nipc, String> {
        let mut child = Command::new(nipc_bin()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(s)?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(out).lines();
            while let Ok(Some(l)) = r.next_line().await {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Nipc {
            child,
            lines,
            stdin,
        })
    }

    /// The next JSON line for which `pred` holds.
    async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value, String> {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                let v: Value = serde_json::from_str(&line).map_err(|e| format!("{line:?}: {e}"))?;
                if pred(&v) {
                    return Ok(v);
                }
            }
            Err(format!("nipc ended before {what}"))
        };
        tokio::time::timeout(T, wait)
            .await
            .map_err(|_| format!("no {what} from nipc within {T:?}"))?
    }

    /// The endpoint from the `start` line.
    async fn started(&mut self) -> Result<String, String> {
        let v = self.expect("start", |v| v["event"] == "start").await?;
        v["endpoint"]
            .as_str()
            .map(str::to_owned)
            .ok_or("start without endpoint".into())
    }

    async fn send_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("no stdin")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(s)?;
        stdin.flush().await.map_err(s)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Runs a one-shot `nipc` command; returns its stdout JSON lines, or its
/// stderr when it failed.
async fn run(args: &[String]) -> Result<Vec<Value>, String> {
    let out = tokio::time::timeout(
        T,
        Command::new(nipc_bin()?)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("nipc {args:?} did not finish within {T:?}"))?
    .map_err(s)?;
    if !out.status.success() {
        return Err(format!(
            "nipc {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{l:?}: {e}")))
        .collect()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|x| (*x).to_owned()).collect()
}

/// Starts a role of `examples.mjs`.
async fn js(flavor: Flavor, setup: Value) -> Result<NodePeer, String> {
    let script = interop_dir().join("js").join("examples.mjs");
    let mut setup = setup;
    setup["version"] = json!(flavor.version().split('.').next().unwrap_or("14"));
    let label = format!("{flavor} {} {}", setup["example"], setup["role"]);
    NodePeer::spawn_script(flavor, &script, &[setup.to_string()], label)
        .await
        .map_err(s)
}

/// Starts a JS server role and waits until it listens. node-ipc cannot bind
/// port 0: a network server gets a port the OS just handed out, and a fresh
/// one when it was taken before Node bound it. Returns the port (0 for Unix).
async fn js_server(flavor: Flavor, setup: Value, udp: bool) -> Result<(NodePeer, u16), String> {
    let network = setup.get("path").is_none();
    for _ in 0..5 {
        let mut setup = setup.clone();
        let port = if !network {
            0
        } else if udp {
            free_udp_port(common::V4).map_err(s)?
        } else {
            free_tcp_port(common::V4).map_err(s)?
        };
        if network {
            setup["host"] = json!("127.0.0.1");
            setup["port"] = json!(port);
        }
        let mut node = js(flavor, setup).await?;
        let ev = node
            .expect(
                |e| e.kind() == "ready" || (e.kind() == "error" && e.raw["code"] == "EADDRINUSE"),
                T,
            )
            .await
            .map_err(s)?;
        if ev.kind() == "ready" {
            return Ok((node, port));
        }
        node.kill().await;
    }
    Err("five fresh ports in a row were taken".into())
}

async fn got(
    node: &mut NodePeer,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Result<Event, String> {
    node.expect(pred, T)
        .await
        .map_err(|e| format!("{what}: {e}"))
}

fn is_got(e: &Event, ty: &str) -> bool {
    e.kind() == "got" && e.raw["type"] == ty
}

fn port_of(endpoint: &str) -> Result<u16, String> {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in {endpoint}"))
}

// ---------------------------------------------------------------------------
// basic (Unix and TCP): hello-client emits app.message, world-server answers
// ---------------------------------------------------------------------------

const HELLO: &str = r#"{"id":"hello","message":"hello"}"#;

/// `nipc emit id:world --socket-root DIR app.message '{…}' --wait-for app.message`
async fn basic_unix_nipc_client(flavor: Flavor) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let path = dir.path().join("app.world");
    let (mut world, _) = js_server(
        flavor,
        json!({"example":"basic","role":"world","path":path}),
        false,
    )
    .await?;
    let root = dir.path().display().to_string();
    let lines = run(&args(&[
        "emit",
        "id:world",
        "--socket-root",
        &root,
        "app.message",
        HELLO,
        "--wait-for",
        "app.message",
    ]))
    .await?;
    let last = lines.last().ok_or("no reply printed")?;
    if last["data"] != json!({"id":"world","message":"hello world!"}) {
        return Err(format!("reply {last}"));
    }
    got(&mut world, "the world got it", |e| is_got(e, "app.message")).await?;
    world.kill().await;
    Ok(())
}

/// `nipc serve --socket-root DIR --id world --echo`
async fn basic_unix_nipc_server(flavor: Flavor) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let root = dir.path().display().to_string();
    let mut serve = Nipc::start(&args(&[
        "serve",
        "--socket-root",
        &root,
        "--id",
        "world",
        "--echo",
    ]))?;
    serve.started().await?;
    let path = dir.path().join("app.world");
    let mut hello = js(
        flavor,
        json!({"example":"basic","role":"hello","path":path}),
    )
    .await?;
    let ev = got(&mut hello, "the answer", |e| is_got(e, "app.message")).await?;
    if ev.raw["data"] != json!({"id":"hello","message":"hello"}) {
        return Err(format!("answer {ev}"));
    }
    serve
        .expect("the message", |v| {
            v["type"] == "app.message" && v["data"]["id"] == "hello"
        })
        .await?;
    hello.kill().await;
    serve.stop().await;
    Ok(())
}

/// `nipc emit tcp://127.0.0.1:PORT app.message '{…}' --wait-for app.message`
async fn basic_tcp_nipc_client(flavor: Flavor) -> Result<(), String> {
    let (mut world, port) =
        js_server(flavor, json!({"example":"basic","role":"world"}), false).await?;
    let ep = format!("tcp://127.0.0.1:{port}");
    let lines = run(&args(&[
        "emit",
        &ep,
        "app.message",
        HELLO,
        "--wait-for",
        "app.message",
    ]))
    .await?;
    let last = lines.last().ok_or("no reply printed")?;
    if last["data"]["message"] != "hello world!" {
        return Err(format!("reply {last}"));
    }
    got(&mut world, "the world got it", |e| is_got(e, "app.message")).await?;
    world.kill().await;
    Ok(())
}

/// `nipc serve tcp://127.0.0.1:0 --echo`
async fn basic_tcp_nipc_server(flavor: Flavor) -> Result<(), String> {
    let mut serve = Nipc::start(&args(&["serve", "tcp://127.0.0.1:0", "--echo"]))?;
    let port = port_of(&serve.started().await?)?;
    let mut hello = js(
        flavor,
        json!({"example":"basic","role":"hello","host":"127.0.0.1","port":port}),
    )
    .await?;
    got(&mut hello, "the answer", |e| is_got(e, "app.message")).await?;
    serve
        .expect("the message", |v| v["type"] == "app.message")
        .await?;
    hello.kill().await;
    serve.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// TLS: basic-local-only (no client certificate, no verification by the
// client) and basic-most-secure (mutual TLS, both verify)
// ---------------------------------------------------------------------------

fn pem(p: &Path) -> String {
    p.display().to_string()
}

async fn tls_nipc_client(flavor: Flavor, mutual: bool) -> Result<(), String> {
    let pki = ours::pki();
    let mut tls = json!({"public": pem(&pki.server_cert), "private": pem(&pki.server_key)});
    if mutual {
        tls["requestCert"] = json!(true);
        tls["rejectUnauthorized"] = json!(true);
        tls["trustedConnections"] = json!([pem(&pki.ca)]);
    }
    let (mut world, port) = js_server(
        flavor,
        json!({"example":"tls","role":"world","tls":tls}),
        false,
    )
    .await?;
    let ep = format!("tls://127.0.0.1:{port}");
    let mut a = args(&[
        "emit",
        &ep,
        "message",
        r#""hello""#,
        "--wait-for",
        "message",
    ]);
    if mutual {
        a.extend(args(&[
            "--ca",
            &pem(&pki.ca),
            "--servername",
            "localhost",
            "--cert",
            &pem(&pki.client_cert),
            "--key",
            &pem(&pki.client_key),
        ]));
    } else {
        a.push("--insecure".into());
    }
    let lines = run(&a).await?;
    let last = lines.last().ok_or("no reply printed")?;
    if last["data"] != "hello world!" {
        return Err(format!("reply {last}"));
    }
    got(&mut world, "the world got it", |e| is_got(e, "message")).await?;
    world.kill().await;
    Ok(())
}

async fn tls_nipc_server(flavor: Flavor, mutual: bool) -> Result<(), String> {
    let pki = ours::pki();
    let mut a = args(&[
        "serve",
        "tls://127.0.0.1:0",
        "--echo",
        "--cert",
        &pem(&pki.server_cert),
        "--key",
        &pem(&pki.server_key),
    ]);
    let tls = if mutual {
        a.extend(args(&["--ca", &pem(&pki.ca)]));
        json!({"private": pem(&pki.client_key), "public": pem(&pki.client_cert),
               "rejectUnauthorized": true, "trustedConnections": [pem(&pki.ca)]})
    } else {
        json!({"rejectUnauthorized": false})
    };
    let mut serve = Nipc::start(&a)?;
    let port = port_of(&serve.started().await?)?;
    let mut hello = js(
        flavor,
        json!({"example":"tls","role":"hello","host":"127.0.0.1","port":port,"tls":tls}),
    )
    .await?;
    let ev = got(&mut hello, "the answer", |e| is_got(e, "message")).await?;
    if ev.raw["data"] != "hello" {
        return Err(format!("answer {ev}"));
    }
    serve
        .expect("the message", |v| {
            v["type"] == "message" && v["data"] == "hello"
        })
        .await?;
    hello.kill().await;
    serve.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// UDP basic: both sides are UDP servers; hello sends to world, world answers
// ---------------------------------------------------------------------------

/// `nipc emit udp4://127.0.0.1:PORT message '{…}' --wait-for message`
async fn udp_nipc_client(flavor: Flavor) -> Result<(), String> {
    let (mut world, port) =
        js_server(flavor, json!({"example":"udp","role":"world"}), true).await?;
    let ep = format!("udp4://127.0.0.1:{port}");
    let lines = run(&args(&[
        "emit",
        &ep,
        "message",
        r#"{"id":"hello","message":"Hello"}"#,
        "--wait-for",
        "message",
    ]))
    .await?;
    let last = lines.last().ok_or("no reply printed")?;
    if last["data"] != json!({"id":"world","message":"Hello world!"}) {
        return Err(format!("reply {last}"));
    }
    got(&mut world, "the world got it", |e| is_got(e, "message")).await?;
    world.kill().await;
    Ok(())
}

/// `nipc serve udp4://127.0.0.1:0 --echo`
async fn udp_nipc_server(flavor: Flavor) -> Result<(), String> {
    let mut serve = Nipc::start(&args(&["serve", "udp4://127.0.0.1:0", "--echo"]))?;
    let port = port_of(&serve.started().await?)?;
    let setup = json!({"example":"udp","role":"hello",
                       "target":{"address":"127.0.0.1","port":port}});
    let (mut hello, _) = js_server(flavor, setup, true).await?;
    let ev = got(&mut hello, "the answer", |e| is_got(e, "message")).await?;
    if ev.raw["data"]["message"] != "Hello" {
        return Err(format!("answer {ev}"));
    }
    serve
        .expect("the message", |v| v["type"] == "message")
        .await?;
    hello.kill().await;
    serve.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// rawBuffer (encoding ascii): world says "hello" on connect and "goodbye"
// for every chunk; hello sends "hello"
// ---------------------------------------------------------------------------

/// `nipc emit unix:PATH --raw --encoding ascii hello --replies 1`
async fn raw_nipc_client(flavor: Flavor) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let path = dir.path().join("app.world");
    let (mut world, _) = js_server(
        flavor,
        json!({"example":"raw","role":"world","path":path}),
        false,
    )
    .await?;
    let ep = format!("unix:{}", path.display());
    let lines = run(&args(&[
        "emit",
        &ep,
        "--raw",
        "--encoding",
        "ascii",
        "hello",
        "--replies",
        "1",
    ]))
    .await?;
    let hex = lines
        .last()
        .and_then(|l| l["hex"].as_str())
        .ok_or("no data printed")?;
    // "hello" from the world's connect handler (a "goodbye" may follow in
    // the same read).
    if !hex.starts_with("68656c6c6f") {
        return Err(format!("data {hex}"));
    }
    let ev = got(&mut world, "the world's data", |e| e.kind() == "data").await?;
    if ev.raw["text"] != "hello" {
        return Err(format!("the world read {ev}"));
    }
    world.kill().await;
    Ok(())
}

/// `nipc serve unix:PATH --raw --echo`
async fn raw_nipc_server(flavor: Flavor) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let path = dir.path().join("app.world");
    let ep = format!("unix:{}", path.display());
    let mut serve = Nipc::start(&args(&["serve", &ep, "--raw", "--echo"]))?;
    serve.started().await?;
    let mut hello = js(flavor, json!({"example":"raw","role":"hello","path":path})).await?;
    let ev = got(&mut hello, "the echo", |e| e.kind() == "data").await?;
    if ev.raw["text"] != "hello" {
        return Err(format!("hello read {ev}"));
    }
    serve
        .expect("the data", |v| {
            v["event"] == "data" && v["hex"] == "68656c6c6f"
        })
        .await?;
    hello.kill().await;
    serve.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// basicSync: the client sends with `sync` (one message in flight), the
// server answers each after a delay
// ---------------------------------------------------------------------------

/// `nipc emit unix:PATH app.message '{…}' --sync --repeat 3 --replies 3`
async fn sync_nipc_client(flavor: Flavor) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let path = dir.path().join("app.world");
    let (mut world, _) = js_server(
        flavor,
        json!({"example":"sync","role":"world","path":path,"delayMs":50}),
        false,
    )
    .await?;
    let ep = format!("unix:{}", path.display());
    let lines = run(&args(&[
        "emit",
        &ep,
        "app.message",
        HELLO,
        "--sync",
        "--repeat",
        "3",
        "--replies",
        "3",
    ]))
    .await?;
    if lines.len() != 3 || lines.iter().any(|l| l["data"]["message"] != "hello world!") {
        return Err(format!("replies {lines:?}"));
    }
    for i in 0..3 {
        got(&mut world, &format!("message {i}"), |e| {
            is_got(e, "app.message")
        })
        .await?;
    }
    world.kill().await;
    Ok(())
}

/// `nipc serve unix:PATH --echo` against the sync client's ten messages.
async fn sync_nipc_server(flavor: Flavor) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let path = dir.path().join("app.world");
    let ep = format!("unix:{}", path.display());
    let mut serve = Nipc::start(&args(&["serve", &ep, "--echo"]))?;
    serve.started().await?;
    let mut hello = js(
        flavor,
        json!({"example":"sync","role":"hello","path":path,"count":10}),
    )
    .await?;
    for i in 0..10 {
        let ev = got(&mut hello, &format!("answer {i}"), |e| {
            is_got(e, "app.message")
        })
        .await?;
        if ev.raw["data"]["message"] != format!("hello{i}") {
            return Err(format!("answer {i}: {ev}"));
        }
    }
    got(&mut hello, "done", |e| e.kind() == "done").await?;
    hello.kill().await;
    serve.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Multi-Client-Broadcast: hello and goodbye speak; once both have, the world
// broadcasts kill.connection and both disconnect
// ---------------------------------------------------------------------------

/// Two `nipc emit unix:PATH app.message '{"id":…}' --wait-for kill.connection`
async fn broadcast_nipc_clients(flavor: Flavor) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let path = dir.path().join("app.world");
    let (mut world, _) = js_server(
        flavor,
        json!({"example":"broadcast","role":"world","path":path}),
        false,
    )
    .await?;
    let ep = format!("unix:{}", path.display());
    let a = args(&[
        "emit",
        &ep,
        "app.message",
        HELLO,
        "--wait-for",
        "kill.connection",
    ]);
    let b = args(&[
        "emit",
        &ep,
        "app.message",
        r#"{"id":"goodbye","message":"goodbye"}"#,
        "--wait-for",
        "kill.connection",
    ]);
    let (ra, rb) = tokio::join!(run(&a), run(&b));
    for lines in [ra?, rb?] {
        let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
        if types != ["app.message", "kill.connection"] {
            return Err(format!("a client saw {lines:?}"));
        }
    }
    got(&mut world, "done", |e| e.kind() == "done").await?;
    world.kill().await;
    Ok(())
}

/// `nipc serve unix:PATH --echo --broadcast-stdin` and the stdin line
/// `{"type":"kill.connection","data":{"id":"world"}}`
async fn broadcast_nipc_server(flavor: Flavor) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let path = dir.path().join("app.world");
    let ep = format!("unix:{}", path.display());
    let mut serve = Nipc::start(&args(&["serve", &ep, "--echo", "--broadcast-stdin"]))?;
    serve.started().await?;
    let mut hello = js(
        flavor,
        json!({"example":"broadcast","role":"hello","path":path}),
    )
    .await?;
    let mut bye = js(
        flavor,
        json!({"example":"broadcast","role":"goodbye","path":path}),
    )
    .await?;
    // Both have spoken (in either order).
    let mut heard = std::collections::BTreeSet::new();
    while heard.len() < 2 {
        let v = serve
            .expect("hello and goodbye", |v| v["type"] == "app.message")
            .await?;
        heard.insert(v["data"]["id"].as_str().unwrap_or_default().to_owned());
    }
    if heard != ["goodbye".to_owned(), "hello".to_owned()].into() {
        return Err(format!("heard {heard:?}"));
    }
    serve
        .send_line(r#"{"type":"kill.connection","data":{"id":"world"}}"#)
        .await?;
    for node in [&mut hello, &mut bye] {
        let ev = got(node, "kill.connection", |e| is_got(e, "kill.connection")).await?;
        if ev.raw["data"] != json!({"id":"world"}) {
            return Err(format!("broadcast {ev}"));
        }
    }
    for _ in 0..2 {
        serve
            .expect("a client leaving", |v| v["event"] == "socket.disconnected")
            .await?;
    }
    hello.kill().await;
    bye.kill().await;
    serve.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// clusterUnixSocket: workers share one socket (`unlink = false`); the client
// connects, emits currentDate and disconnects, again and again
// ---------------------------------------------------------------------------

/// `nipc emit unix:PATH currentDate '{"message":…}'`, four times.
async fn cluster_nipc_client(flavor: Flavor) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let path = dir.path().join("ipc.sock");
    let (mut world, _) = js_server(
        flavor,
        json!({"example":"cluster","role":"world","path":path,"workers":2}),
        false,
    )
    .await?;
    let ep = format!("unix:{}", path.display());
    for i in 0..4 {
        let data = format!(r#"{{"message":"2026-01-01T00:00:0{i}.000Z"}}"#);
        run(&args(&["emit", &ep, "currentDate", &data])).await?;
        let ev = got(&mut world, "currentDate", |e| is_got(e, "currentDate")).await?;
        if ev.raw["data"]["message"] != format!("2026-01-01T00:00:0{i}.000Z") {
            return Err(format!("worker got {ev}"));
        }
    }
    world.kill().await;
    Ok(())
}

/// `nipc serve unix:PATH` (one process playing the workers)
async fn cluster_nipc_server(flavor: Flavor) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let path = dir.path().join("ipc.sock");
    let ep = format!("unix:{}", path.display());
    let mut serve = Nipc::start(&args(&["serve", &ep]))?;
    serve.started().await?;
    let mut client = js(
        flavor,
        json!({"example":"cluster","role":"cluster-client","path":path,"cycles":3,"intervalMs":100}),
    )
    .await?;
    for i in 0..3 {
        serve
            .expect(&format!("currentDate {i}"), |v| {
                v["type"] == "currentDate" && v["data"]["message"].is_string()
            })
            .await?;
    }
    got(&mut client, "done", |e| e.kind() == "done").await?;
    client.kill().await;
    serve.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------

type Fut = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;
type Case = fn(Flavor) -> Fut;

macro_rules! case {
    ($f:expr) => {
        (|fl: Flavor| -> Fut { Box::pin($f(fl)) }) as Case
    };
}

async fn tls_local_only_client(f: Flavor) -> Result<(), String> {
    tls_nipc_client(f, false).await
}
async fn tls_local_only_server(f: Flavor) -> Result<(), String> {
    tls_nipc_server(f, false).await
}
async fn tls_most_secure_client(f: Flavor) -> Result<(), String> {
    tls_nipc_client(f, true).await
}
async fn tls_most_secure_server(f: Flavor) -> Result<(), String> {
    tls_nipc_server(f, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ipc_examples_against_nipc() {
    let mut m = Matrix::new("examples-cli");
    if let Err(e) = nipc_bin() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("CI=true but {e}");
        }
        eprintln!("NOTICE: skipping the examples: {e}");
        m.record("nipc", "*", "*", ipc_interop::CellStatus::Skipped(e));
        return;
    }
    let cases: Vec<(&str, &str, Case)> = vec![
        ("unix", "basic nipc-client", case!(basic_unix_nipc_client)),
        ("unix", "basic nipc-server", case!(basic_unix_nipc_server)),
        ("tcp", "basic nipc-client", case!(basic_tcp_nipc_client)),
        ("tcp", "basic nipc-server", case!(basic_tcp_nipc_server)),
        (
            "tls",
            "local-only nipc-client",
            case!(tls_local_only_client),
        ),
        (
            "tls",
            "local-only nipc-server",
            case!(tls_local_only_server),
        ),
        (
            "tls",
            "most-secure nipc-client",
            case!(tls_most_secure_client),
        ),
        (
            "tls",
            "most-secure nipc-server",
            case!(tls_most_secure_server),
        ),
        ("udp4", "basic nipc-client", case!(udp_nipc_client)),
        ("udp4", "basic nipc-server", case!(udp_nipc_server)),
        ("unix", "rawBuffer nipc-client", case!(raw_nipc_client)),
        ("unix", "rawBuffer nipc-server", case!(raw_nipc_server)),
        ("unix", "basicSync nipc-client", case!(sync_nipc_client)),
        ("unix", "basicSync nipc-server", case!(sync_nipc_server)),
        (
            "unix",
            "broadcast nipc-clients",
            case!(broadcast_nipc_clients),
        ),
        (
            "unix",
            "broadcast nipc-server",
            case!(broadcast_nipc_server),
        ),
        ("unix", "cluster nipc-client", case!(cluster_nipc_client)),
        ("unix", "cluster nipc-server", case!(cluster_nipc_server)),
    ];
    // Every example against node-ipc 14; the basic and basicSync Unix pairs
    // against 9 and 12 as well.
    for (net, name, f) in &cases {
        let flavors: &[Flavor] = if name.starts_with("basic") && *net == "unix" {
            &[Flavor::V9, Flavor::V12, Flavor::V14Fast]
        } else {
            &[Flavor::V14Fast]
        };
        for &flavor in flavors {
            if !m.require(flavor) {
                continue;
            }
            let res = common::bounded(f(flavor)).await;
            m.outcome(flavor.label(), net, name, res);
        }
    }
    m.finish();
}
