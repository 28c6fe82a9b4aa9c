//! The incident stage: findings become incidents, are stored, and reach the
//! sinks; then the batches they came from are acknowledged.

use super::stats::PipelineStats;
use super::StageMsg;
use crate::sinks::IncidentSink;
use gatewatch_alerting::store::activity::{prune_activity, record_activity};
use gatewatch_alerting::{ChangeKind, IncidentChange, IncidentManager};
use gatewatch_detector::{EventTime, Finding};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Owns the incident manager and the sinks.
pub struct IncidentStage {
    /// Turns findings into stored incidents.
    pub manager: IncidentManager,
    /// Where incident changes go besides the store (stdout, …).
    pub sinks: Vec<Box<dyn IncidentSink>>,
    /// Shared counters.
    pub stats: Arc<PipelineStats>,
    /// Keep retrying a failing store (live runs: never drop a finding) or
    /// give up at the first error (replay: report it and stop).
    pub retry_store: bool,
    /// Activity writes so far (paces pruning).
    pub activity_writes: u64,
}

/// Client activity is kept for this long (event time) behind the newest.
const ACTIVITY_RETENTION_MS: i64 = 14 * 24 * 3600 * 1000;

impl IncidentStage {
    /// Runs until the detection stage closes its channel.
    pub async fn run(mut self, mut input: mpsc::Receiver<StageMsg>) -> anyhow::Result<()> {
        while let Some(msg) = input.recv().await {
            match msg {
                StageMsg::Findings(findings) => {
                    for f in findings {
                        self.apply(&f).await?;
                    }
                }
                StageMsg::Activity(counts) => self.record_activity(&counts).await,
                StageMsg::BatchDone(Some(ack)) => ack.ack(),
                StageMsg::BatchDone(None) => {}
            }
        }
        for sink in &mut self.sinks {
            sink.flush()?;
        }
        Ok(())
    }

    /// Writes per-minute client activity. Best effort: it feeds a chart and
    /// is derived from the logs, so a failure is logged, not retried.
    async fn record_activity(&mut self, counts: &[(String, EventTime, u64)]) {
        let db = self.manager.store().db();
        if let Err(error) = record_activity(&db, counts).await {
            tracing::warn!(error = %error, rows = counts.len(), "Recording client activity failed.");
        }
        self.activity_writes += 1;
        if self.activity_writes.is_multiple_of(1000) {
            if let Some(newest) = counts.iter().map(|c| c.1).max() {
                let before = newest.plus_millis(-ACTIVITY_RETENTION_MS);
                if let Err(error) = prune_activity(&db, before).await {
                    tracing::warn!(error = %error, "Pruning client activity failed.");
                }
            }
        }
    }

    async fn apply(&mut self, finding: &Finding) -> anyhow::Result<()> {
        let mut delay = Duration::from_millis(100);
        let change = loop {
            match self.manager.apply(finding).await {
                Ok(change) => break change,
                Err(error) if error.is_data_error() => {
                    // Retrying cannot help, and would hold up every later
                    // incident: count it, say which, and go on.
                    let i = PipelineStats::kind_index(finding.kind);
                    self.stats.incidents_refused[i].fetch_add(1, Relaxed);
                    tracing::error!(error = %error, kind = %finding.kind, client = %finding.key.escape_debug(), "The incident store refused an incident's data; skipped.");
                    return Ok(());
                }
                Err(error) if self.retry_store => {
                    tracing::error!(error = %error, retry_in_ms = delay.as_millis() as u64, "Storing an incident failed; retrying.");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(error) => return Err(error.into()),
            }
        };
        if let Some(change) = change {
            self.count(&change);
            for sink in &mut self.sinks {
                sink.emit(&change)?;
            }
        }
        Ok(())
    }

    fn count(&self, change: &IncidentChange) {
        let i = PipelineStats::kind_index(change.incident.kind);
        match change.change {
            ChangeKind::Created => self.stats.incidents_created[i].fetch_add(1, Relaxed),
            _ => self.stats.incidents_updated[i].fetch_add(1, Relaxed),
        };
    }
}
