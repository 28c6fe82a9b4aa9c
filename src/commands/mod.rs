//! One module per subcommand.

pub mod check_config;
pub mod replay;
pub mod run;
pub mod token;

use crate::config::{redact_url, Config};
use anyhow::Context;
use gatewatch_alerting::store;
use std::path::Path;

/// `gatewatch migrate`: applies the migrations of the configured database.
pub async fn migrate(config: Option<&Path>) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    open_store(&cfg.database_url).await?;
    tracing::info!(database = %redact_url(&cfg.database_url), "Migrations applied.");
    Ok(())
}

/// Connects to the store and applies its migrations.
pub async fn open_store(
    url: &str,
) -> anyhow::Result<std::sync::Arc<dyn gatewatch_alerting::IncidentStore>> {
    let store = store::connect(url)
        .await
        .with_context(|| format!("Failed to open the database {}", redact_url(url)))?;
    store
        .migrate()
        .await
        .with_context(|| format!("Failed to migrate the database {}", redact_url(url)))?;
    Ok(store)
}
