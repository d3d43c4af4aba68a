//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Instant;

use bytes::BytesMut;
use ipc_proto::{CodecConfig, ErrorCode, FrameDecoder, Inbound};

pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// What a connection saw: messages as (event, raw data text), then possibly
/// one error (after which the stream is closed).
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Seen {
    Msg(String, Option<String>),
    Err(ErrorCode),
}

pub fn msg(event: &str, data: Option<&str>) -> Seen {
    Seen::Msg(event.to_string(), data.map(str::to_string))
}

/// Feeds `chunks` one read at a time (all at `now`) and records what the
/// decoder produced after each chunk; stops at the first error.
pub fn feed_chunks(cfg: CodecConfig, chunks: &[&[u8]], now: Instant) -> Vec<Vec<Seen>> {
    let mut dec = FrameDecoder::new(cfg).unwrap();
    let mut buf = BytesMut::new();
    let mut per_chunk = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let mut seen = Vec::new();
        let mut failed = false;
        loop {
            match dec.decode(&mut buf, now) {
                Ok(Some(Inbound::Message(m))) => seen.push(Seen::Msg(
                    m.event().to_string(),
                    m.data_json()
                        .map(|d| String::from_utf8(d.to_vec()).unwrap()),
                )),
                Ok(Some(Inbound::Raw(_))) => panic!("raw item from a framed profile"),
                Ok(None) => break,
                Err(e) => {
                    seen.push(Seen::Err(e.code()));
                    failed = true;
                    break;
                }
            }
        }
        per_chunk.push(seen);
        if failed {
            break;
        }
    }
    per_chunk
}

/// All chunks' results flattened.
pub fn feed(cfg: CodecConfig, chunks: &[&[u8]]) -> Vec<Seen> {
    feed_chunks(cfg, chunks, Instant::now())
        .into_iter()
        .flatten()
        .collect()
}
