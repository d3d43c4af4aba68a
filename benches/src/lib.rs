#![doc = include_str!("../README.md")]
//! Shared inputs for the benchmarks: the standard frame and workload sizes.
//!
//! The criterion benches for the codec live in `benches/benches/`; the
//! end-to-end workloads are driven by `cargo xtask bench`.

/// The 64 ASCII characters carried by the standard frame.
pub const STANDARD_PAYLOAD: &str =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";

/// The standard frame: `{"type":"message","data":"<64 ASCII chars>"}` + 0x0C.
pub fn standard_frame() -> Vec<u8> {
    let mut frame = Vec::with_capacity(93);
    frame.extend_from_slice(b"{\"type\":\"message\",\"data\":\"");
    frame.extend_from_slice(STANDARD_PAYLOAD.as_bytes());
    frame.extend_from_slice(b"\"}\x0c");
    frame
}

#[cfg(test)]
mod tests {
    #[test]
    fn standard_frame_shape() {
        assert_eq!(super::STANDARD_PAYLOAD.len(), 64);
        let f = super::standard_frame();
        // `{"type":"message","data":"` is 26 bytes, then 64, then `"}` + 0x0C.
        assert_eq!(f.len(), 26 + 64 + 3);
        assert_eq!(*f.last().unwrap(), 0x0c);
        let v: serde_json::Value = serde_json::from_slice(&f[..f.len() - 1]).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["data"].as_str().unwrap().len(), 64);
    }
}
