//! UDP reassembly: datagrams from a handful of peers (byte 0 of each record
//! picks the peer, byte 1 the length). Invariants: no panic, retained
//! bytes and peers stay within the limits.
#![no_main]

use std::time::{Duration, Instant};

use ipc_proto::{CodecConfig, Profile, UdpLimits, UdpReassembler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&sel, mut rest)) = input.split_first() else {
        return;
    };
    let profile = [
        Profile::Raw,
        Profile::Fast,
        Profile::Guarded,
        Profile::Assured,
    ][(sel % 4) as usize];
    let mut cfg = CodecConfig::for_profile(profile).with_max_message_size(512);
    if profile == Profile::Assured {
        cfg = cfg.with_allowed_events(["a", "t"]);
    }
    let limits = UdpLimits {
        max_peers: 4,
        max_retained_bytes: 1024,
        fragment_timeout: Some(Duration::from_secs(1)),
    };
    let mut udp = UdpReassembler::<u8>::new(cfg, limits).unwrap();
    let t0 = Instant::now();
    let mut tick = 0u64;
    let mut out = Vec::new();
    while rest.len() >= 2 {
        let peer = rest[0] % 8;
        let len = (rest[1] as usize).min(rest.len() - 2);
        let datagram = &rest[2..2 + len];
        rest = &rest[2 + len..];
        tick += u64::from(peer);
        let now = t0 + Duration::from_millis(tick * 50);
        let _ = udp.push(peer, datagram, now, &mut out);
        assert!(udp.retained_bytes() <= 1024);
        assert!(udp.peers() <= 4);
        if tick % 7 == 0 {
            let _ = udp.expire(now);
        }
    }
    let _ = udp.expire(t0 + Duration::from_secs(3600));
    assert_eq!(udp.peers(), 0);
    assert_eq!(udp.retained_bytes(), 0);
});
