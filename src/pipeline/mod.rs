//! Wiring of the pipeline: sources → parse threads → detection thread →
//! incident task.
//!
//! ```text
//! sources ──RecordBatch──▶ parse threads ──Parsed──▶ detect thread ──StageMsg──▶ incident task ──▶ store, sinks
//!          (bounded)      (batch i on i mod n)       route, detect  (bounded)    manager, ack
//! ```
//! Every channel is bounded, so a slow store slows detection, which slows
//! the sources (backpressure) instead of growing memory. `replay` and `run`
//! use this same wiring; only the sources differ.

pub mod activity;
pub mod detect;
pub mod incidents;
pub mod order;
pub mod parse;
pub mod repartition;
pub mod shards;
pub mod state_file;
pub mod stats;

use crate::config::Config;
use crate::sinks::IncidentSink;
use anyhow::Context;
use gatewatch_alerting::notify::Routing;
use gatewatch_alerting::{IncidentManager, IncidentStore, ManagerConfig, Watermark};
use gatewatch_detector::classify::Classifier;
use gatewatch_detector::{Engine, EngineState, Finding};
use gatewatch_ingest::formats::{self, FormatKind};
use gatewatch_ingest::{Acknowledge, RecordBatch};
use stats::PipelineStats;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// How one source's lines are parsed: one format, or one per Kafka topic.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceFormat {
    /// The format of the source's lines.
    pub default: FormatKind,
    /// Kafka topics whose lines are in another format.
    pub by_topic: BTreeMap<String, FormatKind>,
}

impl SourceFormat {
    /// One format for every line of the source.
    pub fn plain(kind: FormatKind) -> SourceFormat {
        SourceFormat {
            default: kind,
            by_topic: BTreeMap::new(),
        }
    }
}

/// What the detection stage tells the incident stage, in order.
pub enum StageMsg {
    /// Findings from the lines of the batches before the next `BatchDone`.
    Findings(Vec<Finding>),
    /// Per-minute event counts of watched clients: (client, minute, count).
    Activity(Vec<(String, gatewatch_detector::EventTime, u64)>),
    /// Every finding of a batch has been sent: once they are stored, the
    /// batch can be acknowledged.
    BatchDone(Option<Box<dyn Acknowledge>>),
}

/// A started pipeline.
pub struct Running {
    /// Where sources send batches. Dropping every clone ends the pipeline.
    pub batches: mpsc::Sender<RecordBatch>,
    /// See [`Running::drain`].
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// Shared counters.
    pub stats: Arc<PipelineStats>,
    parse: Vec<std::thread::JoinHandle<()>>,
    detect: std::thread::JoinHandle<Option<EngineState>>,
    incidents: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Where detection's state is saved once everything is stored.
    state_file: Option<state_file::StateFile>,
}

impl Running {
    /// Says the service is stopping: events held for ordering are let
    /// through now, so every batch read so far is acknowledged while the
    /// sources still wait for it (a Kafka source then commits its offsets).
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Leaves detection's state unsaved at [`Running::finish`], because
    /// `batches` batches will be read again after a restart (their source
    /// stopped before they were acknowledged): carried over, they would be
    /// counted twice.
    pub fn forgo_detector_state(&mut self, batches: u64) {
        if let Some(file) = self.state_file.take() {
            tracing::warn!(path = %file.path.display(), unacknowledged_batches = batches, "Detector state not saved: sources stopped before every batch was acknowledged, and those are read again after a restart.");
        }
    }

    /// Waits for the pipeline to drain after every batch sender is dropped.
    pub async fn finish(self) -> anyhow::Result<Arc<PipelineStats>> {
        drop(self.batches);
        let (parse, detect) = (self.parse, self.detect);
        let (parse, detect) = tokio::task::spawn_blocking(move || {
            let parse: Result<Vec<()>, _> = parse.into_iter().map(|t| t.join()).collect();
            (parse, detect.join())
        })
        .await?;
        parse.map_err(|_| anyhow::anyhow!("A parse thread panicked"))?;
        let state = detect.map_err(|_| anyhow::anyhow!("The detection thread panicked"))?;
        self.incidents.await??;
        // Only now: every finding of the state's events is stored.
        if let (Some(file), Some(state)) = (&self.state_file, state) {
            file.save(&state)?;
        }
        Ok(self.stats)
    }
}

/// How the incident stage treats store failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFailures {
    /// Retry with backoff forever (a live run must not drop findings).
    Retry,
    /// Fail the pipeline (a replay reports the error).
    Fail,
}

/// What a pipeline is connected to besides its sources and store.
pub struct Outputs {
    /// Where incident changes go besides the store (stdout, …).
    pub sinks: Vec<Box<dyn IncidentSink>>,
    /// How store failures are treated.
    pub failures: StoreFailures,
    /// Which changes enqueue notifications (none for `replay`).
    pub routing: Option<Arc<Routing>>,
    /// Event time as far as the pipeline has read, for auto-resolve.
    pub watermark: Option<Watermark>,
    /// Record per-minute activity of clients with findings (for the web
    /// page's chart).
    pub activity: bool,
    /// Take detection's state back from this file at start and save it
    /// there after a clean finish.
    pub detector_state: Option<state_file::StateFile>,
}

/// Starts the detection thread and the incident task for sources with the
/// given formats (indexed by `SourceId`).
pub fn start(
    cfg: &Config,
    source_formats: &[SourceFormat],
    store: Arc<dyn IncidentStore>,
    outputs: Outputs,
) -> anyhow::Result<Running> {
    let stats = Arc::new(PipelineStats::new(
        source_formats.len(),
        cfg.pipeline.detect_threads.max(1),
    ));
    let samples = parse::RejectSamples::default();
    let classifier = Classifier::new(&cfg.detection).context("Invalid detection configuration")?;
    let parse_stages = (0..cfg.pipeline.parse_threads())
        .map(|_| -> anyhow::Result<parse::ParseStage> {
            Ok(parse::ParseStage {
                parsing: parse::Parsing {
                    formats: source_formats
                        .iter()
                        .map(|f| parse::Parsers::build(f, |k| formats::build(k, &cfg.parser)))
                        .collect::<Result<Vec<_>, _>>()
                        .context("Invalid parser configuration")?,
                    stats: stats.clone(),
                    samples_per_reason: cfg.pipeline.rejected_samples_per_reason,
                    sampled: samples.clone(),
                },
                classifier: classifier.clone(),
                text_hint: 0,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let manager = IncidentManager::new(
        store,
        ManagerConfig {
            merge_gap: std::time::Duration::from_secs(cfg.incidents.merge_gap_secs),
            notifications: outputs.routing,
            watermark: outputs.watermark.clone(),
            ..ManagerConfig::default()
        },
    );

    let (batch_tx, batch_rx) = mpsc::channel::<RecordBatch>(cfg.pipeline.queue_batches);
    let (msg_tx, msg_rx) = mpsc::channel::<StageMsg>(cfg.pipeline.queue_batches * 4);
    let pool = parse::start_pool(parse_stages, batch_rx, cfg.pipeline.queue_batches)
        .context("Failed to start the parse threads")?;
    let activity_capacity = if outputs.activity { 10_000 } else { 0 };
    let shard_count = cfg.pipeline.detect_threads.max(1);
    let restored = outputs
        .detector_state
        .as_ref()
        .and_then(|f| f.take(shard_count));
    let detectors = match cfg.pipeline.detect_threads {
        0 | 1 => detect::Detectors::Inline(detect::InlineDetectors {
            engine: match restored {
                Some((router, shards)) => Engine::from_parts(&cfg.detection, router, shards),
                None => Engine::new(&cfg.detection, 1),
            }
            .context("Invalid detection configuration")?,
            activity: (activity_capacity > 0).then(|| {
                activity::ActivityTracker::new(activity_capacity, cfg.detection.ipv6_prefix)
            }),
            findings: Vec::new(),
            batches: 0,
        }),
        n => detect::Detectors::Sharded(
            shards::ShardPool::start(
                &cfg.detection,
                n,
                restored,
                stats.clone(),
                activity_capacity,
                msg_tx.clone(),
            )
            .context("Failed to start detection")?,
        ),
    };
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stage = detect::DetectStage {
        draining: draining.clone(),
        merger: order::PartitionMerger::new(
            std::time::Duration::from_millis(cfg.pipeline.partition_idle_ms),
            cfg.pipeline.merge_max_events,
        ),
        detecting: detect::Detecting {
            detectors,
            stats: stats.clone(),
            watermark: outputs.watermark,
            newest: 0,
            keep_state: outputs.detector_state.is_some(),
        },
    };
    let runtime = tokio::runtime::Handle::current();
    let detect = std::thread::Builder::new()
        .name("gatewatch-detect".into())
        .spawn(move || stage.run(pool.output, msg_tx, runtime))
        .context("Failed to start the detection thread")?;
    let incident_stage = incidents::IncidentStage {
        manager,
        sinks: outputs.sinks,
        stats: stats.clone(),
        retry_store: outputs.failures == StoreFailures::Retry,
        activity_writes: 0,
    };
    let incidents = tokio::spawn(incident_stage.run(msg_rx));
    Ok(Running {
        batches: batch_tx,
        draining,
        stats,
        parse: pool.threads,
        detect,
        incidents,
        state_file: outputs.detector_state,
    })
}
