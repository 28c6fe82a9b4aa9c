//! `gatewatch`: turns API-gateway access logs into security incidents.
//!
//! The binary is the edge: it reads the configuration, wires the crates
//! together (sources → formats → detectors → incidents → sinks) and reports
//! errors with context. See ARCHITECTURE.md for the map.

use clap::{Parser, Subcommand};
use gatewatch::commands;
use std::path::PathBuf;
use std::process::ExitCode;

/// Turns the access logs API gateways already write into security incidents.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: read logs continuously, store incidents.
    Run(commands::run::RunArgs),
    /// Run the detection pipeline over files (or `-` for stdin) as fast as
    /// possible and print every incident as one JSON line on stdout.
    Replay(commands::replay::ReplayArgs),
    /// Manage API tokens for the incident API and web page.
    Token(commands::token::TokenArgs),
    /// Validate a configuration and print what `run` would run.
    CheckConfig(commands::run::RunArgs),
    /// Apply database migrations and exit.
    Migrate {
        /// Configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "Failed to start the async runtime.");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => commands::run::run(args).await,
            Command::Replay(args) => commands::replay::replay(args).await,
            Command::Migrate { config } => commands::migrate(config.as_deref()).await,
            Command::CheckConfig(args) => commands::check_config::plan(&args).and_then(|plan| {
                use std::io::Write;
                std::io::stdout().write_all(plan.as_bytes())?;
                Ok(())
            }),
            Command::Token(args) => commands::token::token(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "gatewatch failed.");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout carries incidents); `GATEWATCH_LOG` (or
/// `RUST_LOG`) sets the filter, `GATEWATCH_LOG_FORMAT=json` switches to JSON.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("GATEWATCH_LOG")
        .ok()
        .map(EnvFilter::new)
        .unwrap_or_else(|| {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("GATEWATCH_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
