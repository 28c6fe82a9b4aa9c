//! `gatewatch check-config`: validate a configuration and say what `run`
//! would run, without starting anything.

use super::run::{plan_sources, RunArgs};
use crate::config::{redact_url, Config};
use anyhow::Context;
use gatewatch_detector::Engine;
use std::fmt::Write as _;

/// Validates everything `run` validates and returns the plan as text.
pub fn plan(args: &RunArgs) -> anyhow::Result<String> {
    let cfg = Config::load(args.config.as_deref())?;
    let sources = plan_sources(&cfg, args)?;
    Engine::new(&cfg.detection, 1).context("Invalid [detection]")?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "configuration: {}",
        args.config
            .as_ref()
            .map_or("(none: embedded defaults)".to_string(), |p| p
                .display()
                .to_string())
    );
    let _ = writeln!(out, "database: {}", redact_url(&cfg.database_url));
    for s in &sources {
        let mut line = format!(
            "source {}: {} ({}) format {}",
            s.id,
            s.config.type_name(),
            s.config.describe(),
            s.config.format.as_str()
        );
        for (topic, f) in &s.config.topic_formats {
            let _ = write!(line, ", topic {topic} format {}", f.as_str());
        }
        let _ = writeln!(out, "{line}");
    }
    match &cfg.repartition {
        Some(r) => {
            let _ = writeln!(
                out,
                "mode: ingest stage, publishing events keyed by client to {} on {}",
                r.topic, r.brokers
            );
            let _ = writeln!(
                out,
                "  parse: every source with its format above; rejected lines counted, not published"
            );
            let _ = writeln!(out, "  key: {}", super::run::key_description(&cfg));
            let _ = writeln!(
                out,
                "  publish: one gatewatch_event JSON line per event, idempotent producer, acks=all{}",
                if r.properties.is_empty() {
                    String::new()
                } else {
                    // Values may be secrets (sasl.password): names only.
                    let names: Vec<&str> = r.properties.keys().map(String::as_str).collect();
                    format!(", properties {}", names.join(", "))
                }
            );
            let _ = writeln!(
                out,
                "  acknowledge: a source batch once every event of it is delivered (at-least-once)"
            );
            let _ = writeln!(
                out,
                "  detection: none here; run detection instances in one consumer group on topic {} with format gatewatch_event and the same [detection] client_key/ipv6_prefix",
                r.topic
            );
        }
        None => {
            let d = &cfg.detection;
            let enabled: Vec<&str> = [
                (d.traffic_spike.enabled, "traffic_spike"),
                (d.credential_stuffing.enabled, "credential_stuffing"),
                (d.privilege_probing.enabled, "privilege_probing"),
            ]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
            let _ = writeln!(out, "detectors: {}", enabled.join(", "));
            let state = cfg.state_dir.join(crate::pipeline::state_file::STATE_FILE);
            let _ = writeln!(
                out,
                "detector state: {}",
                if cfg.pipeline.keep_detector_state {
                    format!("kept across clean restarts in {}", state.display())
                } else {
                    "not kept (pipeline.keep_detector_state = false)".to_string()
                }
            );
        }
    }
    if cfg.api.enabled {
        match &cfg.api.tls {
            None => {
                let _ = writeln!(out, "api: http://{}", cfg.api.listen);
            }
            Some(t) => {
                crate::api::TlsConfig {
                    cert_path: t.cert_path.clone(),
                    key_path: t.key_path.clone(),
                }
                .acceptor()
                .context("Invalid [api.tls]")?;
                let _ = writeln!(out, "api: https://{}", cfg.api.listen);
            }
        }
    }
    let channels: Vec<String> = cfg
        .notifications
        .channels
        .iter()
        .map(|c| format!("{} ({})", c.name(), c.kind()))
        .collect();
    let _ = writeln!(
        out,
        "notifications: {}",
        if channels.is_empty() {
            "none".to_string()
        } else {
            channels.join(", ")
        }
    );
    let console = cfg.console.enabled.unwrap_or(args.config.is_none());
    let _ = writeln!(
        out,
        "console: {}",
        if console {
            "incidents as JSON lines on stdout"
        } else {
            "off"
        }
    );
    Ok(out)
}
