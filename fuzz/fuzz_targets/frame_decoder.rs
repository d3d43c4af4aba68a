//! Stream decoder, every profile. Input layout: byte 0 picks the profile
//! (and a multi-byte delimiter), byte 1 seeds the chunk sizes, the rest is
//! the stream. Invariants: no panic; buffered bytes stay within the limits;
//! chunking does not change the outcome; every decoded message re-encodes
//! to a frame that decodes to the same message.
#![no_main]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use ipc_proto::{CodecConfig, FrameDecoder, FrameEncoder, Inbound, Profile};
use libfuzzer_sys::fuzz_target;

const MAX_MSG: usize = 4096;
const MAX_PARTIAL: usize = 16 * 1024;

fn config(sel: u8) -> CodecConfig {
    let profile = match sel % 4 {
        0 => Profile::Raw,
        1 => Profile::Fast,
        2 => Profile::Guarded,
        _ => Profile::Assured,
    };
    let mut cfg = CodecConfig::for_profile(profile)
        .with_max_message_size(MAX_MSG)
        .with_max_partial_bytes(MAX_PARTIAL)
        .with_max_json_depth(64)
        .with_message_timeout(Some(Duration::from_secs(5)))
        .with_strict_utf8(sel & 0x10 != 0)
        .with_strict_json(sel & 0x20 != 0)
        .with_strict_eof(sel & 0x40 != 0);
    if profile == Profile::Assured {
        cfg = cfg.with_allowed_events(["a", "t", "message", "x"]);
    }
    if sel & 0x80 != 0 {
        cfg = cfg.with_delimiter(b"\r\n".to_vec());
    }
    cfg
}

type Outcome = (
    Vec<(String, Option<Vec<u8>>, Vec<u8>)>,
    Option<&'static str>,
);

fn run(cfg: &CodecConfig, data: &[u8], seed: u8, t0: Instant) -> Outcome {
    let mut dec = FrameDecoder::new(cfg.clone()).unwrap();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut step = seed as usize;
    while !rest.is_empty() {
        let n = if seed == 0 { rest.len() } else { 1 + step % 17 };
        step = step.wrapping_mul(31).wrapping_add(7);
        let (chunk, r) = rest.split_at(n.min(rest.len()));
        rest = r;
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf, t0) {
                Ok(Some(Inbound::Message(m))) => out.push((
                    m.event().to_string(),
                    m.data_json().map(<[u8]>::to_vec),
                    Vec::new(),
                )),
                Ok(Some(Inbound::Raw(b))) => out.push((String::new(), None, b.to_vec())),
                Ok(None) => break,
                Err(e) => return (out, Some(e.code().as_str())),
            }
        }
        if cfg.profile.is_framed() {
            let slack = cfg.delimiter.len();
            assert!(
                buf.len() <= MAX_PARTIAL + slack,
                "partial frame beyond max_partial_bytes"
            );
            if cfg.profile.is_guarded() {
                assert!(
                    buf.len() <= MAX_MSG + slack,
                    "partial frame beyond max_message_size"
                );
            }
        }
    }
    let end = dec.finish(&mut buf).err().map(|e| e.code().as_str());
    assert!(buf.is_empty());
    (out, end)
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let cfg = config(input[0]);
    let data = &input[2..];
    let t0 = Instant::now();
    let chunked = run(&cfg, data, input[1], t0);
    if cfg.profile.is_framed() {
        let whole = run(&cfg, data, 0, t0);
        assert_eq!(whole, chunked, "chunking changed the outcome");
        // Re-encode every message and decode it again.
        let enc = FrameEncoder::new(cfg.clone().with_max_message_size(usize::MAX >> 1)).unwrap();
        let relaxed = cfg
            .clone()
            .with_max_message_size(usize::MAX >> 1)
            .with_max_partial_bytes(usize::MAX >> 1);
        for (event, data, _) in &chunked.0 {
            let value: Option<serde_json::Value> =
                data.as_ref().map(|d| match serde_json::from_slice(d) {
                    Ok(v) => v,
                    // Numbers beyond f64 (1e400) have no Value; skip those.
                    Err(_) => serde_json::Value::Null,
                });
            let mut wire = BytesMut::new();
            if enc.encode(event, value.as_ref(), &mut wire).is_err() {
                // Only outbound-only rules may refuse (unsafe names in fast).
                assert!(
                    ipc_proto::is_unsafe_event(event),
                    "re-encode refused {event:?}"
                );
                continue;
            }
            let mut dec = FrameDecoder::new(relaxed.clone()).unwrap();
            let m = dec
                .decode(&mut wire, t0)
                .unwrap()
                .unwrap()
                .into_message()
                .unwrap();
            assert_eq!(m.event(), event);
        }
    }
});
