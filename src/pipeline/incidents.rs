//! The incident stage: findings become incidents, are stored, and reach the
//! sinks; then the batches they came from are acknowledged.

use super::stats::PipelineStats;
use super::StageMsg;
use crate::sinks::IncidentSink;
use gatewatch_alerting::{ChangeKind, IncidentChange, IncidentManager};
use gatewatch_detector::Finding;
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
}

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
                StageMsg::BatchDone(Some(ack)) => ack.ack(),
                StageMsg::BatchDone(None) => {}
            }
        }
        for sink in &mut self.sinks {
            sink.flush()?;
        }
        Ok(())
    }

    async fn apply(&mut self, finding: &Finding) -> anyhow::Result<()> {
        let mut delay = Duration::from_millis(100);
        let change = loop {
            match self.manager.apply(finding).await {
                Ok(change) => break change,
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
