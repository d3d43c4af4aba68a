//! What `nipc` prints: the one-line failure type, JSON lines for events,
//! and the error messages for the usual mistakes.

use std::io::Write;

use ipc::{ClientEvent, Endpoint, Peer, ServerEvent};
use serde_json::{json, Value};

/// A one-line, user-facing failure.
pub(crate) struct Fail(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Fail {
        Fail(e.to_string())
    }
}

pub(crate) type Res<T = ()> = Result<T, Fail>;

pub(crate) fn parse_endpoint(s: &str) -> Res<Endpoint> {
    s.parse::<Endpoint>().map_err(Fail::from)
}

pub(crate) fn parse_json(s: &str) -> Res<Value> {
    serde_json::from_str(s).map_err(|e| {
        Fail(format!(
            "the data {s:?} is not valid JSON ({e}); quote text as '\"hello\"', or pass an object like '{{\"a\":1}}'"
        ))
    })
}

/// Prints one JSON line on stdout (flushed, so pipes see it at once).
pub(crate) fn out(v: &Value) {
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

pub(crate) fn server_event_json(ev: &ServerEvent) -> Value {
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

pub(crate) fn client_event_json(ev: &ClientEvent) -> Value {
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
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

pub(crate) fn not_listening(ep: &Endpoint, cause: impl std::fmt::Display) -> Fail {
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
