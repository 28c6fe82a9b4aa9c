//! Shared pieces of the JSON formats: the one JSON library call, borrowed
//! string and lenient number types for `#[derive(Deserialize)]` structs,
//! and the cheap key probe `auto` uses.
//!
//! The library is `sonic-rs` (SIMD skipping of the fields we ignore); see
//! `benches/json_floor.rs` for the comparison with `serde_json` that chose
//! it. Every JSON parser goes through [`from_slice`], so switching back is
//! one line.
//!
//! sonic-rs 0.5 skips unknown values recursively without a depth limit
//! (cloudwego/sonic-rs#232): a line nested ~10,000 deep overflows the stack
//! and aborts the process. A line cannot nest deeper than it has `{` and
//! `[` bytes, so lines with many of them (never a real gateway line) go to
//! `serde_json`, which stops at depth 128 with an error.

use gatewatch_detector::Event;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

use super::jsonmemo::Memo;
use super::jsonsimd::{container_end, string_stops};
use super::ParseError;

/// Above this many `{`/`[` bytes a line could nest deep enough to overflow
/// sonic-rs's recursive skipping (it survives ~8,000 levels on a 2 MiB
/// stack in release builds; far fewer in debug builds).
const SONIC_MAX_OPENERS: usize = 128;

/// Whether `b` may nest too deeply for sonic-rs. Short lines cannot.
#[inline]
fn maybe_deep(b: &[u8]) -> bool {
    // memchr's SIMD search, stopping at the limit: a plain byte filter
    // over a 1.8 KB Kong line costs more than half the JSON parse.
    b.len() > SONIC_MAX_OPENERS
        && memchr::memchr2_iter(b'{', b'[', b)
            .nth(SONIC_MAX_OPENERS)
            .is_some()
}

/// Deserialises a borrowed struct from one JSON document.
#[inline]
pub(crate) fn from_slice<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Option<T> {
    if maybe_deep(b) {
        return serde_json::from_slice(b).ok();
    }
    sonic_rs::from_slice(b).ok()
}

/// Drives a `DeserializeSeed` over one JSON document (the generic mapping).
pub(crate) fn from_slice_seed<'a, S: serde::de::DeserializeSeed<'a>>(
    b: &'a [u8],
    seed: S,
) -> Option<S::Value> {
    // Validate first: the streaming deserializer leaves the final UTF-8
    // check to the caller, and borrowed `&str`s must never be invalid.
    let s = std::str::from_utf8(b).ok()?;
    if maybe_deep(b) {
        let mut de = serde_json::Deserializer::from_str(s);
        let v = seed.deserialize(&mut de).ok()?;
        de.end().ok()?;
        return Some(v);
    }
    let mut de = sonic_rs::Deserializer::from_str(s);
    let v = seed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(v)
}

/// Runs a JSON parser, and when it fails on a line that is not valid UTF-8
/// (nginx `escape=json` passes bytes ≥ 0x80 through unchanged, so a hostile
/// User-Agent makes the line invalid for strict parsers) runs it again on a
/// lossy copy. The retry allocates; the normal path does not.
pub(crate) fn with_lossy_retry<'a>(
    line: &'a [u8],
    parse: impl for<'b> Fn(&'b [u8]) -> Result<Event<'b>, ParseError>,
) -> Result<Event<'a>, ParseError> {
    match parse(line) {
        Ok(ev) => Ok(ev),
        Err(err) => {
            if std::str::from_utf8(line).is_ok() {
                return Err(err);
            }
            let owned = String::from_utf8_lossy(line).into_owned();
            parse(owned.as_bytes()).map(Event::into_owned)
        }
    }
}

/// The error for a line that is not the JSON object a format expects.
pub(crate) fn bad_json(format: &'static str) -> ParseError {
    ParseError::Malformed {
        format,
        what: "invalid JSON",
    }
}

/// A JSON string that borrows from the line unless it had escapes.
///
/// `Option<Cow<'a, str>>` with `#[serde(borrow)]` does not borrow (serde
/// only special-cases a bare `Cow`), so every string field uses this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JStr<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for JStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(JStr(Cow::Owned(v)))
            }
            // Numbers where a string was expected (a status logged as
            // 200 in one version and "200" in another) are kept as text.
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(JStr(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(JStr(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(JStr(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// Helpers on optional strings.
pub(crate) trait OptJStr<'a> {
    /// The string, with empty and `-` treated as absent.
    fn value(self) -> Option<Cow<'a, str>>;
}

impl<'a> OptJStr<'a> for Option<JStr<'a>> {
    fn value(self) -> Option<Cow<'a, str>> {
        match self {
            Some(JStr(s)) if !s.is_empty() && s != "-" => Some(s),
            _ => None,
        }
    }
}

/// A number that some gateway versions write as a string (Kong 1.x sizes,
/// AWS `status`), or as null. Kept as `f64`: every value we read (epoch
/// milliseconds, byte counts) is exact below 2^53.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Num(pub Option<f64>);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a numeric string")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num(Some(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Num, E> {
                Ok(Num(v.trim().parse::<f64>().ok()))
            }
            fn visit_unit<E>(self) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_none<E>(self) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Num, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Num(None))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Num, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Num(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl Num {
    /// As an unsigned integer, when present, finite and non-negative.
    pub(crate) fn u64(self) -> Option<u64> {
        match self.0 {
            Some(v) if v.is_finite() && v >= 0.0 => Some(if v >= u64::MAX as f64 {
                u64::MAX
            } else {
                v as u64
            }),
            _ => None,
        }
    }

    /// As an HTTP status (0 when absent or out of range).
    pub(crate) fn status(self) -> u16 {
        match self.u64() {
            Some(v) if v < 1000 => v as u16,
            _ => 0,
        }
    }
}

/// A header value: a string, or the array Kong and APISIX write when the
/// header was repeated (joined with `, `, which allocates on that rare path),
/// or the one-element array Caddy always writes (borrowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderVal<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for HeaderVal<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeaderVal<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(HeaderVal(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(HeaderVal(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(HeaderVal(Some(Cow::Owned(v))))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(HeaderVal(None))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(HeaderVal(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut acc: Option<Cow<'de, str>> = None;
                while let Some(JStr(s)) = seq.next_element::<JStr<'de>>()? {
                    acc = Some(match acc {
                        None => s,
                        Some(prev) => Cow::Owned(format!("{prev}, {s}")),
                    });
                }
                Ok(HeaderVal(acc))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'a> HeaderVal<'a> {
    /// The value, with empty and `-` as absent.
    pub(crate) fn value(self) -> Option<Cow<'a, str>> {
        match self.0 {
            Some(s) if !s.is_empty() && s != "-" => Some(s),
            _ => None,
        }
    }
}

/// Nesting the [`Scan`] fast path follows before giving up.
const SCAN_MAX_DEPTH: u32 = 32;

/// A validating, non-allocating cursor over one JSON document, for the
/// fast paths of the JSON formats (serde's visitor machinery costs several
/// times the bytes it reads on a 1.6 KB Kong line).
///
/// It accepts only plain input: valid UTF-8 (checked once, up front), no
/// control bytes anywhere (so whitespace between tokens is spaces), no
/// `\u` escapes, nesting under [`SCAN_MAX_DEPTH`]. On anything else, and on
/// anything the caller does not expect, methods return `None` and the
/// caller falls back to its serde path, which decides (accepts, repairs or
/// rejects) exactly as before. What the scanner accepts it reads exactly as
/// serde would, so the two paths give the same events. The one leniency is
/// [`pass_over`](Self::pass_over), for containers the caller never reads:
/// there only brackets, string ends and control bytes are checked, not the
/// grammar between them.
pub(crate) struct Scan<'a> {
    /// The line, as text so strings are borrowed without checking each.
    text: &'a str,
    /// The cursor, a byte offset into `text`.
    i: usize,
}

impl<'a> Scan<'a> {
    /// A cursor at the start of `line`; `None` if it is not UTF-8.
    pub(crate) fn new(line: &'a [u8]) -> Option<Scan<'a>> {
        let text = simdutf8::basic::from_utf8(line).ok()?;
        Some(Scan { text, i: 0 })
    }

    /// The line's bytes, which the scan reads.
    #[inline]
    fn b(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        match self.b().get(self.i) {
            Some(b' ') => self.skip_spaces(),
            next => next.copied(),
        }
    }

    /// Out of line: gateways write no spaces between tokens.
    #[cold]
    fn skip_spaces(&mut self) -> Option<u8> {
        while self.b().get(self.i) == Some(&b' ') {
            self.i += 1;
        }
        self.b().get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// Reads the string at the cursor: the range of its content, and
    /// whether it had an escape. `None` on a `\u` escape (or a bad one),
    /// a control byte, or a missing closing quote.
    #[inline(always)]
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.eat(b'"')?;
        let b = self.b();
        let start = self.i;
        let mut j = start;
        let mut escaped = false;
        loop {
            // Sixteen bytes at a time up to the first quote, backslash or
            // control byte; byte by byte in a line's last sixteen.
            while let Some(chunk) = b.get(j..j + 16).and_then(|c| c.try_into().ok()) {
                match string_stops(chunk) {
                    0 => j += 16,
                    stops => {
                        j += stops.trailing_zeros() as usize;
                        break;
                    }
                }
            }
            match *b.get(j)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match b.get(j + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => j += 1,
            }
        }
        self.i = j + 1;
        Some((start, j, escaped))
    }

    /// The string at the cursor, borrowed; `None` if it has an escape.
    #[inline]
    pub(crate) fn plain_str(&mut self) -> Option<&'a str> {
        match self.string()? {
            // Quotes are ASCII, so both ends are character boundaries.
            (start, end, false) => self.text.get(start..end),
            _ => None,
        }
    }

    /// An object key, as bytes, and the colon after it; `None` if the key
    /// has an escape.
    #[inline]
    fn key(&mut self) -> Option<&'a [u8]> {
        // Nearly every key is short and followed by its colon at once:
        // its closing quote is the first stop among the next sixteen bytes.
        let b = self.b();
        let at = self.i;
        if let (Some(b'"'), Some(chunk)) = (b.get(at), b.get(at + 1..at + 17)) {
            let stops = string_stops(chunk.try_into().ok()?);
            let end = at + 1 + stops.trailing_zeros() as usize;
            if stops != 0 && b[end] == b'"' && b.get(end + 1) == Some(&b':') {
                self.i = end + 2;
                return Some(&b[at + 1..end]);
            }
        }
        let key = match self.string()? {
            (start, end, false) => &b[start..end],
            _ => return None,
        };
        self.eat(b':')?;
        Some(key)
    }

    /// A non-negative integer in plain digits that `f64` holds exactly
    /// (what serde hands a `Num` as `visit_u64`).
    #[inline]
    pub(crate) fn uint(&mut self) -> Option<f64> {
        self.peek()?;
        let b = self.b();
        let start = self.i;
        let mut v = 0u64;
        let mut j = start;
        while let Some(d) = b.get(j).filter(|c| c.is_ascii_digit()) {
            v = v * 10 + u64::from(d - b'0');
            j += 1;
        }
        let digits = j - start;
        if digits == 0 || digits > 15 || (digits > 1 && b[start] == b'0') {
            return None;
        }
        if matches!(b.get(j), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.i = j;
        Some(v as f64)
    }

    /// Walks the object at the cursor: `field` gets each key with the
    /// cursor on its value, and must consume the value.
    #[inline]
    pub(crate) fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, &'a [u8]) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.key()?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Walks the array at the cursor: `element` must consume each value.
    #[inline]
    pub(crate) fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            element(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Skips (and validates) the value at the cursor, `depth` containers
    /// deep.
    pub(crate) fn skip(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' if depth < SCAN_MAX_DEPTH => self.object(|sc, _| sc.skip(depth + 1)),
            b'[' if depth < SCAN_MAX_DEPTH => self.array(|sc| sc.skip(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.skip_number(),
            _ => None,
        }
    }

    /// Moves past a value the caller will never read, `depth` containers
    /// deep: a container is skimmed a block at a time
    /// ([`jsonsimd`](super::jsonsimd): balanced and string-safe, its
    /// grammar unchecked), anything else — or a container the skim leaves
    /// alone — is [`skip`](Self::skip)ped token by token.
    #[inline]
    pub(crate) fn pass_over(&mut self, depth: u32) -> Option<()> {
        if let open @ (b'{' | b'[') = self.peek()? {
            // An empty one (Kong's `"querystring":{}`) needs no skim.
            if self.b().get(self.i + 1) == Some(&(open + 2)) {
                self.i += 2;
                return Some(());
            }
            let room = SCAN_MAX_DEPTH.saturating_sub(depth);
            if let Some(end) = container_end(self.b(), self.i, room) {
                self.i = end;
                return Some(());
            }
        }
        self.skip(depth)
    }

    /// Reads the container at the cursor with `read`, unless `memo` kept
    /// the same bytes from an earlier line: then the cursor jumps past
    /// them and the value `read` gave for them comes back instead.
    /// `read` gets the value's start and returns what it read and what to
    /// keep (`None`: nothing, when its result cannot be rebuilt from a
    /// [`Copy`] value).
    #[inline]
    pub(crate) fn memoized<T, V: Copy>(
        &mut self,
        memo: &mut Memo<V>,
        read: impl FnOnce(&mut Self, usize) -> Option<(T, Option<V>)>,
    ) -> Option<Recalled<T, V>> {
        let container = matches!(self.peek()?, b'{' | b'[');
        let start = self.i;
        if let Some((end, value)) = container.then(|| memo.recall(self.b(), start)).flatten() {
            self.i = end;
            return Some(Recalled::Kept { start, value });
        }
        let (read, keep) = read(self, start)?;
        if let Some(value) = keep {
            memo.remember(&self.b()[start..self.i], value);
        }
        Some(Recalled::Read(read))
    }

    /// The whole line, for rebuilding a [`Recalled::Kept`] value's strings.
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// Whether only spaces follow.
    pub(crate) fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    fn literal(&mut self, lit: &[u8]) -> Option<()> {
        self.b()[self.i..]
            .starts_with(lit)
            .then(|| self.i += lit.len())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn skip_number(&mut self) -> Option<()> {
        let b = self.b();
        let mut j = self.i;
        let digits = |j: &mut usize| {
            let start = *j;
            while b.get(*j).is_some_and(u8::is_ascii_digit) {
                *j += 1;
            }
            *j - start
        };
        if b.get(j) == Some(&b'-') {
            j += 1;
        }
        let int_start = j;
        match digits(&mut j) {
            0 => return None,
            n if n > 1 && b[int_start] == b'0' => return None,
            _ => {}
        }
        if b.get(j) == Some(&b'.') {
            j += 1;
            if digits(&mut j) == 0 {
                return None;
            }
        }
        if matches!(b.get(j), Some(b'e' | b'E')) {
            j += 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if digits(&mut j) == 0 {
                return None;
            }
        }
        self.i = j;
        Some(())
    }
}

/// What [`Scan::memoized`] found at the cursor.
pub(crate) enum Recalled<T, V> {
    /// Bytes not seen before, read afresh.
    Read(T),
    /// Bytes seen before, starting at `start`: the value kept for them.
    Kept { start: usize, value: V },
}

/// Fills an optional field once: a second occurrence of a key is a
/// duplicate field for serde, so the fast path gives up on it.
#[inline]
pub(crate) fn set_once<T>(slot: &mut Option<T>, v: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v?);
    Some(())
}

/// Whether a JSON line has `key` (given with its quotes, `"started_at"`) as
/// an object key, without parsing it. A key's opening quote is never
/// preceded by a backslash and its closing quote is followed by `:`; a
/// string *value* containing the same text has its quotes escaped, so an
/// attacker cannot make `auto` pick the wrong parser through a header.
pub(crate) fn has_key(line: &[u8], quoted_key: &[u8]) -> bool {
    let finder = memchr::memmem::find_iter(line, quoted_key);
    for at in finder {
        if at > 0 && line[at - 1] == b'\\' {
            continue;
        }
        let mut i = at + quoted_key.len();
        while i < line.len() && matches!(line[i], b' ' | b'\t') {
            i += 1;
        }
        if line.get(i) == Some(&b':') {
            return true;
        }
    }
    false
}

/// The number of elements of a JSON array line, for [`ParseError::Batch`].
pub(crate) fn array_len(line: &[u8]) -> Option<usize> {
    from_slice::<Vec<IgnoredAny>>(line).map(|v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T<'a> {
        #[serde(borrow)]
        s: Option<JStr<'a>>,
        n: Option<Num>,
        #[serde(borrow)]
        h: Option<HeaderVal<'a>>,
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let t: T = from_slice(br#"{"s":"plain","n":"46","h":["a","b"]}"#).unwrap();
        assert!(matches!(t.s, Some(JStr(Cow::Borrowed("plain")))));
        assert_eq!(t.n.unwrap().u64(), Some(46));
        assert_eq!(t.h.unwrap().value().as_deref(), Some("a, b"));
        let t: T = from_slice(br#"{"s":"a\/b\"c","n":null}"#).unwrap();
        assert_eq!(t.s.unwrap().0, "a/b\"c");
        assert_eq!(t.n.unwrap_or_default().u64(), None);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        for depth in [200, 20_000] {
            let arrays = format!("{{\"s\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
            assert!(from_slice::<T>(arrays.as_bytes()).is_none());
            // serde_json skips unknown values iteratively: any depth is fine.
            let objects = format!(
                "{{\"x\":{}1{}}}",
                "{\"a\":".repeat(depth),
                "}".repeat(depth)
            );
            assert!(from_slice::<T>(objects.as_bytes()).is_some());
        }
        // Brackets inside strings count too: such a line takes the
        // serde_json path and still parses.
        let ua = format!("{{\"s\":\"{}\"}}", "[".repeat(1000));
        assert_eq!(
            from_slice::<T>(ua.as_bytes()).unwrap().s.unwrap().0.len(),
            1000
        );
    }

    #[test]
    fn scan_reads_plain_json_and_gives_up_on_the_rest() {
        let line = br#"{"a": "x", "n":[1,-2.5e+3,true,null,{"k":"v\"w"}],"u":12}"#;
        let mut sc = Scan::new(line).unwrap();
        let (mut a, mut u) = (None, None);
        sc.object(|sc, k| match k {
            b"a" => set_once(&mut a, sc.plain_str()),
            b"u" => set_once(&mut u, sc.uint()),
            _ => sc.skip(1),
        })
        .unwrap();
        assert!(sc.at_end());
        assert_eq!((a, u), (Some("x"), Some(12.0)));
        let skipped = |b: &[u8]| Scan::new(b)?.skip(0);
        let passed_over = |b: &[u8]| Scan::new(b)?.pass_over(0);
        let ungrammatical = [
            &br#"{"a":01}"#[..],
            br#"{"a":1.}"#,
            br#"{"a":tru}"#,
            br#"{"a":1,}"#,
            br#"{"a" 1}"#,
            br#"{"a":[1 2]}"#,
        ];
        for bad in ungrammatical {
            let shown = String::from_utf8_lossy(bad);
            assert!(skipped(bad).is_none(), "{shown}");
            // Passing over an unread container checks its brackets only.
            assert!(passed_over(bad).is_some(), "{shown}");
        }
        for bad in [
            &br#"{"a":"\u0041"}"#[..],
            b"{\"a\":\"\t\"}",
            br#"{"a":[1}"#,
            br#"{"a":"x}"#,
        ] {
            let shown = String::from_utf8_lossy(bad);
            assert!(skipped(bad).is_none(), "{shown}");
            assert!(passed_over(bad).is_none(), "{shown}");
        }
        // Empty containers are passed over without a skim.
        for empty in [&b"{}"[..], b"[]", b" { } ", b"[[]]"] {
            let mut sc = Scan::new(empty).unwrap();
            assert!(sc.pass_over(0).is_some() && sc.at_end(), "{empty:?}");
        }
        assert!(passed_over(b"{").is_none());
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        assert!(skipped(deep.as_bytes()).is_none());
        assert!(passed_over(deep.as_bytes()).is_none());
        // Long strings (the sixteen-at-a-time path), non-ASCII, escapes.
        let long = format!("{{\"k\":\"{}é\\\"{}\"}}", "x".repeat(20), "y".repeat(9));
        assert!(skipped(long.as_bytes()).is_some());
        assert!(passed_over(long.as_bytes()).is_some());
        let mut sc = Scan::new(r#"{"k":"0123456789abcdefé"}"#.as_bytes()).unwrap();
        let mut k = None;
        sc.object(|sc, _| set_once(&mut k, sc.plain_str())).unwrap();
        assert_eq!(k, Some("0123456789abcdefé"));
        assert!(Scan::new(b"\"0123456789\xff\"").is_none());
        assert!(skipped(b"\"0123456789\x01\"").is_none());
        let mut dup = None;
        assert!(set_once(&mut dup, Some(1)).is_some() && set_once(&mut dup, Some(2)).is_none());
    }

    #[test]
    fn key_probe_ignores_values() {
        assert!(has_key(br#"{"a":1, "started_at" : 2}"#, br#""started_at""#));
        assert!(!has_key(
            br#"{"ua":"x\"started_at\":1"}"#,
            br#""started_at""#
        ));
        assert!(!has_key(br#"{"started_at_x":1}"#, br#""started_at""#));
    }
}
