//! `gatewatch replay`: the live pipeline, over files, as fast as possible.

use crate::config::Config;
use crate::pipeline::state_file::StateFile;
use crate::pipeline::{self, stats::PipelineStats, Outputs, SourceFormat, StoreFailures};
use crate::sinks::console::ConsoleSink;
use anyhow::Context;
use clap::Args;
use gatewatch_ingest::formats::FormatKind;
use gatewatch_ingest::sources::reader::{read_batches, BatchShape, StreamName};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Arguments of `gatewatch replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Log format of the inputs: auto (recognised per line), nginx_combined,
    /// nginx_json, kong, apisix, traefik, envoy, haproxy, aws_apigw, caddy, json.
    #[arg(long, short, default_value = "auto", value_parser = parse_format)]
    format: FormatKind,
    /// Configuration file (detection thresholds, parser options, database).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Store incidents in the configured database (default: in memory only).
    #[arg(long)]
    store: bool,
    /// Carry detection's state in this file: take it back before the
    /// first line (when the file is there) and save it after the last, so
    /// that replaying a log in parts finds what replaying it whole finds.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Files to replay, in order; `-` reads standard input.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

/// Parses a `--format` value by the config names of [`FormatKind`]
/// (`nginx_combined`, `kong`, …; dashes work too).
pub fn parse_format(s: &str) -> Result<FormatKind, String> {
    serde_json::from_value(serde_json::Value::String(s.replace('-', "_"))).map_err(|_| {
        format!("unknown format {s:?}; see `gatewatch replay --help` or the README for the list")
    })
}

/// Runs the replay and prints the summary on stderr.
pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.as_deref())?;
    let url = if args.store {
        cfg.database_url.clone()
    } else {
        "sqlite::memory:".to_string()
    };
    let store = super::open_store(&url).await?;
    let formats = vec![SourceFormat::plain(args.format); args.inputs.len()];
    // A replay pages nobody: no notification routing.
    let outputs = Outputs {
        sinks: vec![Box::new(ConsoleSink::stdout(false))],
        failures: StoreFailures::Fail,
        routing: None,
        watermark: None,
        activity: args.store,
        detector_state: args
            .state
            .as_ref()
            .map(|path| StateFile::at(path, &cfg.detection)),
    };
    let running = pipeline::start(&cfg, &formats, store, outputs)?;

    let total_bytes: u64 = args
        .inputs
        .iter()
        .filter(|p| p.as_os_str() != "-")
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let progress = progress_bar(total_bytes);
    let shape = BatchShape {
        max_line_bytes: cfg.pipeline.max_line_bytes,
        batch_lines: cfg.pipeline.batch_lines,
    };
    let sender = running.batches.clone();
    let inputs = args.inputs.clone();
    let started = Instant::now();
    let bar = progress.clone();
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut done_bytes = 0u64;
        for (i, path) in inputs.iter().enumerate() {
            let source = u16::try_from(i).context("Too many inputs")?;
            let send = |b| sender.blocking_send(b).is_ok();
            let report = |n: u64| {
                if let Some(bar) = &bar {
                    bar.set_position(done_bytes + n);
                }
            };
            if path.as_os_str() == "-" {
                read_batches(
                    std::io::stdin().lock(),
                    source,
                    &StreamName::Stdin,
                    shape,
                    send,
                    report,
                )
                .context("Failed to read standard input")?;
            } else {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("Failed to open {}", path.display()))?;
                let name = StreamName::File(path.display().to_string().into());
                read_batches(file, source, &name, shape, send, report)
                    .with_context(|| format!("Failed to read {}", path.display()))?;
                done_bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            }
        }
        Ok(())
    });
    let read_result = reader.await?;
    let stats = running.finish().await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    read_result?;
    print_summary(&stats, started.elapsed().as_secs_f64());
    Ok(())
}

fn progress_bar(total_bytes: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() || total_bytes == 0 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total_bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// The end-of-replay summary: on stderr, as one structured log event (so a
/// script can parse it with `GATEWATCH_LOG_FORMAT=json`).
fn print_summary(stats: &Arc<PipelineStats>, secs: f64) {
    let (lines, parsed, truncated, rejected) = stats.totals();
    let incidents = stats.incidents_by_kind();
    let rejected_json = serde_json::to_string(&rejected).unwrap_or_default();
    let incidents_json = serde_json::to_string(&incidents).unwrap_or_default();
    let rate = if secs > 0.0 { lines as f64 / secs } else { 0.0 };
    tracing::info!(
        lines,
        parsed,
        rejected = rejected.values().sum::<u64>(),
        rejected_by_reason = %rejected_json,
        truncated,
        incidents = incidents.values().sum::<u64>(),
        incidents_by_kind = %incidents_json,
        seconds = format!("{secs:.3}"),
        lines_per_sec = rate as u64,
        "Replay finished."
    );
}
