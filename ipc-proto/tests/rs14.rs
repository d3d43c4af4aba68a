//! Cross-check against the official `node-ipc = "=14.0.0"` Rust crate
//! (rs14): frames one side encodes, the other decodes; error codes agree on
//! the `docs/protocol.md` §1.4 rows where rs14 has a column.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use bytes::BytesMut;
use ipc_proto::{to_js_vec, CodecConfig, FrameDecoder, FrameEncoder, Inbound};
use node_ipc::codec::{Codec as RsCodec, CodecConfig as RsConfig, Message as RsMessage};
use node_ipc::event::Event as RsEvent;
use proptest::prelude::*;
use serde_json::Value;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn rs_value(json: &[u8]) -> node_ipc::json::Value {
    node_ipc::json::parse(json).unwrap()
}

fn ours_decode(cfg: CodecConfig, wire: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut dec = FrameDecoder::new(cfg).unwrap();
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    while let Some(Inbound::Message(m)) = dec.decode(&mut buf, Instant::now()).unwrap() {
        out.push((m.event().to_string(), m.data_json().unwrap().to_vec()));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Ours encodes, rs14 decodes: same names, same data.
    #[test]
    fn ours_to_rs14(items in prop::collection::vec(("[a-zA-Z0-9.:_ é🌍-]{1,16}", arb_json()), 1..6)) {
        let enc = FrameEncoder::new(CodecConfig::guarded()).unwrap();
        let mut wire = BytesMut::new();
        let mut sent = Vec::new();
        for (name, data) in &items {
            if enc.encode(name, Some(data), &mut wire).is_ok() {
                sent.push((name.clone(), data.clone()));
            }
        }
        let mut rs = RsCodec::new(RsConfig::guarded()).unwrap();
        let got = rs.push(&wire).unwrap();
        prop_assert_eq!(got.len(), sent.len());
        for (m, (name, data)) in got.into_iter().zip(sent) {
            let RsMessage::Event(ev) = m else { panic!("raw") };
            prop_assert_eq!(&ev.event_type, &name);
            let theirs: Value = serde_json::from_slice(&ev.data.to_json_vec()).unwrap();
            let ours: Value = serde_json::from_slice(&to_js_vec(&data).unwrap()).unwrap();
            prop_assert_eq!(theirs, ours);
        }
    }

    /// rs14 encodes, ours decodes; and both encoders write identical bytes.
    #[test]
    fn rs14_to_ours(items in prop::collection::vec(("[a-zA-Z0-9.:_ é🌍-]{1,16}", arb_json()), 1..6)) {
        let rs = RsCodec::new(RsConfig::fast()).unwrap();
        let enc = FrameEncoder::new(CodecConfig::fast()).unwrap();
        let mut wire = Vec::new();
        let mut ours_wire = BytesMut::new();
        let mut sent = Vec::new();
        for (name, data) in &items {
            let text = to_js_vec(data).unwrap();
            let frame = rs.encode(&RsEvent::new(name.clone(), rs_value(&text))).unwrap();
            wire.extend_from_slice(&frame);
            enc.encode(name, Some(data), &mut ours_wire).unwrap();
            sent.push((name.clone(), text));
        }
        prop_assert_eq!(&wire[..], &ours_wire[..], "byte-identical encoders");
        prop_assert_eq!(ours_decode(CodecConfig::fast(), &wire), sent);
    }
}

#[test]
fn standard_frames_identical() {
    let rs = RsCodec::new(RsConfig::fast()).unwrap();
    let enc = FrameEncoder::new(CodecConfig::fast()).unwrap();
    for (name, data) in [
        ("message", serde_json::json!("hello")),
        ("c", serde_json::json!("a\u{c}b\u{1}\n\"\\/\u{7f}\u{2028}")),
        ("n", serde_json::json!(1e21)),
        ("n", serde_json::json!(-0.0)),
        ("z", Value::Null),
    ] {
        let mut ours = BytesMut::new();
        enc.encode(name, Some(&data), &mut ours).unwrap();
        let theirs = rs
            .encode(&RsEvent::new(name, rs_value(&to_js_vec(&data).unwrap())))
            .unwrap();
        assert_eq!(&ours[..], &theirs[..], "{name}");
    }
    // rs14's encoder for a value it builds itself from a Rust string.
    let theirs = rs.encode(&RsEvent::new("message", "hello")).unwrap();
    let mut ours = BytesMut::new();
    enc.encode("message", Some("hello"), &mut ours).unwrap();
    assert_eq!(&ours[..], &theirs[..]);
}

/// `docs/protocol.md` §1.4 rows where rs14 has a column and ours is specified the same.
#[test]
fn error_codes_agree_with_rs14() {
    let rows: &[&[u8]] = &[
        b"{\"data\":1}\x0c",
        b"{\"type\":5,\"data\":1}\x0c",
        b"null\x0c",
        b"42\x0c",
        b"[1]\x0c",
        b"not-json\x0c",
        b"\x0c\x0c",
        b"{\"type\":\"connect\",\"data\":{}}\x0c",
        b"{\"type\":\"constructor\",\"data\":{}}\x0c",
        b"{\"type\":\"\",\"data\":1}\x0c",
        b"{\"type\":\"t\",\"data\":1,\"data\":2}\x0c",
        b"{\"type\":\"a\",\"data\":1}\x0c{bad\x0c",
    ];
    for (ours_cfg, rs_cfg) in [(CodecConfig::guarded(), RsConfig::guarded())] {
        for row in rows {
            let mut rs = RsCodec::new(rs_cfg.clone()).unwrap();
            let theirs = rs.push(row).map(|_| ()).map_err(|e| e.code_str());
            let mut dec = FrameDecoder::new(ours_cfg.clone()).unwrap();
            let mut buf = BytesMut::from(*row);
            let mut out = Vec::new();
            let ours = dec
                .decode_all(&mut buf, Instant::now(), &mut out)
                .map_err(|e| e.code().as_str());
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(row));
        }
    }
    // Documented differences (`docs/protocol.md` §8 items 4–6): ours accepts a missing `data`,
    // replaces invalid UTF-8 / lone surrogates, discards partial frames at EOF.
    let mut rs = RsCodec::new(RsConfig::guarded()).unwrap();
    assert_eq!(
        rs.push(b"{\"type\":\"t\"}\x0c").unwrap_err().code_str(),
        "ERR_IPC_INVALID_MESSAGE"
    );
    let mut dec = FrameDecoder::new(CodecConfig::guarded()).unwrap();
    let mut buf = BytesMut::from(&b"{\"type\":\"t\"}\x0c"[..]);
    assert!(dec.decode(&mut buf, Instant::now()).unwrap().is_some());
}
