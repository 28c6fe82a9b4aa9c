//! Kong's logging-plugin JSON (file-log, http-log, tcp-log, udp-log,
//! syslog, kafka-log: one serializer).
//!
//! `client_ip` is what Kong resolved with its own `trusted_ips`; when that
//! address is one of *our* trusted proxies (Kong not configured to trust
//! its load balancer), `request.headers["x-forwarded-for"]` is walked.
//! Kong 1.x writes sizes as strings and escapes `/` as `\/` (valid JSON:
//! the unescaped copy is the one allocation such lines cost). Repeated
//! headers arrive as arrays.
//!
//! http-log batches are JSON arrays: [`Format::parse_many`] returns one
//! event per element; [`Format::parse`] accepts a one-element array and
//! refuses a longer one with [`ParseError::Batch`].

use super::jsonutil::{array_len, bad_json, from_slice, set_once, with_lossy_retry};
use super::jsonutil::{HeaderVal, JStr, Num, OptJStr, Scan};
use super::text::{float_ms, split_target_cow, url_host};
use super::{trim_line, Format, ParseError};
use crate::client_ip::{parse_addr, ClientResolver};
use gatewatch_detector::{Event, EventTime, Method};
use serde::Deserialize;
use std::borrow::Cow;

const NAME: &str = "kong";

/// Parser for Kong logging-plugin JSON.
#[derive(Debug, Clone, Default)]
pub struct Kong {
    resolver: ClientResolver,
}

impl Kong {
    /// A parser resolving `x-forwarded-for` with `resolver`.
    pub fn new(resolver: ClientResolver) -> Self {
        Kong { resolver }
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct Line<'a> {
    #[serde(borrow)]
    client_ip: Option<JStr<'a>>,
    started_at: Option<Num>,
    #[serde(borrow)]
    request: Option<Request<'a>>,
    response: Option<Response>,
    latencies: Option<Latencies>,
    #[serde(borrow)]
    consumer: Option<Consumer<'a>>,
    #[serde(borrow)]
    authenticated_entity: Option<Entity<'a>>,
    #[serde(borrow)]
    route: Option<Route<'a>>,
}

#[derive(Deserialize, Default)]
struct Request<'a> {
    #[serde(borrow)]
    method: Option<JStr<'a>>,
    #[serde(borrow)]
    uri: Option<JStr<'a>>,
    #[serde(borrow)]
    url: Option<JStr<'a>>,
    #[serde(borrow)]
    headers: Option<Headers<'a>>,
}

#[derive(Deserialize, Default)]
struct Headers<'a> {
    #[serde(borrow)]
    host: Option<HeaderVal<'a>>,
    #[serde(borrow, rename = "user-agent")]
    user_agent: Option<HeaderVal<'a>>,
    #[serde(borrow, rename = "x-forwarded-for")]
    x_forwarded_for: Option<HeaderVal<'a>>,
}

#[derive(Deserialize, Default)]
struct Response {
    status: Option<Num>,
    size: Option<Num>,
}

#[derive(Deserialize, Default)]
struct Latencies {
    request: Option<Num>,
}

#[derive(Deserialize, Default)]
struct Consumer<'a> {
    #[serde(borrow)]
    username: Option<JStr<'a>>,
    #[serde(borrow)]
    custom_id: Option<JStr<'a>>,
    #[serde(borrow)]
    id: Option<JStr<'a>>,
}

#[derive(Deserialize, Default)]
struct Entity<'a> {
    #[serde(borrow)]
    id: Option<JStr<'a>>,
}

#[derive(Deserialize, Default, Clone)]
struct Route<'a> {
    #[serde(borrow)]
    name: Option<JStr<'a>>,
    #[serde(borrow)]
    paths: Option<HeaderVal<'a>>,
}

impl Format for Kong {
    fn name(&self) -> &'static str {
        NAME
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let line = trim_line(line);
        match line.first() {
            None => Err(ParseError::Empty),
            Some(b'[') => with_lossy_retry(line, |l| {
                let mut v: Vec<Line<'_>> = from_slice(l).ok_or_else(|| bad_json(NAME))?;
                match v.len() {
                    1 => self.event(v.remove(0)),
                    0 => Err(ParseError::MissingField {
                        format: NAME,
                        field: "client_ip",
                    }),
                    len => Err(ParseError::Batch { format: NAME, len }),
                }
            }),
            Some(_) => match fast::line(line) {
                Some(l) => self.event(l),
                None => with_lossy_retry(line, |l| {
                    self.event(from_slice(l).ok_or_else(|| bad_json(NAME))?)
                }),
            },
        }
    }

    fn parse_many<'a>(&self, line: &'a [u8], out: &mut Vec<Result<Event<'a>, ParseError>>) {
        let line = trim_line(line);
        if line.first() != Some(&b'[') {
            out.push(self.parse(line));
            return;
        }
        // Every field is optional, so any array of objects deserialises;
        // elements that are not Kong lines fail one by one in `event`.
        match from_slice::<Vec<Line<'a>>>(line) {
            Some(v) => out.extend(v.into_iter().map(|l| self.event(l))),
            None if std::str::from_utf8(line).is_ok() => {
                let n = array_len(line).unwrap_or(1).max(1);
                out.extend((0..n).map(|_| Err(bad_json(NAME))));
            }
            None => {
                let owned = String::from_utf8_lossy(line).into_owned();
                let mut tmp = Vec::new();
                self.parse_many(owned.as_bytes(), &mut tmp);
                out.extend(tmp.into_iter().map(|r| r.map(Event::into_owned)));
            }
        }
    }
}

impl Kong {
    pub(crate) fn event<'a>(&self, l: Line<'a>) -> Result<Event<'a>, ParseError> {
        let ts = l
            .started_at
            .and_then(Num::u64)
            .ok_or(ParseError::MissingField {
                format: NAME,
                field: "started_at",
            })?;
        let ts = i64::try_from(ts).map_err(|_| ParseError::BadTimestamp { format: NAME })?;
        let peer = l.client_ip.value().ok_or(ParseError::MissingField {
            format: NAME,
            field: "client_ip",
        })?;
        let peer = parse_addr(peer.as_bytes()).ok_or(ParseError::NoClient { format: NAME })?;
        let mut host = None;
        let mut ua = None;
        let mut xff = None;
        let mut ev = Event::new(EventTime::from_millis(ts), peer);
        if let Some(req) = l.request {
            ev.method = req
                .method
                .value()
                .map_or(Method::Invalid, |m| Method::parse(m.as_bytes()));
            if let Some(h) = req.headers {
                host = h.host.and_then(HeaderVal::value);
                ua = h.user_agent.and_then(HeaderVal::value);
                xff = h.x_forwarded_for.and_then(HeaderVal::value);
            }
            let url = req.url.value();
            if host.is_none() {
                host = url
                    .as_deref()
                    .and_then(url_host)
                    .map(|h| Cow::Owned(h.to_owned()));
            }
            let (path, query) = split_target_cow(req.uri.value().unwrap_or(Cow::Borrowed("")));
            ev.path = path;
            ev.query = query;
        } else {
            ev.method = Method::Invalid;
            ev.path = Cow::Borrowed("");
        }
        ev.ip = self
            .resolver
            .resolve(peer, xff.as_deref().map(str::as_bytes));
        ev.host = host.unwrap_or_default();
        ev.user_agent = ua.unwrap_or_default();
        if let Some(r) = l.response {
            ev.status = r.status.unwrap_or_default().status();
            ev.bytes = r.size.and_then(Num::u64).unwrap_or(0);
        }
        ev.latency_ms = l
            .latencies
            .and_then(|l| l.request)
            .and_then(|n| n.0)
            .and_then(|v| float_ms(v, 1.0));
        ev.identity = l
            .consumer
            .and_then(|c| c.username.value().or(c.custom_id.value()).or(c.id.value()))
            .or_else(|| l.authenticated_entity.and_then(|e| e.id.value()));
        ev.route = l.route.and_then(route_label);
        Ok(ev)
    }
}

/// What a route contributes to an event: its name, or else its paths.
fn route_label(r: Route<'_>) -> Option<Cow<'_, str>> {
    r.name
        .value()
        .or_else(|| r.paths.and_then(HeaderVal::value))
}

/// The fast path: a [`Scan`] over the fields [`Line`] has, skipping the
/// rest (Kong writes ~1.6 KB per request, most of it service and route
/// configuration we never read). It builds the same `Line` serde would, and
/// gives up (`None`) on anything unusual, which then takes the serde path:
/// escapes in a kept string, numbers as strings, `null`, repeated headers,
/// duplicate keys, a batch array. Values it does not read are passed over
/// ([`Scan::pass_over`]): a line whose route or service object is balanced
/// but not valid JSON is read here where serde would refuse it.
///
/// Route and service objects are Kong's configuration, repeated verbatim
/// on every request they serve: each thread keeps the ones it has read
/// ([`Memo`]) and recognises them by comparing bytes instead of walking
/// them again.
mod fast {
    use super::*;
    use crate::formats::jsonmemo::Memo;
    use crate::formats::jsonutil::Recalled;
    use std::cell::RefCell;

    thread_local! {
        /// Route objects read before, with their labels.
        static ROUTES: RefCell<Memo<Label>> = RefCell::new(Memo::new());
        /// Service objects passed over before.
        static SERVICES: RefCell<Memo<()>> = RefCell::new(Memo::new());
    }

    /// A route's label ([`route_label`]) as a range of the route object's
    /// bytes, so a memo hit can borrow it from the new line; `None` when
    /// the route has no label.
    #[derive(Clone, Copy)]
    struct Label(Option<(usize, usize)>);

    impl Label {
        /// The label of `r`, read from the route object at `text[start..]`;
        /// `None` when the label is not a plain slice of it (paths joined).
        fn of(r: &Route<'_>, text: &str, start: usize) -> Option<Label> {
            match route_label(r.clone()) {
                None => Some(Label(None)),
                Some(Cow::Borrowed(s)) => {
                    // Where the borrowed label sits in the line, checked.
                    let at = (s.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
                    let from = at.checked_sub(start)?;
                    let range = (from, from + s.len());
                    (text.get(at..at + s.len()) == Some(s)).then_some(Label(Some(range)))
                }
                Some(Cow::Owned(_)) => None,
            }
        }

        /// The route, as far as an event needs it, from the same bytes
        /// at `text[start..]`.
        fn route(self, text: &str, start: usize) -> Route<'_> {
            let name = self
                .0
                .and_then(|(from, to)| text.get(start + from..start + to));
            Route {
                name: name.map(|s| JStr(Cow::Borrowed(s))),
                paths: None,
            }
        }
    }

    fn jstr<'a>(sc: &mut Scan<'a>) -> Option<JStr<'a>> {
        sc.plain_str().map(|s| JStr(Cow::Borrowed(s)))
    }

    fn header<'a>(sc: &mut Scan<'a>) -> Option<HeaderVal<'a>> {
        sc.plain_str().map(|s| HeaderVal(Some(Cow::Borrowed(s))))
    }

    fn num(sc: &mut Scan<'_>) -> Option<Num> {
        sc.uint().map(|v| Num(Some(v)))
    }

    /// `route.paths`: an array of strings, joined as [`HeaderVal`] does.
    fn paths<'a>(sc: &mut Scan<'a>) -> Option<HeaderVal<'a>> {
        let mut acc: Option<Cow<'a, str>> = None;
        sc.array(|sc| {
            let s = Cow::Borrowed(sc.plain_str()?);
            acc = Some(match acc.take() {
                None => s,
                Some(prev) => Cow::Owned(format!("{prev}, {s}")),
            });
            Some(())
        })?;
        Some(HeaderVal(acc))
    }

    pub(super) fn line(b: &[u8]) -> Option<Line<'_>> {
        let mut sc = Scan::new(b)?;
        let mut l = Line::default();
        sc.object(|sc, key| match key {
            b"client_ip" => set_once(&mut l.client_ip, jstr(sc)),
            b"started_at" => set_once(&mut l.started_at, num(sc)),
            b"request" => set_once(&mut l.request, request(sc)),
            b"response" => set_once(&mut l.response, response(sc)),
            b"latencies" => set_once(&mut l.latencies, latencies(sc)),
            b"consumer" => set_once(&mut l.consumer, consumer(sc)),
            b"authenticated_entity" => set_once(&mut l.authenticated_entity, entity(sc)),
            b"route" => set_once(&mut l.route, route(sc)),
            b"service" => service(sc),
            _ => sc.pass_over(1),
        })?;
        sc.at_end().then_some(l)
    }

    fn request<'a>(sc: &mut Scan<'a>) -> Option<Request<'a>> {
        let mut r = Request::default();
        sc.object(|sc, key| match key {
            b"method" => set_once(&mut r.method, jstr(sc)),
            b"uri" => set_once(&mut r.uri, jstr(sc)),
            b"url" => set_once(&mut r.url, jstr(sc)),
            b"headers" => set_once(&mut r.headers, headers(sc)),
            _ => sc.pass_over(2),
        })?;
        Some(r)
    }

    fn headers<'a>(sc: &mut Scan<'a>) -> Option<Headers<'a>> {
        let mut h = Headers::default();
        sc.object(|sc, key| match key {
            b"host" => set_once(&mut h.host, header(sc)),
            b"user-agent" => set_once(&mut h.user_agent, header(sc)),
            b"x-forwarded-for" => set_once(&mut h.x_forwarded_for, header(sc)),
            _ => sc.pass_over(3),
        })?;
        Some(h)
    }

    fn response(sc: &mut Scan<'_>) -> Option<Response> {
        let mut r = Response::default();
        sc.object(|sc, key| match key {
            b"status" => set_once(&mut r.status, num(sc)),
            b"size" => set_once(&mut r.size, num(sc)),
            _ => sc.pass_over(2),
        })?;
        Some(r)
    }

    fn latencies(sc: &mut Scan<'_>) -> Option<Latencies> {
        let mut l = Latencies::default();
        sc.object(|sc, key| match key {
            b"request" => set_once(&mut l.request, num(sc)),
            _ => sc.pass_over(2),
        })?;
        Some(l)
    }

    fn consumer<'a>(sc: &mut Scan<'a>) -> Option<Consumer<'a>> {
        let mut c = Consumer::default();
        sc.object(|sc, key| match key {
            b"username" => set_once(&mut c.username, jstr(sc)),
            b"custom_id" => set_once(&mut c.custom_id, jstr(sc)),
            b"id" => set_once(&mut c.id, jstr(sc)),
            _ => sc.pass_over(2),
        })?;
        Some(c)
    }

    fn entity<'a>(sc: &mut Scan<'a>) -> Option<Entity<'a>> {
        let mut e = Entity::default();
        sc.object(|sc, key| match key {
            b"id" => set_once(&mut e.id, jstr(sc)),
            _ => sc.pass_over(2),
        })?;
        Some(e)
    }

    /// The service object, passed over unless seen before.
    fn service(sc: &mut Scan<'_>) -> Option<()> {
        SERVICES
            .with_borrow_mut(|memo| {
                sc.memoized(memo, |sc, _| {
                    sc.pass_over(1)?;
                    Some(((), Some(())))
                })
            })
            .map(drop)
    }

    /// The route object, read unless seen before.
    fn route<'a>(sc: &mut Scan<'a>) -> Option<Route<'a>> {
        let found = ROUTES.with_borrow_mut(|memo| {
            sc.memoized(memo, |sc, start| {
                let r = route_fields(sc)?;
                let keep = Label::of(&r, sc.text(), start);
                Some((r, keep))
            })
        })?;
        Some(match found {
            Recalled::Read(r) => r,
            Recalled::Kept { start, value } => value.route(sc.text(), start),
        })
    }

    /// How many route and service objects this thread's memos keep.
    #[cfg(test)]
    pub(super) fn kept() -> (usize, usize) {
        (
            ROUTES.with_borrow(Memo::kept),
            SERVICES.with_borrow(Memo::kept),
        )
    }

    fn route_fields<'a>(sc: &mut Scan<'a>) -> Option<Route<'a>> {
        let mut r = Route::default();
        sc.object(|sc, key| match key {
            b"name" => set_once(&mut r.name, jstr(sc)),
            b"paths" => set_once(&mut r.paths, paths(sc)),
            _ => sc.pass_over(2),
        })?;
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V34: &str = r#"{"service":{"host":"httpbin.org","id":"167290ee"},"route":{"id":"78f79740","paths":["/log"],"protocols":["http"]},"request":{"querystring":{},"size":138,"uri":"/log?a=1","url":"http://localhost:8000/log?a=1","headers":{"host":"localhost:8000","user-agent":"HTTPie/2.4.0","accept":"*/*"},"method":"GET"},"response":{"headers":{"content-length":"503"},"status":200,"size":827},"latencies":{"request":515,"kong":58,"proxy":457},"tries":[{"ip":"18.211.130.98"}],"client_ip":"192.168.144.1","upstream_uri":"/anything","authenticated_entity":{"id":"c62c1455"},"consumer":{"id":"ae974d6c","username":"foo"},"started_at":1614232668342}"#;

    #[test]
    fn parses_the_documented_line() {
        let ev = Kong::default().parse(V34.as_bytes()).unwrap();
        assert_eq!(ev.ts.millis(), 1_614_232_668_342);
        assert_eq!(ev.ip.to_string(), "192.168.144.1");
        assert_eq!(
            (ev.method, &*ev.path, &*ev.query),
            (Method::Get, "/log", "a=1")
        );
        assert_eq!((ev.status, ev.bytes, ev.latency_ms), (200, 827, Some(515)));
        assert_eq!(
            (&*ev.host, &*ev.user_agent),
            ("localhost:8000", "HTTPie/2.4.0")
        );
        assert_eq!(
            (ev.identity.as_deref(), ev.route.as_deref()),
            (Some("foo"), Some("/log"))
        );
        assert!(matches!(ev.user_agent, Cow::Borrowed(_)));
    }

    #[test]
    fn kong_1x_strings_and_escaped_slashes() {
        let line = br#"{"latencies":{"request":8},"request":{"size":"46","uri":"\/hello.HelloService\/SayHello","headers":{"host":"localhost:9080","user-agent":"grpc-go\/1.20.0-dev"},"method":"POST"},"client_ip":"127.0.0.1","response":{"status":200,"size":"298"},"route":{"name":"say-hello"},"started_at":1564527732516}"#;
        let ev = Kong::default().parse(line).unwrap();
        assert_eq!(
            (&*ev.path, &*ev.user_agent, ev.bytes),
            ("/hello.HelloService/SayHello", "grpc-go/1.20.0-dev", 298)
        );
        assert_eq!(ev.route.as_deref(), Some("say-hello"));
    }

    #[test]
    fn xff_only_through_trusted_client_ip_and_header_arrays() {
        let line = br#"{"client_ip":"10.0.0.7","started_at":1,"request":{"method":"GET","uri":"/","headers":{"x-forwarded-for":["198.51.100.4","10.0.0.3"]}},"response":{"status":403}}"#;
        assert_eq!(
            Kong::default().parse(line).unwrap().ip.to_string(),
            "10.0.0.7"
        );
        let k = Kong::new(ClientResolver::new(vec!["10.0.0.0/8".parse().unwrap()]));
        assert_eq!(k.parse(line).unwrap().ip.to_string(), "198.51.100.4");
    }

    #[test]
    fn batches() {
        let one = format!("[{V34}]");
        assert!(Kong::default().parse(one.as_bytes()).is_ok());
        let two = format!("[{V34},{V34}]");
        assert_eq!(
            Kong::default().parse(two.as_bytes()).unwrap_err(),
            ParseError::Batch {
                format: NAME,
                len: 2
            }
        );
        let mut out = Vec::new();
        Kong::default().parse_many(two.as_bytes(), &mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(Result::is_ok));
        let mixed = format!("[{V34},{{\"x\":1}}]");
        out.clear();
        Kong::default().parse_many(mixed.as_bytes(), &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].is_ok() && out[1].is_err());
    }

    /// The fast path and the serde path give the same event wherever the
    /// fast path answers, and it answers on the lines Kong usually writes.
    #[test]
    fn fast_path_matches_serde() {
        let k = Kong::default();
        let serde_event = |line: &str| {
            from_slice::<Line<'_>>(line.as_bytes()).map(|l| k.event(l).map(Event::into_owned))
        };
        let fast_event =
            |line: &str| fast::line(line.as_bytes()).map(|l| k.event(l).map(Event::into_owned));
        let answered = [
            V34.to_string(),
            V34.replace("\"name\"", "\"x\"").replace("[\"/log\"]", "[\"/a\",\"/b\"]"),
            V34.replace("\"consumer\":{\"id\":\"ae974d6c\",\"username\":\"foo\"},", ""),
            r#"{"client_ip":"1.2.3.4","started_at":5,"route":{"paths":[]},"x":[{"y":[-1.5e3,true,false,null]}]}"#.to_string(),
            r#" { "client_ip" : "1.2.3.4" , "started_at" : 5 , "request" : { } } "#.to_string(),
        ];
        for line in &answered {
            assert!(fast::line(line.as_bytes()).is_some(), "{line}");
            assert_eq!(fast_event(line), serde_event(line), "{line}");
        }
        let declined = [
            r#"{"client_ip":"1.2.3.4","started_at":"5"}"#,
            r#"{"client_ip":"1.2.3.4","started_at":5,"client_ip":"5.6.7.8"}"#,
            r#"{"client_ip":"1.2.3.4","started_at":5,"consumer":null}"#,
            r#"{"client_ip":"1.2.3.4","started_at":5.5}"#,
            r#"{"client_ip":"1.2.3.4","started_at":5,"request":{"uri":"\/a"}}"#,
            r#"{"client_ip":"1.2.3.4","started_at":5,"request":{"headers":{"x-forwarded-for":["a","b"]}}}"#,
            r#"{"client_ip":"1.2.3.4","started_at":5,"x":"\u0041"}"#,
            r#"{"client_ip":"1.2.3.4","started_at":5} x"#,
            r#"{"client_ip":"1.2.3.4","started_at":5"#,
            r#"{"client_\u0069p":"1.2.3.4","started_at":5}"#,
        ];
        for line in declined {
            assert!(fast::line(line.as_bytes()).is_none(), "{line}");
        }
        // Values the fast path does not read are only skimmed: a balanced
        // but ungrammatical service object is read past here (serde refuses
        // the line), and gives the event the well-formed line gives.
        let sloppy = V34.replace(r#""service":{"host""#, r#""service":{"x" 1,"host""#);
        assert_eq!(serde_event(&sloppy), None);
        assert_eq!(fast_event(&sloppy), fast_event(V34));
        // A header named like a top-level key stays a header.
        let spoof = V34.replace("\"accept\":\"*/*\"", "\"client_ip\":\"6.6.6.6\"");
        assert_eq!(fast_event(&spoof), serde_event(&spoof));
        assert_eq!(
            k.parse(spoof.as_bytes()).unwrap().ip.to_string(),
            "192.168.144.1"
        );
    }

    /// Kong's 3.4 documentation line: route and service objects long
    /// enough for the fast path's memo.
    fn kong_34_line() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/corpus/kong-docs/file-log-example-3.4.ndjson"
        );
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().next().unwrap().to_string()
    }

    /// A route or service object met again is recognised from the memo,
    /// not walked, and gives what walking it gives — also when only its
    /// tail changed, and when its label is not a slice of the line.
    #[test]
    fn repeated_route_and_service_objects_read_as_when_walked() {
        let k = Kong::default();
        let real = kong_34_line();
        let variants = [
            real.clone(),
            real.replace("\"uri\":\"/log\"", "\"uri\":\"/admin\"")
                .replace("192.168.144.1", "192.168.144.2"),
            // Same first bytes, a name near the end: a different route.
            real.replace(
                "\"path_handling\":\"v0\"",
                "\"path_handling\":\"v0\",\"name\":\"late\"",
            ),
            // Unnamed with two paths: the joined label is not kept.
            real.replace("[\"/log\"]", "[\"/a\",\"/b\"]"),
            // A service that differs only in its last field.
            real.replace(
                "\"ws_id\":\"54baa5a9-23d6-41e0-9c9a-02434b010b25\"},\"route\"",
                "\"ws_id\":\"x\"},\"route\"",
            ),
        ];
        for round in 0..2 {
            for line in &variants {
                let fast = fast::line(line.as_bytes()).map(|l| k.event(l).map(Event::into_owned));
                let serde = from_slice::<Line<'_>>(line.as_bytes())
                    .map(|l| k.event(l).map(Event::into_owned));
                assert!(fast.is_some(), "round {round}: {line}");
                assert_eq!(fast, serde, "round {round}: {line}");
            }
        }
        let label = |line: &str| k.parse(line.as_bytes()).unwrap().route.map(Cow::into_owned);
        assert_eq!(label(&variants[2]).as_deref(), Some("late"));
        assert_eq!(label(&variants[3]).as_deref(), Some("/a, /b"));
        // The original route and the late-named one are kept, once each
        // (a miss on a line already seen would keep a second copy); the
        // joined label is not kept. Both services are kept.
        assert_eq!(fast::kept(), (2, 2));
    }

    /// Random one-byte edits of a real line, biased to JSON's structural
    /// bytes: the fast path never panics, and wherever it and serde both
    /// read the edited line they give the same event. On the long line
    /// most edits leave the route or service object as the memo has it.
    #[test]
    fn fast_path_agrees_with_serde_on_edited_lines() {
        edited_lines_agree(V34);
        edited_lines_agree(&kong_34_line());
    }

    fn edited_lines_agree(base: &str) {
        let k = Kong::default();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let bytes = b"{}[]\",:\\ a0\t\xc3";
        let (mut both, mut fast_only) = (0, 0);
        for _ in 0..20_000 {
            let mut line = base.as_bytes().to_vec();
            for _ in 0..=next() % 2 {
                let at = (next() % line.len() as u64) as usize;
                let b = bytes[(next() % bytes.len() as u64) as usize];
                match next() % 3 {
                    0 => line[at] = b,
                    1 => line.insert(at, b),
                    _ => drop(line.remove(at)),
                }
            }
            let fast = fast::line(&line).map(|l| k.event(l).map(Event::into_owned));
            let serde = from_slice::<Line<'_>>(&line).map(|l| k.event(l).map(Event::into_owned));
            match (fast, serde) {
                (Some(f), Some(s)) => {
                    both += 1;
                    assert_eq!(f, s, "{}", String::from_utf8_lossy(&line));
                }
                (Some(_), None) => fast_only += 1,
                _ => {}
            }
        }
        // Both paths read many edited lines; the fast path reads some more
        // (edits inside containers it only skims).
        assert!(both > 1_000 && fast_only > 0, "{both} {fast_only}");
    }

    #[test]
    fn errors() {
        let k = Kong::default();
        assert!(matches!(
            k.parse(b"{\"client_ip\":\"1.2.3.4\"}"),
            Err(ParseError::MissingField {
                field: "started_at",
                ..
            })
        ));
        assert!(matches!(
            k.parse(b"{\"started_at\":1}"),
            Err(ParseError::MissingField {
                field: "client_ip",
                ..
            })
        ));
        assert!(matches!(
            k.parse(b"{\"started_at\":1,\"client_ip\":\"nope\"}"),
            Err(ParseError::NoClient { .. })
        ));
        assert!(matches!(
            k.parse(b"{\"started_at\":"),
            Err(ParseError::Malformed { .. })
        ));
    }
}
