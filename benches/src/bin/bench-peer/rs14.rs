//! The official `node-ipc` 14.0.0 Rust crate: blocking I/O, one thread per
//! connection, one `Connection::send` (one write) per event.

use std::io::{Read, Write};
use std::time::Instant;

use node_ipc::{CodecConfig, Connection, Event, Message};
use serde_json::json;

use crate::{emit, latency_summary, now_us, Addr, Args};
use ipc_benches::STANDARD_PAYLOAD;

trait Io: Read + Write + Send + 'static {}
impl<T: Read + Write + Send + 'static> Io for T {}
type Conn = Connection<Box<dyn Io>>;

enum Listener {
    Unix(node_ipc::local::LocalListener),
    Tcp(std::net::TcpListener),
}

impl Listener {
    fn bind(addr: &Addr) -> Result<Self, String> {
        match addr {
            Addr::Unix(p) => node_ipc::local::LocalListener::bind(p)
                .map(Listener::Unix)
                .map_err(|e| format!("bind {}: {e}", p.display())),
            Addr::Tcp(a) => node_ipc::tcp::bind(a.as_str())
                .map(Listener::Tcp)
                .map_err(|e| format!("bind {a}: {e}")),
            Addr::Tls(_) | Addr::Udp4(_) => Err("rs14 runs over unix and tcp only".into()),
        }
    }

    fn accept(&self) -> Result<Conn, String> {
        let io: Box<dyn Io> = match self {
            Listener::Unix(l) => Box::new(l.accept().map_err(|e| e.to_string())?.0),
            Listener::Tcp(l) => Box::new(node_ipc::tcp::accept(l).map_err(|e| e.to_string())?.0),
        };
        Connection::new(io, CodecConfig::fast()).map_err(|e| e.to_string())
    }
}

fn connect(addr: &Addr) -> Result<Conn, String> {
    let io: Box<dyn Io> = match addr {
        Addr::Unix(p) => Box::new(node_ipc::local::connect(p).map_err(|e| e.to_string())?),
        Addr::Tcp(a) => Box::new(node_ipc::tcp::connect(a.as_str()).map_err(|e| e.to_string())?),
        Addr::Tls(_) | Addr::Udp4(_) => return Err("rs14 runs over unix and tcp only".into()),
    };
    Connection::new(io, CodecConfig::fast()).map_err(|e| e.to_string())
}

fn is_message(m: &Message) -> bool {
    matches!(m, Message::Event(e) if e.event_type == "message")
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    match (args.role.as_str(), args.workload.as_str()) {
        ("server", "w1") => {
            let l = Listener::bind(&args.addr)?;
            emit(json!({"ev":"ready"}));
            let mut c = l.accept()?;
            let mut count = 0u64;
            while count < args.n {
                match c.recv().map_err(|e| e.to_string())? {
                    Some(m) if is_message(&m) => count += 1,
                    Some(_) => {}
                    None => break,
                }
            }
            emit(json!({"ev":"done","count":count,"end_us":now_us()}));
            std::mem::forget((c, l));
            Ok(())
        }
        ("client", "w1") => {
            let mut c = connect(&args.addr)?;
            let ev = Event::new("message", STANDARD_PAYLOAD);
            let start = now_us();
            for _ in 0..args.n {
                c.send(&ev).map_err(|e| e.to_string())?;
            }
            emit(json!({"ev":"sent","start_us":start,"end_us":now_us()}));
            std::mem::forget(c);
            Ok(())
        }
        ("server", "w2") => {
            let l = Listener::bind(&args.addr)?;
            emit(json!({"ev":"ready"}));
            let mut c = l.accept()?;
            while let Some(m) = c.recv().map_err(|e| e.to_string())? {
                if let Message::Event(e) = m {
                    c.send(&e).map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        }
        ("client", "w2") => {
            let mut c = connect(&args.addr)?;
            let ev = Event::new("message", STANDARD_PAYLOAD);
            let mut samples = Vec::with_capacity(args.n as usize);
            for i in 0..args.warm + args.n {
                let t0 = Instant::now();
                c.send(&ev).map_err(|e| e.to_string())?;
                match c.recv().map_err(|e| e.to_string())? {
                    Some(_) => {}
                    None => return Err("server closed".into()),
                }
                if i >= args.warm {
                    samples.push(t0.elapsed().as_nanos() as u64);
                }
            }
            emit(latency_summary(&mut samples));
            Ok(())
        }
        ("server", "w3") => {
            let l = Listener::bind(&args.addr)?;
            emit(json!({"ev":"ready"}));
            let mut conns = Vec::new();
            for _ in 0..args.clients {
                let mut c = l.accept()?;
                c.recv().map_err(|e| e.to_string())?;
                conns.push(c);
            }
            emit(json!({"ev":"start","start_us":now_us()}));
            let ev = Event::new("message", STANDARD_PAYLOAD);
            for _ in 0..args.n {
                for c in &mut conns {
                    c.send(&ev).map_err(|e| e.to_string())?;
                }
            }
            emit(json!({"ev":"sent","end_us":now_us()}));
            std::mem::forget((conns, l));
            Ok(())
        }
        ("client", "w3") => {
            let mut threads = Vec::new();
            for _ in 0..args.clients {
                let mut c = connect(&args.addr)?;
                c.send(&Event::empty("hello")).map_err(|e| e.to_string())?;
                let n = args.n;
                threads.push(std::thread::spawn(move || {
                    let mut count = 0u64;
                    while count < n {
                        match c.recv() {
                            Ok(Some(m)) if is_message(&m) => count += 1,
                            Ok(Some(_)) => {}
                            _ => break,
                        }
                    }
                    std::mem::forget(c);
                    (count, now_us())
                }));
            }
            let mut total = 0;
            let mut end: f64 = 0.0;
            for t in threads {
                let (c, e) = t.join().map_err(|_| "client thread panicked")?;
                total += c;
                end = end.max(e);
            }
            emit(json!({"ev":"done","count":total,"end_us":end}));
            Ok(())
        }
        ("server", "w4") => {
            let l = Listener::bind(&args.addr)?;
            emit(json!({"ev":"ready"}));
            let mut count = 0u64;
            loop {
                let mut c = l.accept()?;
                count += 1;
                // One reader thread per connection, as a blocking server has.
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || while let Ok(Some(_)) = c.recv() {})
                    .map_err(|e| format!("spawn reader #{count}: {e}"))?;
                if count == args.n {
                    emit(json!({"ev":"accepted","count":count,"end_us":now_us()}));
                }
            }
        }
        (r, w) => Err(format!("no {r} for {w}")),
    }
}
