//! Shared helpers for the end-to-end tests: running the real binary,
//! generating labelled logs, scoring incidents against labels.
#![allow(dead_code)]

pub mod live;

use gatewatch_loggen::{generate, render, Label, LogFormat, Scenario};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `gatewatch` binary under test.
pub fn gatewatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
    cmd.env("GATEWATCH_LOG", "warn");
    cmd.env_remove("GATEWATCH_DATABASE_URL");
    cmd
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `target/test-tmp/<name>-<pid>-<n>`.
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the scenario's log in `format` to `path`; returns its labels and
/// the number of lines.
pub fn write_log(scenario: &Scenario, format: LogFormat, path: &Path) -> (Vec<Label>, u64) {
    let generated = generate(scenario);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create log"));
    let mut buf = Vec::new();
    let mut n = 0;
    for req in generated.requests {
        buf.clear();
        render(&req, format, &mut buf);
        out.write_all(&buf).expect("write log");
        n += 1;
    }
    out.flush().expect("flush log");
    (generated.labels, n)
}

/// Fails the test, showing the command's stderr, unless it succeeded.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `gatewatch replay` with `args`, asserting success.
pub fn replay(args: &[&str]) -> Output {
    let out = gatewatch()
        .arg("replay")
        .args(args)
        .output()
        .expect("run gatewatch");
    assert!(
        out.status.success(),
        "gatewatch replay {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every JSON line of stdout, in order.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The latest version of each incident, by id.
pub fn latest_by_id(lines: &[Value]) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for v in lines {
        map.insert(
            v["id"].as_str().expect("incident id").to_string(),
            v.clone(),
        );
    }
    map
}

/// Whether an incident is about the labelled actor.
pub fn matches(label: &Label, incident: &Value) -> bool {
    let client = incident["client"].as_str().unwrap_or_default();
    match label.matching {
        "contains" => client.contains(&label.client),
        _ => client == label.client,
    }
}

/// How well the incidents match the labels.
#[derive(Debug, Default)]
pub struct Score {
    /// Attacks with at least one incident of the expected kind.
    pub detected: Vec<String>,
    /// Attacks without one.
    pub missed: Vec<String>,
    /// Incidents about a benign look-alike.
    pub lookalike_alerts: Vec<String>,
    /// Incidents matching no attack label (of the right kind).
    pub false_positives: Vec<String>,
    /// Incidents matching an attack label.
    pub true_positives: usize,
}

impl Score {
    /// Share of incidents that are about a labelled attack.
    pub fn precision(&self) -> f64 {
        let all = self.true_positives + self.false_positives.len();
        if all == 0 {
            1.0
        } else {
            self.true_positives as f64 / all as f64
        }
    }

    /// Share of labelled attacks that were found.
    pub fn recall(&self) -> f64 {
        let all = self.detected.len() + self.missed.len();
        if all == 0 {
            1.0
        } else {
            self.detected.len() as f64 / all as f64
        }
    }
}

/// Scores incidents (latest versions) against labels.
pub fn score(labels: &[Label], incidents: &BTreeMap<String, Value>) -> Score {
    let mut s = Score::default();
    for label in labels {
        match label.expect {
            Some(kind) => {
                let found = incidents
                    .values()
                    .any(|i| i["kind"] == kind && matches(label, i));
                if found {
                    s.detected.push(label.name.clone())
                } else {
                    s.missed.push(label.name.clone())
                }
            }
            None => {
                for i in incidents.values().filter(|i| matches(label, i)) {
                    s.lookalike_alerts
                        .push(format!("{}: {} {}", label.name, i["kind"], i["summary"]));
                }
            }
        }
    }
    for i in incidents.values() {
        let is_attack = labels
            .iter()
            .any(|l| l.expect.is_some_and(|k| i["kind"] == k) && matches(l, i));
        if is_attack {
            s.true_positives += 1;
        } else {
            s.false_positives
                .push(format!("{} {} {}", i["kind"], i["client"], i["summary"]));
        }
    }
    s
}

/// Ten distinct privileged routes a scanner asks for: denied, they make an
/// admin probe (the default threshold is 2).
pub const DENIED_ADMIN_ROUTES: [&str; 10] = [
    "/admin",
    "/admin/config",
    "/actuator/env",
    "/actuator/heapdump",
    "/manager/html",
    "/phpmyadmin/",
    "/jenkins/script",
    "/internal/debug/vars",
    "/console",
    "/management/users",
];
