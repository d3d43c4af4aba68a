//! MessagePack decoder: arbitrary bytes, chunked. Invariants: no panic,
//! the buffer never holds more than one maximal frame plus its prefix,
//! decoded messages re-encode and decode to the same message.
#![no_main]

use std::time::Instant;

use bytes::BytesMut;
use ipc_proto::{CodecConfig, MsgpackCodec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&sel, data)) = input.split_first() else {
        return;
    };
    let cfg = if sel & 1 == 0 {
        CodecConfig::fast()
    } else {
        CodecConfig::guarded()
    }
    .with_max_message_size(2048)
    .with_max_partial_bytes(4096)
    .with_max_json_depth(64);
    let limit = if sel & 1 == 0 { 4096 } else { 2048 };
    let mut codec = MsgpackCodec::new(cfg.clone()).unwrap();
    let now = Instant::now();
    let mut buf = BytesMut::new();
    for chunk in data.chunks(1 + (sel as usize >> 1) % 32) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf, now) {
                Ok(Some(m)) => {
                    let value = m.data_value();
                    let mut wire = BytesMut::new();
                    let mut again = MsgpackCodec::new(
                        cfg.clone()
                            .with_max_message_size(1 << 20)
                            .with_max_partial_bytes(1 << 20),
                    )
                    .unwrap();
                    if again.encode(m.event(), Some(&value), &mut wire).is_ok() {
                        let m2 = again.decode(&mut wire, now).unwrap().unwrap();
                        assert_eq!(m2.event(), m.event());
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // A buffered partial frame is bounded by the limit the length prefix was checked against.
        assert!(buf.len() <= limit + 4 + chunk.len());
    }
});
