//! `/metrics`: Prometheus text exposition of whatever is plugged in.
//!
//! Every family gatewatch can export is declared once in [`FAMILIES`], with
//! its type and help, and always appears on `/metrics` (with no samples when
//! nothing feeds it), so dashboards and alerts can name any of them whatever
//! the deployment. Sources of samples implement [`MetricSource`] (a closure
//! `Fn(&mut MetricsWriter)` does) and are added with
//! [`AppState::with_metrics`](super::AppState::with_metrics).
//!
//! Labels are bounded vocabularies only: source names from the
//! configuration, kinds, severities, reasons, channels, shards, partitions,
//! route templates. Client addresses and keys never become labels (an
//! attacker could otherwise mint series at will).

use crate::pipeline::stats::PipelineStats;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use gatewatch_detector::IncidentKind;
use gatewatch_ingest::sources::SourceMetrics;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

/// Counter or gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Only rises (resets on restart).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Every family `/metrics` exports: name, type, help.
pub const FAMILIES: &[(&str, MetricType, &str)] = &[
    (
        "gatewatch_build_info",
        MetricType::Gauge,
        "Always 1; the version label says which build runs.",
    ),
    (
        "gatewatch_events_received_total",
        MetricType::Counter,
        "Log lines received, by source.",
    ),
    (
        "gatewatch_events_parsed_total",
        MetricType::Counter,
        "Log lines parsed into events, by source.",
    ),
    (
        "gatewatch_events_rejected_total",
        MetricType::Counter,
        "Log lines rejected, by source and reason.",
    ),
    (
        "gatewatch_events_dropped_total",
        MetricType::Counter,
        "Messages dropped before parsing (UDP syslog under overload), by source.",
    ),
    (
        "gatewatch_lines_truncated_total",
        MetricType::Counter,
        "Log lines cut at the maximum line length, by source.",
    ),
    (
        "gatewatch_newest_event_timestamp_seconds",
        MetricType::Gauge,
        "Event time of the newest event seen (Unix seconds).",
    ),
    (
        "gatewatch_pipeline_lag_seconds",
        MetricType::Gauge,
        "Wall clock minus the newest event time: how far detection trails the logs.",
    ),
    (
        "gatewatch_findings_total",
        MetricType::Counter,
        "Findings emitted by detectors, by kind.",
    ),
    (
        "gatewatch_incidents_created_total",
        MetricType::Counter,
        "Incidents opened, by kind.",
    ),
    (
        "gatewatch_incidents_updated_total",
        MetricType::Counter,
        "Incident updates and escalations from findings, by kind.",
    ),
    (
        "gatewatch_incidents_refused_total",
        MetricType::Counter,
        "Findings whose data the incident store refused (skipped, logged), by kind.",
    ),
    (
        "gatewatch_incidents_unresolved",
        MetricType::Gauge,
        "Incidents not resolved (open, acknowledged, reopened) in the store, by kind and severity.",
    ),
    (
        "gatewatch_notifications_total",
        MetricType::Counter,
        "Notification attempts, by configured channel name and outcome (delivered, retried, released, dead).",
    ),
    (
        "gatewatch_notification_outbox",
        MetricType::Gauge,
        "Outbox deliveries by status (pending, held, digested, delivered, dead).",
    ),
    (
        "gatewatch_kafka_consumer_lag",
        MetricType::Gauge,
        "Messages between the consumer's position and the high watermark, by topic and partition.",
    ),
    (
        "gatewatch_detector_tracked_clients",
        MetricType::Gauge,
        "Clients with state in a detector shard, by shard.",
    ),
    (
        "gatewatch_http_requests_total",
        MetricType::Counter,
        "API and web requests, by method, route template and status.",
    ),
    (
        "gatewatch_repartition_published_total",
        MetricType::Counter,
        "Ingest stage: events delivered to the internal repartition topic.",
    ),
    (
        "gatewatch_repartition_failures_total",
        MetricType::Counter,
        "Ingest stage: events not delivered to the internal repartition topic (each is retried).",
    ),
    (
        "gatewatch_repartition_in_flight",
        MetricType::Gauge,
        "Ingest stage: events enqueued for the internal repartition topic and not yet delivered.",
    ),
];

/// Where a [`MetricSource`] writes its samples.
#[derive(Debug, Default)]
pub struct MetricsWriter {
    samples: BTreeMap<&'static str, Vec<(String, f64)>>,
}

impl MetricsWriter {
    /// Adds one sample of family `name` (which must be in [`FAMILIES`]; an
    /// unknown name is dropped and logged, so a typo cannot create an
    /// undeclared family).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let Some((family, ..)) = FAMILIES.iter().find(|(n, ..)| *n == name) else {
            tracing::warn!(metric = name, "Undeclared metric family dropped.");
            return;
        };
        let mut text = String::new();
        if !labels.is_empty() {
            text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                let _ = write!(text, "{k}=\"{}\"", escape(v));
            }
            text.push('}');
        }
        self.samples.entry(family).or_default().push((text, value));
    }

    /// The exposition text: every declared family, with its samples.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for (name, kind, help) in FAMILIES {
            let kind = match kind {
                MetricType::Counter => "counter",
                MetricType::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in self.samples.get(name).into_iter().flatten() {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Something that contributes samples to `/metrics` at every scrape.
pub trait MetricSource: Send + Sync {
    /// Writes the current values. Called on every scrape: keep it cheap
    /// (read atomics, copy a small map), never block.
    fn collect(&self, out: &mut MetricsWriter);
}

impl<F: Fn(&mut MetricsWriter) + Send + Sync> MetricSource for F {
    fn collect(&self, out: &mut MetricsWriter) {
        self(out)
    }
}

/// The pipeline's counters ([`PipelineStats`]) with the names of its
/// sources (indexed by `SourceId`).
pub struct PipelineMetrics {
    /// The running pipeline's counters.
    pub stats: Arc<PipelineStats>,
    /// A name per source, from the configuration (`file:/var/log/…`,
    /// `kafka:gateway-logs`).
    pub source_names: Vec<String>,
}

impl MetricSource for PipelineMetrics {
    fn collect(&self, out: &mut MetricsWriter) {
        for (i, s) in self.stats.sources.iter().enumerate() {
            let fallback = i.to_string();
            let name = self.source_names.get(i).unwrap_or(&fallback).as_str();
            let l = [("source", name)];
            out.sample(
                "gatewatch_events_received_total",
                &l,
                s.lines.load(Relaxed) as f64,
            );
            out.sample(
                "gatewatch_events_parsed_total",
                &l,
                s.parsed.load(Relaxed) as f64,
            );
            out.sample(
                "gatewatch_lines_truncated_total",
                &l,
                s.truncated.load(Relaxed) as f64,
            );
            let rejected = s.rejected.lock().map(|m| m.clone()).unwrap_or_default();
            for (reason, n) in rejected {
                out.sample(
                    "gatewatch_events_rejected_total",
                    &[("source", name), ("reason", reason)],
                    n as f64,
                );
            }
        }
        let newest_ms = self.stats.newest_event_ms.load(Relaxed);
        if newest_ms > 0 {
            let newest = newest_ms as f64 / 1000.0;
            out.sample("gatewatch_newest_event_timestamp_seconds", &[], newest);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            out.sample(
                "gatewatch_pipeline_lag_seconds",
                &[],
                (now - newest).max(0.0),
            );
        }
        for (shard, tracked) in self.stats.tracked_clients.iter().enumerate() {
            let shard = shard.to_string();
            out.sample(
                "gatewatch_detector_tracked_clients",
                &[("shard", &shard)],
                tracked.load(Relaxed) as f64,
            );
        }
        for kind in IncidentKind::ALL {
            let i = PipelineStats::kind_index(kind);
            let l = [("kind", kind.as_str())];
            let s = &self.stats;
            out.sample(
                "gatewatch_findings_total",
                &l,
                s.findings[i].load(Relaxed) as f64,
            );
            out.sample(
                "gatewatch_incidents_created_total",
                &l,
                s.incidents_created[i].load(Relaxed) as f64,
            );
            out.sample(
                "gatewatch_incidents_updated_total",
                &l,
                s.incidents_updated[i].load(Relaxed) as f64,
            );
            out.sample(
                "gatewatch_incidents_refused_total",
                &l,
                s.incidents_refused[i].load(Relaxed) as f64,
            );
        }
    }
}

/// Notification outcomes, counted by whoever delivers notifications.
#[derive(Debug, Default)]
pub struct NotificationCounters(Mutex<BTreeMap<(String, String), u64>>);

impl NotificationCounters {
    /// Counts one attempt on the channel named `channel` (its configured
    /// name) that ended in `outcome` (`delivered`, `retried`, `released`,
    /// `dead`).
    pub fn record(&self, channel: &str, outcome: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry((channel.to_owned(), outcome.to_owned()))
                .or_insert(0) += 1;
        }
    }
}

impl MetricSource for NotificationCounters {
    fn collect(&self, out: &mut MetricsWriter) {
        let m = self.0.lock().map(|m| m.clone()).unwrap_or_default();
        for ((channel, outcome), n) in m {
            out.sample(
                "gatewatch_notifications_total",
                &[("channel", &channel), ("outcome", &outcome)],
                n as f64,
            );
        }
    }
}

/// The sources' own counters (`gatewatch_ingest::sources::SourceMetrics`):
/// Kafka consumer lag per partition and messages dropped (UDP syslog under
/// overload), by source name.
pub struct SourceMetricsView {
    /// (source name, its counters), as configured.
    pub sources: Vec<(String, Arc<SourceMetrics>)>,
}

impl MetricSource for SourceMetricsView {
    fn collect(&self, out: &mut MetricsWriter) {
        for (name, m) in &self.sources {
            out.sample(
                "gatewatch_events_dropped_total",
                &[("source", name)],
                m.dropped.load(Relaxed) as f64,
            );
            for lag in m.kafka_lag() {
                let p = lag.partition.to_string();
                out.sample(
                    "gatewatch_kafka_consumer_lag",
                    &[("topic", &lag.topic), ("partition", &p)],
                    lag.lag as f64,
                );
            }
        }
    }
}

/// The API's own request counts, by method, route template and status.
#[derive(Debug, Default)]
pub struct RequestCounters(Mutex<HashMap<(String, String, u16), u64>>);

impl MetricSource for RequestCounters {
    fn collect(&self, out: &mut MetricsWriter) {
        let mut m: Vec<_> = self
            .0
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        m.sort();
        for ((method, route, status), n) in m {
            let status = status.to_string();
            out.sample(
                "gatewatch_http_requests_total",
                &[("method", &method), ("route", &route), ("status", &status)],
                n as f64,
            );
        }
    }
}

/// Middleware: counts every request under its route template (never its
/// raw path, which may carry client keys).
pub async fn count_request(counters: Arc<RequestCounters>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(req).await;
    if let Ok(mut m) = counters.0.lock() {
        *m.entry((method, route, response.status().as_u16()))
            .or_insert(0) += 1;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_declared_even_without_samples() {
        let mut w = MetricsWriter::default();
        w.sample("gatewatch_findings_total", &[("kind", "a\"b")], 2.0);
        w.sample("gatewatch_no_such_metric", &[], 1.0);
        let text = w.render();
        for (name, ..) in FAMILIES {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
        assert!(text.contains("gatewatch_findings_total{kind=\"a\\\"b\"} 2\n"));
        assert!(!text.contains("gatewatch_no_such_metric"));
    }
}
