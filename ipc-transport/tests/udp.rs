//! UDP transport: both families, batches, oversize refusal.
#![cfg(feature = "udp")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::within;
use ipc_transport::udp::{MAX_UDP4_PAYLOAD, MAX_UDP6_PAYLOAD};
use ipc_transport::{Endpoint, ErrorCode, RecvBatch, TransportError, UdpFamily, UdpSocket};

fn has_ipv6() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}

async fn pair(family: &str, host: &str) -> (UdpSocket, UdpSocket) {
    let ep: Endpoint = format!("{family}://{host}:0").parse().unwrap();
    let a = within(UdpSocket::bind(&ep)).await.unwrap();
    let b = within(UdpSocket::bind(&ep)).await.unwrap();
    (a, b)
}

async fn send_and_receive(a: &UdpSocket, b: &UdpSocket) {
    let a_addr = a.local_addr().unwrap();
    let b_addr = b.local_addr().unwrap();
    let frame = b"{\"type\":\"hello\",\"data\":{\"n\":1}}\x0c";
    a.send_to(frame, b_addr).await.unwrap();
    let mut buf = vec![0u8; 70_000];
    let (n, from) = within(b.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], frame);
    assert_eq!(from, a_addr);
    // And back.
    b.send_to(b"reply\x0c", from).await.unwrap();
    let (n, from) = within(a.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"reply\x0c");
    assert_eq!(from, b_addr);
    // An empty datagram is delivered as such.
    a.send_to(b"", b_addr).await.unwrap();
    let (n, _) = within(b.recv_from(&mut buf)).await.unwrap();
    assert_eq!(n, 0);
    // The largest datagram arrives whole.
    let big = vec![7u8; a.max_payload()];
    a.send_to(&big, b_addr).await.unwrap();
    let (n, _) = within(b.recv_from(&mut buf)).await.unwrap();
    assert_eq!(n, big.len());
    assert!(buf[..n].iter().all(|&x| x == 7));
}

#[tokio::test]
async fn udp4_send_and_receive() {
    let (a, b) = pair("udp4", "127.0.0.1").await;
    assert_eq!(a.family(), UdpFamily::V4);
    assert_eq!(a.max_payload(), MAX_UDP4_PAYLOAD);
    let Endpoint::Udp { port, .. } = a.local_endpoint() else {
        panic!()
    };
    assert_ne!(port, 0);
    send_and_receive(&a, &b).await;
}

#[tokio::test]
async fn udp6_send_and_receive() {
    if !has_ipv6() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let (a, b) = pair("udp6", "[::1]").await;
    assert_eq!(a.family(), UdpFamily::V6);
    assert_eq!(a.max_payload(), MAX_UDP6_PAYLOAD);
    assert!(a.local_addr().unwrap().is_ipv6());
    send_and_receive(&a, &b).await;
}

#[tokio::test]
async fn udp4_with_ipv6_loopback_binds_ipv4_loopback() {
    let s = within(UdpSocket::bind(&"udp4://[::1]:0".parse().unwrap()))
        .await
        .unwrap();
    let addr = s.local_addr().unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
}

#[tokio::test]
async fn hostnames_resolve_with_the_socket_family() {
    let (a, b) = pair("udp4", "127.0.0.1").await;
    let port = b.local_addr().unwrap().port();
    let target = a
        .send_to_host(b"by name\x0c", "localhost", port)
        .await
        .unwrap();
    assert!(target.is_ipv4());
    let mut buf = [0u8; 64];
    let (n, _) = within(b.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"by name\x0c");
    // An IPv6 literal cannot be reached from a udp4 socket.
    let err = a.resolve("::1", port).await.unwrap_err();
    assert!(matches!(err, TransportError::Resolve { .. }), "{err}");
}

#[tokio::test]
async fn oversize_datagrams_are_refused_before_sending() {
    let (a, b) = pair("udp4", "127.0.0.1").await;
    let target = b.local_addr().unwrap();
    let too_big = vec![0u8; MAX_UDP4_PAYLOAD + 1];
    let err = a.send_to(&too_big, target).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::DatagramTooLarge));
    assert!(!err.is_retryable());
    assert!(matches!(
        err,
        TransportError::DatagramTooLarge {
            len,
            max: MAX_UDP4_PAYLOAD,
            ..
        } if len == MAX_UDP4_PAYLOAD + 1
    ));
    assert!(err.to_string().contains(&target.to_string()));
    // A batch with one oversize datagram sends nothing at all.
    let batch: Vec<Vec<u8>> = vec![b"ok\x0c".to_vec(), too_big];
    let err = a.send_batch(&batch, target).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::DatagramTooLarge));
    a.send_to(b"marker", target).await.unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = within(b.recv_from(&mut buf)).await.unwrap();
    assert_eq!(
        &buf[..n],
        b"marker",
        "nothing from the refused batch arrived"
    );

    if has_ipv6() {
        let (c, d) = pair("udp6", "[::1]").await;
        let err = c
            .send_to(&vec![0u8; MAX_UDP6_PAYLOAD + 1], d.local_addr().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::DatagramTooLarge));
        // 65 527 bytes is fine over IPv6 (larger than the IPv4 limit).
        c.send_to(&vec![1u8; MAX_UDP6_PAYLOAD], d.local_addr().unwrap())
            .await
            .unwrap();
        let mut big = vec![0u8; 70_000];
        let (n, _) = within(d.recv_from(&mut big)).await.unwrap();
        assert_eq!(n, MAX_UDP6_PAYLOAD);
    }
}

async fn batch_round_trip(a: &UdpSocket, b: &UdpSocket) {
    let target = b.local_addr().unwrap();
    // Equal sizes (a GSO run), then mixed sizes, then an empty datagram.
    let mut datagrams: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 100]).collect();
    datagrams.push(vec![200; 37]);
    datagrams.extend((0..5u8).map(|i| vec![i + 100; 1000 + usize::from(i)]));
    datagrams.push(Vec::new());
    a.send_batch(&datagrams, target).await.unwrap();

    let from_expected: SocketAddr = a.local_addr().unwrap();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut batch = RecvBatch::new(8);
    while got.len() < datagrams.len() {
        let n = within(b.recv_batch(&mut batch)).await.unwrap();
        assert!(n >= 1);
        assert_eq!(n, batch.len());
        for (from, data) in batch.iter() {
            assert_eq!(from, from_expected);
            got.push(data.to_vec());
        }
    }
    assert_eq!(got, datagrams, "every datagram whole, in order");
}

#[tokio::test]
async fn batched_send_and_receive_udp4() {
    let (a, b) = pair("udp4", "127.0.0.1").await;
    if cfg!(target_os = "linux") {
        assert!(a.is_batched(), "quinn-udp is used on Linux");
    }
    batch_round_trip(&a, &b).await;
    // recv_from and recv_batch can follow each other on one socket.
    a.send_batch(
        &[b"one".as_slice(), b"two".as_slice()],
        b.local_addr().unwrap(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 8];
    let (n, _) = within(b.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"one");
    let mut batch = RecvBatch::default();
    within(b.recv_batch(&mut batch)).await.unwrap();
    let rest: Vec<&[u8]> = batch.iter().map(|(_, d)| d).collect();
    assert_eq!(rest, vec![b"two".as_slice()]);
}

#[tokio::test]
async fn batched_send_and_receive_udp6() {
    if !has_ipv6() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let (a, b) = pair("udp6", "[::1]").await;
    batch_round_trip(&a, &b).await;
}

#[tokio::test]
async fn bind_errors_are_typed() {
    let a = within(UdpSocket::bind(&"udp4://127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let taken = a.local_endpoint();
    let err = within(UdpSocket::bind(&taken)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AddressInUse));
    let err = within(UdpSocket::bind(&"tcp://127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidConfiguration));
}

#[tokio::test]
async fn dual_stack_udp6_replies_to_ipv4_peers() {
    if !has_ipv6() {
        eprintln!("no IPv6 here; skipping");
        return;
    }
    let Ok(any6) = UdpSocket::bind(&"udp6://[::]:0".parse().unwrap()).await else {
        eprintln!("cannot bind [::]; skipping");
        return;
    };
    let port = any6.local_addr().unwrap().port();
    let v4 = within(UdpSocket::bind(&"udp4://127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    v4.send_to(b"from v4", SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = within(any6.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"from v4");
    assert_eq!(from, v4.local_addr().unwrap(), "reported unmapped");
    any6.send_to(b"to v4", from).await.unwrap();
    let (n, _) = within(v4.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"to v4");
}
