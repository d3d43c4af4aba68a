//! Encodes and decodes the standard frame and the `docs/protocol.md` §7.1 vectors, and
//! prints what happened.
//!
//! ```text
//! cargo run -p ipc-proto --example frames
//! ```

use std::time::Instant;

use bytes::BytesMut;
use ipc_proto::{CodecConfig, FrameDecoder, FrameEncoder, Inbound, ProtocolError};
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Serialize)]
struct NodeBuffer {
    #[serde(rename = "type")]
    ty: &'static str,
    data: Vec<u8>,
}

fn show(bytes: &[u8]) -> String {
    let mut s = String::new();
    for ch in String::from_utf8_lossy(bytes).chars() {
        match ch {
            '\u{c}' => s.push_str("⟨0C⟩"),
            '\n' => s.push_str("⟨0A⟩"),
            c if (c as u32) < 0x20 => s.push_str(&format!("⟨{:02X}⟩", c as u32)),
            c @ ('\u{2028}' | '\u{2029}') => s.push_str(&format!("⟨U+{:04X}⟩", c as u32)),
            c => s.push(c),
        }
    }
    s
}

fn round_trip<T: Serialize + ?Sized>(
    id: &str,
    cfg: CodecConfig,
    event: &str,
    data: Option<&T>,
) -> Result<(), ProtocolError> {
    let enc = FrameEncoder::new(cfg.clone())?;
    let mut wire = BytesMut::new();
    enc.encode(event, data, &mut wire)?;
    println!(
        "{id:<4} encode {:<10} → {} bytes  {}",
        format!("{event:?}"),
        wire.len(),
        show(&wire)
    );
    let mut dec = FrameDecoder::new(cfg)?;
    match dec.decode(&mut wire, Instant::now())? {
        Some(Inbound::Message(m)) => {
            let data = m
                .data_json()
                .map(|d| String::from_utf8_lossy(d).into_owned())
                .unwrap_or_else(|| "(none)".into());
            println!("     decode → event {:?}, data {}", m.event(), data);
        }
        other => println!("     decode → unexpected {other:?}"),
    }
    Ok(())
}

fn main() -> Result<(), ProtocolError> {
    println!("Standard frame (fast and guarded):");
    let payload = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
    round_trip("std", CodecConfig::fast(), "message", Some(payload))?;
    round_trip("std", CodecConfig::guarded(), "message", Some(payload))?;

    println!("\n`docs/protocol.md` §7.1 framed encode vectors (node-ipc v14 / ours):");
    let fast = CodecConfig::fast;
    round_trip("F1", fast(), "message", Some("hello"))?;
    round_trip(
        "F2",
        fast(),
        "message",
        Some(&json!({"a":1,"b":[true,null]})),
    )?;
    round_trip("F3", fast(), "n", Some(&42))?;
    round_trip("F4", fast(), "n", Some(&0))?;
    round_trip("F5", fast(), "n", Some(&1e21))?;
    round_trip("F6′", fast(), "z", Some(&Value::Null))?;
    round_trip::<()>("F7", fast(), "z", None)?;
    round_trip("F8′", fast(), "z", Some(""))?;
    round_trip("F9", fast(), "z", Some(&false))?;
    round_trip("F10", fast(), "u", Some("héllo 🌍"))?;
    round_trip("F11", fast(), "c", Some("a\u{c}b\u{1}\n\"\\/"))?;
    round_trip(
        "F12′",
        fast(),
        "e",
        Some(&json!({"_maxListeners":10,"x":1})),
    )?;
    let buffer = NodeBuffer {
        ty: "Buffer",
        data: vec![1, 2, 255],
    };
    round_trip("F13", fast(), "b", Some(&buffer))?;
    round_trip("F14", fast(), "s", Some("\u{2028}"))?;
    round_trip(
        "F15",
        fast().with_delimiter(b"\n".to_vec()),
        "message",
        Some("hi"),
    )?;

    println!("\nnode-ipc 9/12 payload rules (legacy_v9_payloads):");
    let legacy = || CodecConfig::fast().with_legacy_v9_payloads(true);
    round_trip("F6", legacy(), "z", Some(&Value::Null))?;
    round_trip("F8", legacy(), "z", Some(""))?;
    round_trip(
        "F12",
        legacy(),
        "e",
        Some(&json!({"_maxListeners":10,"x":1})),
    )?;

    println!("\nGuarded refusals:");
    let enc = FrameEncoder::new(CodecConfig::guarded())?;
    let mut dst = BytesMut::new();
    for name in ["connect", "constructor", ""] {
        match enc.encode::<()>(name, None, &mut dst) {
            Err(e) => println!("     encode {name:?} → {e}"),
            Ok(()) => println!("     encode {name:?} → accepted"),
        }
    }
    let mut dec = FrameDecoder::new(CodecConfig::guarded())?;
    let mut wire = BytesMut::from(&b"{\"type\":\"a\",\"data\":1}\x0cnot-json\x0c"[..]);
    let now = Instant::now();
    loop {
        match dec.decode(&mut wire, now) {
            Ok(Some(Inbound::Message(m))) => println!("     decode → {:?}", m),
            Ok(_) => break,
            Err(e) => {
                println!("     decode → {e} (stream would be closed)");
                break;
            }
        }
    }
    Ok(())
}
