//! `docs/protocol.md` §1.4 decode table (rows for fast/guarded/assured), §4.1 limits,
//! §3.4 outbound name rules, strict flags, delimiters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{feed, feed_chunks, msg, Seen};
use ipc_proto::{CodecConfig, ErrorCode, FrameDecoder, FrameEncoder, Profile};

use ErrorCode::*;

fn profiles() -> Vec<(Profile, CodecConfig)> {
    vec![
        (Profile::Fast, CodecConfig::fast()),
        (Profile::Guarded, CodecConfig::guarded()),
        (
            Profile::Assured,
            CodecConfig::assured(["t", "x", "", "connect", "constructor", "a"]),
        ),
    ]
}

fn one(cfg: &CodecConfig, frame: &[u8]) -> Seen {
    let mut wire = frame.to_vec();
    wire.extend_from_slice(&cfg.delimiter);
    let got = feed(cfg.clone(), &[&wire]);
    assert_eq!(got.len(), 1, "{got:?}");
    got.into_iter().next().unwrap()
}

#[test]
fn table_1_4_rows() {
    for (p, cfg) in profiles() {
        let guarded = p != Profile::Fast;
        // {"type":"t","data":X}
        assert_eq!(
            one(&cfg, br#"{"type":"t","data":[1,{"k":"v"}]}"#),
            msg("t", Some(r#"[1,{"k":"v"}]"#))
        );
        // no data
        assert_eq!(one(&cfg, br#"{"type":"t"}"#), msg("t", None));
        // no type / non-string type
        assert_eq!(one(&cfg, br#"{"data":1}"#), Seen::Err(InvalidEvent));
        assert_eq!(
            one(&cfg, br#"{"type":5,"data":1}"#),
            Seen::Err(InvalidEvent)
        );
        assert_eq!(
            one(&cfg, br#"{"type":["t"],"data":1}"#),
            Seen::Err(InvalidEvent)
        );
        // non-object roots
        for root in ["null", "42", "\"s\"", "[1]", "true"] {
            assert_eq!(
                one(&cfg, root.as_bytes()),
                Seen::Err(InvalidMessage),
                "{p} {root}"
            );
        }
        // invalid JSON / empty frame
        assert_eq!(one(&cfg, b"not-json"), Seen::Err(InvalidJson));
        assert_eq!(one(&cfg, b""), Seen::Err(InvalidJson));
        // empty-string type
        let empty = one(&cfg, br#"{"type":"","data":1}"#);
        // lifecycle name
        let life = one(&cfg, br#"{"type":"connect","data":{}}"#);
        // prototype names
        let proto = one(&cfg, br#"{"type":"__proto__","data":{}}"#);
        if guarded {
            assert_eq!(empty, Seen::Err(InvalidEvent), "{p}");
            assert_eq!(life, Seen::Err(ReservedEvent), "{p}");
            assert_eq!(proto, Seen::Err(InvalidEvent), "{p}");
        } else {
            assert_eq!(empty, msg("", Some("1")));
            assert_eq!(life, msg("connect", Some("{}")));
            assert_eq!(proto, msg("__proto__", Some("{}")));
        }
        // duplicate keys: last wins (type too)
        assert_eq!(
            one(&cfg, br#"{"type":"q","data":1,"type":"t","data":2}"#),
            msg("t", Some("2"))
        );
        // other members are ignored, order does not matter, whitespace allowed
        assert_eq!(
            one(&cfg, b" {\"id\":7, \"data\" : true ,\"type\":\"t\"}\r\n"),
            msg("t", Some("true"))
        );
        // escaped name
        assert_eq!(
            one(&cfg, br#"{"type":"\u0074","data":null}"#),
            msg("t", Some("null"))
        );
    }
}

#[test]
fn invalid_utf8_and_lone_surrogates() {
    for (_, cfg) in profiles() {
        // Invalid UTF-8 inside a frame → U+FFFD by default.
        let Seen::Msg(ev, Some(data)) = one(&cfg, b"{\"type\":\"t\",\"data\":\"a\xff\xfeb\"}")
        else {
            panic!()
        };
        assert_eq!(ev, "t");
        assert_eq!(data, "\"a\u{fffd}\u{fffd}b\"");
        assert_eq!(
            one(
                &cfg.clone().with_strict_utf8(true),
                b"{\"type\":\"t\",\"data\":\"a\xffb\"}"
            ),
            Seen::Err(InvalidJson)
        );
        // Lone surrogate escape → U+FFFD by default, rejected with strict_json.
        let mut dec = FrameDecoder::new(cfg.clone()).unwrap();
        let mut buf =
            BytesMut::from(&b"{\"type\":\"t\",\"data\":\"x\\ud800y\\udbff\\udfffz\"}\x0c"[..]);
        let m = dec
            .decode(&mut buf, Instant::now())
            .unwrap()
            .unwrap()
            .into_message()
            .unwrap();
        assert_eq!(m.data::<String>().unwrap(), "x\u{fffd}y\u{10ffff}z");
        assert_eq!(
            one(
                &cfg.clone().with_strict_json(true),
                br#"{"type":"t","data":"\ud800"}"#
            ),
            Seen::Err(InvalidJson)
        );
        // strict_json keeps valid pairs.
        assert_eq!(
            one(
                &cfg.clone().with_strict_json(true),
                br#"{"type":"t","data":"\ud83c\udf0d"}"#
            ),
            msg("t", Some(r#""\ud83c\udf0d""#))
        );
    }
}

#[test]
fn nesting_depth() {
    let frame = |n: usize| {
        format!(
            r#"{{"type":"t","data":{}0{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    for (_, cfg) in profiles() {
        // envelope = level 1, so data may nest 255 deep by default.
        let Seen::Msg(_, Some(_)) = one(&cfg, frame(255).as_bytes()) else {
            panic!()
        };
        assert_eq!(one(&cfg, frame(256).as_bytes()), Seen::Err(InvalidJson));
        assert_eq!(one(&cfg, frame(100_000).as_bytes()), Seen::Err(InvalidJson));
        let deep = cfg.clone().with_max_json_depth(1024);
        let mut dec = FrameDecoder::new(deep).unwrap();
        let mut buf = BytesMut::from(frame(1000).as_bytes());
        buf.extend_from_slice(b"\x0c");
        let m = dec
            .decode(&mut buf, Instant::now())
            .unwrap()
            .unwrap()
            .into_message()
            .unwrap();
        // Typed access works beyond serde_json's own 128 limit.
        let v: serde_json::Value = m.data().unwrap();
        assert!(v.is_array());
    }
}

#[test]
fn limit_max_message_size() {
    let cfg = CodecConfig::guarded().with_max_message_size(64);
    // Frame of exactly 64 bytes passes, 65 fails (inbound).
    let exact = format!(r#"{{"type":"t","data":"{}"}}"#, "a".repeat(64 - 22));
    assert_eq!(exact.len(), 64);
    assert!(matches!(one(&cfg, exact.as_bytes()), Seen::Msg(..)));
    let over = format!(r#"{{"type":"t","data":"{}"}}"#, "a".repeat(65 - 22));
    assert_eq!(one(&cfg, over.as_bytes()), Seen::Err(FrameTooLarge));
    // Outbound: same limit, nothing written.
    let enc = FrameEncoder::new(cfg.clone()).unwrap();
    let mut dst = BytesMut::new();
    enc.encode("t", Some(&"a".repeat(64 - 22)), &mut dst)
        .unwrap();
    assert_eq!(dst.len(), 65);
    let e = enc
        .encode("t", Some(&"a".repeat(65 - 22)), &mut dst)
        .unwrap_err();
    assert_eq!(e.code(), FrameTooLarge);
    assert_eq!(dst.len(), 65);
    // A partial frame of exactly 64 bytes is kept; 65 fails at once.
    let per = feed_chunks(cfg.clone(), &[&[b'x'; 64]], Instant::now());
    assert_eq!(per, vec![vec![]]);
    let per = feed_chunks(cfg.clone(), &[&[b'x'; 60], &[b'x'; 5]], Instant::now());
    assert_eq!(per, vec![vec![], vec![Seen::Err(FrameTooLarge)]]);
    // Multi-byte delimiter: a full-size frame plus half a delimiter is not too large.
    let cfg2 = cfg.clone().with_delimiter(b"\r\n".to_vec());
    let chunks: [&[u8]; 2] = [&[exact.as_bytes(), b"\r"].concat(), b"\n"];
    let per = feed_chunks(cfg2, &chunks, Instant::now());
    assert_eq!(per[0], vec![]);
    assert!(matches!(per[1][0], Seen::Msg(..)));
    // Fast does not apply max_message_size but does bound partial frames.
    let fast = CodecConfig::fast()
        .with_max_message_size(64)
        .with_max_partial_bytes(1000);
    assert!(matches!(one(&fast, over.as_bytes()), Seen::Msg(..)));
    let per = feed_chunks(fast.clone(), &[&[b'x'; 1000], b"x"], Instant::now());
    assert_eq!(per, vec![vec![], vec![Seen::Err(FrameTooLarge)]]);
    // ... and complete frames get the same cap, whatever the chunking.
    let big = format!(r#"{{"type":"t","data":"{}"}}"#, "a".repeat(1001 - 22));
    assert_eq!(big.len(), 1001);
    assert_eq!(one(&fast, big.as_bytes()), Seen::Err(FrameTooLarge));
}

#[test]
fn limit_event_name_length_in_utf16_units() {
    let cfg = CodecConfig::guarded().with_max_event_name_length(4);
    let frame = |name: &str| format!(r#"{{"type":"{name}","data":1}}"#);
    assert!(matches!(one(&cfg, frame("abcd").as_bytes()), Seen::Msg(..)));
    assert!(matches!(one(&cfg, frame("éééé").as_bytes()), Seen::Msg(..)));
    assert_eq!(
        one(&cfg, frame("abcde").as_bytes()),
        Seen::Err(EventTooLarge)
    );
    // One emoji = two UTF-16 units.
    assert!(matches!(one(&cfg, frame("🌍🌍").as_bytes()), Seen::Msg(..)));
    assert_eq!(
        one(&cfg, frame("🌍🌍a").as_bytes()),
        Seen::Err(EventTooLarge)
    );
    let enc = FrameEncoder::new(cfg).unwrap();
    let mut dst = BytesMut::new();
    assert_eq!(
        enc.encode::<()>("🌍🌍a", None, &mut dst)
            .unwrap_err()
            .code(),
        EventTooLarge
    );
    assert!(dst.is_empty());
    // Default 256.
    let cfg = CodecConfig::guarded();
    assert!(matches!(
        one(&cfg, frame(&"n".repeat(256)).as_bytes()),
        Seen::Msg(..)
    ));
    assert_eq!(
        one(&cfg, frame(&"n".repeat(257)).as_bytes()),
        Seen::Err(EventTooLarge)
    );
}

#[test]
fn limit_message_timeout() {
    let t0 = Instant::now();
    let cfg = CodecConfig::guarded().with_message_timeout(Some(Duration::from_secs(5)));
    let mut dec = FrameDecoder::new(cfg.clone()).unwrap();
    let mut buf = BytesMut::from(&b"{\"type\":\"a\",\"data\":1}\x0c{\"ty"[..]);
    assert!(dec.decode(&mut buf, t0).unwrap().is_some());
    // The partial frame appeared at t0.
    assert!(dec.decode(&mut buf, t0).unwrap().is_none());
    assert_eq!(dec.deadline(), Some(t0 + Duration::from_secs(5)));
    // Later reads of the same frame do not restart the timer.
    buf.extend_from_slice(b"pe\"");
    assert!(dec
        .decode(&mut buf, t0 + Duration::from_secs(3))
        .unwrap()
        .is_none());
    assert_eq!(dec.deadline(), Some(t0 + Duration::from_secs(5)));
    // Completing it clears the timer; a new partial frame restarts it.
    buf.extend_from_slice(b":\"b\"}\x0c{");
    let t4 = t0 + Duration::from_secs(4);
    assert!(dec.decode(&mut buf, t4).unwrap().is_some());
    assert!(dec.decode(&mut buf, t4).unwrap().is_none());
    assert_eq!(dec.deadline(), Some(t4 + Duration::from_secs(5)));
    buf.extend_from_slice(b"\"type\":\"c\"}\x0c");
    assert!(dec.decode(&mut buf, t4).unwrap().is_some());
    assert_eq!(dec.deadline(), None);
    assert!(buf.is_empty());
    // Zero or None disables.
    for t in [None, Some(Duration::ZERO)] {
        let mut dec = FrameDecoder::new(cfg.clone().with_message_timeout(t)).unwrap();
        let mut buf = BytesMut::from(&b"{"[..]);
        assert!(dec.decode(&mut buf, t0).unwrap().is_none());
        assert_eq!(dec.deadline(), None);
    }
}

#[test]
fn outbound_name_rules() {
    let mut dst = BytesMut::new();
    let enc = |cfg: CodecConfig| FrameEncoder::new(cfg).unwrap();
    // Unsafe names: refused everywhere unless allow_unsafe_names (fast).
    for cfg in [
        CodecConfig::fast(),
        CodecConfig::guarded(),
        CodecConfig::assured(["toString"]),
    ] {
        let e = enc(cfg)
            .encode::<()>("toString", None, &mut dst)
            .unwrap_err();
        assert_eq!(e.code(), InvalidEvent);
    }
    enc(CodecConfig::fast().with_allow_unsafe_names(true))
        .encode::<()>("toString", None, &mut dst)
        .unwrap();
    assert_eq!(&dst[..], b"{\"type\":\"toString\",\"data\":{}}\x0c");
    dst.clear();
    // Reserved: fast sends, guarded refuses unless allowed, assured always refuses.
    enc(CodecConfig::fast())
        .encode::<()>("error", None, &mut dst)
        .unwrap();
    dst.clear();
    let e = enc(CodecConfig::guarded())
        .encode::<()>("error", None, &mut dst)
        .unwrap_err();
    assert_eq!(e.code(), ReservedEvent);
    enc(CodecConfig::guarded().with_allow_reserved_events(true))
        .encode::<()>("error", None, &mut dst)
        .unwrap();
    dst.clear();
    let assured = CodecConfig::assured(["error", "ok"]).with_allow_reserved_events(true);
    let e = enc(assured.clone())
        .encode::<()>("error", None, &mut dst)
        .unwrap_err();
    assert_eq!(e.code(), ReservedEvent);
    // Allow-list, and the error does not echo the name.
    let e = enc(assured.clone())
        .encode::<()>("secret-name", None, &mut dst)
        .unwrap_err();
    assert_eq!(e.code(), EventNotAllowed);
    assert!(!e.to_string().contains("secret-name"));
    enc(assured.clone())
        .encode::<()>("ok", None, &mut dst)
        .unwrap();
    dst.clear();
    // Inbound allow-list.
    assert_eq!(
        one(&assured, br#"{"type":"secret-name","data":1}"#),
        Seen::Err(EventNotAllowed)
    );
    assert_eq!(
        one(&assured, br#"{"type":"error","data":1}"#),
        Seen::Err(ReservedEvent)
    );
    // Guarded inbound reserved with allow_reserved_events.
    let g = CodecConfig::guarded().with_allow_reserved_events(true);
    assert_eq!(
        one(&g, br#"{"type":"error","data":1}"#),
        msg("error", Some("1"))
    );
    // Empty names: fast sends, guarded refuses.
    enc(CodecConfig::fast())
        .encode::<()>("", None, &mut dst)
        .unwrap();
    dst.clear();
    assert_eq!(
        enc(CodecConfig::guarded())
            .encode::<()>("", None, &mut dst)
            .unwrap_err()
            .code(),
        InvalidEvent
    );
    // Names needing escapes are written as JSON strings and decode back.
    enc(CodecConfig::fast())
        .encode::<()>("a\"b\u{1}", None, &mut dst)
        .unwrap();
    assert_eq!(&dst[..], b"{\"type\":\"a\\\"b\\u0001\",\"data\":{}}\x0c");
    let got = feed(CodecConfig::fast(), &[&dst]);
    assert_eq!(got, vec![msg("a\"b\u{1}", Some("{}"))]);
}

#[test]
fn delimiters() {
    // Multi-byte delimiter split across reads at every position.
    let cfg = CodecConfig::fast().with_delimiter("<END>".as_bytes().to_vec());
    let wire = b"{\"type\":\"a\",\"data\":\"x<EN\"}<END>{\"type\":\"b\"}<END>".to_vec();
    for cut in 0..=wire.len() {
        let (l, r) = wire.split_at(cut);
        let got = feed(cfg.clone(), &[l, r]);
        assert_eq!(
            got,
            vec![msg("a", Some("\"x<EN\"")), msg("b", None)],
            "cut {cut}"
        );
    }
    // A printable delimiter inside string content breaks framing (`docs/protocol.md` §1.2).
    let cfg = CodecConfig::fast().with_delimiter(b"|".to_vec());
    let got = feed(cfg, &[b"{\"type\":\"a\",\"data\":\"x|y\"}|"]);
    assert_eq!(got, vec![Seen::Err(InvalidJson)]);
    // Multi-byte UTF-8 delimiter.
    let cfg = CodecConfig::fast().with_delimiter("§".as_bytes().to_vec());
    let got = feed(cfg, &["{\"type\":\"a\"}§{\"type\":\"b\"}§".as_bytes()]);
    assert_eq!(got, vec![msg("a", None), msg("b", None)]);
}

#[test]
fn scan_position_is_remembered() {
    // Byte-at-a-time feeding of a large frame is linear: each call only
    // scans new bytes. Checked functionally: the decoder finds the
    // delimiter exactly once, after the last byte.
    let mut dec = FrameDecoder::new(CodecConfig::fast()).unwrap();
    let mut frame = b"{\"type\":\"a\",\"data\":\"".to_vec();
    frame.extend(std::iter::repeat_n(b'z', 10_000));
    frame.extend_from_slice(b"\"}\x0c");
    let mut buf = BytesMut::new();
    let now = Instant::now();
    let mut got = 0;
    for b in &frame {
        buf.extend_from_slice(&[*b]);
        while dec.decode(&mut buf, now).unwrap().is_some() {
            got += 1;
        }
    }
    assert_eq!(got, 1);
    assert!(buf.is_empty());
}

#[test]
fn zero_copy_frames_share_the_read_buffer() {
    let mut dec = FrameDecoder::new(CodecConfig::fast()).unwrap();
    let mut buf =
        BytesMut::from(&b"{\"type\":\"a\",\"data\":1}\x0c{\"type\":\"b\",\"data\":2}\x0c"[..]);
    let base = buf.as_ptr() as usize;
    let m1 = dec
        .decode(&mut buf, Instant::now())
        .unwrap()
        .unwrap()
        .into_message()
        .unwrap();
    let m2 = dec
        .decode(&mut buf, Instant::now())
        .unwrap()
        .unwrap()
        .into_message()
        .unwrap();
    assert_eq!(m1.frame().as_ptr() as usize, base);
    assert_eq!(m2.frame().as_ptr() as usize, base + 22);
    assert_eq!(&m2.frame()[..], b"{\"type\":\"b\",\"data\":2}");
}

#[test]
fn error_state_and_reuse() {
    let mut dec = FrameDecoder::new(CodecConfig::guarded()).unwrap();
    let mut buf = BytesMut::from(&b"{bad\x0c{\"type\":\"a\"}\x0c{\"par"[..]);
    let e = dec.decode(&mut buf, Instant::now()).unwrap_err();
    assert_eq!(e.code(), InvalidJson);
    assert!(buf.is_empty(), "bytes after the bad frame are discarded");
    assert_eq!(dec.deadline(), None);
    // Reusable on a fresh buffer.
    buf.extend_from_slice(b"{\"type\":\"a\"}\x0c");
    assert!(dec.decode(&mut buf, Instant::now()).unwrap().is_some());
    // Absent data: typed access sees null.
    let m = feed(CodecConfig::fast(), &[b"{\"type\":\"a\"}\x0c"]);
    assert_eq!(m, vec![msg("a", None)]);
}

#[test]
fn message_accessors() {
    let mut dec = FrameDecoder::new(CodecConfig::fast()).unwrap();
    let mut buf =
        BytesMut::from(&b"{\"type\":\"a\"}\x0c{\"type\":\"b\",\"data\":{\"k\":[1,2]}}\x0c"[..]);
    let now = Instant::now();
    let a = dec
        .decode(&mut buf, now)
        .unwrap()
        .unwrap()
        .into_message()
        .unwrap();
    assert!(!a.has_data());
    assert_eq!(a.data::<Option<u8>>().unwrap(), None);
    assert_eq!(a.data_value(), serde_json::Value::Null);
    #[derive(serde::Deserialize, PartialEq, Debug)]
    struct K {
        k: Vec<u8>,
    }
    let b = dec
        .decode(&mut buf, now)
        .unwrap()
        .unwrap()
        .into_message()
        .unwrap();
    assert_eq!(b.data::<K>().unwrap(), K { k: vec![1, 2] });
    assert!(b.data::<String>().is_err());
    assert_eq!(&b.frame()[..], b"{\"type\":\"b\",\"data\":{\"k\":[1,2]}}");
    assert_eq!(
        format!("{b:?}"),
        r#"Message { event: "b", data: Some("{\"k\":[1,2]}") }"#
    );
}

/// A run of messages with the same name reuses the accepted name; the rules
/// still apply to every name that differs, and an escaped spelling of the
/// same name decodes to the same text.
#[test]
fn repeated_names_keep_their_rules() {
    let mut dec = FrameDecoder::new(CodecConfig::guarded()).unwrap();
    let now = Instant::now();
    let mut names = Vec::new();
    let mut buf =
        BytesMut::from(&b"{\"type\":\"a\",\"data\":1}\x0c{\"type\":\"a\",\"data\":2}\x0c{\"type\":\"a\\u0062\",\"data\":3}\x0c{\"type\":\"ab\",\"data\":4}\x0c"[..]);
    while let Some(item) = dec.decode(&mut buf, now).unwrap() {
        let m = item.into_message().unwrap();
        names.push((m.event().to_owned(), m.data::<i32>().unwrap()));
    }
    assert_eq!(
        names,
        vec![
            ("a".to_owned(), 1),
            ("a".to_owned(), 2),
            ("ab".to_owned(), 3),
            ("ab".to_owned(), 4)
        ]
    );
    // After accepted names, an empty or reserved one is still refused.
    for (bad, code) in [
        (&b"{\"type\":\"\",\"data\":1}\x0c"[..], InvalidEvent),
        (b"{\"type\":\"connect\",\"data\":1}\x0c", ReservedEvent),
    ] {
        let mut buf = BytesMut::from(&b"{\"type\":\"x\",\"data\":0}\x0c"[..]);
        assert!(dec.decode(&mut buf, now).unwrap().is_some());
        buf.extend_from_slice(bad);
        let err = dec.decode(&mut buf, now).unwrap_err();
        assert_eq!(err.code(), code, "{}", String::from_utf8_lossy(bad));
    }
}
