//! Fixed-layout timestamp parsing, hand-written because it runs once per
//! line: `chrono`'s format-string parser costs more than the rest of an
//! nginx line together.
//!
//! All functions return milliseconds since the Unix epoch (UTC) and `None`
//! for anything that is not a real date.

use std::cell::Cell;

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard
/// Hinnant's `days_from_civil`). `m` is 1-12.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days in a month of the proleptic Gregorian calendar.
fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Month number from its English three-letter abbreviation.
#[inline]
pub(crate) fn month(b: &[u8]) -> Option<u32> {
    Some(match b {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}

#[inline]
fn d2(b: &[u8], i: usize) -> Option<u32> {
    let h = b.get(i)?.wrapping_sub(b'0');
    let l = b.get(i + 1)?.wrapping_sub(b'0');
    if h > 9 || l > 9 {
        return None;
    }
    Some(u32::from(h) * 10 + u32::from(l))
}

#[inline]
fn d4(b: &[u8], i: usize) -> Option<i64> {
    Some(i64::from(d2(b, i)?) * 100 + i64::from(d2(b, i + 2)?))
}

/// Milliseconds of a civil date-time, after range checks.
pub(crate) fn civil_ms(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32, ms: u32) -> Option<i64> {
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60
    {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
    Some(secs * 1000 + i64::from(ms))
}

/// Reads up to three fraction digits as milliseconds and skips the rest of
/// the digits; returns (ms, index after the digits).
fn fraction(b: &[u8], mut i: usize) -> (u32, usize) {
    let mut ms = 0;
    let mut n = 0;
    while let Some(c) = b.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        if n < 3 {
            ms = ms * 10 + u32::from(c - b'0');
        }
        n += 1;
        i += 1;
    }
    while n < 3 {
        ms *= 10;
        n += 1;
    }
    (ms, i)
}

/// A numeric UTC offset `+hhmm`, `+hh:mm` or `+hh` in seconds; returns
/// (seconds, index after it).
fn offset(b: &[u8], i: usize) -> Option<(i64, usize)> {
    let sign = match b.get(i)? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hh = d2(b, i + 1)?;
    let (mm, end) = match b.get(i + 3) {
        Some(b':') => (d2(b, i + 4)?, i + 6),
        Some(c) if c.is_ascii_digit() => (d2(b, i + 3)?, i + 5),
        _ => (0, i + 3),
    };
    if hh > 23 || mm > 59 {
        return None;
    }
    Some((sign * (i64::from(hh) * 3600 + i64::from(mm) * 60), end))
}

/// nginx `$time_local` / Apache `%t`: `10/Oct/2000:13:55:36 -0700`, also
/// HAProxy's `06/Feb/2009:12:14:14.655` (fraction, no zone) and Apache's
/// zone-less `27/Jun/2013:11:55:44`. A missing zone is taken as UTC.
/// `b` is the text between the brackets.
pub(crate) fn parse_clf(b: &[u8]) -> Option<i64> {
    if b.len() < 20
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
    {
        return None;
    }
    let (h, mi, s) = (d2(b, 12)?, d2(b, 15)?, d2(b, 18)?);
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 20;
    let mut ms = 0;
    if b.get(i) == Some(&b'.') {
        (ms, i) = fraction(b, i + 1);
    }
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    let midnight = clf_midnight(&b[..11], &b[i..])?;
    Some((midnight + i64::from(h * 3600 + mi * 60 + s)) * 1000 + i64::from(ms))
}

/// A `dd/Mon/yyyy` date and the zone written after the time.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ClfDay {
    date: [u8; 11],
    zone: [u8; 6],
    zone_len: u8,
}

/// Seconds since the epoch of midnight of `date` (`dd/Mon/yyyy`) in `zone`
/// (`+hhmm`, `+hh:mm`, `+hh`, or empty for UTC). Consecutive lines share
/// the day, so each parse thread remembers the last one: the calendar
/// arithmetic was a third of an nginx line's timestamp cost.
fn clf_midnight(date: &[u8], zone: &[u8]) -> Option<i64> {
    thread_local! {
        static LAST: Cell<Option<(ClfDay, i64)>> = const { Cell::new(None) };
    }
    let mut key = ClfDay {
        date: date.try_into().ok()?,
        zone: [0; 6],
        zone_len: u8::try_from(zone.len()).ok()?,
    };
    key.zone.get_mut(..zone.len())?.copy_from_slice(zone);
    if let Some((last, midnight)) = LAST.get() {
        if last == key {
            return Some(midnight);
        }
    }
    let d = d2(date, 0)?;
    let mo = month(&date[3..6])?;
    let y = d4(date, 7)?;
    let off = if zone.is_empty() {
        0
    } else {
        let (off, end) = offset(zone, 0)?;
        if end != zone.len() {
            return None;
        }
        off
    };
    let midnight = civil_ms(y, mo, d, 0, 0, 0, 0)? / 1000 - off;
    LAST.set(Some((key, midnight)));
    Some(midnight)
}

/// RFC 3339 / ISO 8601: `2019-04-08T16:50:12.533Z`, `2021-03-16T18:56:54.735539596Z`,
/// `2020-09-23T19:05:05-04:00`, a space instead of `T`, `+0000`; no offset
/// means UTC. Trailing bytes are an error.
pub(crate) fn parse_rfc3339(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let y = d4(b, 0)?;
    let mo = d2(b, 5)?;
    let d = d2(b, 8)?;
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let h = d2(b, 11)?;
    let mi = d2(b, 14)?;
    let s = d2(b, 17)?;
    let mut i = 19;
    let mut ms = 0;
    if matches!(b.get(i), Some(b'.' | b',')) {
        (ms, i) = fraction(b, i + 1);
    }
    let off = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(_) => {
            let (off, end) = offset(b, i)?;
            if end != b.len() {
                return None;
            }
            off
        }
    };
    Some(civil_ms(y, mo, d, h, mi, s, ms)? - off * 1000)
}

/// Seconds since the epoch with an optional fraction (`1693840791.7564995`)
/// to milliseconds, without going through `f64` (which would round).
pub(crate) fn parse_epoch_float(b: &[u8]) -> Option<i64> {
    let (int, rest) = match memchr::memchr(b'.', b) {
        Some(p) => (&b[..p], &b[p..]),
        None => (b, &b[..0]),
    };
    let secs = i64::try_from(super::text::parse_u64(int)?).ok()?;
    let ms = if rest.is_empty() {
        0
    } else {
        let (ms, end) = fraction(rest, 1);
        if end != rest.len() {
            return None;
        }
        ms
    };
    secs.checked_mul(1000)?.checked_add(i64::from(ms))
}

/// Seconds since the epoch as a JSON float.
pub(crate) fn epoch_f64_ms(v: f64) -> Option<i64> {
    let ms = (v * 1000.0).round();
    if !ms.is_finite() || ms.abs() > 1e17 {
        return None;
    }
    Some(ms as i64)
}

/// RFC 3164 syslog time `Sep 15 16:13:46` (also `Feb  6 …`): month, day and
/// seconds of the day, with no year. Returns (month, day, seconds of day).
pub(crate) fn parse_bsd_time(b: &[u8]) -> Option<(u32, u32, u32)> {
    if b.len() < 15 || b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let mo = month(&b[..3])?;
    let day = if b[4] == b' ' {
        u32::from(b[5].wrapping_sub(b'0'))
    } else {
        d2(b, 4)?
    };
    let h = d2(b, 7)?;
    let mi = d2(b, 10)?;
    let s = d2(b, 13)?;
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some((mo, day, h * 3600 + mi * 60 + s))
}

/// The year to give a year-less syslog time: the year of `reference_ms`
/// (the inner access-log time, or the receive time), moved back one year
/// when that would put the syslog time more than a month after the
/// reference (a December line received in January).
pub(crate) fn year_for(mo: u32, reference_ms: i64) -> i64 {
    let days = reference_ms.div_euclid(86_400_000);
    let (y, rm) = civil_from_days(days);
    if mo == 12 && rm == 1 {
        y - 1
    } else if mo == 1 && rm == 12 {
        y + 1
    } else {
        y
    }
}

/// The inverse of [`days_from_civil`], year and month only.
fn civil_from_days(z: i64) -> (i64, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, NaiveDateTime};

    fn chrono_clf(s: &str) -> i64 {
        DateTime::parse_from_str(s, "%d/%b/%Y:%H:%M:%S %z")
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn clf_matches_chrono() {
        for s in [
            "10/Oct/2000:13:55:36 -0700",
            "29/Feb/2024:23:59:59 +0000",
            "01/Jan/1970:00:00:00 +0000",
            "17/Oct/2023:05:57:49 +1100",
            "31/Dec/1999:23:59:60 +0000",
        ] {
            if s.contains(":60 ") {
                assert!(parse_clf(s.as_bytes()).is_some());
                continue;
            }
            assert_eq!(parse_clf(s.as_bytes()), Some(chrono_clf(s)), "{s}");
        }
        assert_eq!(
            parse_clf(b"06/Feb/2009:12:14:14.655"),
            Some(
                NaiveDateTime::parse_from_str("2009-02-06 12:14:14.655", "%Y-%m-%d %H:%M:%S%.f")
                    .unwrap()
                    .and_utc()
                    .timestamp_millis()
            )
        );
        assert!(parse_clf(b"27/Jun/2013:11:55:44").is_some());
        assert!(parse_clf(b"31/Jan/2015:14:29:44 ").is_some());
        for bad in [
            &b"10/Foo/2000:13:55:36 -0700"[..],
            b"10/Oct/2000:13:55:36 -07x",
            b"10/Oct/2000:25:55:36 -0700",
            b"10/Oct/2000:13:55:36 -0700x",
            b"",
            b"1x/Oct/2000:13:55:36 -0700",
        ] {
            assert_eq!(parse_clf(bad), None, "{bad:?}");
        }
    }

    /// The remembered day must never leak into a line of another day or
    /// zone, nor make an impossible date valid.
    #[test]
    fn clf_day_memory_follows_date_and_zone() {
        let lines = [
            "10/Oct/2000:13:55:36 -0700",
            "10/Oct/2000:13:55:37 -0700",
            "10/Oct/2000:13:55:37 +0000",
            "10/Oct/2000:13:55:37 +00:00",
            "10/Oct/2000:13:55:37 +02",
            "10/Oct/2000:13:55:37",
            "11/Oct/2000:00:00:00 -0700",
            "10/Oct/2000:23:59:59 -0700",
            "29/Feb/2024:12:00:00 +0000",
        ];
        for _ in 0..2 {
            for s in lines {
                let fresh = match s.get(21..) {
                    None | Some("") => chrono_clf(&format!("{s} +0000")),
                    Some(zone) => chrono_clf(&format!(
                        "{} {}",
                        &s[..20],
                        zone.replace(':', "").replace("+02", "+0200")
                    )),
                };
                assert_eq!(parse_clf(s.as_bytes()), Some(fresh), "{s}");
            }
        }
        assert!(parse_clf(b"29/Feb/2024:12:00:00 +0000").is_some());
        assert_eq!(parse_clf(b"29/Feb/2023:12:00:00 +0000"), None);
        assert_eq!(parse_clf(b"29/Feb/2024:12:00:00 +0000x"), None);
    }

    #[test]
    fn rfc3339_variants() {
        let base = DateTime::parse_from_rfc3339("2019-04-08T16:50:12.533Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(parse_rfc3339(b"2019-04-08T16:50:12.533Z"), Some(base));
        assert_eq!(parse_rfc3339(b"2019-04-08T16:50:12.533999999Z"), Some(base));
        assert_eq!(parse_rfc3339(b"2019-04-08T18:50:12.533+02:00"), Some(base));
        assert_eq!(parse_rfc3339(b"2019-04-08T18:50:12.533+0200"), Some(base));
        assert_eq!(parse_rfc3339(b"2019-04-08 16:50:12.533"), Some(base));
        assert_eq!(parse_rfc3339(b"2019-04-08T16:50:12.533Zx"), None);
        assert_eq!(parse_rfc3339(b"2019-13-08T16:50:12Z"), None);
    }

    #[test]
    fn epochs() {
        assert_eq!(
            parse_epoch_float(b"1693840791.7564995"),
            Some(1_693_840_791_756)
        );
        assert_eq!(parse_epoch_float(b"1693840791"), Some(1_693_840_791_000));
        assert_eq!(parse_epoch_float(b"1693840791.5"), Some(1_693_840_791_500));
        assert_eq!(parse_epoch_float(b"x"), None);
        assert_eq!(epoch_f64_ms(1711741827.9626286), Some(1_711_741_827_963));
        assert_eq!(epoch_f64_ms(1700000000.123), Some(1_700_000_000_123));
    }

    #[test]
    fn bsd_time_and_year_rule() {
        assert_eq!(parse_bsd_time(b"Feb  6 12:14:14"), Some((2, 6, 44054)));
        assert_eq!(parse_bsd_time(b"Sep 15 16:13:46"), Some((9, 15, 58426)));
        let jan_2022 = parse_rfc3339(b"2022-01-01T00:00:01Z").unwrap();
        assert_eq!(year_for(12, jan_2022), 2021);
        assert_eq!(year_for(1, jan_2022), 2022);
        let dec_2021 = parse_rfc3339(b"2021-12-31T23:59:59Z").unwrap();
        assert_eq!(year_for(1, dec_2021), 2022);
        assert_eq!(year_for(6, dec_2021), 2021);
    }
}
