//! Finding where a JSON container ends, 64 bytes at a time, for the values
//! the [`Scan`](super::jsonutil::Scan) fast path never reads.
//!
//! Kong writes ~1.6 KB per request and two thirds of it is route, service
//! and response-header detail gatewatch does not use; walking that token by
//! token was the largest single cost of a Kong line. Here each 64-byte
//! block is classified with SIMD compares (`wide`: SSE2 on x86-64, NEON on
//! aarch64, plain code elsewhere — no `unsafe` in this crate), the bytes
//! inside strings are marked from the quote positions (a running XOR), and
//! brackets outside strings are counted until the container closes (the
//! JSONSki approach).
//!
//! It checks less than the token walk: strings closed, brackets balanced,
//! no control bytes, nesting bounded. It gives up (`None`) on a backslash
//! or a byte ≥ 0x80 — escapes and UTF-8 are the token walk's to check —
//! and the caller then walks the value token by token. It does not check
//! the grammar between brackets (commas, colons, literals, numbers), so a
//! skipped value that is balanced but not JSON is accepted: such a line
//! cannot come from a gateway's serializer, and no field gatewatch reads
//! can change meaning through it, because string boundaries are exact.

use wide::u8x16;

/// Bytes classified at once.
const BLOCK: usize = 64;

/// One block's bytes by class: bit `k` stands for byte `k`.
#[derive(Debug, Default, PartialEq)]
struct Classes {
    quote: u64,
    /// `{` or `[`.
    open: u64,
    /// `}` or `]`.
    close: u64,
    /// A backslash, a control byte or a byte ≥ 0x80: the block is only
    /// understood up to the first one.
    unusual: u64,
}

fn classify(block: &[u8; BLOCK]) -> Classes {
    let eq = |v: u8x16, b: u8| v.simd_eq(u8x16::splat(b)).to_bitmask();
    let mut c = Classes::default();
    for k in 0..BLOCK / 16 {
        let v = u8x16::from(std::array::from_fn::<u8, 16, _>(|i| block[16 * k + i]));
        // `[` and `{` differ only in bit 0x20, as do `]` and `}`.
        let folded = v | u8x16::splat(0x20);
        let control = (v & u8x16::splat(0xE0)).simd_eq(u8x16::ZERO).to_bitmask();
        // `to_bitmask` of the bytes themselves is their high bits.
        let unusual = eq(v, b'\\') | control | v.to_bitmask();
        let shift = 16 * k;
        c.quote |= u64::from(eq(v, b'"')) << shift;
        c.open |= u64::from(eq(folded, b'{')) << shift;
        c.close |= u64::from(eq(folded, b'}')) << shift;
        c.unusual |= u64::from(unusual) << shift;
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
    match b.get(at..at + BLOCK) {
        Some(full) => full.try_into().unwrap_or([b' '; BLOCK]),
        None => {
            let mut padded = [b' '; BLOCK];
            let rest = &b[at.min(b.len())..];
            padded[..rest.len()].copy_from_slice(rest);
            padded
        }
    }
}

/// The index just past the container opening at `b[start]` (`{` or `[`),
/// or `None` when the container nests more than `max_depth` levels, is
/// cut off, or holds a byte this skim leaves to the token walk.
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
        block[63] = 0xC3;
        let c = classify(&block);
        assert_eq!(c.quote, 1 << 1 | 1 << 3 | 1 << 6 | 1 << 8);
        assert_eq!(c.open, 1 | 1 << 5);
        assert_eq!(c.close, 1 << 7 | 1 << 9 | 1 << 10);
        assert_eq!(c.unusual, 1 << 11 | 1 << 63);
        // `"a"` and `"}"`: opening quotes and contents, not closing quotes.
        assert_eq!(prefix_xor(c.quote), 1 << 1 | 1 << 2 | 1 << 6 | 1 << 7);
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
            "{\"k\":\"caf\u{e9}\"}",                          // non-ASCII
            "{\"k\":\"\t\"}",                                 // a control byte
            r#"{"k":"v"#,                                     // cut off in a string
            r#"{"k":[1,2}"#,                                  // cut off in brackets
            &format!("{}{}", "[".repeat(33), "]".repeat(33)), // too deep
        ] {
            assert_eq!(end(s), None, "{s}");
        }
        // An unusual byte after the end does not matter.
        assert_eq!(end("{\"k\":1} \"caf\u{e9}\""), Some(7));
    }
}
