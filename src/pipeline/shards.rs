//! Detection spread over several threads, one shard of clients each.
//!
//! ```text
//!                       ┌─▶ shard thread 0 ─┐
//! detect thread ────────┼─▶ shard thread 1 ─┼──▶ collector thread ──StageMsg──▶ incident task
//! (Router: key, class,  └─▶ …               ┘    (batch i's findings,
//!  population, shard)      ShardBatch per batch     shard 0 first, then 1, …)
//! ```
//!
//! The [`Router`] must see every event in stream order (it keeps the
//! site-wide population figures), so it stays on the detection thread; the
//! per-client detectors, which hold nearly all the state and do most of the
//! work, run in [`Shard`]s on their own threads, each owning the clients
//! whose key hashes to it, with no locks. The router parks each event into
//! its shard's batch together with its routing and any population change
//! before it, so every shard sees exactly what the inline [`Engine`] would
//! have shown it. Every batch reaches every shard (possibly empty), and the
//! collector reads one result per shard per batch in shard order, so the
//! findings of a batch and their order depend only on the input and the
//! shard count, and a batch is acknowledged only after all its shards are
//! done with it.
//!
//! [`Engine`]: gatewatch_detector::Engine

use super::activity::ActivityTracker;
use super::parse::Parked;
use super::stats::PipelineStats;
use super::StageMsg;
use gatewatch_detector::config::ConfigError;
use gatewatch_detector::state::RouterState;
use gatewatch_detector::{
    DetectionConfig, Event, EventTime, Finding, PopulationView, RequestClass, Role, Routed, Router,
    Shard,
};
use gatewatch_ingest::Acknowledge;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One step of a shard's input, in stream order.
enum Item {
    /// The router's population view changed here.
    Population(PopulationView),
    /// An event the shard owns in `role`, its strings in the batch's text.
    Event(Parked, Routed, Role),
}

/// What one shard gets for one batch.
#[derive(Default)]
struct ShardBatch {
    /// The strings of the batch's events for this shard.
    text: String,
    /// Its events and population changes, in stream order.
    items: Vec<Item>,
    /// Where the router's watermark stood at the end of the batch.
    watermark: Option<EventTime>,
}

/// What one shard found in one batch.
struct ShardResult {
    findings: Vec<Finding>,
    activity: Vec<(String, EventTime, u64)>,
}

/// The router and the channels to the shard and collector threads.
pub struct ShardPool {
    router: Router,
    pending: Vec<ShardBatch>,
    to_shards: Vec<mpsc::Sender<ShardBatch>>,
    to_collector: mpsc::Sender<Option<Box<dyn Acknowledge>>>,
    workers: Vec<std::thread::JoinHandle<Shard>>,
    collector: std::thread::JoinHandle<()>,
}

impl ShardPool {
    /// Starts `shards` shard threads and a collector that sends their
    /// findings, in batch order, to `output`. `activity` is the number of
    /// clients whose per-minute counts are recorded (0 for none).
    pub fn start(
        cfg: &DetectionConfig,
        shards: usize,
        restored: Option<(RouterState, Vec<Shard>)>,
        stats: Arc<PipelineStats>,
        activity: usize,
        output: mpsc::Sender<StageMsg>,
    ) -> Result<ShardPool, StartError> {
        let shards = shards.max(1);
        let mut router = Router::new(cfg, shards)?;
        // Taken with `pop`, so reversed: shard 0 first.
        let mut restored = restored.map(|(saved, mut built)| {
            router.restore(saved);
            built.reverse();
            built
        });
        let (to_collector, pending_rx) = mpsc::channel(64);
        let mut to_shards = Vec::with_capacity(shards);
        let mut results = Vec::with_capacity(shards);
        let mut workers = Vec::with_capacity(shards);
        for index in 0..shards {
            let (batch_tx, batch_rx) = mpsc::channel::<ShardBatch>(8);
            let (result_tx, result_rx) = mpsc::channel::<ShardResult>(8);
            let worker = ShardWorker {
                shard: match restored.as_mut().and_then(Vec::pop) {
                    Some(shard) => shard,
                    None => Shard::new(cfg, shards)?,
                },
                index,
                stats: stats.clone(),
                activity: (activity > 0)
                    .then(|| ActivityTracker::new(activity.div_ceil(shards), cfg.ipv6_prefix)),
                batches: 0,
            };
            workers.push(
                std::thread::Builder::new()
                    .name(format!("gatewatch-shard-{index}"))
                    .spawn(move || worker.run(batch_rx, result_tx))?,
            );
            to_shards.push(batch_tx);
            results.push(result_rx);
        }
        let collector = Collector {
            pending: pending_rx,
            results,
            output,
        };
        let collector = std::thread::Builder::new()
            .name("gatewatch-collect".into())
            .spawn(move || collector.run())?;
        Ok(ShardPool {
            router,
            pending: (0..shards).map(|_| ShardBatch::default()).collect(),
            to_shards,
            to_collector,
            workers,
            collector,
        })
    }

    /// Routes one event to the shards that own its client and its target
    /// (classifying it first unless a parse thread did).
    pub fn observe(&mut self, ev: &Event<'_>, class: Option<RequestClass>) {
        let routed = match class {
            Some(class) => self.router.route_classified(ev, class),
            None => self.router.route(ev),
        };
        if let Some(view) = self.router.take_population_update() {
            for batch in &mut self.pending {
                batch.items.push(Item::Population(view));
            }
        }
        self.push(routed.client_shard, ev, routed, Role::Client);
        if let Some(target) = routed.target_shard {
            self.push(target, ev, routed, Role::Target);
        }
    }

    fn push(&mut self, shard: usize, ev: &Event<'_>, routed: Routed, role: Role) {
        if let Some(batch) = self.pending.get_mut(shard) {
            let parked = Parked::park(ev, routed.class, &mut batch.text);
            batch.items.push(Item::Event(parked, routed, role));
        }
    }

    /// Closes the shards' and collector's input, so they finish the
    /// batches they have and stop; waits for them (passing a panic on) and
    /// gives back the router and the shards, with what they learned.
    pub fn finish(self) -> (Router, Vec<Shard>) {
        fn join<T>(t: std::thread::JoinHandle<T>) -> T {
            t.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }
        drop((self.to_shards, self.to_collector));
        let shards = self.workers.into_iter().map(join).collect();
        join(self.collector);
        (self.router, shards)
    }

    /// Hands every shard its part of the batch and the collector the
    /// batch's acknowledgement. `false` when the downstream stages are gone.
    pub fn end_batch(&mut self, ack: Option<Box<dyn Acknowledge>>) -> bool {
        let wm = self.router.watermark();
        let watermark = (wm != EventTime::MIN).then_some(wm);
        for (batch, tx) in self.pending.iter_mut().zip(&self.to_shards) {
            let text_hint = batch.text.len() + batch.text.len() / 8;
            let items_hint = batch.items.len() + batch.items.len() / 8;
            let full = std::mem::replace(
                batch,
                ShardBatch {
                    text: String::with_capacity(text_hint),
                    items: Vec::with_capacity(items_hint),
                    watermark: None,
                },
            );
            if tx.blocking_send(ShardBatch { watermark, ..full }).is_err() {
                return false;
            }
        }
        self.to_collector.blocking_send(ack).is_ok()
    }
}

/// Why the shard threads did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The detection configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A thread could not be started.
    #[error("failed to start a detection thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// One shard on its own thread.
struct ShardWorker {
    shard: Shard,
    index: usize,
    stats: Arc<PipelineStats>,
    activity: Option<ActivityTracker>,
    batches: u64,
}

impl ShardWorker {
    /// Detects until the input closes; hands the shard back.
    fn run(
        mut self,
        mut input: mpsc::Receiver<ShardBatch>,
        output: mpsc::Sender<ShardResult>,
    ) -> Shard {
        while let Some(batch) = input.blocking_recv() {
            let result = self.detect(batch);
            if output.blocking_send(result).is_err() {
                break;
            }
        }
        self.shard
    }

    /// Runs the shard's detectors over one batch, then lets them expire
    /// state idle at the batch's watermark.
    fn detect(&mut self, batch: ShardBatch) -> ShardResult {
        let mut findings = Vec::new();
        for item in batch.items {
            match item {
                Item::Population(view) => self.shard.set_population(view),
                Item::Event(parked, routed, role) => {
                    let ev = parked.unpark(&batch.text);
                    self.shard.observe(&ev, &routed, role, &mut findings);
                    if let (Some(a), Role::Client) = (&mut self.activity, role) {
                        a.observe(&ev);
                    }
                }
            }
        }
        if let Some(wm) = batch.watermark {
            self.shard.advance(wm, &mut findings);
        }
        self.stats.count_findings(&findings);
        self.batches += 1;
        if self.batches % 64 == 1 {
            self.stats.publish_tracked(self.index, &self.shard.stats());
        }
        let activity = match &mut self.activity {
            Some(a) => {
                a.watch(&findings);
                a.flush()
            }
            None => Vec::new(),
        };
        ShardResult { findings, activity }
    }
}

/// Puts the shards' results back together, batch by batch.
struct Collector {
    pending: mpsc::Receiver<Option<Box<dyn Acknowledge>>>,
    results: Vec<mpsc::Receiver<ShardResult>>,
    output: mpsc::Sender<StageMsg>,
}

impl Collector {
    fn run(mut self) {
        // Each shard answers every batch in order, so the next result of
        // each shard belongs to the next pending batch.
        while let Some(ack) = self.pending.blocking_recv() {
            let (mut findings, mut activity) = (Vec::new(), Vec::new());
            for results in &mut self.results {
                let Some(r) = results.blocking_recv() else {
                    return;
                };
                findings.extend(r.findings);
                activity.extend(r.activity);
            }
            let sent = (activity.is_empty()
                || self
                    .output
                    .blocking_send(StageMsg::Activity(activity))
                    .is_ok())
                && (findings.is_empty()
                    || self
                        .output
                        .blocking_send(StageMsg::Findings(findings))
                        .is_ok())
                && self.output.blocking_send(StageMsg::BatchDone(ack)).is_ok();
            if !sent {
                return;
            }
        }
    }
}
