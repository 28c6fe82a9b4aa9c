//! Event time: the only clock detectors are allowed to read.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use std::fmt;

/// A point in event time: milliseconds since the Unix epoch, UTC.
///
/// A plain integer rather than `DateTime<Utc>` because it is copied into every
/// event and compared on every detector step; conversion to a calendar time
/// happens only when something is shown to a human.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime(pub i64);

impl EventTime {
    /// The earliest representable time; used as "never".
    pub const MIN: EventTime = EventTime(i64::MIN);

    /// Builds a time from milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        EventTime(ms)
    }

    /// Builds a time from whole seconds since the epoch.
    pub const fn from_secs(s: i64) -> Self {
        EventTime(s.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (floored).
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This time moved forward by `ms` milliseconds (saturating).
    pub const fn plus_millis(self, ms: i64) -> Self {
        EventTime(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self` (negative when `earlier` is later).
    pub const fn since(self, earlier: EventTime) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The calendar time, for display and storage.
    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Converts a calendar time (e.g. read back from the store).
    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        EventTime(dt.timestamp_millis())
    }

    /// RFC 3339 with millisecond precision and a `Z` suffix, the format of every
    /// timestamp gatewatch prints.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// RFC 3339 text in human-readable encodings (JSON: findings, records);
/// the plain millisecond count in binary ones (saved detector state, where
/// it is smaller and `EventTime::MIN` must survive too).
impl serde::Serialize for EventTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_rfc3339())
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> serde::Deserialize<'de> for EventTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return i64::deserialize(d).map(EventTime);
        }
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|dt| EventTime::from_datetime(dt.with_timezone(&Utc)))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_encodings_keep_the_millisecond_count() {
        for t in [EventTime::MIN, EventTime::from_millis(1_614_232_668_342)] {
            let bytes = postcard::to_stdvec(&t).unwrap();
            assert!(bytes.len() <= 10, "{bytes:?}");
            assert_eq!(postcard::from_bytes::<EventTime>(&bytes).unwrap(), t);
        }
    }

    #[test]
    fn rfc3339_round_trips_with_millis() {
        let t = EventTime::from_millis(1_614_232_668_342);
        assert_eq!(t.to_rfc3339(), "2021-02-25T05:57:48.342Z");
        let back: EventTime = serde_json::from_str(&format!("\"{t}\"")).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn secs_floor_before_epoch() {
        assert_eq!(EventTime::from_millis(-1).secs(), -1);
    }
}
