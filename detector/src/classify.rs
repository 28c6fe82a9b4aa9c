//! Classifying a request once, so that no detector repeats a pattern match.

use std::fmt;

/// What kind of request an event is, as a small bit set.
///
/// The router classifies each event once (path patterns are the expensive
/// part of detection) and every detector reads the bits.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RequestClass(u16);

impl RequestClass {
    /// No class.
    pub const NONE: RequestClass = RequestClass(0);
    /// A login / token / password endpoint.
    pub const LOGIN: RequestClass = RequestClass(1 << 0);
    /// An admin, internal, actuator or management route.
    pub const PRIVILEGED: RequestClass = RequestClass(1 << 1);
    /// A path that names a sensitive file (`/.env`, `/.git/config`, backups).
    pub const SENSITIVE_FILE: RequestClass = RequestClass(1 << 2);
    /// A static asset (images, css, js, fonts).
    pub const STATIC: RequestClass = RequestClass(1 << 3);
    /// A health-check or monitoring endpoint.
    pub const HEALTH_CHECK: RequestClass = RequestClass(1 << 4);
    /// A path that addresses one object by identifier (`/users/123`).
    pub const OBJECT_ID: RequestClass = RequestClass(1 << 5);
    /// A request line that is not HTTP, or an HTTP version that does not exist.
    pub const MALFORMED: RequestClass = RequestClass(1 << 6);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: RequestClass) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: RequestClass) {
        self.0 |= other.0;
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The raw bits (for compact storage in shard batches).
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Rebuilds a class from [`RequestClass::bits`].
    pub const fn from_bits(bits: u16) -> Self {
        RequestClass(bits)
    }
}

impl std::ops::BitOr for RequestClass {
    type Output = RequestClass;
    fn bitor(self, rhs: RequestClass) -> RequestClass {
        RequestClass(self.0 | rhs.0)
    }
}

impl fmt::Debug for RequestClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(RequestClass, &str); 7] = [
            (RequestClass::LOGIN, "LOGIN"),
            (RequestClass::PRIVILEGED, "PRIVILEGED"),
            (RequestClass::SENSITIVE_FILE, "SENSITIVE_FILE"),
            (RequestClass::STATIC, "STATIC"),
            (RequestClass::HEALTH_CHECK, "HEALTH_CHECK"),
            (RequestClass::OBJECT_ID, "OBJECT_ID"),
            (RequestClass::MALFORMED, "MALFORMED"),
        ];
        let mut list = f.debug_set();
        for (bit, name) in NAMES {
            if self.contains(bit) {
                list.entry(&name);
            }
        }
        list.finish()
    }
}

/// Classifies requests by path patterns. (Placeholder: the detector work
/// replaces this with configurable login / privileged / sensitive patterns.)
pub struct Classifier;

impl Classifier {
    /// Builds the classifier from the detection config.
    pub fn new(_cfg: &crate::config::DetectionConfig) -> Result<Self, crate::config::ConfigError> {
        Ok(Classifier)
    }

    /// Classifies one event.
    pub fn classify(&self, _ev: &crate::event::Event<'_>) -> RequestClass {
        RequestClass::NONE
    }
}
