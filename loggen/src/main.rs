//! `gatewatch-loggen`: writes a generated log and its labels.

use anyhow::Context;
use clap::Parser;
use gatewatch_loggen::flood::flood;
use gatewatch_loggen::{generate, render, LogFormat, Scenario};
use std::io::Write;
use std::path::PathBuf;

/// Writes seeded synthetic gateway logs with labelled attacks.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// `eval` (3 hours, every attack and look-alike, a surge), `bench`
    /// (`--lines` requests, few attacks) or `flood` (a spoofed-source flood:
    /// one request from each of `--clients` distinct addresses over 30
    /// minutes; `--lines` and `--labels` do not apply).
    #[arg(long, default_value = "eval")]
    scenario: String,
    /// Log format to write.
    #[arg(long, value_enum, default_value = "nginx-combined")]
    format: LogFormat,
    /// Ordinary visitors (flood: distinct source addresses).
    #[arg(long, default_value_t = 2000)]
    clients: u64,
    /// Requests to write (bench scenario).
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output file (stdout when absent).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to write the labels as JSON.
    #[arg(long)]
    labels: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let requests: Box<dyn Iterator<Item = gatewatch_loggen::Request>> = match args.scenario.as_str()
    {
        "flood" => {
            if let Some(path) = &args.labels {
                std::fs::write(path, "[]")
                    .with_context(|| format!("Failed to write {}", path.display()))?;
            }
            Box::new(flood(args.seed, args.clients))
        }
        name => {
            let scenario = match name {
                "eval" => Scenario::eval(args.seed, args.clients),
                "bench" => Scenario::bench(args.seed, args.clients, args.lines),
                other => anyhow::bail!("unknown scenario {other:?} (eval, bench or flood)"),
            };
            let generated = generate(&scenario);
            if let Some(path) = &args.labels {
                let json = serde_json::to_vec_pretty(&generated.labels)?;
                std::fs::write(path, json)
                    .with_context(|| format!("Failed to write {}", path.display()))?;
            }
            Box::new(generated.requests)
        }
    };
    let sink: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(
            std::fs::File::create(p)
                .with_context(|| format!("Failed to create {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = std::io::BufWriter::with_capacity(1 << 20, sink);
    let mut buf = Vec::with_capacity(4096);
    for req in requests {
        buf.clear();
        render(&req, args.format, &mut buf);
        sink.write_all(&buf)?;
    }
    sink.flush()?;
    Ok(())
}
