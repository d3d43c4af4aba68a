//! `nipc`: node-ipc from the shell.
//!
//! ```text
//! nipc serve <endpoint> [--echo] [--broadcast-stdin]   print every event as a JSON line
//! nipc emit <endpoint> <type> <json>                   send one message and exit
//! nipc listen <endpoint> [--count N]                   print what a server sends
//! nipc request <endpoint> <json>                       one request, print the answer
//! nipc ping <endpoint>                                 round-trip time
//! nipc sub <endpoint> <topic>...                       print publications
//! nipc pub <endpoint> <topic> <json>                   publish through the server
//! nipc bench [--quick]                                 throughput, latency, fan-out
//! nipc demo                                            a guided tour in one process
//! ```
//!
//! Endpoints: `unix:/path`, `id:world` (node-ipc's default path for that
//! id), `tcp://host:port`, `tls://host:port`, `udp4://host:port`,
//! `udp6://[::1]:port`. Errors are one line on stderr and exit status 1
//! (2 for command-line usage errors).

use std::io::Write;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use ipc::{
    Client, ClientEvent, Config, Endpoint, Ipc, MaxRetries, Peer, Server, ServerEvent, TlsOptions,
};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

#[derive(Parser)]
#[command(
    name = "nipc",
    version,
    about = "Talk to node-ipc peers from the shell"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve an endpoint and print every event as one JSON line.
    Serve {
        /// `unix:/path`, `id:name`, `tcp://host:port`, `tls://host:port`, `udp4://host:port`, `udp6://[::1]:port`
        endpoint: String,
        /// Send every message back to its sender (and answer requests with
        /// their own data).
        #[arg(long)]
        echo: bool,
        /// Broadcast each stdin line `{"type":…,"data":…}` to every client.
        #[arg(long)]
        broadcast_stdin: bool,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Connect, send one message, flush and exit.
    Emit {
        /// The server's endpoint.
        endpoint: String,
        /// The event type.
        #[arg(value_name = "TYPE")]
        event: String,
        /// The data, as JSON (a string is '"text"').
        json: String,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Connect and print every event as one JSON line.
    Listen {
        /// The server's endpoint.
        endpoint: String,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Send one request (SPEC §5.4) and print the answer as JSON.
    Request {
        /// The server's endpoint.
        endpoint: String,
        /// The request data, as JSON.
        json: String,
        /// Timeout in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        timeout: u64,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Measure round trips to a server (ipcx.ping).
    Ping {
        /// The server's endpoint.
        endpoint: String,
        /// How many pings.
        #[arg(long, default_value_t = 3)]
        count: u32,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Subscribe to topics and print publications as JSON lines.
    Sub {
        /// The server's endpoint.
        endpoint: String,
        /// Topics.
        #[arg(required = true)]
        topics: Vec<String>,
        /// Exit after this many publications.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Publish one message on a topic through the server (ipcx.pub).
    Pub {
        /// The server's endpoint.
        endpoint: String,
        /// The topic.
        topic: String,
        /// The message, as JSON.
        json: String,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Measure throughput, latency and broadcast fan-out in-process.
    Bench {
        /// Smaller counts (a few seconds).
        #[arg(long)]
        quick: bool,
        /// Override the number of throughput frames.
        #[arg(long, hide = true)]
        frames: Option<u64>,
        /// Override the number of round trips.
        #[arg(long, hide = true)]
        rtts: Option<usize>,
        /// Override the number of broadcasts.
        #[arg(long, hide = true)]
        fanout: Option<u64>,
    },
    /// A server and three clients in one process: events, broadcast, reconnect.
    Demo,
}

#[derive(Args, Clone, Default)]
struct TlsArgs {
    /// PEM certificate (chain) of this side (tls:// only).
    #[arg(long, value_name = "PEM")]
    cert: Option<PathBuf>,
    /// PEM private key of this side (tls:// only).
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// PEM certificate(s) to trust: the server's (client side) or the
    /// clients' (server side: requires client certificates).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Client: do not verify the server's certificate (local testing only).
    #[arg(long)]
    insecure: bool,
    /// Client: the name to verify in the server's certificate.
    #[arg(long)]
    servername: Option<String>,
}

/// A one-line, user-facing failure.
struct Fail(String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Fail {
        Fail(e.to_string())
    }
}

type Res<T = ()> = Result<T, Fail>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nipc: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let quiet = Config {
        silent: std::env::var_os("RUST_LOG").is_none(),
        ..Config::default()
    };
    ipc::init_logging(&quiet);
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Serve {
                endpoint,
                echo,
                broadcast_stdin,
                tls,
            } => serve(&endpoint, echo, broadcast_stdin, &tls).await,
            Cmd::Emit {
                endpoint,
                event,
                json,
                tls,
            } => emit(&endpoint, &event, &json, &tls).await,
            Cmd::Listen {
                endpoint,
                count,
                tls,
            } => listen(&endpoint, count, &tls).await,
            Cmd::Request {
                endpoint,
                json,
                timeout,
                tls,
            } => request(&endpoint, &json, timeout, &tls).await,
            Cmd::Ping {
                endpoint,
                count,
                tls,
            } => ping(&endpoint, count, &tls).await,
            Cmd::Sub {
                endpoint,
                topics,
                count,
                tls,
            } => sub(&endpoint, &topics, count, &tls).await,
            Cmd::Pub {
                endpoint,
                topic,
                json,
                tls,
            } => publish(&endpoint, &topic, &json, &tls).await,
            Cmd::Bench {
                quick,
                frames,
                rtts,
                fanout,
            } => bench(quick, frames, rtts, fanout).await,
            Cmd::Demo => demo().await,
        }
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg)) => {
            eprintln!("nipc: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn parse_endpoint(s: &str) -> Res<Endpoint> {
    s.parse::<Endpoint>().map_err(Fail::from)
}

fn parse_json(s: &str) -> Res<Value> {
    serde_json::from_str(s).map_err(|e| {
        Fail(format!(
            "the data {s:?} is not valid JSON ({e}); quote text as '\"hello\"', or pass an object like '{{\"a\":1}}'"
        ))
    })
}

/// Prints one JSON line on stdout (flushed, so pipes see it at once).
fn out(v: &Value) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{v}");
    let _ = o.flush();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn peer_label(p: &Peer) -> Value {
    match p {
        Peer::Socket(s) => json!(s.id()),
        Peer::Udp(a) => json!(a.to_string()),
    }
}

/// The configuration a command uses: node-ipc's defaults, TLS from flags.
fn config_for(endpoint: &Endpoint, tls: &TlsArgs, server: bool) -> Res<Config> {
    let mut c = Config::default();
    let given = tls.cert.is_some() || tls.key.is_some() || tls.ca.is_some() || tls.insecure;
    if !matches!(endpoint, Endpoint::Tls { .. }) {
        if given {
            return Err(Fail(format!(
                "--cert/--key/--ca/--insecure only apply to tls:// endpoints, not {endpoint}"
            )));
        }
        return Ok(c);
    }
    if server && (tls.cert.is_none() || tls.key.is_none()) {
        return Err(Fail(format!(
            "serving {endpoint} needs a certificate and its key: add --cert server.pem --key server.key"
        )));
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(Fail("--cert and --key go together".into()));
    }
    if !server && tls.ca.is_none() && !tls.insecure {
        return Err(Fail(format!(
            "connecting to {endpoint} needs --ca <PEM of the server's CA or certificate> (or --insecure for local testing)"
        )));
    }
    if !server && tls.insecure {
        eprintln!(
            "nipc: warning: --insecure: the server's certificate is not verified (anyone can impersonate it)"
        );
    }
    c.tls = Some(TlsOptions {
        public: tls.cert.clone(),
        private: tls.key.clone(),
        trusted_connections: tls.ca.iter().cloned().collect(),
        reject_unauthorized: Some(server || !tls.insecure),
        servername: tls.servername.clone(),
        ..TlsOptions::default()
    });
    Ok(c)
}

async fn serve(endpoint: &str, echo: bool, broadcast_stdin: bool, tls: &TlsArgs) -> Res {
    let ep = parse_endpoint(endpoint)?;
    let ipc = Ipc::with_config(config_for(&ep, tls, true)?);
    let server = ipc.serve_endpoint(ep.clone())?;
    let mut events = server.events();
    if echo {
        server.on_request(|req| {
            let data: Value = req.data().unwrap_or(Value::Null);
            req.respond(&data).map_err(|e| e.to_string())?;
            Ok(ipc::client::Flow::Stop)
        });
    }
    let local = server.start().await.map_err(|e| {
        Fail(format!(
            "cannot serve {ep}: {e} (is another server running there? pick another endpoint or stop it)"
        ))
    })?;
    eprintln!("nipc: serving {local}; Ctrl-C to stop");
    if broadcast_stdin {
        tokio::spawn(broadcast_lines(server.clone()));
    }
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                out(&server_event_json(&ev));
                if echo {
                    echo_back(&server, &ev).await;
                }
            }
        }
    }
    server.stop().await;
    Ok(())
}

async fn echo_back(server: &Server, ev: &ServerEvent) {
    if let ServerEvent::Message { from, message } = ev {
        let data = message.data_value();
        let r = match from {
            Peer::Socket(s) => s
                .emit(message.event(), &data)
                .await
                .map_err(|e| e.to_string()),
            #[cfg(feature = "udp")]
            Peer::Udp(a) => server
                .emit_to(*a, message.event(), &data)
                .await
                .map_err(|e| e.to_string()),
            #[allow(unreachable_patterns)]
            _ => Ok(()),
        };
        if let Err(e) = r {
            eprintln!("nipc: echo failed: {e}");
        }
        let _ = server;
    }
}

async fn broadcast_lines(server: Server) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut n = 0u64;
    while let Ok(Some(line)) = lines.next_line().await {
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Result<Value, _> = serde_json::from_str(&line);
        let Some((event, data)) = parsed.ok().and_then(|v| {
            let event = v.get("type")?.as_str()?.to_owned();
            Some((event, v.get("data").cloned().unwrap_or(Value::Null)))
        }) else {
            eprintln!(
                "nipc: stdin line {n} skipped: expected {{\"type\":\"name\",\"data\":…}} JSON"
            );
            continue;
        };
        match server.broadcast(&event, &data).await {
            Ok(k) => eprintln!("nipc: broadcast {event:?} to {k} peer(s)"),
            Err(e) => eprintln!("nipc: broadcast failed: {e}"),
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn server_event_json(ev: &ServerEvent) -> Value {
    match ev {
        ServerEvent::Start(ep) => json!({"event":"start","endpoint":ep.to_string()}),
        ServerEvent::Connect(s) => json!({"event":"connect","socket":s.id()}),
        ServerEvent::Message { from, message } => json!({
            "event":"message","type":message.event(),"data":message.data_value(),"from":peer_label(from)
        }),
        ServerEvent::Data { from, bytes } => {
            json!({"event":"data","hex":hex(bytes),"from":peer_label(from)})
        }
        ServerEvent::Error { peer, error } => json!({
            "event":"error","code":error.code().map(|c| c.as_str()),
            "message":error.to_string(),"from":peer.as_ref().map(peer_label)
        }),
        ServerEvent::SocketDisconnected { socket, id } => {
            json!({"event":"socket.disconnected","socket":socket.id(),"id":id})
        }
        ServerEvent::Close(s) => json!({"event":"close","socket":s.id()}),
        other => json!({"event":other.name()}),
    }
}

fn client_event_json(ev: &ClientEvent) -> Value {
    match ev {
        ClientEvent::Message(m) => {
            json!({"event":"message","type":m.event(),"data":m.data_value()})
        }
        ClientEvent::Data(b) => json!({"event":"data","hex":hex(b)}),
        ClientEvent::Error(e) => {
            json!({"event":"error","code":e.code().map(|c| c.as_str()),"message":e.to_string()})
        }
        other => json!({"event":other.name()}),
    }
}

/// The innermost cause of an error (the OS error for a refused connect).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn not_listening(ep: &Endpoint, cause: impl std::fmt::Display) -> Fail {
    let cause = cause.to_string();
    let lower = cause.to_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        return Fail(format!(
            "TLS with {ep} failed ({cause}); check --ca, --servername, --cert/--key"
        ));
    }
    Fail(format!(
        "nothing answers at {ep} ({cause}); start a server there first, e.g. `nipc serve {ep}`"
    ))
}

/// Connects once (no retry) and waits until connected; the returned
/// stream has every event from the start.
async fn connect_once(
    ep: &Endpoint,
    tls: &TlsArgs,
) -> Res<(Client, ipc::EventStream<ClientEvent>)> {
    if matches!(ep, Endpoint::Udp { .. }) {
        return Err(Fail(format!(
            "UDP has no clients: receive on {ep} with `nipc serve {ep}`; `nipc emit` can send to it"
        )));
    }
    let mut config = config_for(ep, tls, false)?;
    config.max_retries = MaxRetries::Limited(0);
    let ipc = Ipc::with_config(config);
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let sink = first_error.clone();
    let mut stream = None;
    let client = ipc.connect_endpoint_with("nipc", ep.clone(), |c| {
        stream = Some(c.events());
        c.on("error", move |ev| {
            if let Some(e) = ev.error() {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.get_or_insert_with(|| root_cause(e));
            }
        });
    })?;
    let Some(stream) = stream else {
        return Err(Fail(format!("{ep}: a client with this id already exists")));
    };
    match tokio::time::timeout(Duration::from_secs(10), client.connected()).await {
        Ok(Ok(())) => Ok((client, stream)),
        Ok(Err(e)) => {
            let cause = first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| e.to_string());
            Err(not_listening(ep, cause))
        }
        Err(_) => Err(not_listening(ep, "no connection within 10 s")),
    }
}

async fn emit(endpoint: &str, event: &str, data: &str, tls: &TlsArgs) -> Res {
    let ep = parse_endpoint(endpoint)?;
    let data = parse_json(data)?;
    if let Endpoint::Udp { .. } = ep {
        return emit_udp(&ep, event, &data).await;
    }
    let (client, _events) = connect_once(&ep, tls).await?;
    client
        .emit(event, &data)
        .await
        .map_err(|e| Fail(format!("cannot send to {ep}: {e}")))?;
    client
        .disconnect()
        .await
        .map_err(|e| Fail(format!("{ep}: {e}")))?;
    Ok(())
}

#[cfg(feature = "udp")]
async fn emit_udp(ep: &Endpoint, event: &str, data: &Value) -> Res {
    let Endpoint::Udp { family, host, port } = ep else {
        return Ok(());
    };
    let target: std::net::SocketAddr = tokio::net::lookup_host((host.as_str(), *port))
        .await
        .map_err(|e| Fail(format!("cannot resolve {host}: {e}")))?
        .find(|a| a.is_ipv4() == (*family == ipc::UdpFamily::V4))
        .ok_or_else(|| Fail(format!("{host} has no address of the {ep} family")))?;
    let local = Endpoint::Udp {
        family: *family,
        host: if target.is_ipv4() { "0.0.0.0" } else { "::" }.into(),
        port: 0,
    };
    let ipc = Ipc::new();
    let server = ipc.serve_endpoint(local)?;
    server.start().await?;
    let r = server.emit_to(target, event, data).await;
    server.stop().await;
    r.map_err(|e| Fail(format!("cannot send to {ep}: {e}")))
}

#[cfg(not(feature = "udp"))]
async fn emit_udp(ep: &Endpoint, _: &str, _: &Value) -> Res {
    Err(Fail(format!("{ep}: this nipc was built without UDP")))
}

async fn listen(endpoint: &str, count: Option<u64>, tls: &TlsArgs) -> Res {
    let ep = parse_endpoint(endpoint)?;
    let (client, mut events) = connect_once(&ep, tls).await?;
    let mut seen = 0u64;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                out(&client_event_json(&ev));
                match ev {
                    ClientEvent::Message(_) | ClientEvent::Data(_) => {
                        seen += 1;
                        if count.is_some_and(|c| seen >= c) {
                            break;
                        }
                    }
                    ClientEvent::Destroy => break,
                    _ => {}
                }
            }
        }
    }
    let _ = client.destroy().await;
    Ok(())
}

async fn request(endpoint: &str, data: &str, timeout: u64, tls: &TlsArgs) -> Res {
    let ep = parse_endpoint(endpoint)?;
    let data = parse_json(data)?;
    let (client, _events) = connect_once(&ep, tls).await?;
    let r = client
        .request(&data, Duration::from_millis(timeout))
        .await
        .map_err(|e| Fail(format!("request to {ep} failed: {e}")))?;
    out(&r.value());
    let _ = client.disconnect().await;
    Ok(())
}

async fn ping(endpoint: &str, count: u32, tls: &TlsArgs) -> Res {
    let ep = parse_endpoint(endpoint)?;
    let (client, _events) = connect_once(&ep, tls).await?;
    for i in 0..count.max(1) {
        let rtt = client
            .ping(Duration::from_secs(5))
            .await
            .map_err(|e| Fail(format!("ping to {ep} failed: {e}")))?;
        println!(
            "pong from {ep}: seq={i} time={:.3} ms",
            rtt.as_secs_f64() * 1e3
        );
    }
    let _ = client.disconnect().await;
    Ok(())
}

async fn sub(endpoint: &str, topics: &[String], count: Option<u64>, tls: &TlsArgs) -> Res {
    let ep = parse_endpoint(endpoint)?;
    let (client, mut events) = connect_once(&ep, tls).await?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let acked = client
        .subscribe(&names)
        .await
        .map_err(|e| Fail(format!("cannot subscribe at {ep}: {e}")))?;
    eprintln!("nipc: subscribed to {}", acked.join(", "));
    let mut seen = 0u64;
    while let Some(ev) = events.recv().await {
        match &ev {
            ClientEvent::Message(m) if topics.iter().any(|t| t == m.event()) => {
                out(&json!({"topic":m.event(),"data":m.data_value()}));
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
            ClientEvent::Destroy => break,
            _ => {}
        }
    }
    let _ = client.destroy().await;
    Ok(())
}

async fn publish(endpoint: &str, topic: &str, data: &str, tls: &TlsArgs) -> Res {
    let ep = parse_endpoint(endpoint)?;
    let data = parse_json(data)?;
    let (client, _events) = connect_once(&ep, tls).await?;
    client
        .publish(topic, &data)
        .await
        .map_err(|e| Fail(format!("cannot publish to {ep}: {e}")))?;
    client
        .disconnect()
        .await
        .map_err(|e| Fail(format!("{ep}: {e}")))?;
    Ok(())
}

// ---------------------------------------------------------------- bench

fn bench_config() -> Config {
    Config {
        silent: true,
        ..Config::default()
    }
}

fn progress(label: &str, done: u64, total: u64) {
    let mut e = std::io::stderr().lock();
    let _ = write!(
        e,
        "\r  {label}: {done}/{total} ({:>3}%)",
        done * 100 / total.max(1)
    );
    let _ = e.flush();
}

async fn wait_count(counter: &AtomicU64, target: u64, label: &str) -> Res {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = Instant::now();
    loop {
        let n = counter.load(Ordering::Relaxed);
        if last.elapsed() > Duration::from_millis(200) || n >= target {
            progress(label, n, target);
            last = Instant::now();
        }
        if n >= target {
            eprintln!();
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Fail(format!(
                "{label}: only {n} of {target} arrived within 300 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn bench(quick: bool, frames: Option<u64>, rtts: Option<usize>, fanout: Option<u64>) -> Res {
    let (f, r, b) = if quick {
        (100_000u64, 2_000usize, 10_000u64)
    } else {
        (1_000_000, 20_000, 100_000)
    };
    let frames = frames.unwrap_or(f).max(1);
    let rtts = rtts.unwrap_or(r).max(1);
    let fanout_msgs = fanout.unwrap_or(b).max(1);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.sock");
    let ipc = Ipc::with_config(bench_config());
    let server = ipc.serve(Some(&path))?;
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    server.on("message", move |_| {
        r.fetch_add(1, Ordering::Relaxed);
    });
    server.on_message("ping", |m, from| {
        if let Some(s) = from.socket() {
            if let Some(d) = m.data_json() {
                let _ = s.try_send_frame(bytes::Bytes::from(
                    [
                        b"{\"type\":\"pong\",\"data\":".as_slice(),
                        d,
                        b"}\x0c".as_slice(),
                    ]
                    .concat(),
                ));
            }
        }
    });
    server.start().await?;
    eprintln!(
        "nipc bench: in-process over a Unix socket ({})",
        path.display()
    );

    // 1. Throughput.
    let client = ipc.connect_to("bench", Some(&path))?;
    client.connected().await?;
    let payload = "x".repeat(64);
    let t0 = Instant::now();
    let sender = {
        let client = client.clone();
        let payload = payload.clone();
        tokio::spawn(async move {
            for _ in 0..frames {
                if let Err(e) = client.emit("message", &payload).await {
                    return Err(e.to_string());
                }
            }
            Ok(())
        })
    };
    wait_count(&received, frames, "throughput").await?;
    let tput = t0.elapsed();
    sender.await?.map_err(Fail)?;
    let frame_len = serde_json::to_string(&json!({"type":"message","data":payload}))?.len() + 1;

    // 2. Latency.
    let mut events = client.events();
    let mut samples = Vec::with_capacity(rtts);
    for i in 0..rtts {
        let t = Instant::now();
        client.emit("ping", &i).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(ClientEvent::Message(m))) if m.event() == "pong" => break,
                Ok(Some(_)) => continue,
                _ => return Err(Fail("latency: no pong within 10 s".into())),
            }
        }
        samples.push(t.elapsed());
        if i % 500 == 0 || i + 1 == rtts {
            progress("latency", i as u64 + 1, rtts as u64);
        }
    }
    eprintln!();
    drop(events);
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let (p50, p99) = (pct(0.50), pct(0.99));
    let _ = ipc.disconnect("bench").await;

    // 3. Broadcast fan-out to 8 clients.
    let got = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for i in 0..8 {
        let g = got.clone();
        let c = ipc.connect_to_with(&format!("fan{i}"), Some(&path), |c| {
            c.on("news", move |_| {
                g.fetch_add(1, Ordering::Relaxed);
            });
        })?;
        clients.push(c);
    }
    for c in &clients {
        c.connected().await?;
    }
    while server.connections() < 8 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t0 = Instant::now();
    let total = fanout_msgs * 8;
    let mut sent = 0u64;
    while sent < fanout_msgs {
        // Never let a queue overflow: broadcast drops slow peers by design.
        let delivered = got.load(Ordering::Relaxed);
        if sent * 8 - delivered > 8 * 20_000 {
            tokio::task::yield_now().await;
            continue;
        }
        let n = server.broadcast("news", &payload).await?;
        if n < 8 {
            return Err(Fail(format!("broadcast reached {n} of 8 clients")));
        }
        sent += 1;
    }
    wait_count(&got, total, "fan-out").await?;
    let fan = t0.elapsed();
    for i in 0..8 {
        let _ = ipc.disconnect(&format!("fan{i}")).await;
    }
    server.stop().await;

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!();
    println!("| workload | count | time | result |");
    println!("|---|---|---|---|");
    println!(
        "| throughput (client → server, {frame_len}-byte frames) | {frames} | {:.2} s | {:.0} msg/s, {:.1} MB/s |",
        tput.as_secs_f64(),
        rate(frames, tput),
        rate(frames, tput) * frame_len as f64 / 1e6
    );
    println!(
        "| round-trip latency (emit → echo) | {rtts} | — | p50 {:.1} µs, p99 {:.1} µs |",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    println!(
        "| broadcast fan-out to 8 clients | {fanout_msgs} × 8 | {:.2} s | {:.0} deliveries/s |",
        fan.as_secs_f64(),
        rate(total, fan)
    );
    Ok(())
}

// ---------------------------------------------------------------- demo

struct Narrator {
    t0: Instant,
}

impl Narrator {
    fn say(&self, who: &str, what: impl std::fmt::Display) {
        let t = self.t0.elapsed().as_secs_f64();
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "[{t:>5.2}s] {who:<8} {what}");
        let _ = o.flush();
    }
}

async fn next_message(events: &mut ipc::EventStream<ClientEvent>, name: &str) -> Res<ipc::Message> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(ClientEvent::Message(m))) if m.event() == name => return Ok(m),
            Ok(Some(_)) => {}
            Ok(None) => return Err(Fail(format!("demo: client gone while waiting for {name}"))),
            Err(_) => return Err(Fail(format!("demo: no {name:?} within 5 s"))),
        }
    }
}

async fn next_lifecycle(events: &mut ipc::EventStream<ClientEvent>, name: &str) -> Res {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(ev)) if ev.name() == name && ev.message().is_none() => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => return Err(Fail(format!("demo: client gone while waiting for {name}"))),
            Err(_) => return Err(Fail(format!("demo: no {name} within 5 s"))),
        }
    }
}

fn demo_server(ipc: &Ipc, path: &std::path::Path, n: Arc<Narrator>) -> Res<Server> {
    let server = ipc.serve(Some(path))?;
    let say = n.clone();
    server.on("connect", move |ev| {
        if let ServerEvent::Connect(s) = ev {
            say.say("server", format_args!("client #{} connected", s.id()));
        }
    });
    let say = n.clone();
    server.on_message("hello", move |m, from| {
        let name: String = m.data().unwrap_or_default();
        say.say("server", format_args!("got hello from {name:?}, answering"));
        if let Some(s) = from.socket() {
            let _ = s.try_emit(
                "welcome",
                &json!({"to": name, "text": format!("hi {name}!")}),
            );
        }
    });
    let say = n;
    server.on("socket.disconnected", move |ev| {
        if let ServerEvent::SocketDisconnected { socket, .. } = ev {
            say.say(
                "server",
                format_args!("client #{} disconnected", socket.id()),
            );
        }
    });
    Ok(server)
}

async fn demo() -> Res {
    let n = Arc::new(Narrator { t0: Instant::now() });
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("app.world");
    let config = Config {
        id: "world".into(),
        retry: Duration::from_millis(200),
        silent: true,
        ..Config::default()
    };
    let server_ipc = Ipc::with_config(config.clone());
    let server = demo_server(&server_ipc, &path, n.clone())?;
    let ep = server.start().await?;
    n.say("server", format_args!("listening on {ep}"));

    let clients_ipc = Ipc::with_config(config);
    let names = ["alice", "bob", "carol"];
    let mut streams = Vec::new();
    for name in names {
        let mut stream = None;
        clients_ipc.connect_to_with(name, Some(&path), |c| stream = Some(c.events()))?;
        let mut stream = stream.ok_or_else(|| Fail("demo: duplicate client id".into()))?;
        next_lifecycle(&mut stream, "connect").await?;
        n.say(name, "connected");
        streams.push(stream);
    }

    for (i, name) in names.iter().enumerate() {
        let c = clients_ipc
            .of(name)
            .ok_or_else(|| Fail(format!("demo: {name} missing")))?;
        n.say(name, "emits hello");
        c.emit("hello", name).await?;
        let m = next_message(&mut streams[i], "welcome").await?;
        n.say(name, format_args!("received welcome {}", m.data_value()));
    }

    n.say("server", "broadcasts news to everyone");
    let k = server
        .broadcast("news", "the server says hello to all")
        .await?;
    n.say("server", format_args!("news queued to {k} clients"));
    for (i, name) in names.iter().enumerate() {
        let m = next_message(&mut streams[i], "news").await?;
        n.say(name, format_args!("received news {}", m.data_value()));
    }

    n.say("server", "stops (simulated restart)");
    server.stop().await;
    for (i, name) in names.iter().enumerate() {
        next_lifecycle(&mut streams[i], "disconnect").await?;
        n.say(name, "disconnected; retrying every 200 ms");
    }
    let server = demo_server(&server_ipc, &path, n.clone())?;
    server.start().await?;
    n.say("server", "started again");
    for (i, name) in names.iter().enumerate() {
        next_lifecycle(&mut streams[i], "connect").await?;
        n.say(name, "reconnected");
    }
    let c = clients_ipc
        .of("alice")
        .ok_or_else(|| Fail("demo: alice missing".into()))?;
    c.emit("hello", "alice").await?;
    let m = next_message(&mut streams[0], "welcome").await?;
    n.say(
        "alice",
        format_args!("after the restart: {}", m.data_value()),
    );

    let rtt = c.ping(Duration::from_secs(5)).await?;
    n.say(
        "alice",
        format_args!("ping: {:.0} µs round trip", rtt.as_secs_f64() * 1e6),
    );

    for name in names {
        clients_ipc.disconnect(name).await?;
        n.say(name, "disconnected (explicitly, no retry)");
    }
    server.stop().await;
    n.say("server", "stopped; demo complete");
    Ok(())
}
