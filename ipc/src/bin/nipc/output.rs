//! What `nipc` prints: the one-line failure type, JSON lines for events,
//! and the error messages for the usual mistakes.
//!
//! A message's `data` is printed from the frame's own bytes (the raw JSON
//! slice the decoder found), never through a parsed value tree: printing a
//! 60 MiB frame costs one copy, not a tree of millions of nodes.

use std::borrow::Cow;
use std::io::Write;

use ipc::{ClientEvent, Endpoint, Message, Peer, ServerEvent};
use serde_json::{json, Value};

/// A one-line, user-facing failure.
pub(crate) struct Fail(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Fail {
        Fail(e.to_string())
    }
}

pub(crate) type Res<T = ()> = Result<T, Fail>;

pub(crate) fn parse_json(s: &str) -> Res<Value> {
    serde_json::from_str(s).map_err(|e| {
        Fail(format!(
            "the data {s:?} is not valid JSON ({e}); quote text as '\"hello\"', or pass an object like '{{\"a\":1}}'"
        ))
    })
}

/// Prints one line on stdout (flushed, so pipes see it at once).
pub(crate) fn out_line(line: &[u8]) {
    let mut o = std::io::stdout().lock();
    // Stdout is where nipc reports; when it is gone (a closed pipe) there
    // is nowhere left to say so, and the signal watcher ends the process.
    let _ = o.write_all(line);
    let _ = o.write_all(b"\n");
    let _ = o.flush();
}

/// Prints one JSON value as a line on stdout.
pub(crate) fn out(v: &Value) {
    out_line(v.to_string().as_bytes());
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

/// JSON text without the whitespace between tokens (JSON allows newlines
/// there, which would break a JSON line). Borrowed when there is none.
pub(crate) fn compact(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw
        .iter()
        .any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Cow::Borrowed(raw);
    }
    let mut outv = Vec::with_capacity(raw.len());
    let (mut in_str, mut esc) = (false, false);
    for &b in raw {
        if in_str {
            outv.push(b);
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            if b == b'"' {
                in_str = true;
            }
            outv.push(b);
        }
    }
    Cow::Owned(outv)
}

/// `{"event":"message","type":…,"data":<raw>,…extra}` built from the
/// frame's bytes; `data` is `null` when the frame had none.
pub(crate) fn message_line(m: &Message, extra: &[(&str, Value)]) -> Vec<u8> {
    let data = m.data_json().map(compact);
    let data: &[u8] = data.as_deref().unwrap_or(b"null");
    let name = Value::String(m.event().to_owned()).to_string();
    let mut line = Vec::with_capacity(data.len() + name.len() + 64);
    line.extend_from_slice(b"{\"event\":\"message\",\"type\":");
    line.extend_from_slice(name.as_bytes());
    line.extend_from_slice(b",\"data\":");
    line.extend_from_slice(data);
    for (k, v) in extra {
        line.extend_from_slice(format!(",\"{k}\":{v}").as_bytes());
    }
    line.push(b'}');
    line
}

/// The JSON line for a server event.
pub(crate) fn server_event_line(ev: &ServerEvent) -> Vec<u8> {
    let v = match ev {
        ServerEvent::Message { from, message } => {
            return message_line(message, &[("from", peer_label(from))])
        }
        ServerEvent::Start(ep) => json!({"event":"start","endpoint":ep.to_string()}),
        ServerEvent::Connect(s) => json!({"event":"connect","socket":s.id()}),
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
    };
    v.to_string().into_bytes()
}

/// The JSON line for a client event.
pub(crate) fn client_event_line(ev: &ClientEvent) -> Vec<u8> {
    let v = match ev {
        ClientEvent::Message(m) => return message_line(m, &[]),
        ClientEvent::Data(b) => json!({"event":"data","hex":hex(b)}),
        ClientEvent::Error(e) => {
            json!({"event":"error","code":e.code().map(|c| c.as_str()),"message":e.to_string()})
        }
        other => json!({"event":other.name()}),
    };
    v.to_string().into_bytes()
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

#[cfg(test)]
mod tests {
    use super::compact;

    #[test]
    fn compact_keeps_string_content_and_drops_token_whitespace() {
        let raw = b"{ \"a b\" :\n [1, \"x\\\" y\"]\t}";
        assert_eq!(&*compact(raw), &b"{\"a b\":[1,\"x\\\" y\"]}"[..]);
        assert!(matches!(compact(b"[1,2]"), std::borrow::Cow::Borrowed(_)));
    }
}
