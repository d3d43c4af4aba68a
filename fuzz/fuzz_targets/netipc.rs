//! net-ipc codec: a preamble, then packets, from arbitrary bytes in chunks,
//! as JSON or MessagePack bodies. Invariants: no panic; the buffer never
//! holds more than one maximal packet plus its prefix; after a fatal error
//! the buffer is empty; every decoded packet re-encodes (in both body
//! formats) and decodes to the same packet.
#![no_main]

use bytes::BytesMut;
use ipc_proto::netipc::{accept_preamble, BodyFormat, Codec, Packet};
use ipc_proto::ErrorCode;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4096;

fn same(a: &Packet, b: &Packet) {
    assert_eq!(a.kind, b.kind);
    assert_eq!(a.nonce, b.nonce);
    let va = a.data.as_ref().map(|d| serde_json::from_str::<serde_json::Value>(d.get()).unwrap());
    let vb = b.data.as_ref().map(|d| serde_json::from_str::<serde_json::Value>(d.get()).unwrap());
    assert_eq!(va, vb);
}

fuzz_target!(|input: &[u8]| {
    let Some((&sel, data)) = input.split_first() else {
        return;
    };
    let mut codec = Codec::new(LIMIT);
    if sel & 1 == 1 {
        codec.set_format(BodyFormat::Msgpack);
    }
    let mut buf = BytesMut::new();
    let mut preamble_done = sel & 2 == 0;
    for chunk in data.chunks(1 + (sel as usize >> 2) % 32) {
        buf.extend_from_slice(chunk);
        if !preamble_done {
            match accept_preamble(&mut buf) {
                Ok(Some(_)) => preamble_done = true,
                Ok(None) => continue,
                Err(_) => return,
            }
        }
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(p)) => {
                    for format in [BodyFormat::Json, BodyFormat::Msgpack] {
                        let mut again = Codec::new(1 << 20);
                        again.set_format(format);
                        let mut wire = Vec::new();
                        again
                            .encode(p.kind, p.data.as_deref(), p.nonce.as_deref(), &mut wire)
                            .unwrap();
                        let mut wire = BytesMut::from(&wire[..]);
                        let p2 = again.decode(&mut wire).unwrap().unwrap();
                        same(&p, &p2);
                        assert!(wire.is_empty());
                    }
                }
                Ok(None) => break,
                Err(e) if e.code() == ErrorCode::FrameTooLarge => {
                    assert!(buf.is_empty());
                    return;
                }
                Err(_) => {}
            }
        }
        assert!(buf.len() <= LIMIT + 4 + chunk.len());
    }
});
