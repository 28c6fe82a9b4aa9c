//! Splitting a syslog header from the message it carries.
//!
//! Access logs often arrive wrapped in syslog: nginx's `access_log
//! syslog:server=…`, HAProxy's `log` directive, or a file written by
//! rsyslog. The formats only care about the body; the header still tells
//! which host and program sent the line. This module is the one place that
//! knows the header variants, so the file formats (`auto`, `haproxy`) and
//! the syslog network source share it:
//!
//! * RFC 5424: `<165>1 2003-10-11T22:14:15.003Z host app procid msgid [sd] msg`
//!   (`-` for nil fields, structured data may be several `[…]` with `\]`
//!   escapes, an optional UTF-8 BOM before the message).
//! * RFC 3164 / BSD: `[<PRI>]Mmm dd hh:mm:ss host tag[pid]: msg`, with or
//!   without `<PRI>` (files written by rsyslog/syslog-ng have none).
//! * HAProxy's RFC 3164 without a hostname: `<134>Nov 14 22:45:11 haproxy[760]: msg`.
//! * nginx's: `<190>Nov 14 22:45:11 myhost nginx: msg`.
//! * rsyslog's high-precision file format: `2021-09-30T09:23:53.123+02:00 host tag[pid]: msg`.
//!
//! RFC 3164 timestamps have no year and no zone: [`SyslogHeader::timestamp_ms`]
//! takes the year from a reference time the caller supplies (the inner
//! access-log time, or the receive time) and reads the time as UTC.

use crate::formats::time::{civil_ms, days_from_civil, parse_bsd_time, parse_rfc3339, year_for};

/// Which header layout a line had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogFormat {
    /// RFC 3164 (BSD) header, including the hostname-less HAProxy variant.
    Rfc3164,
    /// RFC 5424 header.
    Rfc5424,
    /// An RFC 3339 timestamp followed by a BSD-style host and tag (rsyslog's
    /// `RSYSLOG_FileFormat`).
    Rfc3339Bsd,
}

/// The fields of a syslog header, borrowed from the line, and the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyslogHeader<'a> {
    /// Which layout the header had.
    pub format: SyslogFormat,
    /// The `<PRI>` value (facility × 8 + severity), when present.
    pub pri: Option<u8>,
    /// The raw timestamp text (`Sep 15 16:13:46` or RFC 3339).
    pub timestamp: &'a [u8],
    /// The sending host, when the header names one.
    pub hostname: Option<&'a [u8]>,
    /// The program (`nginx`, `haproxy`; RFC 5424 APP-NAME).
    pub app_name: Option<&'a [u8]>,
    /// The process id (`[2869]` in RFC 3164, PROCID in RFC 5424).
    pub proc_id: Option<&'a [u8]>,
    /// RFC 5424 MSGID.
    pub msg_id: Option<&'a [u8]>,
    /// RFC 5424 structured data, brackets included (`None` for `-`).
    pub structured_data: Option<&'a [u8]>,
    /// The message: the access-log line.
    pub body: &'a [u8],
}

impl SyslogHeader<'_> {
    /// The facility (`pri / 8`), when a `<PRI>` was present.
    pub fn facility(&self) -> Option<u8> {
        self.pri.map(|p| p >> 3)
    }

    /// The severity (`pri % 8`), when a `<PRI>` was present.
    pub fn severity(&self) -> Option<u8> {
        self.pri.map(|p| p & 7)
    }

    /// The header time in milliseconds since the epoch (UTC).
    ///
    /// RFC 3164 has no year: it is the year of `reference_ms` (e.g. the
    /// inner access-log time or the time the line was received), one year
    /// earlier for a December header with a January reference, one later
    /// for the opposite. Zone-less times are read as UTC.
    pub fn timestamp_ms(&self, reference_ms: i64) -> Option<i64> {
        match self.format {
            SyslogFormat::Rfc5424 | SyslogFormat::Rfc3339Bsd => parse_rfc3339(self.timestamp),
            SyslogFormat::Rfc3164 => {
                let (mo, day, secs) = parse_bsd_time(self.timestamp)?;
                let y = year_for(mo, reference_ms);
                // Validate the date (Feb 30 is not a day) through civil_ms.
                civil_ms(y, mo, day, 0, 0, 0, 0)?;
                Some((days_from_civil(y, mo, day) * 86_400 + i64::from(secs)) * 1000)
            }
        }
    }
}

/// Splits `line` into its syslog header and body; `None` when the line does
/// not start with a syslog header (so the caller parses it as it is).
pub fn parse(line: &[u8]) -> Option<SyslogHeader<'_>> {
    let (pri, rest) = match line.first() {
        Some(b'<') => {
            let close = line.iter().take(5).position(|&c| c == b'>')?;
            let digits = &line[1..close];
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let pri = std::str::from_utf8(digits).ok()?.parse::<u8>().ok()?;
            if pri > 191 {
                return None;
            }
            (Some(pri), &line[close + 1..])
        }
        _ => (None, line),
    };
    if pri.is_some() && rest.len() > 2 && rest[0].is_ascii_digit() && rest[1] == b' ' {
        return parse_5424(pri, &rest[2..]);
    }
    if rest.len() >= 16 && rest[0].is_ascii_uppercase() {
        return parse_3164(pri, rest);
    }
    if rest.len() >= 20 && rest[0].is_ascii_digit() {
        return parse_3339_bsd(pri, rest);
    }
    None
}

fn token(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = memchr::memchr(b' ', b)?;
    Some((&b[..sp], &b[sp + 1..]))
}

fn nil(b: &[u8]) -> Option<&[u8]> {
    (b != b"-").then_some(b)
}

fn parse_5424(pri: Option<u8>, b: &[u8]) -> Option<SyslogHeader<'_>> {
    let (ts, b) = token(b)?;
    if ts != b"-" {
        parse_rfc3339(ts)?;
    }
    let (host, b) = token(b)?;
    let (app, b) = token(b)?;
    let (proc_id, b) = token(b)?;
    let (msg_id, b) = token(b)?;
    let (sd, body) = if b.first() == Some(&b'-') {
        (None, b.get(2..).unwrap_or_default())
    } else if b.first() == Some(&b'[') {
        // One or more elements; `\]` inside a value does not close one.
        let mut i = 0;
        while b.get(i) == Some(&b'[') {
            let mut j = i + 1;
            loop {
                match b.get(j)? {
                    b'\\' => j += 2,
                    b']' => break,
                    _ => j += 1,
                }
            }
            i = j + 1;
        }
        (Some(&b[..i]), b.get(i + 1..).unwrap_or_default())
    } else {
        return None;
    };
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    Some(SyslogHeader {
        format: SyslogFormat::Rfc5424,
        pri,
        timestamp: ts,
        hostname: nil(host),
        app_name: nil(app),
        proc_id: nil(proc_id),
        msg_id: nil(msg_id),
        structured_data: sd,
        body,
    })
}

/// (app, pid, body) of a BSD tag.
type Tag<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

/// `tag[pid]: ` or `tag: ` at the start of `b`.
fn tag(b: &[u8]) -> Option<Tag<'_>> {
    let end = b.iter().take(64).position(|&c| c == b':' || c == b' ')?;
    if b[end] != b':' || end == 0 {
        return None;
    }
    let t = &b[..end];
    let body = b[end + 1..].strip_prefix(b" ").unwrap_or(&b[end + 1..]);
    match memchr::memchr(b'[', t) {
        Some(o) if t.last() == Some(&b']') => Some((&t[..o], Some(&t[o + 1..t.len() - 1]), body)),
        Some(_) => None,
        None => Some((t, None, body)),
    }
}

fn host_and_tag<'a>(
    format: SyslogFormat,
    pri: Option<u8>,
    ts: &'a [u8],
    b: &'a [u8],
) -> Option<SyslogHeader<'a>> {
    // HAProxy sends no hostname: the first token is already the tag.
    if let Some((app, pid, body)) = tag(b) {
        return Some(SyslogHeader {
            format,
            pri,
            timestamp: ts,
            hostname: None,
            app_name: Some(app),
            proc_id: pid,
            msg_id: None,
            structured_data: None,
            body,
        });
    }
    let (host, b) = token(b)?;
    let (app, pid, body) = tag(b)?;
    Some(SyslogHeader {
        format,
        pri,
        timestamp: ts,
        hostname: Some(host),
        app_name: Some(app),
        proc_id: pid,
        msg_id: None,
        structured_data: None,
        body,
    })
}

fn parse_3164(pri: Option<u8>, b: &[u8]) -> Option<SyslogHeader<'_>> {
    parse_bsd_time(&b[..15])?;
    let rest = b.get(15..)?.strip_prefix(b" ")?;
    host_and_tag(SyslogFormat::Rfc3164, pri, &b[..15], rest)
}

fn parse_3339_bsd(pri: Option<u8>, b: &[u8]) -> Option<SyslogHeader<'_>> {
    let (ts, rest) = token(b)?;
    parse_rfc3339(ts)?;
    host_and_tag(SyslogFormat::Rfc3339Bsd, pri, ts, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsd_with_host_and_pid() {
        let line = b"Sep 15 16:13:46 ip-172-31-43-28.us-east-2.compute.internal nginx[2869]: 81.150.104.130 - - [15/Sep/2021:16:13:46 +0000] \"POST /wp-login.php HTTP/1.1\" 200 5364";
        let h = parse(line).unwrap();
        assert_eq!(h.format, SyslogFormat::Rfc3164);
        assert_eq!(h.pri, None);
        assert_eq!(
            h.hostname,
            Some(&b"ip-172-31-43-28.us-east-2.compute.internal"[..])
        );
        assert_eq!(
            (h.app_name, h.proc_id),
            (Some(&b"nginx"[..]), Some(&b"2869"[..]))
        );
        assert!(h.body.starts_with(b"81.150.104.130 - -"));
        let reference = parse_rfc3339(b"2021-09-15T16:13:46Z").unwrap();
        assert_eq!(h.timestamp_ms(reference), Some(reference));
    }

    #[test]
    fn nginx_and_haproxy_senders() {
        let h = parse(b"<190>Nov 14 22:45:11 web1 nginx: 1.2.3.4 - - [x]").unwrap();
        assert_eq!(
            (h.pri, h.facility(), h.severity()),
            (Some(190), Some(23), Some(6))
        );
        assert_eq!(
            (h.hostname, h.app_name, h.proc_id),
            (Some(&b"web1"[..]), Some(&b"nginx"[..]), None)
        );
        assert_eq!(h.body, b"1.2.3.4 - - [x]");
        let h = parse(
            b"<134>Feb  6 12:14:14 haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] x",
        )
        .unwrap();
        assert_eq!((h.hostname, h.app_name), (None, Some(&b"haproxy"[..])));
        assert!(h.body.starts_with(b"10.0.1.2:33317"));
    }

    #[test]
    fn rfc5424_with_and_without_structured_data() {
        let h = parse(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventID=\"10\\]11\"][x@1 a=\"b\"] \xEF\xBB\xBFAn application event").unwrap();
        assert_eq!(h.format, SyslogFormat::Rfc5424);
        assert_eq!(
            (h.app_name, h.proc_id, h.msg_id),
            (Some(&b"evntslog"[..]), None, Some(&b"ID47"[..]))
        );
        assert_eq!(h.structured_data.map(<[u8]>::len), Some(55));
        assert_eq!(h.body, b"An application event");
        assert_eq!(
            h.timestamp_ms(0),
            parse_rfc3339(b"2003-10-11T22:14:15.003Z")
        );
        let h = parse(b"<13>1 2024-01-01T00:00:00Z host nginx 42 - - 1.2.3.4 - - [01/Jan/2024:00:00:00 +0000]").unwrap();
        assert_eq!((h.structured_data, h.proc_id), (None, Some(&b"42"[..])));
        assert!(h.body.starts_with(b"1.2.3.4"));
    }

    #[test]
    fn rsyslog_high_precision_and_non_syslog_lines() {
        let h = parse(b"2021-09-30T09:23:53.123456+02:00 web1 nginx[7]: body").unwrap();
        assert_eq!((h.format, h.body), (SyslogFormat::Rfc3339Bsd, &b"body"[..]));
        for not in [
            &b"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1"[..],
            b"2025-12-31T17:37:40.493035218+01:00 stdout F {\"a\":1}",
            b"<999>Sep 15 16:13:46 h t: x",
            b"DEBUG: CrowdsecBouncerTraefikPlugin: 2025/09/05 13:53:40 x",
            b"[2019-04-08T16:50:12.533Z] \"- - -\" 0",
            b"<1",
            b"",
        ] {
            assert_eq!(parse(not), None, "{:?}", String::from_utf8_lossy(not));
        }
    }

    #[test]
    fn year_rule_for_bsd_times() {
        let h = parse(b"Dec 31 23:59:59 h app: x").unwrap();
        let jan = parse_rfc3339(b"2022-01-01T00:00:05Z").unwrap();
        assert_eq!(h.timestamp_ms(jan), parse_rfc3339(b"2021-12-31T23:59:59Z"));
        let h = parse(b"Feb 30 00:00:00 h app: x").unwrap();
        assert_eq!(h.timestamp_ms(jan), None);
    }
}
