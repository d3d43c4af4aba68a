//! Property tests: round trips over any chunking, and the fast envelope
//! path agreeing with the full parse on every input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use bytes::BytesMut;
use ipc_proto::envelope::{parse_envelope, parse_envelope_fast, parse_envelope_full};
use ipc_proto::{
    to_js_vec, CodecConfig, ErrorCode, FrameDecoder, FrameEncoder, HeadCache, Inbound, Message,
};
use proptest::prelude::*;
use serde_json::Value;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Split `bytes` at the given cut points (sorted, deduplicated, in range).
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut last = 0;
    for c in cuts {
        out.push(&bytes[last..c]);
        last = c;
    }
    out.push(&bytes[last..]);
    out
}

/// Outcome of decoding a stream: messages (event, data text) and the first error.
type Outcome = (Vec<(String, Option<Vec<u8>>)>, Option<ErrorCode>);

fn run(cfg: &CodecConfig, chunks: &[&[u8]]) -> Outcome {
    let mut dec = FrameDecoder::new(cfg.clone()).unwrap();
    let mut buf = BytesMut::new();
    let mut msgs = Vec::new();
    let now = Instant::now();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf, now) {
                Ok(Some(Inbound::Message(m))) => {
                    msgs.push((m.event().to_string(), m.data_json().map(<[u8]>::to_vec)))
                }
                Ok(Some(Inbound::Raw(_))) => unreachable!(),
                Ok(None) => break,
                Err(e) => return (msgs, Some(e.code())),
            }
        }
    }
    (msgs, None)
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "\"type\"",
    "\"data\"",
    "\"t\"",
    "\"\"",
    "1",
    "-0.5e3",
    "null",
    "true",
    " ",
    "\n",
    "\\",
    "\\u0041",
    "\\ud800",
    "\\\"",
    "x",
    "é",
    "{\"type\":\"",
    "\",\"data\":",
    "\u{1}",
    "1e400",
];

fn arb_token_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..24).prop_map(|t| t.concat())
}

/// A valid envelope with tokens inserted at random places.
fn arb_perturbed() -> impl Strategy<Value = String> {
    (
        any::<String>(),
        arb_json(),
        prop::collection::vec((any::<usize>(), prop::sample::select(TOKENS)), 0..3),
    )
        .prop_map(|(name, data, edits)| {
            let mut s = format!(
                "{{\"type\":{},\"data\":{}}}",
                String::from_utf8(to_js_vec(&name).unwrap()).unwrap(),
                String::from_utf8(to_js_vec(&data).unwrap()).unwrap()
            );
            for (at, tok) in edits {
                let mut at = at % (s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.insert_str(at, tok);
            }
            s
        })
}

/// The plain shape `{"type":"…","data":"…"}` with printable ASCII (quotes,
/// backslashes and spaces included) in both strings, sometimes perturbed.
fn arb_plain() -> impl Strategy<Value = String> {
    (
        "[ -~]{0,12}",
        "[ -~]{0,24}",
        prop::option::of((any::<usize>(), prop::sample::select(TOKENS))),
    )
        .prop_map(|(name, data, edit)| {
            let mut s = format!("{{\"type\":\"{name}\",\"data\":\"{data}\"}}");
            if let Some((at, tok)) = edit {
                s.insert_str(at % (s.len() + 1), tok);
            }
            s
        })
}

fn arb_frame_text() -> impl Strategy<Value = String> {
    prop_oneof![arb_token_text(), arb_perturbed(), any::<String>()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any event names and JSON data, any split into chunks: the same
    /// messages in the same order, `data` byte-identical to what was encoded.
    #[test]
    fn round_trip_any_chunking(
        items in prop::collection::vec((any::<String>(), prop::option::of(arb_json())), 1..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let cfg = CodecConfig::fast().with_allow_unsafe_names(true);
        let enc = FrameEncoder::new(cfg.clone()).unwrap();
        let mut wire = BytesMut::new();
        for (name, data) in &items {
            enc.encode(name, data.as_ref(), &mut wire).unwrap();
        }
        let (msgs, err) = run(&cfg, &split(&wire, &cuts));
        prop_assert_eq!(err, None);
        prop_assert_eq!(msgs.len(), items.len());
        for ((name, data), (ev, text)) in items.iter().zip(&msgs) {
            prop_assert_eq!(name, ev);
            let expected = match data {
                Some(v) => to_js_vec(v).unwrap(),
                None => b"{}".to_vec(),
            };
            prop_assert_eq!(Some(expected), text.clone());
        }
    }

    /// Guarded: same round trip for names it accepts.
    #[test]
    fn round_trip_guarded(
        items in prop::collection::vec(("[a-z][a-z0-9._-]{0,20}", arb_json()), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let cfg = CodecConfig::guarded();
        let enc = FrameEncoder::new(cfg.clone()).unwrap();
        let mut wire = BytesMut::new();
        let mut sent = Vec::new();
        for (name, data) in &items {
            if enc.encode(name, Some(data), &mut wire).is_ok() {
                sent.push((name.clone(), to_js_vec(data).unwrap()));
            }
        }
        let (msgs, err) = run(&cfg, &split(&wire, &cuts));
        prop_assert_eq!(err, None);
        let got: Vec<_> = msgs.into_iter().map(|(e, d)| (e, d.unwrap())).collect();
        prop_assert_eq!(got, sent);
    }

    /// Whatever the bytes, chunking never changes the outcome.
    #[test]
    fn chunking_never_changes_outcome(
        frames in prop::collection::vec(arb_frame_text(), 1..5),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        guarded in any::<bool>(),
    ) {
        let cfg = if guarded { CodecConfig::guarded() } else { CodecConfig::fast() };
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend_from_slice(f.as_bytes());
            wire.push(0x0c);
        }
        let whole = run(&cfg, &[&wire]);
        let chunked = run(&cfg, &split(&wire, &cuts));
        prop_assert_eq!(whole, chunked);
    }

    /// The fast recogniser agrees with the full parse whenever it answers,
    /// and the combined parser gives exactly the full parse's result.
    #[test]
    fn fast_path_agrees_with_full_parse(text in arb_frame_text()) {
        let full = parse_envelope_full(&text, 256);
        if let Some(fast) = parse_envelope_fast(&text) {
            prop_assert_eq!(Ok(fast), full.clone());
        }
        let combined = parse_envelope(&text, 256);
        match (&combined, &full) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.code(), b.code()),
            _ => prop_assert!(false, "combined {:?} vs full {:?}", combined, full),
        }
    }

    /// A frame decoded as a message (the decoder's path, with its
    /// plain-string shortcut) gives exactly what the full parse gives.
    #[test]
    fn decoded_message_agrees_with_full_parse(
        text in prop_oneof![arb_plain(), arb_frame_text()],
    ) {
        // Lone-surrogate escapes are rewritten before parsing (`docs/protocol.md` §1.4),
        // which the full parse alone does not do.
        if text.contains("\\u") {
            return Ok(());
        }
        let cfg = CodecConfig::fast().with_allow_unsafe_names(true);
        let full = parse_envelope_full(&text, 256);
        match (Message::from_frame(text.clone().into_bytes(), &cfg), full) {
            (Ok(m), Ok(p)) => {
                prop_assert_eq!(m.event(), p.event_str(text.as_bytes()));
                prop_assert_eq!(m.data_json(), p.data.map(|r| &text.as_bytes()[r]));
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.code(), b.code()),
            (a, b) => prop_assert!(false, "decoded {:?} vs full {:?}", a, b),
        }
    }

    /// A string as `data` (the encoder's plain-string shortcut) is written
    /// exactly as `JSON.stringify` writes it, under every profile rule.
    #[test]
    fn string_data_encodes_like_json_stringify(data in any::<String>(), legacy in any::<bool>()) {
        let cfg = CodecConfig::fast().with_legacy_v9_payloads(legacy);
        let enc = FrameEncoder::new(cfg).unwrap();
        let mut wire = BytesMut::new();
        enc.encode("e", Some(data.as_str()), &mut wire).unwrap();
        let json = if legacy && data.is_empty() {
            "{}".to_owned()
        } else {
            String::from_utf8(to_js_vec(&data).unwrap()).unwrap()
        };
        let expected = format!("{{\"type\":\"e\",\"data\":{json}}}\x0c");
        prop_assert_eq!(&wire[..], expected.as_bytes());
    }

    /// A sender's head cache never changes what is written or refused:
    /// every step of a run of names and values gives the same bytes (or the
    /// same error, with the buffer untouched) as the uncached encoder, even
    /// when the cache is handed between encoders of different profiles.
    #[test]
    fn cached_encoding_agrees_with_uncached(
        steps in prop::collection::vec(
            (
                prop_oneof![
                    Just(String::from("message")),
                    Just(String::from("__proto__")),
                    Just(String::new()),
                    Just(String::from("ping")),
                    Just("x".repeat(300)),
                    any::<String>(),
                ],
                arb_json(),
                0usize..3,
            ),
            1..12,
        ),
    ) {
        let encoders = [
            FrameEncoder::new(CodecConfig::fast()).unwrap(),
            FrameEncoder::new(CodecConfig::guarded()).unwrap(),
            FrameEncoder::new(CodecConfig::fast().with_legacy_v9_payloads(true)).unwrap(),
        ];
        let mut cache = HeadCache::default();
        let (mut cached, mut plain) = (BytesMut::new(), BytesMut::new());
        for (event, data, which) in &steps {
            let enc = &encoders[*which];
            let a = enc.encode_cached(&mut cache, event, Some(data), &mut cached);
            let b = enc.encode(event, Some(data), &mut plain);
            prop_assert_eq!(a.map_err(|e| e.code()), b.map_err(|e| e.code()));
            prop_assert_eq!(&cached[..], &plain[..]);
        }
    }

    /// On valid JSON objects the parser agrees with serde_json's Value.
    #[test]
    fn agrees_with_serde_json_value(text in arb_frame_text()) {
        let Ok(v) = serde_json::from_str::<Value>(&text) else { return Ok(()) };
        let parsed = parse_envelope(&text, 256);
        match v {
            Value::Object(map) => match map.get("type") {
                Some(Value::String(t)) => {
                    let p = parsed.unwrap();
                    prop_assert_eq!(p.event_str(text.as_bytes()), t.as_str());
                    let data = p.data.map(|r| serde_json::from_str::<Value>(&text[r]).unwrap());
                    prop_assert_eq!(data.as_ref(), map.get("data"));
                }
                _ => prop_assert_eq!(parsed.unwrap_err().code(), ErrorCode::InvalidEvent),
            },
            _ => prop_assert_eq!(parsed.unwrap_err().code(), ErrorCode::InvalidMessage),
        }
    }
}
