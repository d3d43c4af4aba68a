//! The subcommands that talk to a peer: `serve`, `emit`, `listen`,
//! `request`, `ping`, `sub` and `pub`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipc::{
    Client, ClientEvent, Config, Endpoint, Ipc, MaxRetries, Peer, Server, ServerEvent, TlsOptions,
};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use crate::output::{
    client_event_json, not_listening, out, parse_endpoint, parse_json, root_cause,
    server_event_json, Fail, Res,
};
use crate::TlsArgs;

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

pub(crate) async fn serve(endpoint: &str, echo: bool, broadcast_stdin: bool, tls: &TlsArgs) -> Res {
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
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let sink = first_error.clone();
    let mut stream = None;
    let setup = |c: &Client| {
        stream = Some(c.events());
        c.on("error", move |ev| {
            if let Some(e) = ev.error() {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.get_or_insert_with(|| root_cause(e));
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

pub(crate) async fn emit(endpoint: &str, event: &str, data: &str, tls: &TlsArgs) -> Res {
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

pub(crate) async fn listen(endpoint: &str, count: Option<u64>, tls: &TlsArgs) -> Res {
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

pub(crate) async fn request(endpoint: &str, data: &str, timeout: u64, tls: &TlsArgs) -> Res {
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

pub(crate) async fn ping(endpoint: &str, count: u32, tls: &TlsArgs) -> Res {
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

pub(crate) async fn sub(
    endpoint: &str,
    topics: &[String],
    count: Option<u64>,
    tls: &TlsArgs,
) -> Res {
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

pub(crate) async fn publish(endpoint: &str, topic: &str, data: &str, tls: &TlsArgs) -> Res {
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
