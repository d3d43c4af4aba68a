//! UDP reassembly bounds (`docs/protocol.md` §2.5) and the tokio-util adapter over a real
//! in-memory duplex stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipc_proto::{CodecConfig, ErrorCode, UdpLimits, UdpReassembler};
#[cfg(feature = "codec")]
use {
    futures_util::{SinkExt, StreamExt},
    ipc_proto::{Emit, FrameCodec, Inbound},
    tokio::io::AsyncWriteExt,
    tokio_util::codec::{FramedRead, FramedWrite},
};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn udp_peer_table_is_bounded_lru() {
    let limits = UdpLimits {
        max_peers: 3,
        ..UdpLimits::default()
    };
    let mut udp = UdpReassembler::new(CodecConfig::fast(), limits).unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    for port in 1..=3 {
        udp.push(addr(port), b"{\"type\":", t0, &mut out).unwrap();
    }
    // Peer 1 becomes the most recently active.
    udp.push(addr(1), b"\"a\"", t0, &mut out).unwrap();
    assert_eq!(udp.peers(), 3);
    // A fourth peer evicts the least recently active (peer 2).
    udp.push(addr(4), b"{", t0, &mut out).unwrap();
    assert_eq!(udp.peers(), 3);
    let errs = udp.expire(t0);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, addr(2));
    assert_eq!(errs[0].1.code(), ErrorCode::Backpressure);
    // Peer 1's reassembly survived.
    udp.push(addr(1), b"}\x0c", t0, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].as_message().unwrap().event(), "a");
    // Whole-frame datagrams never take a table slot.
    for port in 100..200 {
        udp.push(addr(port), b"{\"type\":\"x\"}\x0c", t0, &mut out)
            .unwrap();
    }
    assert_eq!(udp.peers(), 2);
}

#[test]
fn udp_retained_bytes_are_bounded() {
    let limits = UdpLimits {
        max_retained_bytes: 100,
        ..UdpLimits::default()
    };
    let mut udp = UdpReassembler::new(CodecConfig::fast(), limits).unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    udp.push(addr(1), &[b'{'; 60], t0, &mut out).unwrap();
    assert_eq!(udp.retained_bytes(), 60);
    let e = udp.push(addr(2), &[b'{'; 41], t0, &mut out).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Backpressure);
    assert_eq!(udp.retained_bytes(), 60);
    assert_eq!(udp.peers(), 1);
    udp.push(addr(2), &[b'{'; 40], t0, &mut out).unwrap();
    assert_eq!(udp.retained_bytes(), 100);
    udp.remove_peer(&addr(1));
    assert_eq!(udp.retained_bytes(), 40);
}

#[test]
fn udp_fragments_expire() {
    let limits = UdpLimits {
        fragment_timeout: Some(Duration::from_secs(30)),
        ..UdpLimits::default()
    };
    let mut udp = UdpReassembler::new(CodecConfig::fast(), limits).unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    udp.push(addr(1), b"{\"type\":", t0, &mut out).unwrap();
    assert_eq!(udp.next_deadline(), Some(t0 + Duration::from_secs(30)));
    assert!(udp.expire(t0 + Duration::from_secs(29)).is_empty());
    let errs = udp.expire(t0 + Duration::from_secs(30));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].1.code(), ErrorCode::MessageTimeout);
    assert_eq!((udp.peers(), udp.retained_bytes()), (0, 0));
    // A stale fragment is dropped (and reported) when the peer speaks again.
    udp.push(addr(1), b"{\"type\":", t0, &mut out).unwrap();
    udp.push(
        addr(1),
        b"{\"type\":\"b\"}\x0c",
        t0 + Duration::from_secs(31),
        &mut out,
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(udp.expire(t0 + Duration::from_secs(31)).len(), 1);
    // Guarded rules apply per peer; an error resets only that peer.
    let mut udp = UdpReassembler::new(CodecConfig::guarded(), UdpLimits::default()).unwrap();
    udp.push(addr(1), b"{\"type\":", t0, &mut out).unwrap();
    let e = udp
        .push(addr(2), b"{\"type\":\"connect\"}\x0c", t0, &mut out)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ReservedEvent);
    assert_eq!(udp.peers(), 1);
}

#[cfg(feature = "codec")]
#[tokio::test(flavor = "current_thread")]
async fn framed_adapter_over_a_duplex_stream() {
    let (client, server) = tokio::io::duplex(64);
    let mut writer = FramedWrite::new(client, FrameCodec::new(CodecConfig::guarded()).unwrap());
    let mut reader = FramedRead::new(server, FrameCodec::new(CodecConfig::guarded()).unwrap());
    let big = "é".repeat(200); // larger than the duplex buffer: several reads.
    let write_side = async {
        writer.send(Emit::new("message", &big)).await.unwrap();
        writer.send(Emit::empty("ping")).await.unwrap();
        let pre = FrameCodec::new(CodecConfig::guarded())
            .unwrap()
            .encoder()
            .encode_to_bytes("pre", Some(&[1, 2, 3]))
            .unwrap();
        writer.send(pre).await.unwrap();
        // Outbound checks surface as protocol errors and nothing is written.
        let err = writer.send(Emit::empty("connect")).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::ReservedEvent));
        // A partial frame at EOF is discarded (strict_eof off).
        let mut inner = writer.into_inner();
        inner.write_all(b"{\"type\":\"cut").await.unwrap();
        drop(inner);
    };
    let read_side = async {
        let mut got = Vec::new();
        while let Some(item) = reader.next().await {
            let Inbound::Message(m) = item.unwrap() else {
                panic!("raw")
            };
            got.push((m.event().to_string(), m.data_value()));
        }
        got
    };
    let ((), got) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        tokio::join!(write_side, read_side)
    })
    .await
    .expect("duplex exchange finished");
    assert_eq!(
        got,
        vec![
            ("message".to_string(), serde_json::json!(big)),
            ("ping".to_string(), serde_json::json!({})),
            ("pre".to_string(), serde_json::json!([1, 2, 3])),
        ]
    );
}

#[cfg(feature = "codec")]
#[tokio::test(flavor = "current_thread")]
async fn framed_adapter_reports_protocol_errors_and_strict_eof() {
    let (mut client, server) = tokio::io::duplex(64);
    let mut reader = FramedRead::new(server, FrameCodec::new(CodecConfig::fast()).unwrap());
    client
        .write_all(b"{\"type\":\"a\"}\x0cnot-json\x0c")
        .await
        .unwrap();
    assert!(reader.next().await.unwrap().is_ok());
    let err = reader.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidJson));

    let (mut client, server) = tokio::io::duplex(64);
    let cfg = CodecConfig::fast().with_strict_eof(true);
    let mut reader = FramedRead::new(server, FrameCodec::new(cfg).unwrap());
    client.write_all(b"{\"type\":\"a\"").await.unwrap();
    drop(client);
    let err = reader.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::IncompleteFrame));

    // Raw profile: chunks pass through untouched.
    let (mut client, server) = tokio::io::duplex(64);
    let mut reader = FramedRead::new(server, FrameCodec::new(CodecConfig::raw()).unwrap());
    client.write_all(&[0xff, 0xfe, 0x00, 0x80]).await.unwrap();
    drop(client);
    let mut bytes = Vec::new();
    while let Some(item) = reader.next().await {
        bytes.extend_from_slice(item.unwrap().as_raw().unwrap());
    }
    assert_eq!(bytes, [0xff, 0xfe, 0x00, 0x80]);
}
