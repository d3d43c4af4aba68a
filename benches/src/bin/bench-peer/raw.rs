//! The ceilings: the standard frame's bytes pumped through tokio sockets and
//! only counted at the delimiter (`raw`), or split and parsed with
//! `serde_json` per frame (`serde`: the envelope into a borrowed struct, the
//! data validated as raw JSON). Over TLS both use tokio-rustls with the
//! same rustls configurations as `ours`; over UDP each datagram is one frame
//! and the sender is paced like `ours` (see the crate docs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::{batch, emit, is_udp, latency_summary, now_us, Addr, Args, BATCH_FRAMES, UDP_STALL};
use ipc_benches::standard_frame;

const DELIM: u8 = 0x0c;
const READ_BUF: usize = 64 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Conn = Box<dyn Io>;

enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
    Tls(tokio::net::TcpListener, TlsAcceptor),
}

impl Listener {
    async fn bind(args: &Args) -> Result<Self, String> {
        match &args.addr {
            Addr::Unix(p) => {
                let _ = std::fs::remove_file(p);
                tokio::net::UnixListener::bind(p)
                    .map(Listener::Unix)
                    .map_err(|e| format!("bind {}: {e}", p.display()))
            }
            Addr::Tcp(a) => tokio::net::TcpListener::bind(a)
                .await
                .map(Listener::Tcp)
                .map_err(|e| format!("bind {a}: {e}")),
            Addr::Tls(a) => {
                let config = crate::tls::server_config(&args.ca)?;
                let l = tokio::net::TcpListener::bind(a)
                    .await
                    .map_err(|e| format!("bind {a}: {e}"))?;
                Ok(Listener::Tls(l, TlsAcceptor::from(config.rustls().clone())))
            }
            Addr::Udp4(_) => Err("no stream listener for udp4".into()),
        }
    }

    async fn accept(&self) -> Result<Conn, String> {
        match self {
            Listener::Unix(l) => l
                .accept()
                .await
                .map(|(s, _)| Box::new(s) as Conn)
                .map_err(|e| format!("accept: {e}")),
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await.map_err(|e| format!("accept: {e}"))?;
                let _ = s.set_nodelay(true);
                Ok(Box::new(s))
            }
            Listener::Tls(l, acceptor) => {
                let (s, _) = l.accept().await.map_err(|e| format!("accept: {e}"))?;
                let _ = s.set_nodelay(true);
                let s = acceptor
                    .accept(s)
                    .await
                    .map_err(|e| format!("TLS accept: {e}"))?;
                Ok(Box::new(s))
            }
        }
    }
}

async fn connect(args: &Args) -> Result<Conn, String> {
    match &args.addr {
        Addr::Unix(p) => tokio::net::UnixStream::connect(p)
            .await
            .map(|s| Box::new(s) as Conn)
            .map_err(|e| format!("connect {}: {e}", p.display())),
        Addr::Tcp(a) => {
            let s = tokio::net::TcpStream::connect(a)
                .await
                .map_err(|e| format!("connect {a}: {e}"))?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
        Addr::Tls(a) => {
            let config = crate::tls::client_config(&args.ca)?;
            let (host, _) = args.host_port()?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("bad server name `{host}`: {e}"))?;
            let s = tokio::net::TcpStream::connect(a)
                .await
                .map_err(|e| format!("connect {a}: {e}"))?;
            let _ = s.set_nodelay(true);
            let s = TlsConnector::from(Arc::clone(config.rustls()))
                .connect(name, s)
                .await
                .map_err(|e| format!("TLS connect {a}: {e}"))?;
            Ok(Box::new(s))
        }
        Addr::Udp4(_) => Err("no stream connection for udp4".into()),
    }
}

/// The envelope as a JSON decoder needs it: the type as a string and the
/// data validated and kept as raw JSON text.
#[derive(serde::Deserialize, serde::Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    ty: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

/// Splits a byte stream at the delimiter; `parse` selects the serde ceiling.
struct Framer {
    parse: bool,
    pending: Vec<u8>,
}

impl Framer {
    fn new(parse: bool) -> Self {
        Framer {
            parse,
            pending: Vec::with_capacity(READ_BUF),
        }
    }

    /// Counts the complete frames in `chunk` (parsing each in serde mode)
    /// and calls `each` with every parsed envelope (serde mode only).
    fn feed(&mut self, chunk: &[u8], mut each: impl FnMut(&Envelope<'_>)) -> Result<u64, String> {
        if !self.parse {
            return Ok(memchr::memchr_iter(DELIM, chunk).count() as u64);
        }
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        let mut count = 0;
        for end in memchr::memchr_iter(DELIM, &self.pending) {
            let frame = &self.pending[start..end];
            let v: Envelope<'_> =
                serde_json::from_slice(frame).map_err(|e| format!("bad frame: {e}"))?;
            if v.ty == "message" {
                count += 1;
            }
            each(&v);
            start = end + 1;
        }
        self.pending.drain(..start);
        Ok(count)
    }
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let rt = crate::runtime(args)?;
    let parse = args.subject == "serde";
    rt.block_on(async move {
        match (args.role.as_str(), args.workload.as_str()) {
            ("server", "w1") if is_udp(&args.addr) => w1_udp_receiver(args, parse).await,
            ("client", "w1") if is_udp(&args.addr) => w1_udp_sender(args).await,
            ("server", "w1") => w1_server(args, parse).await,
            ("client", "w1") => w1_client(args).await,
            ("server", "w2") => w2_server(args, parse).await,
            ("client", "w2") => w2_client(args, parse).await,
            ("server", "w3") => w3_server(args, parse).await,
            ("client", "w3") => w3_client(args, parse).await,
            ("server", "w4") => w4_server(args).await,
            (r, w) => Err(format!("no {r} for {w}")),
        }
    })?;
    // Keep the runtime (and its sockets) alive until stdin ends.
    std::mem::forget(rt);
    Ok(())
}

async fn w1_server(args: &Args, parse: bool) -> Result<(), String> {
    let l = Listener::bind(args).await?;
    emit(json!({"ev":"ready"}));
    let mut s = l.accept().await?;
    let mut buf = vec![0u8; READ_BUF];
    let mut framer = Framer::new(parse);
    let mut count = 0u64;
    while count < args.n {
        let k = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if k == 0 {
            break;
        }
        count += framer.feed(&buf[..k], |_| {})?;
    }
    emit(json!({"ev":"done","count":count,"end_us":now_us()}));
    std::mem::forget(s);
    Ok(())
}

async fn w1_client(args: &Args) -> Result<(), String> {
    let mut s = connect(args).await?;
    let full = batch(BATCH_FRAMES);
    let frame_len = standard_frame().len();
    let start = now_us();
    let mut left = args.n;
    while left > 0 {
        let k = left.min(BATCH_FRAMES as u64);
        let bytes = &full[..frame_len * k as usize];
        s.write_all(bytes).await.map_err(|e| e.to_string())?;
        left -= k;
    }
    s.flush().await.map_err(|e| e.to_string())?;
    emit(json!({"ev":"sent","start_us":start,"end_us":now_us()}));
    std::mem::forget(s);
    Ok(())
}

async fn w2_server(args: &Args, parse: bool) -> Result<(), String> {
    let l = Listener::bind(args).await?;
    emit(json!({"ev":"ready"}));
    let mut s = l.accept().await?;
    let mut buf = vec![0u8; READ_BUF];
    let mut framer = Framer::new(parse);
    let mut out = Vec::with_capacity(READ_BUF);
    loop {
        let k = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if k == 0 {
            return Ok(());
        }
        out.clear();
        if parse {
            framer.feed(&buf[..k], |v| {
                // Re-encode the parsed envelope, as a JSON echo server does.
                let _ = serde_json::to_writer(&mut out, v);
                out.push(DELIM);
            })?;
        } else {
            // One frame in flight: echo the bytes back as they arrive.
            out.extend_from_slice(&buf[..k]);
        }
        s.write_all(&out).await.map_err(|e| e.to_string())?;
    }
}

async fn w2_client(args: &Args, parse: bool) -> Result<(), String> {
    let mut s = connect(args).await?;
    let frame = standard_frame();
    let mut buf = vec![0u8; READ_BUF];
    let mut framer = Framer::new(parse);
    let mut samples = Vec::with_capacity(args.n as usize);
    for i in 0..args.warm + args.n {
        let t0 = Instant::now();
        s.write_all(&frame).await.map_err(|e| e.to_string())?;
        let mut got = 0;
        while got == 0 {
            let k = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            if k == 0 {
                return Err("server closed".into());
            }
            got += framer.feed(&buf[..k], |_| {})?;
        }
        if i >= args.warm {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    emit(latency_summary(&mut samples));
    Ok(())
}

async fn read_hello(s: &mut Conn) -> Result<(), String> {
    let mut b = [0u8; 256];
    loop {
        let k = s.read(&mut b).await.map_err(|e| e.to_string())?;
        if k == 0 {
            return Err("client closed before hello".into());
        }
        if b[..k].contains(&DELIM) {
            return Ok(());
        }
    }
}

async fn w3_server(args: &Args, parse: bool) -> Result<(), String> {
    let l = Listener::bind(args).await?;
    emit(json!({"ev":"ready"}));
    let mut conns = Vec::new();
    for _ in 0..args.clients {
        let mut s = l.accept().await?;
        read_hello(&mut s).await?;
        conns.push(s);
    }
    let mut txs = Vec::new();
    let mut writers = Vec::new();
    for mut s in conns {
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        txs.push(tx);
        writers.push(tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if s.write_all(&b).await.is_err() {
                    break;
                }
            }
            let _ = s.flush().await;
            std::mem::forget(s);
        }));
    }
    emit(json!({"ev":"start","start_us":now_us()}));
    let full = Bytes::from(batch(BATCH_FRAMES));
    let frame_len = standard_frame().len();
    let mut left = args.n;
    while left > 0 {
        let k = left.min(BATCH_FRAMES as u64) as usize;
        let chunk = if parse {
            // Serialize every event once per broadcast, as a JSON server does.
            let mut b = Vec::with_capacity(frame_len * k);
            for _ in 0..k {
                let v = json!({"type":"message","data":ipc_benches::STANDARD_PAYLOAD});
                let _ = serde_json::to_writer(&mut b, &v);
                b.extend_from_slice(&[DELIM]);
            }
            Bytes::from(b)
        } else {
            full.slice(..frame_len * k)
        };
        for tx in &txs {
            tx.send(chunk.clone())
                .await
                .map_err(|_| "writer ended".to_string())?;
        }
        left -= k as u64;
    }
    drop(txs);
    for w in writers {
        let _ = w.await;
    }
    emit(json!({"ev":"sent","end_us":now_us()}));
    Ok(())
}

async fn w3_client(args: &Args, parse: bool) -> Result<(), String> {
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let mut s = connect(args).await?;
        let mut hello = Vec::new();
        let _ = serde_json::to_writer(&mut hello, &json!({"type":"hello","data":null}));
        hello.push(DELIM);
        s.write_all(&hello).await.map_err(|e| e.to_string())?;
        let n = args.n;
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; READ_BUF];
            let mut framer = Framer::new(parse);
            let mut count = 0u64;
            while count < n {
                let k = s.read(&mut buf).await.map_err(|e| e.to_string())?;
                if k == 0 {
                    break;
                }
                count += framer.feed(&buf[..k], |_| {})?;
            }
            std::mem::forget(s);
            Ok::<_, String>((count, now_us()))
        }));
    }
    let mut total = 0;
    let mut end: f64 = 0.0;
    for t in tasks {
        let (c, e) = t.await.map_err(|e| e.to_string())??;
        total += c;
        end = end.max(e);
    }
    emit(json!({"ev":"done","count":total,"end_us":end}));
    Ok(())
}

async fn w4_server(args: &Args) -> Result<(), String> {
    let l = Listener::bind(args).await?;
    emit(json!({"ev":"ready"}));
    let mut count = 0u64;
    loop {
        let mut s = l.accept().await?;
        count += 1;
        tokio::spawn(async move {
            let mut b = [0u8; 1024];
            while let Ok(k) = s.read(&mut b).await {
                if k == 0 {
                    break;
                }
            }
        });
        if count == args.n {
            emit(json!({"ev":"accepted","count":count,"end_us":now_us()}));
        }
    }
}

/// The `end` datagram: this marker, then the number sent (little endian).
const UDP_END: &[u8; 4] = b"END\0";

/// UDP W1 receiver: one frame per datagram, counted (or parsed), an
/// acknowledgement (the delivered count, 8 bytes little endian) every
/// `ack=N` (default [`crate::UDP_ACK_EVERY`]), `done` at `n` deliveries or at the sender's end marker.
async fn w1_udp_receiver(args: &Args, parse: bool) -> Result<(), String> {
    let (host, port) = args.host_port()?;
    let sock = tokio::net::UdpSocket::bind((host.as_str(), port))
        .await
        .map_err(|e| format!("bind udp {host}:{port}: {e}"))?;
    emit(json!({"ev":"ready"}));
    let mut buf = vec![0u8; 65_536];
    let mut framer = Framer::new(parse);
    let mut count = 0u64;
    let mut last_us = 0.0;
    loop {
        let (k, from) = sock.recv_from(&mut buf).await.map_err(|e| e.to_string())?;
        let d = &buf[..k];
        if d.len() == 12 && d.starts_with(UDP_END) {
            let mut sent = [0u8; 8];
            sent.copy_from_slice(&d[4..]);
            let sent = u64::from_le_bytes(sent);
            emit(json!({"ev":"done","count":count,"sent":sent,"end_us":last_us}));
            break;
        }
        let got = framer.feed(d, |_| {})?;
        if got == 0 {
            continue;
        }
        count += got;
        last_us = now_us();
        if count % args.ack_every == 0 {
            let _ = sock.send_to(&count.to_le_bytes(), from).await;
        }
        if count == args.n {
            emit(json!({"ev":"done","count":count,"sent":args.n,"end_us":last_us}));
            break;
        }
    }
    std::mem::forget(sock);
    Ok(())
}

/// UDP W1 sender: the standard frame as one datagram each, paced by the
/// receiver's acknowledgements exactly like `ours`.
async fn w1_udp_sender(args: &Args) -> Result<(), String> {
    let (host, port) = args.host_port()?;
    let target: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("bad UDP target {host}:{port}: {e}"))?;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind udp: {e}"))?;
    let frame = standard_frame();
    let mut ack = [0u8; 64];
    let mut acked = 0u64;
    let mut written_off = 0u64;
    let mut stalls = 0u64;
    let start = now_us();
    for i in 0..args.n {
        while i.saturating_sub(acked + written_off) >= args.window {
            match tokio::time::timeout(UDP_STALL, sock.recv(&mut ack)).await {
                Ok(Ok(8)) => {
                    let mut c = [0u8; 8];
                    c.copy_from_slice(&ack[..8]);
                    acked = acked.max(u64::from_le_bytes(c));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("receive ack: {e}")),
                Err(_) => {
                    stalls += 1;
                    written_off = i.saturating_sub(acked);
                }
            }
        }
        sock.send_to(&frame, target)
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    let end = now_us();
    let mut marker = UDP_END.to_vec();
    marker.extend_from_slice(&args.n.to_le_bytes());
    for _ in 0..3 {
        sock.send_to(&marker, target)
            .await
            .map_err(|e| format!("send: {e}"))?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    emit(json!({"ev":"sent","count":args.n,"stalls":stalls,"start_us":start,"end_us":end}));
    std::mem::forget(sock);
    Ok(())
}
