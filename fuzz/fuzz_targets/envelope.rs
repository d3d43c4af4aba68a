//! Envelope parser: the fast recogniser must agree with the full parse
//! whenever it answers, the combined parser must give the full parse's
//! result, and parsed ranges must lie inside the frame.
#![no_main]

use ipc_proto::envelope::{parse_envelope, parse_envelope_fast, parse_envelope_full};
use ipc_proto::{CodecConfig, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        let full = parse_envelope_full(text, 128);
        if let Some(fast) = parse_envelope_fast(text) {
            assert_eq!(Ok(fast), full.clone());
        }
        match (parse_envelope(text, 128), &full) {
            (Ok(a), Ok(b)) => assert_eq!(&a, b),
            (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
            (a, b) => panic!("combined {a:?} vs full {b:?}"),
        }
        if let Ok(p) = &full {
            if let Some(r) = &p.data {
                assert!(r.end <= text.len());
                assert!(serde_json::from_str::<serde::de::IgnoredAny>(&text[r.clone()]).is_ok());
            }
            let _ = p.event_str(text.as_bytes());
        }
    }
    // Any bytes through the sanitising entry point: no panic.
    let cfg = CodecConfig::fast().with_max_json_depth(128);
    if let Ok(m) = Message::from_frame(input.to_vec(), &cfg) {
        let _ = m.event();
        let _ = m.data_value();
        assert!(std::str::from_utf8(m.frame()).is_ok());
    }
});
