//! Small byte-level helpers shared by the text parsers: borrowing fields as
//! `str`, splitting requests, reading numbers. No allocation unless a field
//! is not valid UTF-8.

use gatewatch_detector::Method;
use std::borrow::Cow;

/// A field as text: borrowed when valid UTF-8 (the normal case), otherwise
/// a lossy copy, so that a hostile byte never costs us the event.
#[inline]
pub(crate) fn text(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

/// A line checked as UTF-8 once (one SIMD pass), so that fields cut from
/// it become text without a check each: per-field checks of short fields
/// cost more than the whole line's.
#[derive(Clone, Copy)]
pub(crate) struct Utf8Line<'a> {
    bytes: &'a [u8],
    /// The line as text, when it is valid UTF-8.
    text: Option<&'a str>,
}

impl<'a> Utf8Line<'a> {
    /// Checks `bytes`.
    #[inline]
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Utf8Line {
            bytes,
            text: simdutf8::basic::from_utf8(bytes).ok(),
        }
    }

    /// `field`, a part of this line, as text: borrowed from the checked
    /// line when it can be, else as [`text`] gives it.
    #[inline]
    pub(crate) fn text(&self, field: &'a [u8]) -> Cow<'a, str> {
        let offset = (field.as_ptr() as usize).wrapping_sub(self.bytes.as_ptr() as usize);
        // `get` refuses a range outside the line or off a char boundary.
        match self
            .text
            .and_then(|t| t.get(offset..offset.checked_add(field.len())?))
        {
            Some(s) => Cow::Borrowed(s),
            None => text(field),
        }
    }

    /// The empty string for nginx's `-` placeholder, else the field as
    /// [`Utf8Line::text`] gives it.
    #[inline]
    pub(crate) fn dash_empty(&self, field: &'a [u8]) -> Cow<'a, str> {
        if field == b"-" {
            Cow::Borrowed("")
        } else {
            self.text(field)
        }
    }
}

/// `None` for the empty field and for the `-` placeholder nginx, Apache and
/// Envoy write for "no value".
#[inline]
pub(crate) fn opt_text(b: &[u8]) -> Option<Cow<'_, str>> {
    if b.is_empty() || b == b"-" {
        None
    } else {
        Some(text(b))
    }
}

/// Splits a request target into path and query (without the `?`).
#[inline]
pub(crate) fn split_target(t: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'?', t) {
        Some(q) => (&t[..q], &t[q + 1..]),
        None => (t, &[]),
    }
}

/// Same as [`split_target`] for an already decoded string, keeping the
/// borrow (or the allocation) of the input.
pub(crate) fn split_target_cow(t: Cow<'_, str>) -> (Cow<'_, str>, Cow<'_, str>) {
    match t {
        Cow::Borrowed(s) => match s.find('?') {
            Some(q) => (Cow::Borrowed(&s[..q]), Cow::Borrowed(&s[q + 1..])),
            None => (Cow::Borrowed(s), Cow::Borrowed("")),
        },
        Cow::Owned(s) => match s.find('?') {
            Some(q) => (
                Cow::Owned(s[..q].to_owned()),
                Cow::Owned(s[q + 1..].to_owned()),
            ),
            None => (Cow::Owned(s), Cow::Borrowed("")),
        },
    }
}

/// A parsed HTTP request line.
pub(crate) struct Request<'a> {
    pub method: Method,
    pub path: &'a [u8],
    pub query: &'a [u8],
}

/// Splits `METHOD SP target SP HTTP/x` into its parts.
///
/// Anything else (TLS bytes, an empty request, `-`, a line without a
/// protocol) is [`Method::Invalid`] with the whole raw request as path: the
/// request is still a probing signal, and the raw bytes are the evidence.
pub(crate) fn split_request(req: &[u8]) -> Request<'_> {
    let invalid = Request {
        method: Method::Invalid,
        path: req,
        query: &[],
    };
    let Some(sp) = memchr::memchr(b' ', req) else {
        return invalid;
    };
    let Some(last) = memchr::memrchr(b' ', req) else {
        return invalid;
    };
    if last <= sp || !req[last + 1..].starts_with(b"HTTP/") {
        return invalid;
    }
    let method = Method::parse(&req[..sp]);
    if method == Method::Invalid {
        return invalid;
    }
    let (path, query) = split_target(&req[sp + 1..last]);
    Request {
        method,
        path,
        query,
    }
}

/// Parses an unsigned decimal integer; `None` on anything else (including
/// overflow and the empty string).
#[inline]
pub(crate) fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    Some(n)
}

/// An HTTP status: three digits, or `-` / anything else as 0 ("none").
#[inline]
pub(crate) fn parse_status(b: &[u8]) -> Option<u16> {
    if b == b"-" {
        return Some(0);
    }
    match parse_u64(b) {
        Some(n) if n < 1000 => Some(n as u16),
        _ => None,
    }
}

/// Decimal seconds (`0.123`, `12`, nginx `$request_time`) to whole
/// milliseconds; `None` for `-` or junk.
pub(crate) fn secs_to_ms(b: &[u8]) -> Option<u32> {
    let (int, frac) = match memchr::memchr(b'.', b) {
        Some(p) => (&b[..p], &b[p + 1..]),
        None => (b, &b[..0]),
    };
    let int = if int.is_empty() { 0 } else { parse_u64(int)? };
    let mut ms: u64 = 0;
    let mut scale = 100;
    for &c in frac.iter().take(3) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        ms += u64::from(d) * scale;
        scale /= 10;
    }
    if frac.iter().any(|c| !c.is_ascii_digit()) {
        return None;
    }
    Some(u32::try_from(int.saturating_mul(1000).saturating_add(ms)).unwrap_or(u32::MAX))
}

/// Milliseconds from a float in some unit, saturating, `None` when
/// negative or not finite.
pub(crate) fn float_ms(v: f64, per_ms: f64) -> Option<u32> {
    let ms = v / per_ms;
    if !ms.is_finite() || ms < 0.0 {
        return None;
    }
    Some(if ms >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        ms as u32
    })
}

/// The host part of an absolute URL (`http://host:8000/x` → `host:8000`).
pub(crate) fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..end];
    (!host.is_empty()).then_some(host)
}

/// Finds the closing `"` of a quoted field that starts right after the
/// opening quote, skipping backslash escapes (Apache writes `\"`, nginx
/// `\x22`). Returns the index of the closing quote in `b`.
#[inline]
pub(crate) fn closing_quote(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = memchr::memchr2(b'"', b'\\', &b[i..]) {
        let at = i + p;
        if b[at] == b'"' {
            return Some(at);
        }
        i = at + 2;
        if i > b.len() {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_a_checked_line_borrow_and_others_fall_back() {
        let line = "1.2.3.4 \"GET /ü HTTP/1.1\"".as_bytes();
        let l = Utf8Line::new(line);
        let path = &line[13..16];
        assert!(matches!(l.text(path), Cow::Borrowed("/ü")));
        assert_eq!(l.dash_empty(&line[..0]), "");
        // Not a part of the line: checked on its own.
        let other = b"elsewhere".to_vec();
        assert_eq!(l.text(&other), "elsewhere");
        // Cut inside a character: lossy, never a panic.
        assert_eq!(l.text(&line[13..15]), "/\u{FFFD}");
        // A line that is not UTF-8: each field on its own.
        let bad = b"ok \xff bad";
        let l = Utf8Line::new(bad);
        assert!(matches!(l.text(&bad[..2]), Cow::Borrowed("ok")));
        assert_eq!(l.text(&bad[3..4]), "\u{FFFD}");
    }

    #[test]
    fn requests_split_or_are_invalid() {
        let r = split_request(b"GET /a/b?x=1&y=2 HTTP/1.1");
        assert_eq!(
            (r.method, r.path, r.query),
            (Method::Get, &b"/a/b"[..], &b"x=1&y=2"[..])
        );
        for raw in [
            &b""[..],
            b"-",
            b"HELP",
            b"\\x16\\x03\\x01",
            b"GET /no-protocol",
            b"GET /a?cmd=ls -al",
        ] {
            let r = split_request(raw);
            assert_eq!(r.method, Method::Invalid, "{raw:?}");
            assert_eq!(r.path, raw);
        }
        assert_eq!(split_request(b"PROPFIND / HTTP/1.1").method, Method::Other);
    }

    #[test]
    fn numbers() {
        assert_eq!(secs_to_ms(b"0.123"), Some(123));
        assert_eq!(secs_to_ms(b"12"), Some(12000));
        assert_eq!(secs_to_ms(b"1.5"), Some(1500));
        assert_eq!(secs_to_ms(b"-"), None);
        assert_eq!(parse_status(b"-"), Some(0));
        assert_eq!(parse_status(b"4040"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
    }

    #[test]
    fn quotes_skip_escapes() {
        assert_eq!(closing_quote(br#"a\"b" x"#), Some(4));
        assert_eq!(closing_quote(br#"a\\"#), None);
        assert_eq!(closing_quote(b"\\"), None);
        assert_eq!(
            url_host("http://localhost:8000/log?x"),
            Some("localhost:8000")
        );
    }
}
