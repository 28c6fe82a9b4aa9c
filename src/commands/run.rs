//! `gatewatch run`: the service.

use crate::config::{Config, SourceConfig};
use crate::pipeline::{self, StoreFailures};
use crate::sinks::console::ConsoleSink;
use crate::sinks::IncidentSink;
use anyhow::Context;
use clap::Args;
use gatewatch_ingest::formats::FormatKind;
use gatewatch_ingest::sources::reader::{read_batches, BatchShape, StreamName};
use gatewatch_ingest::RecordBatch;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// Arguments of `gatewatch run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Configuration file (default: the embedded setup, see the README).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Files to follow (`-` for standard input), instead of the configured sources.
    inputs: Vec<PathBuf>,
    /// Log format of the inputs given on the command line.
    #[arg(long, short, default_value = "auto", value_parser = super::replay::parse_format)]
    format: FormatKind,
}

/// Runs until SIGINT/SIGTERM (or until every source has ended).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.as_deref())?;
    let sources: Vec<SourceConfig> = if args.inputs.is_empty() {
        cfg.sources.clone()
    } else {
        let format = args.format;
        args.inputs
            .iter()
            .map(|p| {
                if p.as_os_str() == "-" {
                    SourceConfig::Stdin { format }
                } else {
                    SourceConfig::File {
                        paths: vec![p.clone()],
                        format,
                    }
                }
            })
            .collect()
    };
    anyhow::ensure!(
        !sources.is_empty(),
        "No sources configured: give files on the command line or [[sources]] in the config"
    );
    let store = super::open_store(&cfg.database_url).await?;
    let console = cfg.console.enabled.unwrap_or(args.config.is_none());
    let mut sinks: Vec<Box<dyn IncidentSink>> = Vec::new();
    if console {
        sinks.push(Box::new(ConsoleSink::stdout(true)));
    }
    let formats: Vec<FormatKind> = sources.iter().map(SourceConfig::format).collect();
    let running = pipeline::start(&cfg, &formats, store, sinks, StoreFailures::Retry)?;
    let shape = BatchShape {
        max_line_bytes: cfg.pipeline.max_line_bytes,
        batch_lines: cfg.pipeline.batch_lines,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let mut readers = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let id = u16::try_from(i).context("Too many sources")?;
        let tx = running.batches.clone();
        let stop = stop.clone();
        tracing::info!(source = %source.describe(), "Source started.");
        match source.clone() {
            SourceConfig::Stdin { .. } => readers.push(tokio::task::spawn_blocking(move || {
                read_batches(
                    std::io::stdin().lock(),
                    id,
                    &StreamName::Stdin,
                    shape,
                    |b| tx.blocking_send(b).is_ok(),
                    |_| {},
                )
                .map(|_| ())
                .context("Failed to read standard input")
            })),
            SourceConfig::File { paths, .. } => {
                for path in paths {
                    let tx = tx.clone();
                    let stop = stop.clone();
                    readers.push(tokio::task::spawn_blocking(move || {
                        follow(path, id, shape, tx, stop)
                    }));
                }
            }
        }
    }
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("Shutting down: draining in-flight work."),
        _ = async { for r in &mut readers { let _ = r.await; } } => tracing::info!("Every source has ended."),
    }
    stop.cancel();
    for r in readers {
        if let Ok(Err(e)) = r.await {
            tracing::error!(error = format!("{e:#}"), "A source failed.");
        }
    }
    let stats = running.finish().await?;
    let (lines, parsed, _, _) = stats.totals();
    tracing::info!(lines, parsed, "Stopped.");
    Ok(())
}

/// Reads a file from the start, then keeps reading what is appended.
fn follow(
    path: PathBuf,
    source: u16,
    shape: BatchShape,
    tx: mpsc::Sender<RecordBatch>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("Failed to open {}", path.display()))?;
    let name = StreamName::File(path.display().to_string().into());
    let mut pos = 0u64;
    while !stop.is_cancelled() {
        file.seek(SeekFrom::Start(pos))?;
        let mut chunk = Vec::new();
        let n = (&mut file).take(64 << 20).read_to_end(&mut chunk)?;
        // Only complete lines; a partial last line waits for its newline.
        let complete = chunk.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete > 0 {
            read_batches(
                &chunk[..complete],
                source,
                &name,
                shape,
                |b| tx.blocking_send(b).is_ok(),
                |_| {},
            )?;
            pos += complete as u64;
        }
        if n < (64 << 20) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
