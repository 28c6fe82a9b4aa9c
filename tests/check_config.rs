//! `gatewatch check-config`, run as the real binary: a valid file exits 0
//! and prints what `run` would run (the database, every source with its
//! format and per-topic formats, detectors, API, channels) without printing
//! any secret from the file or the environment and without connecting to
//! anything; an invalid file exits non-zero, prints no plan, and its error
//! names the problem.
//!
//! Needs nothing running: the addresses in the configs do not resolve, and
//! a plan that tried to reach them would fail.

mod support;

use std::process::Output;
use support::TempDir;

/// Secrets in [`VALID`]: none may appear in anything check-config prints.
const SECRETS: &[&str] = &[
    "pg-secret-1",
    "kafka-secret-2",
    "route-key-3",
    "hmac-secret-4",
    "smtp-pass-5",
    "slack-token-6",
];

/// Every source type that takes a format, per-topic formats, and a channel
/// of each type, with a secret wherever the config can hold one.
const VALID: &str = r#"
database_url = "postgres://gatewatch:pg-secret-1@db.example.invalid:5432/gatewatch"

[[sources]]
type = "kafka"
brokers = "kafka-1.example.invalid:9092"
group_id = "edge-soc"
topics = ["edge-nginx", "edge-kong"]
format = "auto"
topic_formats = { edge-nginx = "nginx_combined", edge-kong = "kong" }
properties = { "security.protocol" = "SASL_SSL", "sasl.mechanism" = "PLAIN", "sasl.username" = "gw", "sasl.password" = "kafka-secret-2" }

[[sources]]
type = "file"
paths = ["/var/log/nginx/access.json"]
format = "nginx_json"

[api]
listen = "127.0.0.1:9191"

[detection.traffic_spike]
enabled = false

[[notifications.channels]]
type = "webhook"
name = "soar"
url = "https://soar.example.invalid/hooks/route-key-3"
secret = "hmac-secret-4"

[[notifications.channels]]
type = "email"
name = "soc-mail"
smtp_url = "smtp://mailer:smtp-pass-5@mail.example.invalid:587"
from = "gatewatch@example.org"
to = ["soc@example.org"]

[[notifications.channels]]
type = "slack"
name = "soc-slack"
webhook_url = "https://hooks.slack.com/services/T000/B000/slack-token-6"
"#;

/// Runs `gatewatch check-config --config <file with text>` with only `env`
/// of gatewatch's variables set (the developer's own must not leak in).
fn check_config(dir: &TempDir, text: &str, env: &[(&str, &str)]) -> (Output, String) {
    let path = dir.path("gatewatch.toml");
    std::fs::write(&path, text).expect("write config");
    let path = path.to_str().expect("utf-8 path").to_string();
    let mut cmd = support::gatewatch();
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEWATCH_") && k != "GATEWATCH_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied())
        .args(["check-config", "--config", &path])
        .current_dir(&dir.0);
    (cmd.output().expect("run gatewatch check-config"), path)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_no_secret(out: &Output, secrets: &[&str]) {
    let all = text(&out.stdout) + &text(&out.stderr);
    for s in secrets {
        assert!(!all.contains(s), "secret {s:?} printed:\n{all}");
    }
}

#[test]
fn a_valid_config_prints_the_plan_without_its_secrets() {
    let dir = TempDir::new("check-config-valid");
    let (out, path) = check_config(&dir, VALID, &[]);
    let plan = text(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{plan}\n{}",
        out.status,
        text(&out.stderr)
    );
    let lines: Vec<&str> = plan.lines().collect();
    // Line by line, so a value printed under the wrong heading fails too.
    let line = |prefix: &str| -> &str {
        lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{plan}"))
    };
    assert_eq!(line("configuration: "), format!("configuration: {path}"));
    // The database is named, its password is not.
    assert_eq!(
        line("database: "),
        "database: postgres://gatewatch:***@db.example.invalid:5432/gatewatch"
    );
    let kafka = line("source 0: ");
    for part in [
        "kafka",
        "kafka-1.example.invalid:9092",
        "group edge-soc",
        "edge-nginx,edge-kong",
        "format auto",
        "topic edge-nginx format nginx_combined",
        "topic edge-kong format kong",
    ] {
        assert!(kafka.contains(part), "{part:?} missing from {kafka:?}");
    }
    let file = line("source 1: ");
    for part in ["file", "/var/log/nginx/access.json", "format nginx_json"] {
        assert!(file.contains(part), "{part:?} missing from {file:?}");
    }
    assert!(
        !plan.contains("source 2:"),
        "only the configured sources (no default syslog listener):\n{plan}"
    );
    assert_eq!(
        line("detectors: "),
        "detectors: credential_stuffing, privilege_probing"
    );
    assert!(
        line("detector state: ").ends_with("detector-state.bin"),
        "{plan}"
    );
    assert_eq!(line("api: "), "api: http://127.0.0.1:9191");
    let channels = line("notifications: ");
    for part in ["soar (webhook)", "soc-mail (email)", "soc-slack (slack)"] {
        assert!(
            channels.contains(part),
            "{part:?} missing from {channels:?}"
        );
    }
    // A config file without [console] runs quietly.
    assert_eq!(line("console: "), "console: off");
    assert_no_secret(&out, SECRETS);
}

#[test]
fn environment_overrides_show_in_the_plan_redacted() {
    let dir = TempDir::new("check-config-env");
    let (out, _) = check_config(
        &dir,
        VALID,
        &[
            (
                "GATEWATCH_DATABASE_URL",
                "postgres://ops:env-pg-secret@db2.example.invalid/gw",
            ),
            ("GATEWATCH_KAFKA_BROKERS", "kafka-9.example.invalid:9093"),
            (
                "GATEWATCH_WEBHOOK_URL",
                "https://hooks.example.invalid/env-route-key",
            ),
            ("GATEWATCH_WEBHOOK_SECRET", "env-hmac-secret"),
        ],
    );
    let plan = text(&out.stdout);
    assert!(out.status.success(), "{plan}\n{}", text(&out.stderr));
    assert!(
        plan.contains("database: postgres://ops:***@db2.example.invalid/gw\n"),
        "the environment's database wins, redacted:\n{plan}"
    );
    assert!(
        plan.contains("kafka kafka-9.example.invalid:9093 group edge-soc")
            && !plan.contains("kafka-1.example.invalid"),
        "GATEWATCH_KAFKA_BROKERS re-points the configured source:\n{plan}"
    );
    let mut secrets = SECRETS.to_vec();
    secrets.extend(["env-pg-secret", "env-route-key", "env-hmac-secret"]);
    assert_no_secret(&out, &secrets);
}

#[test]
fn invalid_configs_fail_naming_the_problem() {
    let kafka = "[[sources]]\ntype = \"kafka\"\nbrokers = \"kafka-1.example.invalid:9092\"\ngroup_id = \"g\"\ntopics = [\"edge-nginx\", \"edge-kong\"]\n";
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "unknown format",
            "[[sources]]\ntype = \"file\"\npaths = [\"/x.log\"]\nformat = \"klingon\"\n".into(),
            &["unknown variant `klingon`", "nginx_combined"],
        ),
        (
            "unknown per-topic format",
            format!("{kafka}topic_formats = {{ edge-kong = \"klingon\" }}\n"),
            &["unknown variant `klingon`", "edge-kong"],
        ),
        (
            "bad TOML",
            "[[sources]\ntype = \"file\"\n".into(),
            &["TOML error at line 1"],
        ),
        (
            "json source without a mapping",
            "[[sources]]\ntype = \"file\"\npaths = [\"/x.log\"]\nformat = \"json\"\n".into(),
            &["source 0", "`json` field mapping"],
        ),
        (
            // Per-topic formats are built and checked like the source's own.
            "json topic without a mapping",
            format!("{kafka}format = \"kong\"\ntopic_formats = {{ edge-nginx = \"json\" }}\n"),
            &["source 0", "`json` field mapping"],
        ),
        (
            "unknown top-level field",
            "databse_url = \"sqlite://gw.db\"\n".into(),
            &["unknown field `databse_url`"],
        ),
        (
            "unknown source field",
            kafka.replace("topics =", "topic ="),
            &["unknown field `topic`", "topics"],
        ),
        (
            "topic_formats on a file source",
            "[[sources]]\ntype = \"file\"\npaths = [\"/x.log\"]\ntopic_formats = { a = \"kong\" }\n"
                .into(),
            &["`topic_formats` is only for kafka sources"],
        ),
        (
            "unknown channel field",
            "[[notifications.channels]]\ntype = \"webhook\"\nname = \"soar\"\nurl = \"https://soar.example.invalid/route-key-3\"\nsecret = \"hmac-secret-4\"\nsecrets = \"x\"\n".into(),
            &["unknown field `secrets`"],
        ),
        (
            "unsupported database",
            "database_url = \"mysql://gw:pg-secret-1@db.example.invalid/gw\"\n".into(),
            &["database_url must start with", "mysql://gw:***@"],
        ),
    ];
    let dir = TempDir::new("check-config-invalid");
    for (what, config, needles) in cases {
        let (out, _) = check_config(&dir, &config, &[]);
        let err = text(&out.stderr);
        assert!(
            !out.status.success(),
            "{what}: accepted:\n{config}\n{}",
            text(&out.stdout)
        );
        assert!(
            out.stdout.is_empty(),
            "{what}: a plan was printed:\n{}",
            text(&out.stdout)
        );
        for needle in needles {
            assert!(err.contains(needle), "{what}: {needle:?} not in:\n{err}");
        }
        assert_no_secret(&out, SECRETS);
    }
}

#[test]
fn a_missing_config_file_is_an_error_naming_it() {
    let dir = TempDir::new("check-config-missing");
    let missing = dir.path("nope.toml");
    let out = support::gatewatch()
        .args(["check-config", "--config"])
        .arg(&missing)
        .output()
        .expect("run gatewatch check-config");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("Failed to read") && err.contains(&missing.display().to_string()),
        "{err}"
    );
}
