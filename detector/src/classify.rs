//! Classifying a request once, so that no detector repeats a pattern match.
//!
//! The router runs the [`Classifier`] on every event and hands the resulting
//! [`RequestClass`] bits to every detector. All pattern matching lives here:
//! one multi-pattern regex for login and health-check routes (both are
//! suffix globs), and one Aho-Corasick DFA for every path fragment list
//! (privileged routes, sensitive files, attack fragments, owned-object
//! routes), each scanned once per event — or once per path while the path
//! stays in the classifier's small cache of recent paths (`path_cache`).
//! Nothing here allocates per event.

use crate::config::{ConfigError, DetectionConfig, LoginRoute};
use crate::event::{mix64, Event, Method};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use path_cache::PathCache;
use regex_automata::meta::Regex;
use std::cell::RefCell;
use std::fmt;

mod path_cache;

/// What kind of request an event is, as a small bit set.
///
/// The router classifies each event once (path patterns are the expensive
/// part of detection) and every detector reads the bits.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RequestClass(u16);

impl RequestClass {
    /// No class.
    pub const NONE: RequestClass = RequestClass(0);
    /// A login attempt: a login route with a method that submits
    /// credentials, or a 401 to a request carrying a basic-auth user.
    pub const LOGIN: RequestClass = RequestClass(1 << 0);
    /// An admin, internal, actuator or management route.
    pub const PRIVILEGED: RequestClass = RequestClass(1 << 1);
    /// A path that names a sensitive file (`/.env`, `/.git/config`, backups)
    /// or carries a traversal / exploit fragment.
    pub const SENSITIVE_FILE: RequestClass = RequestClass(1 << 2);
    /// A static asset (images, css, js, fonts).
    pub const STATIC: RequestClass = RequestClass(1 << 3);
    /// A health-check or monitoring endpoint.
    pub const HEALTH_CHECK: RequestClass = RequestClass(1 << 4);
    /// A path that addresses one object by identifier (`/users/123`).
    pub const OBJECT_ID: RequestClass = RequestClass(1 << 5);
    /// A request line that is not HTTP, or an HTTP version that does not exist.
    pub const MALFORMED: RequestClass = RequestClass(1 << 6);
    /// A login attempt that failed (as the route's rule reads the status);
    /// without [`RequestClass::LOGIN`], a 401 that names no account.
    pub const AUTH_FAILURE: RequestClass = RequestClass(1 << 7);
    /// Credentials were accepted: a login that succeeded, or a 2xx to a
    /// request carrying a basic-auth user.
    pub const AUTH_SUCCESS: RequestClass = RequestClass(1 << 8);
    /// The query names an object through an id parameter (`?author=3`).
    pub const ID_PARAM: RequestClass = RequestClass(1 << 9);
    /// The path is under a route of objects that belong to someone
    /// (`/users/`, `/invoices/`).
    pub const OWNED_OBJECT: RequestClass = RequestClass(1 << 10);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: RequestClass) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: RequestClass) -> bool {
        self.0 & other.0 != 0
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
        const NAMES: [(RequestClass, &str); 11] = [
            (RequestClass::LOGIN, "LOGIN"),
            (RequestClass::PRIVILEGED, "PRIVILEGED"),
            (RequestClass::SENSITIVE_FILE, "SENSITIVE_FILE"),
            (RequestClass::STATIC, "STATIC"),
            (RequestClass::HEALTH_CHECK, "HEALTH_CHECK"),
            (RequestClass::OBJECT_ID, "OBJECT_ID"),
            (RequestClass::MALFORMED, "MALFORMED"),
            (RequestClass::AUTH_FAILURE, "AUTH_FAILURE"),
            (RequestClass::AUTH_SUCCESS, "AUTH_SUCCESS"),
            (RequestClass::ID_PARAM, "ID_PARAM"),
            (RequestClass::OWNED_OBJECT, "OWNED_OBJECT"),
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

/// How the outcome of one login route is read.
#[derive(Clone)]
struct LoginRule {
    methods: Vec<Method>,
    failure: Vec<u16>,
    success: Option<Vec<u16>>,
}

/// Classifies requests by configurable path patterns. See the module docs.
///
/// Building one compiles automata (tens of milliseconds); cloning shares
/// them, so threads that classify clone one classifier. Each clone keeps
/// its own cache of recent paths' classes, so a classifier is `Send` but
/// not `Sync`: one per thread.
#[derive(Clone)]
pub struct Classifier {
    /// Login globs (pattern ids `0..rules.len()`), then health-check globs.
    routes: Option<Regex>,
    rules: Vec<LoginRule>,
    /// Every fragment list in one automaton; `fragment_kind` says which list
    /// a pattern id came from.
    fragments: Option<AhoCorasick>,
    fragment_kind: Vec<Fragment>,
    /// Attack fragments alone, for query strings.
    query_attack: Option<AhoCorasick>,
    static_exts: Vec<Box<[u8]>>,
    id_params: Vec<String>,
    basic_auth_failures: bool,
    anonymous_401: bool,
    /// Classes of recently seen paths; a clone starts with an empty one.
    paths: RefCell<PathCache>,
}

/// What a request's path alone says about it: the part of
/// [`Classifier::classify`] that a busy path repeats on every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PathClass {
    /// `STATIC`, `PRIVILEGED`, `SENSITIVE_FILE`, `OBJECT_ID` and
    /// `OWNED_OBJECT`, as far as the path decides them.
    class: RequestClass,
    /// The pattern id of the login or health-check route it matches.
    route: Option<u32>,
}

/// Which list a fragment pattern came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fragment {
    Privileged,
    /// Must end the path.
    Sensitive,
    Attack,
    Owned,
}

/// Turns a route glob into a regex matching the end of a path at a segment
/// boundary: `/api/*/auth` → `(?i)(?:^|/)api/[^/]*/auth/?$`.
fn glob_to_regex(glob: &str) -> String {
    let mut re = String::from("(?i)(?:^|/)");
    let body = glob.trim_start_matches('/').trim_end_matches('/');
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '*' {
            if chars.peek() == Some(&'*') {
                chars.next();
                re.push_str(".*");
            } else {
                re.push_str("[^/]*");
            }
        } else {
            re.push_str(&regex_syntax_escape(c));
        }
    }
    re.push_str("/?$");
    re
}

fn regex_syntax_escape(c: char) -> String {
    let mut s = String::new();
    if "\\.+*?()|[]{}^$#&-~".contains(c) {
        s.push('\\');
    }
    s.push(c);
    s
}

fn build_regex(field: &'static str, globs: &[String]) -> Result<Option<Regex>, ConfigError> {
    if globs.is_empty() {
        return Ok(None);
    }
    let pats: Vec<String> = globs.iter().map(|g| glob_to_regex(g)).collect();
    Regex::new_many(&pats).map(Some).map_err(|e| {
        // Compile them one by one only now, for an error that names the
        // culprit: up front it cost more than the whole set (each `(?i)`
        // pattern builds its own Unicode case tables), once per thread.
        globs
            .iter()
            .zip(&pats)
            .find_map(|(g, p)| {
                regex::Regex::new(p)
                    .err()
                    .map(|source| ConfigError::BadPattern {
                        field,
                        pattern: g.clone(),
                        source,
                    })
            })
            .unwrap_or_else(|| ConfigError::BadList {
                field,
                reason: e.to_string(),
            })
    })
}

fn build_ac(
    field: &'static str,
    items: &[String],
    kind: MatchKind,
) -> Result<Option<AhoCorasick>, ConfigError> {
    let items: Vec<&str> = items
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Ok(None);
    }
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(kind)
        .kind(Some(AhoCorasickKind::DFA))
        .build(items)
        .map(Some)
        .map_err(|e| ConfigError::BadList {
            field,
            reason: e.to_string(),
        })
}

fn concat<T: Clone>(a: &[T], b: &[T]) -> Vec<T> {
    a.iter().chain(b).cloned().collect()
}

impl Classifier {
    /// Builds the classifier from the detection config.
    pub fn new(cfg: &DetectionConfig) -> Result<Self, ConfigError> {
        let c = &cfg.credential_stuffing;
        let p = &cfg.privilege_probing;
        let routes: Vec<LoginRoute> = concat(&c.login_routes, &c.extra_login_routes);
        let globs: Vec<String> = routes.iter().map(|r| r.pattern.clone()).collect();
        let rules = routes
            .iter()
            .map(|r| LoginRule {
                methods: r
                    .methods
                    .iter()
                    .map(|m| Method::parse(m.to_ascii_uppercase().as_bytes()))
                    .collect(),
                failure: r
                    .failure_status
                    .clone()
                    .unwrap_or_else(|| c.failure_status.clone()),
                success: r.success_status.clone(),
            })
            .collect();
        let health = concat(
            &cfg.classify.health_checks,
            &cfg.classify.extra_health_checks,
        );
        let mut route_globs = globs;
        route_globs.extend(health);
        let mut fragment_list: Vec<String> = Vec::new();
        let mut fragment_kind = Vec::new();
        let attack = concat(&p.attack_fragments, &p.extra_attack_fragments);
        for (list, kind) in [
            (
                concat(&p.privileged_routes, &p.extra_privileged_routes),
                Fragment::Privileged,
            ),
            (
                concat(&p.sensitive_files, &p.extra_sensitive_files),
                Fragment::Sensitive,
            ),
            (attack.clone(), Fragment::Attack),
            (p.owned_object_routes.clone(), Fragment::Owned),
        ] {
            for item in list.into_iter().filter(|i| !i.is_empty()) {
                fragment_list.push(item);
                fragment_kind.push(kind);
            }
        }
        Ok(Classifier {
            routes: build_regex("credential_stuffing.login_routes", &route_globs)?,
            rules,
            fragments: build_ac("privilege_probing", &fragment_list, MatchKind::Standard)?,
            fragment_kind,
            query_attack: build_ac(
                "privilege_probing.attack_fragments",
                &attack,
                MatchKind::LeftmostFirst,
            )?,
            static_exts: cfg
                .classify
                .static_extensions
                .iter()
                .map(|e| {
                    e.trim_start_matches('.')
                        .to_ascii_lowercase()
                        .into_bytes()
                        .into()
                })
                .collect(),
            id_params: p.id_params.clone(),
            basic_auth_failures: c.basic_auth_failures,
            anonymous_401: c.anonymous_401_burst > 0,
            paths: RefCell::default(),
        })
    }

    /// Classifies one event.
    pub fn classify(&self, ev: &Event<'_>) -> RequestClass {
        let path = ev.path.as_ref();
        if ev.method == Method::Invalid || !(path.starts_with('/') || path == "*") {
            // Not HTTP, or an absolute-URI / garbage request line: nothing
            // else about the "path" is meaningful.
            let mut class = RequestClass::MALFORMED;
            if self.query_attack.as_ref().is_some_and(|a| a.is_match(path)) {
                class.insert(RequestClass::SENSITIVE_FILE);
            }
            return class;
        }
        let seen = self
            .paths
            .borrow_mut()
            .get_or_classify(path, |p| self.classify_path(p));
        let mut class = seen.class;
        if !ev.query.is_empty()
            && self
                .query_attack
                .as_ref()
                .is_some_and(|a| a.is_match(ev.query.as_ref()))
        {
            class.insert(RequestClass::SENSITIVE_FILE);
        }
        if !class.contains(RequestClass::OBJECT_ID)
            && param_object_ref(path, &ev.query, &self.id_params).is_some()
        {
            class.insert(RequestClass::ID_PARAM);
        }
        self.classify_routes(ev, seen.route, &mut class);
        class
    }

    /// The path-only part of [`Classifier::classify`].
    fn classify_path(&self, path: &str) -> PathClass {
        let mut class = RequestClass::NONE;
        if self.is_static(path) {
            class.insert(RequestClass::STATIC);
        }
        let mut owned = false;
        // Most paths hold no fragment: a plain search says so for less than
        // the overlapping one that collects every match.
        if let Some(ac) = self.fragments.as_ref().filter(|ac| ac.is_match(path)) {
            let end = path.trim_end_matches('/').len();
            for m in ac.find_overlapping_iter(path) {
                match self.fragment_kind[m.pattern().as_usize()] {
                    Fragment::Privileged => class.insert(RequestClass::PRIVILEGED),
                    Fragment::Sensitive if m.end() == end => {
                        class.insert(RequestClass::SENSITIVE_FILE)
                    }
                    Fragment::Sensitive => {}
                    Fragment::Attack => class.insert(RequestClass::SENSITIVE_FILE),
                    Fragment::Owned => owned = true,
                }
            }
        }
        if path_object_ref(path).is_some() {
            class.insert(RequestClass::OBJECT_ID);
            if owned {
                class.insert(RequestClass::OWNED_OBJECT);
            }
        }
        let route = self
            .routes
            .as_ref()
            .and_then(|re| re.find(path))
            .map(|m| m.pattern().as_u32());
        PathClass { class, route }
    }

    /// The login and health-check bits, from the route the path matched.
    fn classify_routes(&self, ev: &Event<'_>, route: Option<u32>, class: &mut RequestClass) {
        if let Some(pattern) = route {
            let Some(rule) = self.rules.get(pattern as usize) else {
                class.insert(RequestClass::HEALTH_CHECK);
                return;
            };
            if rule.methods.is_empty() || rule.methods.contains(&ev.method) {
                class.insert(RequestClass::LOGIN);
                if rule.failure.contains(&ev.status) {
                    class.insert(RequestClass::AUTH_FAILURE);
                } else if match &rule.success {
                    Some(s) => s.contains(&ev.status),
                    None => ev.is_success(),
                } {
                    class.insert(RequestClass::AUTH_SUCCESS);
                }
                return;
            }
        }
        if ev.user.as_deref().is_some_and(|u| !u.is_empty()) {
            if ev.status == 401 && self.basic_auth_failures {
                class.insert(RequestClass::LOGIN | RequestClass::AUTH_FAILURE);
            } else if (200..300).contains(&ev.status) {
                class.insert(RequestClass::AUTH_SUCCESS);
            }
        } else if ev.status == 401
            && self.anonymous_401
            && !class.contains(RequestClass::PRIVILEGED)
        {
            // Credentials refused, account unknown: only a burst of these
            // means anything (see `anonymous_401_burst`). On privileged
            // routes a 401 is a probe, judged by privilege_probing.
            class.insert(RequestClass::AUTH_FAILURE);
        }
    }

    fn is_static(&self, path: &str) -> bool {
        // The last dot of the last segment: one backward byte scan that
        // stops at the first `.` or `/` (paths are short; `rsplit` and
        // `rfind` cost several times more per request).
        let bytes = path.as_bytes();
        let Some(dot) = bytes.iter().rposition(|&b| b == b'.' || b == b'/') else {
            return false;
        };
        if bytes[dot] == b'/' {
            return false;
        }
        let ext = &bytes[dot + 1..];
        self.static_exts
            .iter()
            .any(|e| e.len() == ext.len() && e.eq_ignore_ascii_case(ext))
    }
}

/// One object a request addresses: the route it lives under and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// Hash of the route with the id taken out (`/api/users/{}/orders`, or
    /// the path plus the parameter name).
    pub route_hash: u64,
    /// Hash of the id.
    pub id_hash: u64,
    /// The id as a number, when it is one (for sequence checks).
    pub numeric: Option<u64>,
    /// Whether the id came from a query parameter rather than the path.
    pub from_param: bool,
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn is_id_segment(seg: &str) -> Option<Option<u64>> {
    let b = seg.as_bytes();
    if b.is_empty() {
        return None;
    }
    if b.len() <= 19 && b.iter().all(u8::is_ascii_digit) {
        return Some(seg.parse().ok());
    }
    // Cheapest test first: most segments are short words.
    let long_hex = b.len() >= 16
        && b.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-')
        && b.iter().filter(|c| c.is_ascii_digit()).count() >= 4;
    long_hex.then_some(None)
}

/// The object a request addresses: the last id-like path segment (all
/// digits, a UUID or a long hex string), else an `id_params` query
/// parameter. Shared by the classifier and the probing detector so both read
/// ids the same way.
pub fn object_ref(path: &str, query: &str, id_params: &[String]) -> Option<ObjectRef> {
    path_object_ref(path).or_else(|| param_object_ref(path, query, id_params))
}

/// The last id-like segment of `path`.
fn path_object_ref(path: &str) -> Option<ObjectRef> {
    let mut end = path.len();
    let bytes = path.as_bytes();
    while end > 0 {
        let start = memchr::memrchr(b'/', &bytes[..end]).map_or(0, |i| i + 1);
        if let Some(numeric) = is_id_segment(&path[start..end]) {
            let mut h = fnv(FNV_OFFSET, &bytes[..start]);
            h = fnv(h, b"{}");
            h = fnv(h, &bytes[end..]);
            return Some(ObjectRef {
                route_hash: mix64(h),
                id_hash: crate::event::stable_hash(&bytes[start..end]),
                numeric,
                from_param: false,
            });
        }
        if start == 0 {
            break;
        }
        end = start - 1;
    }
    None
}

/// The first of `id_params` that `query` gives a value.
fn param_object_ref(path: &str, query: &str, id_params: &[String]) -> Option<ObjectRef> {
    if query.is_empty() || id_params.is_empty() {
        return None;
    }
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if v.is_empty() || !id_params.iter().any(|p| p.eq_ignore_ascii_case(k)) {
            continue;
        }
        let mut h = fnv(FNV_OFFSET, path.as_bytes());
        h = fnv(h, b"?");
        h = fnv(h, k.as_bytes());
        return Some(ObjectRef {
            route_hash: mix64(h),
            id_hash: crate::event::stable_hash(v.as_bytes()),
            numeric: v.parse().ok(),
            from_param: true,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::EventTime;
    use std::borrow::Cow;

    fn ev(method: Method, path: &'static str, status: u16) -> Event<'static> {
        let mut e = Event::new(EventTime::from_secs(0), "1.2.3.4".parse().unwrap());
        e.method = method;
        e.path = Cow::Borrowed(path);
        e.status = status;
        e
    }

    fn classify(e: &Event<'_>) -> RequestClass {
        Classifier::new(&DetectionConfig::default())
            .unwrap()
            .classify(e)
    }

    /// A path met again is classified from the cache, and the class is
    /// what a classifier seeing it for the first time gives — whatever the
    /// method, query, status and user of the request around it.
    #[test]
    fn cached_path_classes_match_fresh_ones() {
        let warm = Classifier::new(&DetectionConfig::default()).unwrap();
        let paths = [
            "/login",
            "/api/v1/login",
            "/wp-login.php",
            "/healthz",
            "/admin/users/42",
            "/api/users/7/orders",
            "/static/app.js",
            "/.env",
            "/search",
            "/",
        ];
        let queries = ["", "id=5", "q=../../etc/passwd", "user_id=9&x=1"];
        let mut checked = 0;
        for round in 0..3 {
            for (k, path) in paths.iter().enumerate() {
                for (q, query) in queries.iter().enumerate() {
                    let method = [Method::Get, Method::Post][(k + q + round) % 2];
                    let status = [200, 302, 401, 403, 404][(k * 3 + q + round) % 5];
                    let mut e = ev(method, path, status);
                    e.query = Cow::Borrowed(query);
                    if (k + round) % 3 == 0 {
                        e.user = Some(Cow::Borrowed("bob"));
                    }
                    // A clone starts with an empty cache.
                    assert_eq!(warm.classify(&e), warm.clone().classify(&e), "{e:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3 * paths.len() * queries.len());
        assert_eq!(warm.paths.borrow().kept(), paths.len());
    }

    #[test]
    fn login_routes_match_at_segment_boundaries() {
        let c = Classifier::new(&DetectionConfig::default()).unwrap();
        for p in [
            "/login",
            "/api/v1/login",
            "/LOGIN/",
            "/api/v2/auth",
            "/oauth/token",
        ] {
            assert!(
                c.classify(&ev(Method::Post, p, 401))
                    .contains(RequestClass::LOGIN | RequestClass::AUTH_FAILURE),
                "{p}"
            );
        }
        for p in ["/blogin", "/login/help", "/api/auth/extra/deep"] {
            assert!(
                !c.classify(&ev(Method::Post, p, 401))
                    .contains(RequestClass::LOGIN),
                "{p}"
            );
        }
        // Viewing the form is not an attempt.
        assert!(!c
            .classify(&ev(Method::Get, "/login", 200))
            .contains(RequestClass::LOGIN));
    }

    #[test]
    fn wordpress_login_reads_200_as_failure_and_302_as_success() {
        let f = classify(&ev(Method::Post, "/wp-login.php", 200));
        assert!(f.contains(RequestClass::LOGIN | RequestClass::AUTH_FAILURE));
        let s = classify(&ev(Method::Post, "/wp-login.php", 302));
        assert!(s.contains(RequestClass::LOGIN | RequestClass::AUTH_SUCCESS));
        assert!(!s.contains(RequestClass::AUTH_FAILURE));
    }

    #[test]
    fn basic_auth_401_with_a_user_is_a_failed_login_anywhere() {
        let mut e = ev(Method::Get, "/reports/q3", 401);
        e.user = Some(Cow::Borrowed("bob"));
        assert!(classify(&e).contains(RequestClass::LOGIN | RequestClass::AUTH_FAILURE));
        e.status = 200;
        let c = classify(&e);
        assert!(c.contains(RequestClass::AUTH_SUCCESS) && !c.contains(RequestClass::LOGIN));
        e.user = None;
        e.status = 401;
        let anonymous = classify(&e);
        assert!(!anonymous.contains(RequestClass::LOGIN));
        assert!(anonymous.contains(RequestClass::AUTH_FAILURE));
    }

    #[test]
    fn privileged_sensitive_static_health() {
        assert!(
            classify(&ev(Method::Get, "/api/Admin/users", 403)).contains(RequestClass::PRIVILEGED)
        );
        assert!(classify(&ev(Method::Get, "/actuator/env", 404)).contains(RequestClass::PRIVILEGED));
        for p in [
            "/.env",
            "/app/.git/config",
            "/db/dump.sql",
            "/wp-config.php.bak",
            "/a/../../etc/passwd",
        ] {
            assert!(
                classify(&ev(Method::Get, p, 404)).contains(RequestClass::SENSITIVE_FILE),
                "{p}"
            );
        }
        assert!(
            !classify(&ev(Method::Get, "/environment", 200)).contains(RequestClass::SENSITIVE_FILE)
        );
        assert!(classify(&ev(Method::Get, "/img/logo.PNG", 200)).contains(RequestClass::STATIC));
        assert!(!classify(&ev(Method::Get, "/api/png", 200)).contains(RequestClass::STATIC));
        assert!(classify(&ev(Method::Get, "/healthz", 200)).contains(RequestClass::HEALTH_CHECK));
        assert!(
            classify(&ev(Method::Get, "/svc/a/health", 200)).contains(RequestClass::HEALTH_CHECK)
        );
    }

    #[test]
    fn malformed_request_lines() {
        assert!(classify(&ev(Method::Invalid, "\\x16\\x03\\x01", 400))
            .contains(RequestClass::MALFORMED));
        assert!(classify(&ev(Method::Get, "http://example.com/", 400))
            .contains(RequestClass::MALFORMED));
        assert!(!classify(&ev(Method::Get, "/", 200)).contains(RequestClass::MALFORMED));
    }

    #[test]
    fn object_ids_from_path_and_query() {
        let ids = vec!["author".to_string()];
        let a = object_ref("/api/users/17/orders", "", &ids).unwrap();
        let b = object_ref("/api/users/18/orders", "", &ids).unwrap();
        assert_eq!(a.route_hash, b.route_hash);
        assert_ne!(a.id_hash, b.id_hash);
        assert_eq!(a.numeric, Some(17));
        let u = object_ref("/v1/doc/3f2a9c1e-7b4d-4e8a-9c2b-1d2e3f4a5b6c", "", &ids).unwrap();
        assert_eq!(u.numeric, None);
        let q = object_ref("/", "author=3", &ids).unwrap();
        assert!(q.from_param);
        assert_eq!(q.numeric, Some(3));
        assert!(object_ref("/about/team", "page=2", &ids).is_none());
        assert!(classify(&ev(Method::Get, "/users/5", 403))
            .contains(RequestClass::OBJECT_ID | RequestClass::OWNED_OBJECT));
        assert!(
            !classify(&ev(Method::Get, "/products/5", 200)).contains(RequestClass::OWNED_OBJECT)
        );
    }
}
