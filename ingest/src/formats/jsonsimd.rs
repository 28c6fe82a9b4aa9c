//! The SIMD parts of the [`Scan`](super::jsonutil::Scan) fast path: finding
//! where a string's plain run ends sixteen bytes at a time, and where a
//! container the caller never reads ends, 64 bytes at a time.
//!
//! Bytes are classified with SIMD compares (`wide`: SSE2 on x86-64, NEON
//! on aarch64, plain code elsewhere — no `unsafe` in this crate). Both
//! functions expect a line already checked to be UTF-8, so bytes ≥ 0x80
//! need no attention here.
//!
//! Kong writes ~1.6 KB per request and two thirds of it is route, service
//! and response-header detail gatewatch does not use; walking that token by
//! token was the largest single cost of a Kong line. [`container_end`]
//! marks the bytes inside strings from the quote positions (a running XOR)
//! and counts brackets outside strings until the container closes (the
//! JSONSki approach). It checks less than the token walk: strings closed,
//! brackets balanced, no control bytes, nesting bounded. It gives up
//! (`None`) on a backslash — escapes are the token walk's to check — and
//! the caller then walks the value token by token. It does not check the
//! grammar between brackets (commas, colons, literals, numbers), so a
//! skipped value that is balanced but not JSON is accepted: such a line
//! cannot come from a gateway's serializer, and no field gatewatch reads
//! can change meaning through it, because string boundaries are exact.

use wide::u8x16;

/// Bytes classified at once.
const BLOCK: usize = 64;

/// One block's bytes by class: bit `k` stands for byte `k`.
#[derive(Debug, Default)]
struct Classes {
    quote: u64,
    /// `{` or `[`.
    open: u64,
    /// `}` or `]`.
    close: u64,
    /// A backslash or a control byte: the block is only understood up to
    /// the first one.
    unusual: u64,
}

/// Bit `k` set where byte `k` of `v` is `b`.
#[inline]
fn eq(v: u8x16, b: u8) -> u32 {
    v.simd_eq(u8x16::splat(b)).to_bitmask()
}

/// Bit `k` set where byte `k` of `v` is below 0x20.
#[inline]
fn control(v: u8x16) -> u32 {
    (v & u8x16::splat(0xE0)).simd_eq(u8x16::ZERO).to_bitmask()
}

/// Bit `k` set where byte `k` ends a string's plain run: a quote, a
/// backslash or a control byte.
#[inline]
pub(crate) fn string_stops(chunk: &[u8; 16]) -> u32 {
    let v = u8x16::from(*chunk);
    eq(v, b'"') | eq(v, b'\\') | control(v)
}

fn classify(block: &[u8; BLOCK]) -> Classes {
    let mut c = Classes::default();
    for k in 0..BLOCK / 16 {
        let v = u8x16::from(std::array::from_fn::<u8, 16, _>(|i| block[16 * k + i]));
        // `[` and `{` differ only in bit 0x20, as do `]` and `}`.
        let folded = v | u8x16::splat(0x20);
        let shift = 16 * k;
        c.quote |= u64::from(eq(v, b'"')) << shift;
        c.open |= u64::from(eq(folded, b'{')) << shift;
        c.close |= u64::from(eq(folded, b'}')) << shift;
        c.unusual |= u64::from(eq(v, b'\\') | control(v)) << shift;
    }
    c
}

/// Bit `k` of the result is the XOR of bits `0..=k`: with `quote` as input,
/// the bytes from an opening quote up to (not including) its closing quote.
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

/// The 64 bytes of `b` from `at`, padded with spaces (which no class
/// includes) past the end.
fn block_at(b: &[u8], at: usize) -> [u8; BLOCK] {
    if let Some(full) = b.get(at..at + BLOCK).and_then(|s| s.try_into().ok()) {
        return full;
    }
    let mut padded = [b' '; BLOCK];
    let rest = &b[at.min(b.len())..];
    padded[..rest.len()].copy_from_slice(rest);
    padded
}

/// The index just past the container opening at `b[start]` (`{` or `[`),
/// or `None` when the container nests more than `max_depth` levels, is
/// cut off, or holds a byte this skim leaves to the token walk. `b` must
/// be UTF-8.
pub(crate) fn container_end(b: &[u8], start: usize, max_depth: u32) -> Option<usize> {
    // Containers open at the current position; all ones in `in_string`
    // when a string runs on from the previous block.
    let (mut depth, mut in_string) = (0u32, 0u64);
    let mut at = start;
    while at < b.len() {
        let c = classify(&block_at(b, at));
        let understood = match c.unusual {
            0 => u64::MAX,
            u => (u & u.wrapping_neg()) - 1,
        };
        let strings = prefix_xor(c.quote) ^ in_string;
        let mut opens = c.open & !strings & understood;
        let mut closes = c.close & !strings & understood;
        while closes != 0 {
            let before = (closes & closes.wrapping_neg()) - 1;
            depth += (opens & before).count_ones();
            opens &= !before;
            if depth > max_depth {
                return None;
            }
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(at + before.count_ones() as usize + 1);
            }
            closes &= closes - 1;
        }
        depth += opens.count_ones();
        if depth > max_depth || understood != u64::MAX {
            return None;
        }
        in_string = 0u64.wrapping_sub(strings >> 63);
        at += BLOCK;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(s: &str) -> Option<usize> {
        container_end(s.as_bytes(), 0, 32)
    }

    #[test]
    fn classes_and_string_marks() {
        let mut block = [b' '; BLOCK];
        block[..12].copy_from_slice(br#"{"a":["}"]}\"#);
        block[63] = 0x1F;
        let c = classify(&block);
        assert_eq!(c.quote, 1 << 1 | 1 << 3 | 1 << 6 | 1 << 8);
        assert_eq!(c.open, 1 | 1 << 5);
        assert_eq!(c.close, 1 << 7 | 1 << 9 | 1 << 10);
        assert_eq!(c.unusual, 1 << 11 | 1 << 63);
        // `"a"` and `"}"`: opening quotes and contents, not closing quotes.
        assert_eq!(prefix_xor(c.quote), 1 << 1 | 1 << 2 | 1 << 6 | 1 << 7);
    }

    #[test]
    fn string_stops_are_quotes_backslashes_and_control_bytes() {
        let chunk: &[u8; 16] = b"ab\"c\\d\te\xc3\xa9fghijk";
        assert_eq!(string_stops(chunk), 1 << 2 | 1 << 4 | 1 << 6);
        assert_eq!(string_stops(b"0123456789abcdef"), 0);
    }

    #[test]
    fn finds_the_matching_bracket_across_blocks() {
        assert_eq!(end("{}"), Some(2));
        assert_eq!(end("[1,2] ,"), Some(5));
        assert_eq!(end(r#"{"k":"}]"}, "x":1}"#), Some(10));
        // A string that runs across a block boundary, brackets inside it.
        let long = format!(r#"{{"k":"{}{{[","n":[{{}}]}} tail"#, "x".repeat(70));
        assert_eq!(end(&long), long.find(" tail"));
        let nested = format!("{}{}", "[".repeat(32), "]".repeat(32));
        assert_eq!(end(&nested), Some(64));
    }

    #[test]
    fn leaves_what_it_cannot_judge_to_the_token_walk() {
        for s in [
            r#"{"k":"v\"}"}"#,                                // an escape
            "{\"k\":\"\t\"}",                                 // a control byte
            r#"{"k":"v"#,                                     // cut off in a string
            r#"{"k":[1,2}"#,                                  // cut off in brackets
            &format!("{}{}", "[".repeat(33), "]".repeat(33)), // too deep
        ] {
            assert_eq!(end(s), None, "{s}");
        }
        // An unusual byte after the end does not matter; UTF-8 is no concern.
        assert_eq!(end("{\"k\":1} \"\\\""), Some(7));
        assert_eq!(end("{\"caf\u{e9}\":1}"), Some(11));
    }
}
