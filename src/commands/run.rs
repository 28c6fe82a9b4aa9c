//! `gatewatch run`: the service.
//!
//! Start-up validates everything before any I/O (config, every source,
//! every format), then starts the store, the pipeline, the notification
//! worker, the sources (each under a supervisor that restarts it with
//! backoff) and the API. SIGINT/SIGTERM stop the sources from reading, let
//! the pipeline drain (incidents stored, then batches acknowledged: Kafka
//! offsets committed, file positions checkpointed), stop the workers, exit.
//!
//! With `[repartition]` the instance is an ingest stage instead: the same
//! sources and parsing, but events are published keyed by client to the
//! internal topic (see [`crate::pipeline::repartition`]) and a batch is
//! acknowledged once all of its events are delivered; no detection, no
//! notifications, and the database only for the API.

use crate::api;
use crate::config::{Config, RepartitionConfig, SourceConfig, SourceKind};
use crate::pipeline::state_file::{StateFile, STATE_FILE};
use crate::pipeline::stats::PipelineStats;
use crate::pipeline::{self, Outputs, SourceFormat, StoreFailures};
use crate::sinks::console::ConsoleSink;
use crate::sinks::IncidentSink;
use anyhow::Context;
use clap::Args;
use gatewatch_alerting::{Notifications, Watermark};
use gatewatch_ingest::formats::{self, FormatKind};
use gatewatch_ingest::sources::file::FileConfig;
use gatewatch_ingest::sources::stdin::StdinConfig;
use gatewatch_ingest::sources::{self, BatchShape, Source, SourceError, SourceMetrics};
use gatewatch_ingest::RecordBatch;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Arguments of `gatewatch run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Configuration file (default: the embedded setup, see the README).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Files to follow (`-` for standard input), instead of the configured sources.
    pub inputs: Vec<PathBuf>,
    /// Log format of the inputs given on the command line.
    #[arg(long, short, default_value = "auto", value_parser = super::replay::parse_format)]
    pub format: FormatKind,
}

/// A source ready to run: its config (to rebuild it on restart), id and counters.
pub struct PlannedSource {
    /// What it is.
    pub config: SourceConfig,
    /// Its index in the pipeline.
    pub id: u16,
    /// Its counters.
    pub metrics: Arc<SourceMetrics>,
}

/// Resolves the sources to run (command-line inputs replace the configured
/// ones) and builds each once to validate it before any I/O.
pub fn plan_sources(cfg: &Config, args: &RunArgs) -> anyhow::Result<Vec<PlannedSource>> {
    let configs: Vec<SourceConfig> = if args.inputs.is_empty() {
        cfg.sources.clone()
    } else {
        args.inputs
            .iter()
            .map(|p| -> anyhow::Result<SourceConfig> {
                let kind = if p.as_os_str() == "-" {
                    SourceKind::Stdin(StdinConfig::default())
                } else {
                    // The file source wants absolute paths (its checkpoints
                    // must not depend on the directory it was started in).
                    let p = std::path::absolute(p)
                        .with_context(|| format!("Cannot resolve {}", p.display()))?;
                    SourceKind::File(FileConfig::new(
                        vec![p.display().to_string()],
                        cfg.state_dir.clone(),
                    ))
                };
                Ok(SourceConfig::new(kind, args.format))
            })
            .collect::<anyhow::Result<_>>()?
    };
    anyhow::ensure!(!configs.is_empty(), "No sources configured");
    anyhow::ensure!(configs.len() <= usize::from(u16::MAX), "Too many sources");
    let shape = shape(cfg);
    let mut planned = Vec::with_capacity(configs.len());
    for (i, config) in configs.into_iter().enumerate() {
        let id = i as u16;
        let metrics = SourceMetrics::new();
        build_source(&config, id, shape, metrics.clone())
            .with_context(|| format!("Invalid source {} ({})", i, config.describe()))?;
        for kind in std::iter::once(config.format).chain(config.topic_formats.values().copied()) {
            formats::build(kind, &cfg.parser)
                .with_context(|| format!("Invalid format for source {i}"))?;
        }
        planned.push(PlannedSource {
            config,
            id,
            metrics,
        });
    }
    Ok(planned)
}

fn shape(cfg: &Config) -> BatchShape {
    BatchShape {
        max_line_bytes: cfg.pipeline.max_line_bytes,
        batch_lines: cfg.pipeline.batch_lines,
    }
}

/// Builds one source (validation only; no I/O happens until `run`).
fn build_source(
    config: &SourceConfig,
    id: u16,
    shape: BatchShape,
    metrics: Arc<SourceMetrics>,
) -> Result<Box<dyn Source>, SourceError> {
    match &config.kind {
        SourceKind::Syslog(c) => sources::syslog::build(c.clone(), id, shape, metrics),
        SourceKind::Kafka(c) => sources::kafka::build(c.clone(), id, shape, metrics),
        SourceKind::File(c) => sources::file::build(c.clone(), id, shape, metrics),
        SourceKind::Stdin(c) => sources::stdin::build(c.clone(), id, shape, metrics),
    }
}

/// The formats of the planned sources, indexed by `SourceId`.
fn source_formats(planned: &[PlannedSource]) -> Vec<SourceFormat> {
    planned
        .iter()
        .map(|p| SourceFormat {
            default: p.config.format,
            by_topic: p.config.topic_formats.clone(),
        })
        .collect()
}

/// Adds the pipeline and source metrics and the sources' readiness to
/// `state`, binds the API address and serves it until `shutdown`.
async fn serve_api(
    cfg: &Config,
    state: api::AppState,
    planned: &[PlannedSource],
    health: &[(String, Arc<SourceHealth>)],
    stats: Arc<PipelineStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let state = state
        .with_metrics(Arc::new(api::metrics::PipelineMetrics {
            stats,
            source_names: planned.iter().map(|p| p.config.describe()).collect(),
        }))
        .with_metrics(Arc::new(api::metrics::SourceMetricsView {
            sources: planned
                .iter()
                .map(|p| (p.config.describe(), p.metrics.clone()))
                .collect(),
        }));
    let state = health.iter().fold(state, |state, (name, h)| {
        let h = h.clone();
        state.with_readiness(format!("source {name}"), move || {
            let h = h.clone();
            async move { h.check() }
        })
    });
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("Failed to listen for the API on {}", cfg.api.listen))?;
    let tls = cfg.api.tls.as_ref().map(|t| api::TlsConfig {
        cert_path: t.cert_path.clone(),
        key_path: t.key_path.clone(),
    });
    // Read the certificate and key now: a bad [api.tls] must stop the
    // start, not leave a service running without its API.
    if let Some(tls) = &tls {
        tls.acceptor().context("Invalid [api.tls]")?;
    }
    Ok(tokio::spawn(api::serve(listener, state, tls, shutdown)))
}

/// Waits for the API server to stop, logging how it ended.
async fn join_api(api: Option<tokio::task::JoinHandle<anyhow::Result<()>>>) {
    if let Some(api) = api {
        match api.await {
            Ok(Err(error)) => {
                tracing::error!(error = format!("{error:#}"), "The API server failed.")
            }
            Err(error) => tracing::error!(error = %error, "The API server panicked."),
            Ok(Ok(())) => {}
        }
    }
}

/// Runs until SIGINT/SIGTERM (or until every source has ended).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.as_deref())?;
    let planned = plan_sources(&cfg, &args)?;
    if let Some(repartition) = cfg.repartition.clone() {
        return run_ingest_stage(&cfg, planned, &repartition).await;
    }
    let notifications_cfg = cfg.notifications.clone();

    let store = super::open_store(&cfg.database_url).await?;
    let notifications = Notifications::build(&notifications_cfg, store.clone())
        .context("Invalid [notifications]")?;
    let shutdown = CancellationToken::new();
    let watermark = Watermark::new();
    let notification_counters = Arc::new(api::metrics::NotificationCounters::default());
    let counters = notification_counters.clone();
    let worker = notifications.spawn_observed_worker(
        Some(Arc::new(move |channel: &str, outcome: &str| {
            counters.record(channel, outcome)
        })),
        shutdown.clone(),
    );
    let resolver = notifications.spawn_auto_resolver(watermark.clone(), shutdown.clone());

    let console = cfg.console.enabled.unwrap_or(args.config.is_none());
    let mut sinks: Vec<Box<dyn IncidentSink>> = Vec::new();
    if console {
        sinks.push(Box::new(ConsoleSink::stdout(true)));
    }
    let formats = source_formats(&planned);
    let outputs = Outputs {
        sinks,
        failures: StoreFailures::Retry,
        routing: notifications.routing(),
        watermark: Some(watermark),
        activity: true,
        detector_state: cfg
            .pipeline
            .keep_detector_state
            .then(|| StateFile::at(&cfg.state_dir.join(STATE_FILE), &cfg.detection)),
    };
    let mut running = pipeline::start(&cfg, &formats, store.clone(), outputs)?;

    let health: Vec<(String, Arc<SourceHealth>)> = planned
        .iter()
        .map(|p| (p.config.describe(), Arc::new(SourceHealth::default())))
        .collect();
    let api = if cfg.api.enabled {
        let state = api::AppState::new(store.clone())
            .with_lifecycle(notifications.lifecycle())
            .with_metrics(notification_counters.clone());
        let stats = running.stats.clone();
        Some(serve_api(&cfg, state, &planned, &health, stats, shutdown.clone()).await?)
    } else {
        None
    };

    let source_metrics: Vec<_> = planned.iter().map(|p| p.metrics.clone()).collect();
    let unsettled = || -> u64 {
        source_metrics
            .iter()
            .map(|m| {
                m.unsettled_at_stop
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    };
    let stop_sources = CancellationToken::new();
    let mut supervisors = tokio::task::JoinSet::new();
    for (p, (_, h)) in planned.into_iter().zip(&health) {
        tracing::info!(source = %p.config.describe(), format = p.config.format.as_str(), "Source starting.");
        let (shape, out, stop) = (shape(&cfg), running.batches.clone(), stop_sources.clone());
        supervisors.spawn(supervise(p, h.clone(), shape, out, stop));
    }
    tracing::info!(database = %crate::config::redact_url(&cfg.database_url), "gatewatch is running.");

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("Shutting down: draining in-flight work."),
        _ = async { while supervisors.join_next().await.is_some() {} } => tracing::info!("Every source has ended."),
    }
    // Sources stop reading but stay alive until their last batches are
    // acknowledged (bounded by each source's own timeout), while the
    // pipeline keeps draining. What they could not settle by then is read
    // again after a restart (counted from here: a source restarted earlier
    // has re-read its own already).
    let unsettled_before = unsettled();
    stop_sources.cancel();
    running.drain();
    while supervisors.join_next().await.is_some() {}
    let left = unsettled() - unsettled_before;
    if left > 0 {
        running.forgo_detector_state(left);
    }
    let stats = running.finish().await?;
    shutdown.cancel();
    join_api(api).await;
    let _ = worker.await;
    if let Some(r) = resolver {
        let _ = r.await;
    }
    store.close().await;
    let (lines, parsed, _, _) = stats.totals();
    tracing::info!(lines, parsed, "Stopped.");
    Ok(())
}

/// How long, after the sources have stopped, the ingest stage may take to
/// publish and acknowledge what it still holds before exiting anyway (what
/// is left unacknowledged is read again after a restart).
const INGEST_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// `run` with `[repartition]`: an ingest stage. Parses every source and
/// publishes the events keyed by client to the internal topic; no
/// detection, no incident writes. The database is opened only to serve the
/// API (disable `[api]` to run without one).
async fn run_ingest_stage(
    cfg: &Config,
    planned: Vec<PlannedSource>,
    repartition: &RepartitionConfig,
) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let give_up = CancellationToken::new();
    let formats = source_formats(&planned);
    let running = pipeline::repartition::start(cfg, repartition, &formats, give_up.clone())?;

    let health: Vec<(String, Arc<SourceHealth>)> = planned
        .iter()
        .map(|p| (p.config.describe(), Arc::new(SourceHealth::default())))
        .collect();
    let mut store = None;
    let api = if cfg.api.enabled {
        let s = super::open_store(&cfg.database_url).await?;
        let state = api::AppState::new(s.clone()).with_metrics(running.metrics.clone());
        store = Some(s);
        let stats = running.stats.clone();
        Some(serve_api(cfg, state, &planned, &health, stats, shutdown.clone()).await?)
    } else {
        None
    };

    let stop_sources = CancellationToken::new();
    let mut supervisors = tokio::task::JoinSet::new();
    for (p, (_, h)) in planned.into_iter().zip(&health) {
        tracing::info!(source = %p.config.describe(), format = p.config.format.as_str(), "Source starting.");
        let (shape, out, stop) = (shape(cfg), running.batches.clone(), stop_sources.clone());
        supervisors.spawn(supervise(p, h.clone(), shape, out, stop));
    }
    tracing::info!(
        topic = %repartition.topic,
        brokers = %repartition.brokers,
        key = key_description(cfg),
        "gatewatch is running as an ingest stage: publishing events keyed by client."
    );

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("Shutting down: draining in-flight work."),
        _ = async { while supervisors.join_next().await.is_some() {} } => tracing::info!("Every source has ended."),
    }
    // As in detection mode: sources stop reading and wait (bounded by their
    // own timeout) for their last batches to be published and acknowledged.
    stop_sources.cancel();
    while supervisors.join_next().await.is_some() {}
    // From here a failed delivery is not retried: its batch stays
    // unacknowledged.
    give_up.cancel();
    let metrics = running.metrics.clone();
    let stats = match tokio::time::timeout(INGEST_DRAIN_TIMEOUT, running.finish()).await {
        Ok(result) => Some(result?),
        Err(_) => {
            tracing::error!(
                timeout_secs = INGEST_DRAIN_TIMEOUT.as_secs(),
                "Events still undelivered at shutdown; their batches stay unacknowledged."
            );
            None
        }
    };
    shutdown.cancel();
    join_api(api).await;
    if let Some(store) = store {
        store.close().await;
    }
    let (lines, parsed) = stats.map_or((0, 0), |s| {
        let (lines, parsed, _, _) = s.totals();
        (lines, parsed)
    });
    tracing::info!(
        lines,
        parsed,
        published = metrics.published.load(std::sync::atomic::Ordering::Relaxed),
        failures = metrics.failures.load(std::sync::atomic::Ordering::Relaxed),
        "Stopped."
    );
    Ok(())
}

/// What the ingest stage keys events by, for logs and `check-config`.
pub fn key_description(cfg: &Config) -> String {
    let ip = format!(
        "client address (IPv6 grouped by /{})",
        cfg.detection.ipv6_prefix
    );
    match cfg.detection.client_key {
        gatewatch_detector::config::ClientKeyMode::Ip => ip,
        gatewatch_detector::config::ClientKeyMode::Identity => {
            format!("authenticated identity, else {ip}")
        }
    }
}

/// Runs one source, rebuilding and restarting it with exponential backoff
/// when it fails, until it ends or `stop` is cancelled.
async fn supervise(
    p: PlannedSource,
    health: Arc<SourceHealth>,
    shape: BatchShape,
    out: mpsc::Sender<RecordBatch>,
    stop: CancellationToken,
) {
    let name = p.config.describe();
    let mut backoff = Duration::from_millis(500);
    loop {
        let source = match build_source(&p.config, p.id, shape, p.metrics.clone()) {
            Ok(s) => s,
            Err(error) => {
                tracing::error!(source = %name, error = %error, "Source configuration rejected; not restarting.");
                return;
            }
        };
        let started = std::time::Instant::now();
        health.set(None);
        match source.run(out.clone(), stop.clone()).await {
            Ok(()) => return,
            Err(error) => {
                health.set(Some(format!("{error}")));
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_millis(500);
                }
                tracing::error!(
                    source = %name,
                    error = %error,
                    retry_in_ms = backoff.as_millis() as u64,
                    "Source failed; restarting."
                );
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// Whether a source is running, for `/readyz`: the supervisor clears it
/// when the source starts and sets the error when it fails.
#[derive(Debug, Default)]
pub struct SourceHealth(std::sync::Mutex<Option<String>>);

impl SourceHealth {
    fn set(&self, error: Option<String>) {
        if let Ok(mut e) = self.0.lock() {
            *e = error;
        }
    }

    fn check(&self) -> Result<(), String> {
        match self.0.lock().map(|e| e.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(error)) => Err(error),
            Err(_) => Err("health state poisoned".into()),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
