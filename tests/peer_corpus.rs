//! The peers' own test suites, replayed through gatewatch: CrowdSec's hub
//! scenario tests (`../shared/corpus/crowdsec-hub/tests/`) for the attack
//! classes gatewatch covers. For each, the client CrowdSec alerts on must get
//! an incident of the matching kind, and no other client in the file may.

mod support;

use std::path::PathBuf;
use support::*;

fn corpus(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus")
        .join(rel)
}

/// The incidents one CrowdSec test must give: (kind, client) pairs.
type Expected = &'static [(&'static str, &'static str)];

/// (CrowdSec test dir, log file, expected incidents).
const CASES: &[(&str, &str, Expected)] = &[
    (
        "http-bf-wordpress-bf",
        "http-bf-wordpress-bf.log",
        &[("credential_stuffing", "81.150.104.130")],
    ),
    (
        "caddy-basic-auth-bf",
        "caddy-logs.log",
        &[("credential_stuffing", "127.0.0.1")],
    ),
    (
        "apiscp-bf",
        "apiscp-bf.log",
        &[("credential_stuffing", "1.2.3.4")],
    ),
    (
        "http-admin-interface-probing",
        "http-admin-interface-probing.log",
        &[("privilege_probing", "157.230.234.189")],
    ),
    (
        "sap-probing",
        "sap-probing.log",
        &[("privilege_probing", "127.0.0.1")],
    ),
    (
        "nginx-http-sensitive-files",
        "nginx-http-sensitive-files.log",
        &[("privilege_probing", "127.0.0.1")],
    ),
    (
        "apache2-http-sensitive-files",
        "apache2-http-sensitive-files.log",
        &[("privilege_probing", "172.17.0.1")],
    ),
    (
        "litespeed-http-sensitive-files",
        "litespeed-http-sensitive-files.log",
        &[("privilege_probing", "192.168.9.163")],
    ),
    (
        "http-wordpress_wpconfig",
        "http-wordpress_wpconfig.log",
        &[("privilege_probing", "167.71.13.196")],
    ),
    (
        "nginx-http-path-traversal",
        "nginx-http-path-traversal.log",
        &[("privilege_probing", "127.0.0.1")],
    ),
    (
        "apache-http-probing",
        "apache-http-probing.log",
        &[("privilege_probing", "172.17.0.1")],
    ),
    (
        "nginx-http-malformed",
        "nginx_http-logs.log",
        &[("privilege_probing", "1.2.3.4")],
    ),
    (
        "apache2-malformed",
        "apache2-logs.log",
        &[("privilege_probing", "1.2.3.4")],
    ),
    (
        "traefik_base-http-scenario",
        "traefik_base-http-scenario.log",
        &[("privilege_probing", "172.17.0.1")],
    ),
    (
        "http-wordpress-scan",
        "http-wordpress-scan.log",
        &[
            ("privilege_probing", "192.168.1.1"),
            ("privilege_probing", "127.0.0.1"),
        ],
    ),
    (
        "http-wordpress_user-enum",
        "http-wordpress_user-enum.log",
        &[("privilege_probing", "1.2.3.4")],
    ),
];

/// Replays one CrowdSec test log; returns a description of each mismatch.
fn check(dir: &str, file: &str, expected: &[(&str, &str)]) -> Vec<String> {
    let path = corpus(&format!("crowdsec-hub/tests/{dir}/{file}"));
    let out = replay(&["--format", "auto", path.to_str().expect("utf-8 path")]);
    let incidents = latest_by_id(&json_lines(&out.stdout));
    let mut problems = Vec::new();
    for (kind, client) in expected {
        if !incidents
            .values()
            .any(|i| i["kind"] == *kind && i["client"] == *client)
        {
            problems.push(format!("{dir}: no {kind} incident for {client}"));
        }
    }
    for i in incidents.values() {
        let client = i["client"].as_str().unwrap_or_default();
        if !expected.iter().any(|(_, c)| *c == client) {
            problems.push(format!(
                "{dir}: unexpected {} incident for {client}: {}",
                i["kind"], i["summary"]
            ));
        }
    }
    problems
}

#[test]
fn crowdsec_hub_scenarios_in_gatewatchs_classes() {
    let mut problems = Vec::new();
    for (dir, file, expected) in CASES {
        problems.extend(check(dir, file, expected));
    }
    let matched = CASES.len()
        - problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
    eprintln!("CrowdSec hub cases matched: {matched}/{}", CASES.len());
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
