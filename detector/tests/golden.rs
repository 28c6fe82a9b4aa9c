//! Runs every golden case in `tests/golden/<case>/`: `config.toml` (the
//! `[detection]` section's fields, often empty), `events.jsonl` (events or
//! generator directives, see `common::expand_events`) and `expected.json`
//! (one entry per incident: the last finding for each kind + key must match
//! its technique, severity and the evidence values listed; `{"at_least": n}`
//! accepts any larger number). No other kind + key may appear.
//!
//! `GOLDEN_BLESS=1 cargo test -p gatewatch-detector --test golden` rewrites
//! every `expected.json` from the current output, for review in the diff.

mod common;

use gatewatch_detector::Finding;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Evidence keys recorded in `expected.json` when blessing.
const BLESS_KEYS: &[&str] = &[
    "techniques",
    "judged_against",
    "accounts",
    "sources",
    "account_takeover",
    "top_sources",
];

fn last_per_incident(findings: &[Finding]) -> BTreeMap<(String, String), &Finding> {
    let mut m = BTreeMap::new();
    for f in findings {
        m.insert((f.kind.as_str().to_owned(), f.key.clone()), f);
    }
    m
}

fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), _) if e.contains_key("at_least") => e["at_least"]
            .as_f64()
            .zip(actual.as_f64())
            .is_some_and(|(e, a)| a >= e),
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av))),
        _ => expected == actual,
    }
}

fn bless(dir: &Path, findings: &[Finding]) {
    let entries: Vec<Value> = last_per_incident(findings)
        .values()
        .map(|f| {
            let mut ev = serde_json::Map::new();
            for k in BLESS_KEYS {
                if let Some(v) = f.evidence.get(*k) {
                    let v = if v.get("at").is_some() {
                        json!({"user": v["user"]})
                    } else {
                        v.clone()
                    };
                    ev.insert((*k).to_owned(), v);
                }
            }
            json!({
                "kind": f.kind, "key": f.key, "technique": f.technique,
                "severity": f.severity, "events": {"at_least": f.events}, "evidence": ev,
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&entries).unwrap() + "\n";
    std::fs::write(dir.join("expected.json"), text).unwrap();
}

fn check_case(dir: &Path) -> Result<(), String> {
    let (cfg, events) = common::load_case(dir);
    let findings = common::run(&cfg, &events, 1, 100);
    if std::env::var_os("GOLDEN_BLESS").is_some() {
        bless(dir, &findings);
        return Ok(());
    }
    let expected: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json"))
            .map_err(|e| format!("expected.json: {e}"))?,
    )
    .map_err(|e| format!("expected.json: {e}"))?;
    let actual = last_per_incident(&findings);
    let mut errors = Vec::new();
    let mut wanted = std::collections::BTreeSet::new();
    for e in &expected {
        let key = (
            e["kind"].as_str().unwrap_or("").to_owned(),
            e["key"].as_str().unwrap_or("").to_owned(),
        );
        wanted.insert(key.clone());
        let Some(f) = actual.get(&key) else {
            errors.push(format!("missing incident {key:?}"));
            continue;
        };
        let got = json!({
            "kind": f.kind, "key": f.key, "technique": f.technique, "severity": f.severity,
            "events": f.events, "evidence": f.evidence,
        });
        if !matches(e, &got) {
            errors.push(format!(
                "incident {key:?}:\n  expected {e}\n  got {}",
                serde_json::to_string(&got).unwrap()
            ));
        }
    }
    for (key, f) in &actual {
        if !wanted.contains(key) {
            errors.push(format!(
                "unexpected incident {key:?}: {} / {} — {}",
                f.technique, f.severity, f.summary
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

#[test]
fn golden_cases() {
    let cases = common::golden_cases();
    assert!(
        cases.len() >= 20,
        "expected the full golden suite, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for dir in &cases {
        if let Err(e) = check_case(dir) {
            failures.push(format!(
                "== {}\n{e}",
                dir.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn same_findings_for_1_2_and_4_shards_and_any_watermark_cadence() {
    for dir in common::golden_cases() {
        let (cfg, events) = common::load_case(&dir);
        let reference = common::run(&cfg, &events, 1, 1);
        for (shards, every) in [(2, 64), (4, 1000), (3, 7)] {
            let got = common::run(&cfg, &events, shards, every);
            assert!(
                got == reference,
                "{}: {shards} shards, advance every {every}: findings differ",
                dir.display()
            );
        }
    }
}
