//! Word-at-a-time byte-class checks for the per-message hot paths (frame
//! validation on receive, string escaping on send). Each check reads eight
//! bytes per step with plain integer arithmetic (the "has a byte less than
//! n" / "has a zero byte" bit tricks), which are exact as yes/no answers.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

#[inline(always)]
fn word(chunk: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(chunk);
    u64::from_le_bytes(w)
}

/// High bits set where a byte of `x` is below `n` (exact as a yes/no answer
/// for `n <= 128`).
#[inline(always)]
fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH
}

/// High bits set where a byte of `x` equals `b` (exact as a yes/no answer).
#[inline(always)]
fn equal(x: u64, b: u8) -> u64 {
    below(x ^ (ONES * u64::from(b)), 1)
}

#[inline(always)]
fn special(x: u64) -> u64 {
    below(x, 0x20) | equal(x, b'"') | equal(x, b'\\')
}

#[inline(always)]
fn special_byte(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether a JSON string with these bytes needs an escape: a control
/// character (U+0000–U+001F), `"` or `\`.
#[inline]
pub(crate) fn needs_escape(s: &[u8]) -> bool {
    let mut chunks = s.chunks_exact(8);
    let mut acc = 0;
    for c in &mut chunks {
        acc |= special(word(c));
    }
    acc != 0 || chunks.remainder().iter().any(|&b| special_byte(b))
}

/// What [`classify`] found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Classes {
    /// A byte ≥ 0x80 (the frame needs a real UTF-8 check).
    pub non_ascii: bool,
    /// A byte below 0x20 or a backslash.
    pub ctrl_or_backslash: bool,
}

/// One pass over a frame: does it hold non-ASCII bytes, and does it hold a
/// control byte or a backslash (whose absence lets JSON strings in it be
/// skipped by looking for the closing quote alone).
#[inline]
pub(crate) fn classify(s: &[u8]) -> Classes {
    let mut chunks = s.chunks_exact(8);
    let (mut high, mut other) = (0u64, 0u64);
    for c in &mut chunks {
        let x = word(c);
        high |= x;
        other |= below(x, 0x20) | equal(x, b'\\');
    }
    let rest = chunks.remainder();
    Classes {
        non_ascii: high & HIGH != 0 || rest.iter().any(|&b| b >= 0x80),
        ctrl_or_backslash: other != 0 || rest.iter().any(|&b| b < 0x20 || b == b'\\'),
    }
}

/// Whether [`first_special`] stops at `b`.
#[inline]
pub(crate) fn is_frame_special(b: u8) -> bool {
    b < 0x20 || b == b'\\' || b >= 0x80
}

/// The position of the first byte below 0x20, backslash or ≥ 0x80. With a
/// delimiter that is itself such a byte (the default form feed), one pass
/// finds the end of a frame *and* shows that the frame before it needs no
/// UTF-8 check and no escape handling.
#[inline]
pub(crate) fn first_special(s: &[u8]) -> Option<usize> {
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let x = word(c);
        // A borrow in the bit tricks can only flag bytes above a real
        // match, so the lowest flagged byte is exact.
        let m = below(x, 0x20) | equal(x, b'\\') | (x & HIGH);
        if m != 0 {
            return Some(at + (m.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| is_frame_special(b))
        .map(|p| at + p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(s: &[u8]) -> (bool, bool, bool) {
        (
            s.iter().any(|&b| special_byte(b)),
            s.iter().any(|&b| b >= 0x80),
            s.iter().any(|&b| b < 0x20 || b == b'\\'),
        )
    }

    fn check(s: &[u8]) {
        let (esc, high, other) = naive(s);
        assert_eq!(needs_escape(s), esc, "{s:?}");
        let c = classify(s);
        assert_eq!(c.non_ascii, high, "{s:?}");
        assert_eq!(c.ctrl_or_backslash, other, "{s:?}");
        assert_eq!(
            first_special(s),
            s.iter().position(|&b| is_frame_special(b)),
            "{s:?}"
        );
    }

    #[test]
    fn every_byte_in_every_position() {
        for len in 0..20 {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[pos] = b;
                    check(&s);
                    // Neighbours that provoke borrows in the bit tricks.
                    let mut t = vec![0xffu8; len];
                    t[pos] = b;
                    check(&t);
                    let mut u = vec![0x20u8; len];
                    u[pos] = b;
                    check(&u);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_obvious_loop(s in proptest::collection::vec(any::<u8>(), 0..64)) {
            check(&s);
        }
    }
}
