//! End to end: `gatewatch replay` over a labelled log that the repository
//! generates itself (background traffic, benign look-alikes, every attack
//! kind), in every generated format.

mod support;

use gatewatch_loggen::{LogFormat, Scenario};
use support::*;

const CLIENTS: u64 = 2000;

fn replay_scenario(
    format: LogFormat,
    fmt_arg: &str,
) -> (Vec<gatewatch_loggen::Label>, Vec<serde_json::Value>, String) {
    let dir = TempDir::new("replay");
    let log = dir.path("eval.log");
    let (labels, lines) = write_log(&Scenario::eval(42, CLIENTS), format, &log);
    assert!(lines > 10_000, "the scenario is too small: {lines} lines");
    let out = replay(&["--format", fmt_arg, log.to_str().unwrap()]);
    (
        labels,
        json_lines(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_labels_hold(format: LogFormat, fmt_arg: &str) {
    let (labels, lines, stderr) = replay_scenario(format, fmt_arg);
    let incidents = latest_by_id(&lines);
    let s = score(&labels, &incidents);
    eprintln!(
        "{format:?}: {} incidents, precision {:.3}, recall {:.3}\n detected: {:?}\n missed: {:?}\n look-alike alerts: {:?}\n false positives: {:?}",
        incidents.len(),
        s.precision(),
        s.recall(),
        s.detected,
        s.missed,
        s.lookalike_alerts,
        s.false_positives
    );
    assert!(
        s.missed.is_empty(),
        "attacks missed: {:?}\n{stderr}",
        s.missed
    );
    assert!(
        s.lookalike_alerts.is_empty(),
        "benign look-alikes raised incidents: {:?}",
        s.lookalike_alerts
    );
    assert!(
        s.false_positives.is_empty(),
        "incidents about no attacker: {:?}",
        s.false_positives
    );
    for v in incidents.values() {
        for field in [
            "id",
            "kind",
            "client",
            "sources",
            "first_seen",
            "last_seen",
            "detected_at",
            "severity",
            "summary",
            "evidence",
        ] {
            assert!(!v[field].is_null(), "incident without {field}: {v}");
        }
        assert!(v["evidence"].is_object(), "evidence must be an object: {v}");
    }
}

#[test]
fn nginx_combined_attacks_are_found_and_lookalikes_stay_quiet() {
    assert_labels_hold(LogFormat::NginxCombined, "nginx_combined");
}

#[test]
fn kong_attacks_are_found_and_lookalikes_stay_quiet() {
    assert_labels_hold(LogFormat::Kong, "kong");
}

#[test]
fn nginx_json_through_auto_detection() {
    assert_labels_hold(LogFormat::NginxJson, "auto");
}

#[test]
fn account_takeover_is_critical() {
    let (_, lines, _) = replay_scenario(LogFormat::NginxCombined, "auto");
    let incidents = latest_by_id(&lines);
    let takeover = incidents
        .values()
        .find(|i| i["client"] == "185.220.102.8")
        .expect("an incident for the stuffing source");
    assert_eq!(takeover["severity"], "critical", "{takeover}");
}

#[test]
fn replay_is_deterministic_and_one_attack_is_one_incident() {
    let (labels, first, _) = replay_scenario(LogFormat::NginxCombined, "nginx_combined");
    let (_, second, _) = replay_scenario(LogFormat::NginxCombined, "nginx_combined");
    assert_eq!(first, second, "two replays of the same file differ");
    let incidents = latest_by_id(&first);
    for label in labels.iter().filter(|l| l.expect.is_some()) {
        let n = incidents
            .values()
            .filter(|i| matches(label, i) && label.expect.is_some_and(|k| i["kind"] == k))
            .count();
        assert_eq!(
            n, 1,
            "{} should be exactly one incident, got {n}",
            label.name
        );
    }
}

/// Parse threads take batches in turn and shard threads split the clients;
/// neither may change what is found.
#[test]
fn thread_counts_do_not_change_incidents() {
    let dir = TempDir::new("threads");
    let log = dir.path("eval.log");
    let (labels, _) = write_log(&Scenario::eval(42, CLIENTS), LogFormat::Kong, &log);
    let run = |parse: usize, detect: usize| {
        let cfg = dir.path(&format!("p{parse}d{detect}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[pipeline]\nbatch_lines = 500\nparse_threads = {parse}\ndetect_threads = {detect}\n"
            ),
        )
        .unwrap();
        let out = replay(&["--config", cfg.to_str().unwrap(), log.to_str().unwrap()]);
        latest_by_id(&json_lines(&out.stdout))
    };
    let inline = run(1, 1);
    assert!(
        score(&labels, &inline).missed.is_empty(),
        "the baseline run misses attacks"
    );
    for (parse, detect) in [(3, 1), (2, 2), (3, 4)] {
        assert_eq!(
            run(parse, detect),
            inline,
            "{parse} parse and {detect} detection threads changed the incidents"
        );
    }
}

#[test]
fn bad_lines_are_counted_not_fatal() {
    let dir = TempDir::new("bad");
    let log = dir.path("mixed.log");
    let long = "x".repeat(200_000);
    let text = format!(
        "203.0.113.9 - - [02/Mar/2026:08:00:00 +0000] \"GET / HTTP/1.1\" 200 12 \"-\" \"curl/8\"\n\
         this is not a log line\n\
         \u{0}\u{1}binary\u{7f}\n\
         {long}\n\
         203.0.113.9 - - [02/Mar/2026:08:00:01 +0000] \"GET /a HTTP/1.1\" 200 12 \"-\" \"curl/8\"\n"
    );
    std::fs::write(&log, text).unwrap();
    let out = gatewatch()
        .env("GATEWATCH_LOG", "info")
        .env("GATEWATCH_LOG_FORMAT", "json")
        .args(["replay", log.to_str().unwrap()])
        .output()
        .unwrap();
    support::assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "Replay finished.")
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    let f = &summary["fields"];
    assert_eq!(f["lines"], 5, "{f}");
    assert_eq!(f["parsed"], 2, "{f}");
    assert_eq!(f["rejected"], 3, "{f}");
    assert_eq!(f["truncated"], 1, "{f}");
    let named = stderr
        .lines()
        .any(|l| l.contains("Rejected a log line") && l.contains("mixed.log:2"));
    assert!(
        named,
        "the rejected line is not named by file and line: {stderr}"
    );
}

/// The log cut in three files at line boundaries (at 20 %, 45 % and 70 %
/// of its lines, where attacks are under way).
fn log_in_parts(dir: &TempDir, log: &std::path::Path) -> Vec<std::path::PathBuf> {
    let text = std::fs::read_to_string(log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cuts = [
        0,
        lines.len() / 5,
        lines.len() * 9 / 20,
        lines.len() * 7 / 10,
    ];
    cuts.iter()
        .zip(cuts[1..].iter().chain([&lines.len()]))
        .enumerate()
        .map(|(i, (&from, &to))| {
            let part = dir.path(&format!("part{i}.log"));
            std::fs::write(&part, lines[from..to].join("\n") + "\n").unwrap();
            part
        })
        .collect()
}

/// `replay --state FILE` over a log in parts, one process per part, into
/// one database: the incidents it ends with are those of one replay of the
/// whole log, field for field, with detection inline and on two shard
/// threads. Without the state the parts find less.
#[test]
fn replaying_in_parts_with_state_finds_what_the_whole_log_finds() {
    let dir = TempDir::new("state-parts");
    let log = dir.path("eval.log");
    let (labels, _) = write_log(&Scenario::eval(42, CLIENTS), LogFormat::NginxCombined, &log);
    let parts = log_in_parts(&dir, &log);
    for detect_threads in [1, 2] {
        let cfg = dir.path(&format!("d{detect_threads}.toml"));
        let db = |name: &str| dir.path(&format!("d{detect_threads}-{name}.db"));
        std::fs::write(
            &cfg,
            format!("[pipeline]\ndetect_threads = {detect_threads}\n"),
        )
        .unwrap();
        let stored =
            |db: &std::path::Path, file: &std::path::Path, state: Option<&std::path::Path>| {
                let mut cmd = gatewatch();
                cmd.env(
                    "GATEWATCH_DATABASE_URL",
                    format!("sqlite://{}", db.display()),
                )
                .env("GATEWATCH_LOG", "info")
                .args([
                    "replay",
                    "--store",
                    "--format",
                    "nginx_combined",
                    "--config",
                ])
                .arg(&cfg);
                if let Some(state) = state {
                    cmd.arg("--state").arg(state);
                }
                let out = cmd.arg(file).output().expect("run gatewatch replay");
                assert_success(&out);
                (
                    json_lines(&out.stdout),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            };
        let whole = latest_by_id(&stored(&db("whole"), &log, None).0);
        assert!(score(&labels, &whole).missed.is_empty());

        let state = dir.path(&format!("d{detect_threads}-state.bin"));
        let (mut printed, mut without) = (Vec::new(), Vec::new());
        for (i, part) in parts.iter().enumerate() {
            let (lines, stderr) = stored(&db("parts"), part, Some(&state));
            assert_eq!(
                stderr.contains("Detector state taken back"),
                i > 0,
                "{detect_threads} detection threads, part {i}:\n{stderr}"
            );
            printed.extend(lines);
            without.extend(stored(&db("forgetful"), part, None).0);
        }
        assert!(state.exists(), "the last part saved no state");
        assert_eq!(
            latest_by_id(&printed),
            whole,
            "{detect_threads} detection threads"
        );
        assert_ne!(
            latest_by_id(&without),
            whole,
            "the parts find the same without the state: the cuts test nothing"
        );
    }
}

/// A state saved under other detection settings is set aside, and the
/// replay runs as if there were none.
#[test]
fn a_state_from_other_settings_is_set_aside() {
    let dir = TempDir::new("state-refused");
    let log = dir.path("eval.log");
    write_log(&Scenario::eval(42, CLIENTS), LogFormat::NginxCombined, &log);
    let parts = log_in_parts(&dir, &log);
    let state = dir.path("detector-state.bin");
    let state_arg = state.to_str().unwrap();
    replay(&[
        "--format",
        "nginx_combined",
        "--state",
        state_arg,
        parts[0].to_str().unwrap(),
    ]);
    let cfg = dir.path("other.toml");
    std::fs::write(&cfg, "[detection.traffic_spike]\nmin_events = 61\n").unwrap();
    let cfg_arg = cfg.to_str().unwrap();
    let part = parts[1].to_str().unwrap();
    let out = replay(&[
        "--config",
        cfg_arg,
        "--format",
        "nginx_combined",
        "--state",
        state_arg,
        part,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Detector state not used")
            && stderr.contains("another detection configuration"),
        "{stderr}"
    );
    assert!(dir.path("detector-state.refused").exists());
    let fresh = replay(&["--config", cfg_arg, "--format", "nginx_combined", part]);
    assert_eq!(json_lines(&out.stdout), json_lines(&fresh.stdout));
}
