//! Shared helpers for the integration tests: loading golden cases, a
//! deterministic event generator, and running the engine.

#![allow(dead_code)]

use gatewatch_detector::event::mix64;
use gatewatch_detector::{DetectionConfig, Engine, EventRecord, EventTime, Finding};
use serde_json::Value;
use std::path::Path;

/// Replaces `{i}`, `{i/K}`, `{i%K}` and `{i/K%M}` in `s`.
fn substitute(s: &str, i: u64) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find("{i") {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let expr = &rest[open + 2..open + close];
        let mut v = i;
        let mut ops = expr;
        while !ops.is_empty() {
            let op = ops.as_bytes()[0];
            let end = ops[1..].find(['/', '%']).map_or(ops.len(), |e| e + 1);
            let n: u64 = ops[1..end].parse().expect("number in placeholder");
            v = if op == b'/' { v / n } else { v % n };
            ops = &ops[end..];
        }
        out.push_str(&v.to_string());
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

fn expand(v: &Value, i: u64) -> Value {
    match v {
        Value::String(s) => Value::String(substitute(s, i)),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), expand(v, i))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| expand(v, i)).collect()),
        other => other.clone(),
    }
}

/// Expands `events.jsonl` text into records in arrival order.
///
/// A line is either an [`EventRecord`] or a generator directive:
/// `{"repeat": N, "at": "<rfc3339>", "every_ms": X, "jitter_ms": J,
/// "late_ms": L, "status_cycle": [..], "event": {template}}`. Template
/// strings may use `{i}`, `{i/K}`, `{i%K}`. `jitter_ms` moves event times by
/// a hash of `i`; `late_ms` delays *arrival* by a hash of `i` (out-of-order
/// delivery) without changing event times. Lines are merged by arrival time.
pub fn expand_events(text: &str) -> Vec<EventRecord> {
    let mut all: Vec<(i64, usize, u64, EventRecord)> = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", line_no + 1));
        if let Some(n) = v.get("repeat") {
            let n = n.as_u64().expect("repeat count");
            let at: EventTime = serde_json::from_value(v["at"].clone()).expect("at");
            let every = v.get("every_ms").and_then(Value::as_i64).unwrap_or(1000);
            let jitter = v.get("jitter_ms").and_then(Value::as_u64).unwrap_or(0);
            let late = v.get("late_ms").and_then(Value::as_u64).unwrap_or(0);
            let cycle: Vec<u64> = v
                .get("status_cycle")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            for i in 0..n {
                let mut t = expand(&v["event"], i);
                let j = if jitter > 0 {
                    (mix64(i ^ line_no as u64) % jitter) as i64
                } else {
                    0
                };
                let ts = at.plus_millis(every * i as i64 + j);
                t["ts"] = serde_json::to_value(ts).unwrap();
                if !cycle.is_empty() {
                    t["status"] = Value::from(cycle[(i % cycle.len() as u64) as usize]);
                }
                let rec: EventRecord = serde_json::from_value(t)
                    .unwrap_or_else(|e| panic!("line {}: {e}", line_no + 1));
                let delay = if late > 0 {
                    (mix64(i.wrapping_mul(31) ^ 7) % late) as i64
                } else {
                    0
                };
                all.push((ts.millis() + delay, line_no, i, rec));
            }
        } else {
            let rec: EventRecord =
                serde_json::from_value(v).unwrap_or_else(|e| panic!("line {}: {e}", line_no + 1));
            all.push((rec.ts.millis(), line_no, 0, rec));
        }
    }
    all.sort_by_key(|(t, l, i, _)| (*t, *l, *i));
    all.into_iter().map(|(_, _, _, r)| r).collect()
}

/// A golden case's config and events.
pub fn load_case(dir: &Path) -> (DetectionConfig, Vec<EventRecord>) {
    let cfg_text = std::fs::read_to_string(dir.join("config.toml")).unwrap_or_default();
    let cfg: DetectionConfig =
        toml::from_str(&cfg_text).unwrap_or_else(|e| panic!("{}: config.toml: {e}", dir.display()));
    let events = std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_else(|e| panic!("{}: events.jsonl: {e}", dir.display()));
    (cfg, expand_events(&events))
}

/// Every golden case directory, sorted.
pub fn golden_cases() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/golden")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Runs the engine over `events` with `shards` shards, advancing the
/// watermark every `advance_every` events, and returns every finding.
pub fn run(
    cfg: &DetectionConfig,
    events: &[EventRecord],
    shards: usize,
    advance_every: usize,
) -> Vec<Finding> {
    let mut engine = Engine::new(cfg, shards).expect("engine");
    let mut out = Vec::new();
    for (n, rec) in events.iter().enumerate() {
        engine.observe(&rec.to_event(), &mut out);
        if advance_every > 0 && n % advance_every == 0 {
            engine.advance(&mut out);
        }
    }
    engine.advance(&mut out);
    out
}

/// A generated request as the parsers would hand it on.
pub fn to_event(r: &gatewatch_loggen::Request) -> gatewatch_detector::Event<'_> {
    use gatewatch_detector::{Event, Method};
    use std::borrow::Cow;
    let mut ev = Event::new(EventTime::from_millis(r.ts_ms), r.ip);
    ev.method = Method::parse(r.method.as_bytes());
    ev.host = Cow::Borrowed(r.host);
    ev.path = Cow::Borrowed(&r.path);
    ev.query = Cow::Borrowed(&r.query);
    ev.status = r.status;
    ev.bytes = r.bytes;
    ev.user_agent = Cow::Borrowed(r.user_agent);
    ev.user = r.user.as_deref().map(Cow::Borrowed);
    ev.identity = r.consumer.as_deref().map(Cow::Borrowed);
    ev.route = Some(Cow::Borrowed(r.route));
    ev.latency_ms = Some(r.latency_ms);
    ev
}
