//! Event-name rules (`docs/protocol.md` §3.4): reserved lifecycle names and unsafe
//! `Object.prototype` member names.

/// Lifecycle names a peer must not send in guarded/assured profiles unless
/// `allow_reserved_events` is set (never in assured).
pub const RESERVED_EVENTS: &[&str] = &[
    "start",
    "connect",
    "disconnect",
    "destroy",
    "close",
    "socket.disconnected",
    "error",
    "data",
];

/// JavaScript `Object.prototype` member names. Sending one crashes node-ipc
/// 12 receivers, so every profile refuses to send them unless
/// `allow_unsafe_names` is set; guarded/assured also refuse to receive them.
pub const UNSAFE_EVENTS: &[&str] = &[
    "constructor",
    "__defineGetter__",
    "__defineSetter__",
    "hasOwnProperty",
    "__lookupGetter__",
    "__lookupSetter__",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toString",
    "valueOf",
    "__proto__",
    "toLocaleString",
];

/// Whether `name` is one of [`RESERVED_EVENTS`].
pub fn is_reserved_event(name: &str) -> bool {
    RESERVED_EVENTS.contains(&name)
}

/// Whether `name` is one of [`UNSAFE_EVENTS`].
pub fn is_unsafe_event(name: &str) -> bool {
    UNSAFE_EVENTS.contains(&name)
}

/// Length of `name` in UTF-16 code units, counting at most `limit + 1`.
pub(crate) fn utf16_len_capped(name: &str, limit: usize) -> usize {
    // ASCII fast path: one byte is one code unit.
    if name.is_ascii() {
        return name.len();
    }
    name.encode_utf16().take(limit.saturating_add(1)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert!(is_reserved_event("connect"));
        assert!(is_reserved_event("socket.disconnected"));
        assert!(!is_reserved_event("message"));
        assert!(is_unsafe_event("__proto__"));
        assert!(is_unsafe_event("constructor"));
        assert!(!is_unsafe_event("proto"));
        assert_eq!(RESERVED_EVENTS.len(), 8);
        assert_eq!(UNSAFE_EVENTS.len(), 12);
    }

    #[test]
    fn utf16_lengths() {
        assert_eq!(utf16_len_capped("abc", 256), 3);
        assert_eq!(utf16_len_capped("é", 256), 1);
        assert_eq!(utf16_len_capped("🌍", 256), 2);
        assert_eq!(utf16_len_capped(&"é".repeat(10), 3), 4);
    }
}
