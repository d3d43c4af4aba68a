//! The subcommands that talk to a peer: `serve`, `emit`, `listen`,
//! `request`, `ping`, `sub` and `pub`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use ipc::{
    Client, ClientEvent, Config, Endpoint, Ipc, Peer, Server, ServerError, ServerEvent, Socket,
    TlsOptions,
};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use crate::options::{endpoint_for, NodeArgs};
use crate::output::{
    client_event_line, not_listening, out, out_line, parse_json, root_cause, server_event_line,
    Fail, Res,
};
use crate::{shutdown, TlsArgs};

/// The configuration a command uses: node-ipc's defaults, then
/// `--config`, then the flags, then TLS from `--cert`/`--key`/`--ca`.
fn config_for(endpoint: &Endpoint, tls: &TlsArgs, node: &NodeArgs, server: bool) -> Res<Config> {
    let mut c = node.config(!server)?;
    let given = tls.cert.is_some() || tls.key.is_some() || tls.ca.is_some() || tls.insecure;
    if !matches!(endpoint, Endpoint::Tls { .. }) {
        if given {
            return Err(Fail(format!(
                "--cert/--key/--ca/--insecure only apply to tls:// endpoints, not {endpoint}"
            )));
        }
        return Ok(c);
    }
    if !given && c.tls.is_some() {
        // TLS material from --config.
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

/// The endpoint a command names, resolved with its configuration.
fn endpoint(given: Option<&str>, node: &NodeArgs, server: bool) -> Res<Endpoint> {
    endpoint_for(given, &node.config(!server)?)
}

/// What `nipc serve` does besides printing.
pub(crate) struct ServeOpts {
    pub echo: bool,
    pub broadcast_stdin: bool,
    pub max_connections: Option<usize>,
    pub idle_timeout: Option<u64>,
}

pub(crate) async fn serve(
    given: Option<&str>,
    o: &ServeOpts,
    node: &NodeArgs,
    tls: &TlsArgs,
) -> Res {
    let ep = endpoint(given, node, true)?;
    let mut config = config_for(&ep, tls, node, true)?;
    if let Some(n) = o.max_connections {
        config.max_connections = n;
    }
    let mut sc = config.server_config();
    if !ep.is_local() {
        sc.listen.socket_root = None;
    }
    sc.idle_timeout = o
        .idle_timeout
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis);
    #[cfg(feature = "tls")]
    if let (Endpoint::Tls { .. }, Some(t)) = (&ep, &config.tls) {
        sc.listen.tls = Some(ipc::transport::TlsServerConfig::from_node_options(
            &t.to_node(),
        )?);
    }
    let server = Server::new(ep.clone(), sc)?;
    let mut events = server.events();
    if o.echo {
        server.on_request(|req| {
            let raw = req.raw().unwrap_or("null").to_owned();
            let r = match RawValue::from_string(raw) {
                Ok(v) => req.respond(&v),
                Err(e) => req
                    .responder()
                    .send_error("ERR_IPC_HANDLER", &e.to_string()),
            };
            r.map_err(|e| e.to_string())?;
            Ok(ipc::client::Flow::Stop)
        });
    }
    let local = server.start().await.map_err(|e| {
        Fail(format!(
            "cannot serve {ep}: {e} (is another server running there? pick another endpoint or stop it)"
        ))
    })?;
    shutdown::stop_on_signal(server.clone());
    eprintln!("nipc: serving {local}; Ctrl-C to stop");
    if o.broadcast_stdin {
        tokio::spawn(broadcast_lines(server.clone(), config.clone()));
    }
    let delimiter = config.delimiter.clone().into_bytes();
    let mut stop = shutdown::requested();
    loop {
        tokio::select! {
            _ = stop.wait() => break,
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                out_line(&server_event_line(&ev));
                if o.echo {
                    echo_back(&server, &ev, &delimiter).await;
                }
            }
        }
    }
    server.stop().await;
    Ok(())
}

/// `{"type":<event>,"data":<the data's own bytes>}` + delimiter: the echo
/// frame, made from the received slices without parsing them.
fn echo_frame(event: &str, data: Option<&[u8]>, delimiter: &[u8]) -> Bytes {
    let name = Value::String(event.to_owned()).to_string();
    let data = data.unwrap_or(b"{}");
    let mut f = BytesMut::with_capacity(name.len() + data.len() + delimiter.len() + 20);
    f.put_slice(b"{\"type\":");
    f.put_slice(name.as_bytes());
    f.put_slice(b",\"data\":");
    f.put_slice(data);
    f.put_slice(b"}");
    f.put_slice(delimiter);
    f.freeze()
}

/// Sends a message back without waiting: a peer whose queue is full (it
/// does not read) is cut off with `ERR_IPC_BACKPRESSURE`, as `broadcast`
/// does, so it cannot hold up the others.
async fn echo_back(server: &Server, ev: &ServerEvent, delimiter: &[u8]) {
    match ev {
        ServerEvent::Message { from, message } => match from {
            Peer::Socket(s) => {
                let frame = echo_frame(message.event(), message.data_json(), delimiter);
                if let Err(e) = s.try_send_frame(frame) {
                    echo_failed(s, &e);
                }
            }
            #[cfg(feature = "udp")]
            Peer::Udp(a) => {
                let frame = echo_frame(message.event(), message.data_json(), delimiter);
                if let Err(e) = server.send_frame_to(*a, &frame).await {
                    eprintln!("nipc: echo to {a} failed: {e}");
                }
            }
            #[allow(unreachable_patterns)]
            _ => {}
        },
        ServerEvent::Data { from, bytes } => match from {
            Peer::Socket(s) => {
                if let Err(e) = s.try_send_frame(bytes.clone()) {
                    echo_failed(s, &e);
                }
            }
            #[cfg(feature = "udp")]
            Peer::Udp(a) => {
                if let Err(e) = server.emit_raw_to(*a, bytes).await {
                    eprintln!("nipc: echo to {a} failed: {e}");
                }
            }
            #[allow(unreachable_patterns)]
            _ => {}
        },
        _ => {}
    }
    let _ = server;
}

fn echo_failed(s: &Socket, e: &ServerError) {
    if matches!(e, ServerError::Backpressure { .. }) {
        out(&json!({
            "event":"error","code":e.code().map(|c| c.as_str()),
            "message":format!("{e}; disconnecting a peer that does not keep up"),
            "from":s.id()
        }));
        s.destroy();
    } else {
        eprintln!("nipc: echo to {} failed: {e}", s.label());
    }
}

/// `--broadcast-stdin`: each line `{"type":…,"data":…}` (framed; a line
/// without `data` sends `{}`, as node-ipc's `broadcast(type)`) or, with
/// `--raw`, each line's text in `--encoding`.
async fn broadcast_lines(server: Server, config: Config) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut n = 0u64;
    while let Ok(Some(line)) = lines.next_line().await {
        n += 1;
        if config.raw_buffer {
            let bytes = Bytes::from(config.encoding.encode_str(&line));
            match server.broadcast_frame(bytes).await {
                Ok(k) => eprintln!("nipc: broadcast {} bytes to {k} peer(s)", line.len()),
                Err(e) => eprintln!("nipc: broadcast failed: {e}"),
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(rename = "type")]
            event: String,
            data: Option<Box<RawValue>>,
        }
        let Ok(Line { event, data }) = serde_json::from_str::<Line>(&line) else {
            eprintln!(
                "nipc: stdin line {n} skipped: expected {{\"type\":\"name\",\"data\":…}} JSON"
            );
            continue;
        };
        let r = match &data {
            Some(d) => server.broadcast(&event, d).await,
            None => server.broadcast(&event, &json!({})).await,
        };
        match r {
            Ok(k) => eprintln!("nipc: broadcast {event:?} to {k} peer(s)"),
            Err(e) => eprintln!("nipc: broadcast failed: {e}"),
        }
    }
}

/// How long a command waits for its first connection.
#[derive(Clone, Copy)]
enum Wait {
    /// At most this long.
    For(Duration),
    /// 10 s without retries; with `--max-retries`/`--config` retries, until
    /// the retry budget is spent (a listener waiting for its server).
    UntilGivenUp,
}

/// `--protocol net-ipc`: the client commands speak net-ipc.
static NET_IPC: AtomicBool = AtomicBool::new(false);

/// Makes the client commands speak net-ipc.
pub(crate) fn use_net_ipc() {
    NET_IPC.store(true, Ordering::SeqCst);
}

/// A net-ipc client (`--protocol net-ipc`), not registered with a facade.
fn net_ipc_client(ep: &Endpoint, config: &Config) -> Res<Client> {
    config.validate()?;
    #[allow(unused_mut)]
    let mut cc = config.client_config();
    cc.protocol = ipc::client::Protocol::NetIpc { messagepack: false };
    #[cfg(feature = "tls")]
    if let (Endpoint::Tls { .. }, Some(tls)) = (ep, &config.tls) {
        cc.connect.tls = Some(ipc::transport::TlsClientConfig::from_node_options(
            &tls.to_node(),
        )?);
    }
    Ok(Client::new(ep.clone(), cc)?)
}

/// Connects (retrying only as `--max-retries`/`--config` allow) and waits
/// until connected; the returned stream has every event from the start.
async fn connect(
    ep: &Endpoint,
    tls: &TlsArgs,
    node: &NodeArgs,
    wait: Wait,
) -> Res<(Client, ipc::EventStream<ClientEvent>)> {
    if matches!(ep, Endpoint::Udp { .. }) {
        return Err(Fail(format!(
            "UDP has no clients: receive on {ep} with `nipc serve {ep}`; `nipc emit` can send to it"
        )));
    }
    let config = config_for(ep, tls, node, false)?;
    let retrying = (config.max_retries != ipc::MaxRetries::Limited(0)).then_some(config.retry);
    let wait = match (wait, retrying) {
        (Wait::For(d), _) => d,
        (Wait::UntilGivenUp, Some(_)) => Duration::MAX,
        (Wait::UntilGivenUp, None) => Duration::from_secs(10),
    };
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let sink = first_error.clone();
    let mut stream = None;
    let shown = ep.to_string();
    let setup = |c: &Client| {
        stream = Some(c.events());
        c.on("error", move |ev| {
            if let Some(e) = ev.error() {
                let cause = root_cause(e);
                if let Some(every) = retrying {
                    eprintln!(
                        "nipc: {shown}: {cause}; retrying every {} ms",
                        every.as_millis()
                    );
                }
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.get_or_insert(cause);
            }
        });
    };
    let ipc;
    let client = if NET_IPC.load(Ordering::SeqCst) {
        let client = net_ipc_client(ep, &config)?;
        setup(&client);
        client.start();
        client
    } else {
        ipc = Ipc::with_config(config);
        ipc.connect_endpoint_with("nipc", ep.clone(), setup)?
    };
    let Some(stream) = stream else {
        return Err(Fail(format!("{ep}: a client with this id already exists")));
    };
    let mut stop = shutdown::requested();
    tokio::select! {
        _ = stop.wait() => {
            let _ = client.destroy().await;
            Err(Fail(format!("{ep}: interrupted before connecting")))
        }
        r = timeout_or_forever(wait, client.connected()) => match r {
            Ok(Ok(())) => Ok((client, stream)),
            Ok(Err(e)) => {
                let cause = first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .unwrap_or_else(|| e.to_string());
                Err(not_listening(ep, cause))
            }
            Err(_) => {
                let _ = client.destroy().await;
                Err(not_listening(ep, format!("no connection within {} ms", wait.as_millis())))
            }
        }
    }
}

/// `tokio::time::timeout`, with `Duration::MAX` meaning no timeout.
async fn timeout_or_forever<F: std::future::Future>(
    d: Duration,
    f: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    if d == Duration::MAX {
        Ok(f.await)
    } else {
        tokio::time::timeout(d, f).await
    }
}

/// What `nipc emit` waits for after sending.
pub(crate) struct EmitOpts {
    pub repeat: u64,
    pub replies: Option<u64>,
    pub wait_for: Option<String>,
    pub timeout: u64,
}

pub(crate) async fn emit(
    given: &str,
    event: &str,
    data: Option<&str>,
    o: &EmitOpts,
    node: &NodeArgs,
    tls: &TlsArgs,
) -> Res {
    let ep = endpoint(Some(given), node, false)?;
    let config = node.config(true)?;
    // Raw: the payload is the first argument (node-ipc's `emit(payload)`).
    let payload = if config.raw_buffer {
        if data.is_some() {
            return Err(Fail(
                "with --raw, emit takes one payload argument (encoded with --encoding), not a type and data".into(),
            ));
        }
        Payload::Raw(config.encoding.encode_str(event))
    } else {
        match data {
            Some(d) => Payload::Json(parse_json(d)?),
            None => Payload::Empty,
        }
    };
    if let Endpoint::Udp { .. } = ep {
        return emit_udp(&ep, event, &payload, &config, o).await;
    }
    let timeout = Duration::from_millis(o.timeout);
    let (client, mut events) = connect(&ep, tls, node, Wait::For(timeout)).await?;
    for _ in 0..o.repeat.max(1) {
        let sent = match &payload {
            Payload::Json(v) => client.emit(event, v).await,
            Payload::Empty => client.emit_empty(event).await,
            Payload::Raw(b) => client.emit_raw(b).await,
        };
        sent.map_err(|e| Fail(format!("cannot send to {ep}: {e}")))?;
    }
    if o.replies.is_some() || o.wait_for.is_some() {
        let waited = wait_replies(&ep, o, &mut events, |ev| match ev {
            ClientEvent::Message(m) => Reply::Message(m.event().to_owned(), client_event_line(ev)),
            ClientEvent::Data(_) => Reply::Message(String::new(), client_event_line(ev)),
            ClientEvent::Destroy => Reply::End,
            _ => Reply::Other,
        })
        .await;
        let _ = client.destroy().await;
        return waited;
    }
    client
        .disconnect()
        .await
        .map_err(|e| Fail(format!("{ep}: {e}")))?;
    Ok(())
}

/// What a received event means to `emit --replies/--wait-for`.
enum Reply {
    /// A message (its type; empty for raw data) and its output line.
    Message(String, Vec<u8>),
    /// The connection is gone for good.
    End,
    /// Anything else (lifecycle events).
    Other,
}

/// Prints received messages until `--replies N` of them or one of type
/// `--wait-for` arrived; bounded by `--timeout`, ended by a signal.
async fn wait_replies<E>(
    ep: &Endpoint,
    o: &EmitOpts,
    events: &mut ipc::EventStream<E>,
    classify: impl Fn(&E) -> Reply,
) -> Res {
    let want = o.replies.unwrap_or(u64::MAX);
    let waited = tokio::time::timeout(Duration::from_millis(o.timeout), async {
        let mut seen = 0u64;
        let mut stop = shutdown::requested();
        loop {
            let ev = tokio::select! {
                _ = stop.wait() => return Err(Fail("interrupted".into())),
                ev = events.recv() => ev,
            };
            let Some(ev) = ev else {
                return Err(Fail(format!("{ep} closed before the reply")));
            };
            match classify(&ev) {
                Reply::Message(ty, line) => {
                    out_line(&line);
                    seen += 1;
                    if seen >= want || o.wait_for.as_deref() == Some(ty.as_str()) {
                        return Ok(());
                    }
                }
                Reply::End => return Err(Fail(format!("{ep} closed before the reply"))),
                Reply::Other => {}
            }
        }
    })
    .await;
    match waited {
        Ok(r) => r,
        Err(_) => Err(Fail(format!(
            "no reply from {ep} within {} ms (--timeout)",
            o.timeout
        ))),
    }
}

enum Payload {
    Json(Value),
    Empty,
    Raw(Vec<u8>),
}

/// UDP has no clients: a UDP endpoint of our own (port 0) sends, and
/// receives the answers for `--replies`/`--wait-for`.
#[cfg(feature = "udp")]
async fn emit_udp(
    ep: &Endpoint,
    event: &str,
    payload: &Payload,
    config: &Config,
    o: &EmitOpts,
) -> Res {
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
    let ipc = Ipc::with_config(config.clone());
    let server = ipc.serve_endpoint(local)?;
    let mut events = server.events();
    server.start().await?;
    let mut r = Ok(());
    for _ in 0..o.repeat.max(1) {
        r = match payload {
            Payload::Json(v) => server.emit_to(target, event, v).await,
            Payload::Empty => server.emit_empty_to(target, event).await,
            Payload::Raw(b) => server.emit_raw_to(target, b).await,
        };
        if r.is_err() {
            break;
        }
    }
    let r = match r {
        Err(e) => Err(Fail(format!("cannot send to {ep}: {e}"))),
        Ok(()) if o.replies.is_some() || o.wait_for.is_some() => {
            wait_replies(ep, o, &mut events, |ev| match ev {
                ServerEvent::Message { message, .. } => {
                    Reply::Message(message.event().to_owned(), server_event_line(ev))
                }
                ServerEvent::Data { .. } => Reply::Message(String::new(), server_event_line(ev)),
                _ => Reply::Other,
            })
            .await
        }
        Ok(()) => Ok(()),
    };
    server.stop().await;
    r
}

#[cfg(not(feature = "udp"))]
async fn emit_udp(ep: &Endpoint, _: &str, _: &Payload, _: &Config, _: &EmitOpts) -> Res {
    Err(Fail(format!("{ep}: this nipc was built without UDP")))
}

pub(crate) async fn listen(given: &str, count: Option<u64>, node: &NodeArgs, tls: &TlsArgs) -> Res {
    let ep = endpoint(Some(given), node, false)?;
    let (client, mut events) = connect(&ep, tls, node, Wait::UntilGivenUp).await?;
    let mut seen = 0u64;
    let mut stop = shutdown::requested();
    loop {
        tokio::select! {
            _ = stop.wait() => break,
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                out_line(&client_event_line(&ev));
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

pub(crate) async fn request(
    given: &str,
    data: &str,
    timeout: u64,
    node: &NodeArgs,
    tls: &TlsArgs,
) -> Res {
    let ep = endpoint(Some(given), node, false)?;
    let data = parse_json(data)?;
    let (client, _events) = connect(&ep, tls, node, Wait::For(Duration::from_secs(10))).await?;
    let r = client
        .request(&data, Duration::from_millis(timeout))
        .await
        .map_err(|e| Fail(format!("request to {ep} failed: {e}")))?;
    match r.raw() {
        Some(raw) => out_line(&crate::output::compact(raw.as_bytes())),
        None => out(&Value::Null),
    }
    let _ = client.disconnect().await;
    Ok(())
}

pub(crate) async fn ping(given: &str, count: u32, node: &NodeArgs, tls: &TlsArgs) -> Res {
    let ep = endpoint(Some(given), node, false)?;
    let (client, _events) = connect(&ep, tls, node, Wait::For(Duration::from_secs(10))).await?;
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

pub(crate) async fn sub(
    given: &str,
    topics: &[String],
    count: Option<u64>,
    node: &NodeArgs,
    tls: &TlsArgs,
) -> Res {
    let ep = endpoint(Some(given), node, false)?;
    let (client, mut events) = connect(&ep, tls, node, Wait::UntilGivenUp).await?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let acked = client
        .subscribe(&names)
        .await
        .map_err(|e| Fail(format!("cannot subscribe at {ep}: {e}")))?;
    eprintln!("nipc: subscribed to {}", acked.join(", "));
    let mut seen = 0u64;
    let mut stop = shutdown::requested();
    loop {
        let ev = tokio::select! {
            _ = stop.wait() => break,
            ev = events.recv() => ev,
        };
        let Some(ev) = ev else { break };
        match &ev {
            ClientEvent::Message(m) if topics.iter().any(|t| t == m.event()) => {
                let data = m.data_json().map(crate::output::compact);
                let data = data.as_deref().unwrap_or(b"null");
                let mut line = format!(
                    "{{\"topic\":{},\"data\":",
                    Value::String(m.event().to_owned())
                )
                .into_bytes();
                line.extend_from_slice(data);
                line.push(b'}');
                out_line(&line);
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

pub(crate) async fn publish(
    given: &str,
    topic: &str,
    data: &str,
    node: &NodeArgs,
    tls: &TlsArgs,
) -> Res {
    let ep = endpoint(Some(given), node, false)?;
    let data = parse_json(data)?;
    let (client, _events) = connect(&ep, tls, node, Wait::For(Duration::from_secs(10))).await?;
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
