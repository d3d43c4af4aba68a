//! The `ipcx` extension's message shapes. The input is a stream for a fast
//! decoder; every decoded message is tried as each shape (whatever its
//! name). Invariants: no panic; a malformed body is
//! `ERR_IPC_INVALID_MESSAGE`; `pong_for` answers exactly the messages that
//! decode as a call, echoing `n` and the raw `d`; every decoded shape
//! re-encodes to a frame that decodes to the same value (raw `d`/`message`
//! texts byte for byte; floats in `Value`s within 2 ULPs, see `same_json`);
//! the name predicates and `validate_topic` agree with their rules.
#![no_main]

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ipc_proto::ext::{
    self, names, CallIn, End, Hello, PubAck, PubIn, PubOut, ResponseIn, TopicsAck, TopicsIn,
    TopicsOut, Welcome,
};
use ipc_proto::{CodecConfig, ErrorCode, FrameDecoder, FrameEncoder, Inbound, Message};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use serde_json::Value;

fn config() -> CodecConfig {
    CodecConfig::fast().with_max_json_depth(64)
}

/// Decodes one frame we encoded: it must be exactly one message named `event`.
fn redecode(frame: &Bytes, event: &str) -> Message {
    let mut dec = FrameDecoder::new(config()).unwrap();
    let mut buf = BytesMut::from(&frame[..]);
    let t0 = Instant::now();
    let m = match dec.decode(&mut buf, t0) {
        Ok(Some(Inbound::Message(m))) => m,
        other => panic!("re-encoded {event} frame {frame:?} decoded as {other:?}"),
    };
    assert!(buf.is_empty(), "re-encoded {event} frame left {buf:?}");
    assert_eq!(m.event(), event);
    m
}

/// `decode::<T>` of a frame we encoded: must succeed.
fn shape<T: serde::de::DeserializeOwned>(frame: &Bytes, event: &str) -> T {
    match ext::decode::<T>(&redecode(frame, event)) {
        Ok(v) => v,
        Err(e) => panic!("re-encoded {event} frame {frame:?} does not decode: {e}"),
    }
}

/// Encoding a decoded value cannot fail (the names are extension names).
fn encoded(r: Result<Bytes, ipc_proto::ProtocolError>, what: &str) -> Bytes {
    match r {
        Ok(b) => b,
        Err(e) => panic!("encoding the decoded {what} failed: {e}"),
    }
}

fn raw(d: &Option<Box<RawValue>>) -> Option<&str> {
    d.as_deref().map(RawValue::get)
}

/// JSON equality up to what the JavaScript number formatting changes and
/// what the default (not `float_roundtrip`) `serde_json` float parser loses:
/// `1.0` is sent as `1` and `-0` as `0`, so numbers compare by value, and a
/// float may come back a couple of ULPs away (each parse of a decimal may
/// be off by one or two; a fuzzer finds such literals in seconds).
/// Integers compare exactly.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(p), Some(q), _, _) => p == q,
                (_, _, Some(p), Some(q)) => p == q,
                _ => match (x.as_f64(), y.as_f64()) {
                    (Some(p), Some(q)) => close(p, q),
                    _ => false,
                },
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Equal, or finite with the same sign and at most 2 ULPs apart.
fn close(p: f64, q: f64) -> bool {
    p == q
        || (p.is_finite()
            && q.is_finite()
            && p.is_sign_negative() == q.is_sign_negative()
            && p.to_bits().abs_diff(q.to_bits()) <= 2)
}

fn check_error(r: &Result<impl std::fmt::Debug, ipc_proto::ProtocolError>) {
    if let Err(e) = r {
        assert_eq!(e.code(), ErrorCode::InvalidMessage, "{e}");
    }
}

fn check_name(event: &str) {
    assert_eq!(ext::is_extension(event), event.starts_with("ipcx."));
    if ext::is_call(event) {
        assert!(
            ext::is_extension(event),
            "call {event:?} is not an extension name"
        );
    }
    let units = event.encode_utf16().count();
    for max in [0, units.saturating_sub(1), units, 256, usize::MAX] {
        match ext::validate_topic(event, max) {
            Ok(()) => {
                assert!(!event.is_empty());
                assert!(units <= max);
                assert!(!ext::is_extension(event));
                assert!(!ipc_proto::is_reserved_event(event));
                assert!(!ipc_proto::is_unsafe_event(event));
            }
            Err(e) => {
                let c = e.code();
                assert!(
                    matches!(
                        c,
                        ErrorCode::InvalidEvent
                            | ErrorCode::ReservedEvent
                            | ErrorCode::EventTooLarge
                    ),
                    "{event:?}: {e}"
                );
                if c == ErrorCode::EventTooLarge {
                    assert!(units > max);
                }
            }
        }
    }
    // Length is checked last: a name that fits is refused for a shorter limit
    // only because of its length.
    if units > 0 && ext::validate_topic(event, units).is_ok() {
        assert_eq!(
            ext::validate_topic(event, units - 1).map_err(|e| e.code()),
            Err(ErrorCode::EventTooLarge)
        );
    }
    if ext::is_extension(event) {
        assert!(ext::validate_topic(event, usize::MAX).is_err());
    }
}

fn check_call(enc: &FrameEncoder, c: &CallIn) {
    for event in [names::REQUEST, names::PING, names::PONG] {
        let f = encoded(ext::encode_call(enc, event, &c.n, c.d.as_deref()), "call");
        let back: CallIn = shape(&f, event);
        assert_eq!(back.n, c.n);
        assert_eq!(raw(&back.d), raw(&c.d));
    }
}

fn check_message(enc: &FrameEncoder, m: &Message) {
    check_name(m.event());

    // Every decode error is an invalid message.
    let call = ext::decode::<CallIn>(m);
    check_error(&call);
    let pong = ext::pong_for(m, enc);
    check_error(&pong);
    match (&call, pong) {
        (Ok(c), Ok(f)) => {
            let back: CallIn = shape(&f, names::PONG);
            assert_eq!(back.n, c.n);
            assert_eq!(raw(&back.d), raw(&c.d));
            check_call(enc, c);
            // The pong for our own ping is that pong again.
            let ping = redecode(
                &encoded(
                    ext::encode_call(enc, names::PING, &c.n, c.d.as_deref()),
                    "ping",
                ),
                names::PING,
            );
            let again = encoded(ext::pong_for(&ping, enc), "pong");
            assert_eq!(again, f);
        }
        (Err(_), Err(_)) => {}
        (c, p) => panic!("decode::<CallIn> {c:?} but pong_for {p:?}"),
    }

    let hello = ext::decode::<Hello>(m);
    check_error(&hello);
    if let Ok(h) = hello {
        let f = encoded(enc.encode_to_bytes(names::HELLO, Some(&h)), "hello");
        let back: Hello = shape(&f, names::HELLO);
        assert_eq!(back.v, h.v);
        assert_eq!(back.id, h.id);
        assert_eq!(back.features, h.features);
        assert!(
            same_json(&back.extras, &h.extras),
            "{:?} vs {:?}",
            back.extras,
            h.extras
        );
    }

    let welcome = ext::decode::<Welcome>(m);
    check_error(&welcome);
    if let Ok(w) = welcome {
        let f = encoded(enc.encode_to_bytes(names::WELCOME, Some(&w)), "welcome");
        assert_eq!(shape::<Welcome>(&f, names::WELCOME), w);
    }

    let end = ext::decode::<End>(m);
    check_error(&end);
    if let Ok(e) = end {
        let f = encoded(enc.encode_to_bytes(names::END, Some(&e)), "end");
        let back: End = shape(&f, names::END);
        assert_eq!(back.reconnect, e.reconnect);
        assert!(
            same_json(&back.reason, &e.reason),
            "{:?} vs {:?}",
            back.reason,
            e.reason
        );
        let _ = e.reason_text();
    }

    let response = ext::decode::<ResponseIn>(m);
    check_error(&response);
    if let Ok(r) = response {
        match &r.e {
            Some(err) => {
                let f = encoded(
                    ext::encode_error(enc, &r.n, &err.code, &err.message),
                    "error response",
                );
                let back: ResponseIn = shape(&f, names::RESPONSE);
                assert_eq!(back.n, r.n);
                assert_eq!(back.e.as_ref(), Some(err));
                assert!(back.d.is_none());
            }
            None => {
                let f = encoded(ext::encode_response(enc, &r.n, r.d.as_deref()), "response");
                let back: ResponseIn = shape(&f, names::RESPONSE);
                assert_eq!(back.n, r.n);
                assert_eq!(raw(&back.d), raw(&r.d));
                assert!(back.e.is_none());
            }
        }
        // The answer's data as the acknowledgements a client reads from it.
        if let Some(d) = &r.d {
            if let Ok(ack) = serde_json::from_str::<TopicsAck>(d.get()) {
                check_topics_ack(enc, &ack);
            }
            if let Ok(ack) = serde_json::from_str::<PubAck>(d.get()) {
                check_pub_ack(enc, &ack);
            }
        }
    }

    let topics = ext::decode::<TopicsIn>(m);
    check_error(&topics);
    if let Ok(t) = topics {
        for event in [names::SUB, names::UNSUB] {
            let out = TopicsOut {
                n: &t.n,
                topics: &t.topics,
            };
            let f = encoded(enc.encode_to_bytes(event, Some(&out)), "topics");
            let back: TopicsIn = shape(&f, event);
            assert_eq!(back.n, t.n);
            assert_eq!(back.topics, t.topics);
        }
        for topic in &t.topics {
            check_name(topic);
        }
    }

    let ack = ext::decode::<TopicsAck>(m);
    check_error(&ack);
    if let Ok(a) = ack {
        check_topics_ack(enc, &a);
    }

    let ack = ext::decode::<PubAck>(m);
    check_error(&ack);
    if let Ok(a) = ack {
        check_pub_ack(enc, &a);
    }

    let publication = ext::decode::<PubIn>(m);
    check_error(&publication);
    if let Ok(p) = publication {
        check_name(&p.topic);
        // What a client sends: no `n`.
        let out = PubOut {
            topic: &p.topic,
            message: &p.message,
        };
        let f = encoded(enc.encode_to_bytes(names::PUB, Some(&out)), "publication");
        let back: PubIn = shape(&f, names::PUB);
        assert_eq!(back.n, None);
        assert_eq!(back.topic, p.topic);
        assert_eq!(raw(&back.message), raw(&p.message));
        // With the acknowledgement id, built around the raw message text.
        if let Some(n) = &p.n {
            let body = format!(
                "{{\"n\":{},\"pub\":{},\"message\":{}}}",
                serde_json::to_string(n).unwrap(),
                serde_json::to_string(&p.topic).unwrap(),
                raw(&p.message).unwrap_or("null"),
            );
            let body = RawValue::from_string(body).expect("a valid body");
            let f = encoded(enc.encode_to_bytes(names::PUB, Some(&body)), "publication");
            let back: PubIn = shape(&f, names::PUB);
            assert_eq!(back.n.as_ref(), Some(n));
            assert_eq!(back.topic, p.topic);
            assert_eq!(raw(&back.message), raw(&p.message));
        }
    }
}

fn check_topics_ack(enc: &FrameEncoder, a: &TopicsAck) {
    let f = encoded(ext::encode_response(enc, "a", Some(a)), "topics ack");
    let back: ResponseIn = shape(&f, names::RESPONSE);
    let d = back.d.expect("the ack has data");
    match serde_json::from_str::<TopicsAck>(d.get()) {
        Ok(b) => assert_eq!(b.topics, a.topics),
        Err(e) => panic!("re-encoded topics ack {d} does not decode: {e}"),
    }
}

fn check_pub_ack(enc: &FrameEncoder, a: &PubAck) {
    let f = encoded(ext::encode_response(enc, "a", Some(a)), "pub ack");
    let back: ResponseIn = shape(&f, names::RESPONSE);
    let d = back.d.expect("the ack has data");
    match serde_json::from_str::<PubAck>(d.get()) {
        Ok(b) => assert_eq!(b.delivered, a.delivered),
        Err(e) => panic!("re-encoded pub ack {d} does not decode: {e}"),
    }
}

fuzz_target!(|input: &[u8]| {
    let enc = FrameEncoder::new(config()).unwrap();
    let mut dec = FrameDecoder::new(config()).unwrap();
    let mut buf = BytesMut::from(input);
    let t0 = Instant::now();
    loop {
        match dec.decode(&mut buf, t0) {
            Ok(Some(Inbound::Message(m))) => check_message(&enc, &m),
            Ok(Some(Inbound::Raw(_))) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
