//! `gatewatch token create|list|revoke`: API tokens for the incident API
//! and the web page.
//!
//! `create` prints the token once, alone on the last line of stdout, so a
//! script can capture it (`token=$(gatewatch token create … | tail -n1)`);
//! only its SHA-256 is stored. All three use the configured database
//! (`GATEWATCH_DATABASE_URL`, default `sqlite://gatewatch.db`).

use crate::api::auth::{generate_token, hash_token};
use crate::api::model::valid_token_name;
use crate::config::Config;
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use gatewatch_alerting::store::audit::{self, AuditAction};
use gatewatch_alerting::store::tokens::{self, TokenError, TokenRole};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `gatewatch token`.
#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Configuration file (for `database_url`; the environment overrides it).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create a token and print it once (last line of stdout).
    Create {
        /// What the token may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A unique name: the timeline shows its actions as `token:<name>`.
        #[arg(long)]
        name: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by name; it stops working at once.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// The roles, as the command line spells them.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    /// Read incidents, clients, statistics.
    Viewer,
    /// Read, and acknowledge, resolve, reopen, comment, assign, suppress.
    Analyst,
    /// Everything, including token management.
    Admin,
}

impl From<RoleArg> for TokenRole {
    fn from(r: RoleArg) -> TokenRole {
        match r {
            RoleArg::Viewer => TokenRole::Viewer,
            RoleArg::Analyst => TokenRole::Analyst,
            RoleArg::Admin => TokenRole::Admin,
        }
    }
}

/// Runs `gatewatch token …`.
pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.as_deref())?;
    let store = super::open_store(&cfg.database_url).await?;
    let db = store.db();
    let mut out = std::io::stdout().lock();
    let result = match args.command {
        TokenCommand::Create { role, name } => {
            anyhow::ensure!(
                valid_token_name(&name),
                "A token name is 1 to 64 letters, digits, '.', '_', '-' or '@'"
            );
            let secret = generate_token()?;
            let creator = cli_actor();
            let created =
                tokens::create_token(&db, &name, role.into(), &hash_token(&secret), &creator)
                    .await
                    .map_err(|e| match e {
                        TokenError::NameTaken { .. } => {
                            anyhow::anyhow!("{e}: pick another name or revoke it first")
                        }
                        TokenError::Store(s) => {
                            anyhow::Error::new(s).context("Failed to store the token")
                        }
                    })?;
            audit::record(&db, &creator, AuditAction::TokenCreated, &created.name)
                .await
                .context("Failed to record the token's creation")?;
            tracing::info!(token = %created.name, role = created.role.as_str(), "API token created.");
            writeln!(
                out,
                "Created {} token {:?}. It is shown once; store it now:",
                created.role.as_str(),
                created.name
            )?;
            writeln!(out, "{secret}")
        }
        TokenCommand::List => {
            writeln!(
                out,
                "{:<24} {:<8} {:<25} {:<25} STATUS",
                "NAME", "ROLE", "CREATED", "LAST USED"
            )?;
            for t in tokens::list_tokens(&db)
                .await
                .context("Failed to list tokens")?
            {
                let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map_or_else(
                        || "-".to_owned(),
                        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    )
                };
                let status = match t.revoked_at {
                    Some(at) => format!("revoked {}", at.format("%Y-%m-%dT%H:%M:%SZ")),
                    None => "active".to_owned(),
                };
                writeln!(
                    out,
                    "{:<24} {:<8} {:<25} {:<25} {status}",
                    t.name,
                    t.role.as_str(),
                    time(Some(t.created_at)),
                    time(t.last_used_at)
                )?;
            }
            Ok(())
        }
        TokenCommand::Revoke { name } => {
            let revoked = tokens::revoke_token(&db, &name)
                .await
                .context("Failed to revoke the token")?;
            anyhow::ensure!(revoked, "No active token named {name:?}");
            audit::record(&db, &cli_actor(), AuditAction::TokenRevoked, &name)
                .await
                .context("Failed to record the revocation")?;
            tracing::info!(token = %name, "API token revoked.");
            writeln!(out, "Revoked token {name:?}.")
        }
    };
    store.close().await;
    Ok(result?)
}

/// How the command line shows as an actor: `cli:<login user>`.
fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}
