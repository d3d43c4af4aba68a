//! Every vector of `docs/protocol.md` §7.1–§7.5, asserted byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{feed, feed_chunks, msg, unhex, Seen};
use ipc_proto::{
    CodecConfig, ErrorCode, FrameDecoder, FrameEncoder, Inbound, RawEncoding, UdpLimits,
    UdpReassembler,
};
use serde::Serialize;
use serde_json::{json, Value};

fn encode<T: Serialize + ?Sized>(cfg: CodecConfig, event: &str, data: Option<&T>) -> Vec<u8> {
    let enc = FrameEncoder::new(cfg).unwrap();
    let mut dst = BytesMut::new();
    enc.encode(event, data, &mut dst).unwrap();
    dst.to_vec()
}

fn fast<T: Serialize + ?Sized>(event: &str, data: Option<&T>) -> Vec<u8> {
    encode(CodecConfig::fast(), event, data)
}

fn legacy<T: Serialize + ?Sized>(event: &str, data: Option<&T>) -> Vec<u8> {
    encode(
        CodecConfig::fast().with_legacy_v9_payloads(true),
        event,
        data,
    )
}

#[derive(Serialize)]
struct NodeBuffer {
    #[serde(rename = "type")]
    ty: &'static str,
    data: Vec<u8>,
}

const F1: &str = "7b2274797065223a226d657373616765222c2264617461223a2268656c6c6f227d0c";
const F2: &str = "7b2274797065223a226d657373616765222c2264617461223a7b2261223a312c2262223a5b747275652c6e756c6c5d7d7d0c";
const F3: &str = "7b2274797065223a226e222c2264617461223a34327d0c";
const F4: &str = "7b2274797065223a226e222c2264617461223a307d0c";
const F5: &str = "7b2274797065223a226e222c2264617461223a31652b32317d0c";
const F6: &str = "7b2274797065223a227a222c2264617461223a7b7d7d0c";
const F6P: &str = "7b2274797065223a227a222c2264617461223a6e756c6c7d0c";
const F7: &str = "7b2274797065223a227a222c2264617461223a7b7d7d0c";
const F8: &str = "7b2274797065223a227a222c2264617461223a7b7d7d0c";
const F8P: &str = "7b2274797065223a227a222c2264617461223a22227d0c";
const F9: &str = "7b2274797065223a227a222c2264617461223a66616c73657d0c";
const F10: &str = "7b2274797065223a2275222c2264617461223a2268c3a96c6c6f20f09f8c8d227d0c";
const F11: &str =
    "7b2274797065223a2263222c2264617461223a22615c66625c75303030315c6e5c225c5c2f227d0c";
const F12: &str = "7b2274797065223a2265222c2264617461223a7b7d7d0c";
const F12P: &str = "7b2274797065223a2265222c2264617461223a7b225f6d61784c697374656e657273223a31302c2278223a317d7d0c";
const F13: &str = "7b2274797065223a2262222c2264617461223a7b2274797065223a22427566666572222c2264617461223a5b312c322c3235355d7d7d0c";
const F14: &str = "7b2274797065223a2273222c2264617461223a22e280a8227d0c";
const F15: &str = "7b2274797065223a226d657373616765222c2264617461223a226869227d0a";

#[test]
fn s7_1_framed_encode_vectors() {
    assert_eq!(fast("message", Some("hello")), unhex(F1), "F1");
    assert_eq!(
        fast("message", Some(&json!({"a":1,"b":[true,null]}))),
        unhex(F2),
        "F2"
    );
    assert_eq!(fast("n", Some(&42)), unhex(F3), "F3");
    assert_eq!(fast("n", Some(&0)), unhex(F4), "F4");
    assert_eq!(fast("n", Some(&-0.0f64)), unhex(F4), "F4 (-0)");
    assert_eq!(fast("n", Some(&1e21f64)), unhex(F5), "F5");
    assert_eq!(legacy("z", Some(&Value::Null)), unhex(F6), "F6 (v9/v12)");
    assert_eq!(fast("z", Some(&Value::Null)), unhex(F6P), "F6'");
    assert_eq!(fast("z", Some(&f64::NAN)), unhex(F6P), "NaN -> null");
    assert_eq!(fast::<()>("z", None), unhex(F7), "F7");
    assert_eq!(legacy::<()>("z", None), unhex(F7), "F7 legacy");
    assert_eq!(legacy("z", Some("")), unhex(F8), "F8 (v9/v12)");
    assert_eq!(fast("z", Some("")), unhex(F8P), "F8'");
    assert_eq!(fast("z", Some(&false)), unhex(F9), "F9");
    assert_eq!(
        legacy("z", Some(&false)),
        unhex(F9),
        "F9 legacy keeps false"
    );
    assert_eq!(legacy("n", Some(&0)), unhex(F4), "F4 legacy keeps 0");
    assert_eq!(fast("u", Some("héllo 🌍")), unhex(F10), "F10");
    assert_eq!(fast("c", Some("a\u{c}b\u{1}\n\"\\/")), unhex(F11), "F11");
    let ml = json!({"_maxListeners":10,"x":1});
    assert_eq!(legacy("e", Some(&ml)), unhex(F12), "F12 (v9/v12)");
    assert_eq!(fast("e", Some(&ml)), unhex(F12P), "F12'");
    let buf = NodeBuffer {
        ty: "Buffer",
        data: vec![1, 2, 255],
    };
    assert_eq!(fast("b", Some(&buf)), unhex(F13), "F13");
    assert_eq!(fast("s", Some("\u{2028}")), unhex(F14), "F14");
    assert_eq!(
        encode(
            CodecConfig::fast().with_delimiter(b"\n".to_vec()),
            "message",
            Some("hi")
        ),
        unhex(F15),
        "F15"
    );
    // Every profile that frames writes the same bytes.
    assert_eq!(
        encode(CodecConfig::guarded(), "message", Some("hello")),
        unhex(F1)
    );
    assert_eq!(
        encode(CodecConfig::assured(["message"]), "message", Some("hello")),
        unhex(F1)
    );
}

#[test]
fn s7_1_decode_side() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (F1, "message", Some("\"hello\"")),
        (F2, "message", Some(r#"{"a":1,"b":[true,null]}"#)),
        (F3, "n", Some("42")),
        (F4, "n", Some("0")),
        (F5, "n", Some("1e+21")),
        (F6, "z", Some("{}")),
        (F6P, "z", Some("null")),
        (F7, "z", Some("{}")),
        (F8P, "z", Some("\"\"")),
        (F9, "z", Some("false")),
        (F10, "u", Some("\"héllo 🌍\"")),
        (F11, "c", Some(r#""a\fb\u0001\n\"\\/""#)),
        (F12P, "e", Some(r#"{"_maxListeners":10,"x":1}"#)),
        (F13, "b", Some(r#"{"type":"Buffer","data":[1,2,255]}"#)),
        (F14, "s", Some("\"\u{2028}\"")),
    ];
    for (hex, event, data) in cases {
        for cfg in [CodecConfig::fast(), CodecConfig::guarded()] {
            assert_eq!(feed(cfg, &[&unhex(hex)]), vec![msg(event, *data)], "{hex}");
        }
    }
    let got = feed(
        CodecConfig::fast().with_delimiter(b"\n".to_vec()),
        &[&unhex(F15)],
    );
    assert_eq!(got, vec![msg("message", Some("\"hi\""))]);
    // Typed access gives back the values that were encoded.
    let mut dec = FrameDecoder::new(CodecConfig::fast()).unwrap();
    let mut buf = BytesMut::from(&unhex(F11)[..]);
    let m = dec
        .decode(&mut buf, Instant::now())
        .unwrap()
        .unwrap()
        .into_message()
        .unwrap();
    assert_eq!(m.data::<String>().unwrap(), "a\u{c}b\u{1}\n\"\\/");
    let mut buf = BytesMut::from(&unhex(F5)[..]);
    let m = dec
        .decode(&mut buf, Instant::now())
        .unwrap()
        .unwrap()
        .into_message()
        .unwrap();
    assert_eq!(m.data::<f64>().unwrap(), 1e21);
}

#[test]
fn s7_2_raw_vectors() {
    let enc = FrameEncoder::new(CodecConfig::raw()).unwrap();
    let raw = |bytes: &[u8]| {
        let mut d = BytesMut::new();
        enc.encode_raw(bytes, &mut d).unwrap();
        d.to_vec()
    };
    assert_eq!(raw(&[0x05, 0x6d, 0x5c]), unhex("056d5c"), "R1");
    assert_eq!(
        raw(&RawEncoding::Utf8.encode_str("hello")),
        unhex("68656c6c6f"),
        "R2"
    );
    assert_eq!(
        raw(&RawEncoding::Utf16le.encode_str("hi")),
        unhex("68006900"),
        "R3"
    );
    assert_eq!(
        raw(&RawEncoding::Hex.encode_str("0a0b")),
        unhex("0a0b"),
        "R4"
    );
    assert!(RawEncoding::Hex.encode_str("hello").is_empty(), "R4 note");
    assert_eq!(
        raw(&RawEncoding::Base64.encode_str("aGVsbG8=")),
        unhex("68656c6c6f"),
        "R5"
    );
    assert_eq!(
        raw(&RawEncoding::bytes_from_numbers(&[10, 20, 30])),
        unhex("0a141e"),
        "R6"
    );
    assert_eq!(
        raw(&RawEncoding::Ascii.encode_str("é€")),
        unhex("e9ac"),
        "R7"
    );
    // R8: delivered unchanged by a raw receiver.
    let mut dec = FrameDecoder::new(CodecConfig::raw()).unwrap();
    let mut buf = BytesMut::from(&unhex("fffe0080")[..]);
    let item = dec.decode(&mut buf, Instant::now()).unwrap().unwrap();
    assert_eq!(item.as_raw().unwrap().as_ref(), unhex("fffe0080"), "R8");
    assert!(dec.decode(&mut buf, Instant::now()).unwrap().is_none());
    // Raw encoder refuses events, framed encoders refuse raw bytes.
    let mut d = BytesMut::new();
    assert_eq!(
        enc.encode::<()>("x", None, &mut d).unwrap_err().code(),
        ErrorCode::WrongProfile
    );
    let fast = FrameEncoder::new(CodecConfig::fast()).unwrap();
    assert_eq!(
        fast.encode_raw(b"x", &mut d).unwrap_err().code(),
        ErrorCode::WrongProfile
    );
}

const A1: &[u8] = b"{\"type\":\"a\",\"data\":1}\x0c";
const B2: &[u8] = b"{\"type\":\"b\",\"data\":2}\x0c";

#[test]
fn s7_3_decode_vectors_both_profiles() {
    use ErrorCode::*;
    for (profile, cfg) in [
        ("fast", CodecConfig::fast()),
        ("guarded", CodecConfig::guarded()),
    ] {
        let guarded = profile == "guarded";
        let c = || cfg.clone();
        // D1
        let one = [A1, B2].concat();
        assert_eq!(
            feed(c(), &[&one]),
            vec![msg("a", Some("1")), msg("b", Some("2"))],
            "D1 {profile}"
        );
        // D2: per chunk.
        let per = feed_chunks(
            c(),
            &[
                b"{\"type\":\"a\",\"da",
                b"ta\":1}\x0c{\"ty",
                b"pe\":\"b\",\"data\":2}\x0c",
            ],
            Instant::now(),
        );
        assert_eq!(
            per,
            vec![vec![], vec![msg("a", Some("1"))], vec![msg("b", Some("2"))]],
            "D2 {profile}"
        );
        // D3
        assert_eq!(
            feed(c(), &[b"{\"type\":\"t\"}\x0c"]),
            vec![msg("t", None)],
            "D3 {profile}"
        );
        // D4–D7
        assert_eq!(
            feed(c(), &[b"{\"data\":1}\x0c"]),
            vec![Seen::Err(InvalidEvent)],
            "D4 {profile}"
        );
        assert_eq!(
            feed(c(), &[b"null\x0c"]),
            vec![Seen::Err(InvalidMessage)],
            "D5 {profile}"
        );
        assert_eq!(
            feed(c(), &[b"not-json\x0c"]),
            vec![Seen::Err(InvalidJson)],
            "D6 {profile}"
        );
        assert_eq!(
            feed(c(), &[b"\x0c\x0c"]),
            vec![Seen::Err(InvalidJson)],
            "D7 {profile}"
        );
        // D8, D9
        let d8 = feed(c(), &[b"{\"type\":\"connect\",\"data\":{}}\x0c"]);
        let d9 = feed(c(), &[b"{\"type\":\"constructor\",\"data\":{}}\x0c"]);
        if guarded {
            assert_eq!(d8, vec![Seen::Err(ReservedEvent)], "D8 guarded");
            assert_eq!(d9, vec![Seen::Err(InvalidEvent)], "D9 guarded");
        } else {
            assert_eq!(d8, vec![msg("connect", Some("{}"))], "D8 fast");
            assert_eq!(d9, vec![msg("constructor", Some("{}"))], "D9 fast");
        }
        // D10: 64 KiB reads; guarded fails on the read that takes the
        // remainder past 1 MiB, fast keeps buffering.
        let mut d10 = b"{\"type\":\"x\",\"data\":\"".to_vec();
        d10.extend(std::iter::repeat_n(b'a', 1_048_600));
        let chunks: Vec<&[u8]> = d10.chunks(64 * 1024).collect();
        let per = feed_chunks(c(), &chunks, Instant::now());
        if guarded {
            let mut total = 0;
            let expect_at = chunks
                .iter()
                .position(|ch| {
                    total += ch.len();
                    total > 1_048_576
                })
                .unwrap();
            assert_eq!(
                per.len(),
                expect_at + 1,
                "D10 guarded: error on the crossing read"
            );
            assert_eq!(
                per.last().unwrap(),
                &vec![Seen::Err(FrameTooLarge)],
                "D10 guarded"
            );
        } else {
            assert_eq!(per.len(), chunks.len());
            assert!(per.iter().all(Vec::is_empty), "D10 fast: buffered");
        }
        // D11: silence for 30 s.
        let t0 = Instant::now();
        let mut dec = FrameDecoder::new(c()).unwrap();
        let mut buf = BytesMut::from(&b"{\"type\":\"x\""[..]);
        assert!(dec.decode(&mut buf, t0).unwrap().is_none());
        let t30 = t0 + Duration::from_secs(30);
        if guarded {
            assert_eq!(dec.deadline(), Some(t30), "D11 deadline");
            dec.check_timeout(t30 - Duration::from_millis(1)).unwrap();
            assert_eq!(
                dec.decode(&mut buf, t30).unwrap_err().code(),
                MessageTimeout,
                "D11 guarded"
            );
            assert!(buf.is_empty() && dec.deadline().is_none());
            // check_timeout reports the same thing without a read.
            let mut dec = FrameDecoder::new(c()).unwrap();
            let mut buf = BytesMut::from(&b"{\"type\":\"x\""[..]);
            assert!(dec.decode(&mut buf, t0).unwrap().is_none());
            assert_eq!(dec.check_timeout(t30).unwrap_err().code(), MessageTimeout);
        } else {
            assert_eq!(dec.deadline(), None, "D11 fast: no timer");
            dec.check_timeout(t30 + Duration::from_secs(3600)).unwrap();
            assert!(
                dec.decode(&mut buf, t30).unwrap().is_none(),
                "D11 fast: buffered"
            );
        }
        // D12: EOF inside a frame.
        let mut dec = FrameDecoder::new(c()).unwrap();
        let mut buf = BytesMut::from(&b"{\"type\":\"x\",\"data\":1}"[..]);
        assert!(dec.decode(&mut buf, t0).unwrap().is_none());
        dec.finish(&mut buf).unwrap();
        assert!(buf.is_empty(), "D12 discarded");
        let mut dec = FrameDecoder::new(c().with_strict_eof(true)).unwrap();
        let mut buf = BytesMut::from(&b"{\"type\":\"x\",\"data\":1}"[..]);
        assert!(dec.decode(&mut buf, t0).unwrap().is_none());
        assert_eq!(
            dec.finish(&mut buf).unwrap_err().code(),
            IncompleteFrame,
            "D12 strict_eof"
        );
        // D13
        let d13 = [A1, b"{bad\x0c"].concat();
        assert_eq!(
            feed(c(), &[&d13]),
            vec![msg("a", Some("1")), Seen::Err(InvalidJson)],
            "D13 {profile}"
        );
        // D14
        assert_eq!(
            feed(c(), &[b"{\"type\":\"t\",\"data\":1,\"data\":2}\x0c"]),
            vec![msg("t", Some("2"))],
            "D14 {profile}"
        );
    }
}

#[test]
fn s7_4_udp_vectors() {
    let f1 = unhex(F1);
    let peer: std::net::SocketAddr = "127.0.0.1:8000".parse().unwrap();
    let now = Instant::now();
    // Outbound: one datagram = exactly F1. `docs/protocol.md` §7.4 says "35 bytes", but
    // F1's own hex (and the text) is 34 bytes: 33 of JSON + the delimiter.
    assert_eq!(f1.len(), 34);
    assert_eq!(fast("message", Some("hello")), f1);
    for cfg in [CodecConfig::fast(), CodecConfig::guarded()] {
        let mut udp = UdpReassembler::new(cfg, UdpLimits::default()).unwrap();
        // F3 + F4 in one datagram.
        let mut out = Vec::new();
        udp.push(peer, &[unhex(F3), unhex(F4)].concat(), now, &mut out)
            .unwrap();
        let got: Vec<_> = out
            .iter()
            .map(|i| i.as_message().unwrap().data_value())
            .collect();
        assert_eq!(got, vec![json!(42), json!(0)]);
        // F1 split after 10 bytes.
        out.clear();
        udp.push(peer, &f1[..10], now, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(udp.peers(), 1);
        udp.push(peer, &f1[10..], now, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].as_message().unwrap().data::<String>().unwrap(),
            "hello"
        );
        assert_eq!(udp.peers(), 0);
        // Fragment without delimiter, then a whole frame: joined → invalid JSON, reset.
        out.clear();
        udp.push(peer, b"{\"type\":\"x\",\"data\":1}", now, &mut out)
            .unwrap();
        let e = udp
            .push(peer, b"{\"type\":\"x\",\"data\":2}\x0c", now, &mut out)
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidJson);
        assert!(out.is_empty());
        assert_eq!(udp.peers(), 0);
        // Later frames from the peer work.
        udp.push(peer, b"{\"type\":\"x\",\"data\":3}\x0c", now, &mut out)
            .unwrap();
        assert_eq!(out[0].as_message().unwrap().data_value(), json!(3));
    }
    // Raw: datagram 056d5c, and an empty datagram.
    let mut udp = UdpReassembler::new(CodecConfig::raw(), UdpLimits::default()).unwrap();
    let mut out = Vec::new();
    udp.push(peer, &unhex("056d5c"), now, &mut out).unwrap();
    udp.push(peer, b"", now, &mut out).unwrap();
    assert_eq!(
        out,
        vec![
            Inbound::Raw(unhex("056d5c").into()),
            Inbound::Raw(bytes::Bytes::new())
        ]
    );
}

#[test]
fn s7_5_extension_vectors() {
    #[derive(Serialize)]
    struct Req<'a> {
        n: &'a str,
        d: &'a str,
    }
    #[derive(Serialize)]
    struct Resp<'a> {
        n: &'a str,
    }
    assert_eq!(
        fast("ipcx.request", Some(&Req { n: "k3x9", d: "what time is it?" })),
        unhex("7b2274797065223a22697063782e72657175657374222c2264617461223a7b226e223a226b337839222c2264223a22776861742074696d652069732069743f227d7d0c")
    );
    assert_eq!(
        fast("ipcx.response", Some(&Resp { n: "k3x9" })),
        unhex("7b2274797065223a22697063782e726573706f6e7365222c2264617461223a7b226e223a226b337839227d7d0c")
    );
    assert_eq!(
        fast("event", Some("hello from server")),
        b"{\"type\":\"event\",\"data\":\"hello from server\"}\x0c".to_vec()
    );
    // They pass guarded checks.
    encode(
        CodecConfig::guarded(),
        "ipcx.request",
        Some(&json!({"n":"k3x9"})),
    );
}
