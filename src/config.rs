//! gatewatch's configuration: one TOML file, environment variables on top.
//!
//! Every field is documented here and nowhere else; the README's reference
//! is generated from these comments by hand, so keep them the truth.
//! With no file at all, the defaults give the embedded setup: SQLite, a
//! syslog listener and the API on localhost.

use anyhow::{bail, Context};
use gatewatch_detector::DetectionConfig;
use gatewatch_ingest::formats::{FormatKind, FormatOptions};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where incidents are stored: `sqlite://path/to/file.db` (created when
    /// missing) or `postgres://user:pass@host/db`. Env: `GATEWATCH_DATABASE_URL`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Where logs come from. Empty means the embedded default (a syslog
    /// listener on `GATEWATCH_SYSLOG_ADDR`, 127.0.0.1:5514).
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// How lines are parsed: trusted proxies, generic JSON field mapping.
    #[serde(default)]
    pub parser: FormatOptions,
    /// Detector thresholds.
    #[serde(default)]
    pub detection: DetectionConfig,
    /// How findings become incidents.
    #[serde(default)]
    pub incidents: IncidentsConfig,
    /// Pipeline sizing.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Writing incidents to stdout as JSON lines.
    #[serde(default)]
    pub console: ConsoleConfig,
}

fn default_database_url() -> String {
    "sqlite://gatewatch.db".to_string()
}

/// One source of log lines. A closed list: a new source is one more variant.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Lines appended to files.
    File {
        /// Paths of the files to read.
        paths: Vec<PathBuf>,
        /// Their log format.
        #[serde(default)]
        format: FormatKind,
    },
    /// Lines on standard input.
    Stdin {
        /// Their log format.
        #[serde(default)]
        format: FormatKind,
    },
}

impl SourceConfig {
    /// The log format of the source.
    pub fn format(&self) -> FormatKind {
        match self {
            SourceConfig::File { format, .. } | SourceConfig::Stdin { format } => *format,
        }
    }

    /// A short human name, for logs and metrics labels.
    pub fn describe(&self) -> String {
        match self {
            SourceConfig::File { paths, .. } => {
                let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                format!("file:{}", names.join(","))
            }
            SourceConfig::Stdin { .. } => "stdin".to_string(),
        }
    }
}

/// The `[incidents]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// A finding continues an existing incident of the same kind and client
    /// when it starts within this many seconds of the incident's last event;
    /// otherwise it opens a new incident.
    pub merge_gap_secs: u64,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            merge_gap_secs: 1800,
        }
    }
}

/// The `[pipeline]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Lines longer than this are cut (and counted as truncated).
    pub max_line_bytes: usize,
    /// Lines per batch handed from sources to detection.
    pub batch_lines: usize,
    /// Batches that may wait between sources and detection before sources
    /// are slowed down (backpressure).
    pub queue_batches: usize,
    /// Rejected lines logged per reason, so a bad feed is visible without
    /// flooding the log (all are counted).
    pub rejected_samples_per_reason: u32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_line_bytes: 64 * 1024,
            batch_lines: 4096,
            queue_batches: 16,
            rejected_samples_per_reason: 5,
        }
    }
}

/// The `[console]` section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Print every new or updated incident to stdout as one JSON line (the
    /// `replay` format). Default: on when running without a config file.
    pub enabled: Option<bool>,
}

impl Config {
    /// Reads `path` (or the defaults when `None`) and applies the environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("Failed to read {}", p.display()))?;
                Config::from_toml(&text)
                    .with_context(|| format!("Invalid configuration in {}", p.display()))?
            }
            None => Config::from_toml("")?,
        };
        cfg.apply_env(|k| std::env::var(k).ok());
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML document (no environment applied).
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        Ok(toml::from_str(text)?)
    }

    /// Applies `GATEWATCH_*` environment overrides, read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(url) = var("GATEWATCH_DATABASE_URL").filter(|v| !v.is_empty()) {
            self.database_url = url;
        }
    }

    /// Checks cross-field rules before anything is started.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.detection.validate()?;
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            bail!(
                "database_url must start with sqlite:, postgres:// or postgresql://, got {:?}",
                redact_url(&self.database_url)
            );
        }
        if self.pipeline.max_line_bytes < 256 {
            bail!("pipeline.max_line_bytes must be at least 256");
        }
        if self.pipeline.batch_lines == 0 || self.pipeline.queue_batches == 0 {
            bail!("pipeline.batch_lines and pipeline.queue_batches must be positive");
        }
        for s in &self.sources {
            if let SourceConfig::File { paths, .. } = s {
                if paths.is_empty() {
                    bail!("a file source needs at least one path");
                }
            }
        }
        Ok(())
    }
}

/// A URL with any password replaced, safe to log.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_embedded_defaults() {
        let cfg = Config::from_toml("").unwrap();
        assert_eq!(cfg.database_url, "sqlite://gatewatch.db");
        assert!(cfg.sources.is_empty());
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err = Config::from_toml("databse_url = 'x'").unwrap_err();
        assert!(format!("{err:#}").contains("databse_url"), "{err:#}");
    }

    #[test]
    fn env_overrides_the_database() {
        let mut cfg = Config::from_toml("database_url = 'sqlite://a.db'").unwrap();
        cfg.apply_env(|k| {
            (k == "GATEWATCH_DATABASE_URL").then(|| "postgres://u:p@h/db".to_string())
        });
        assert_eq!(cfg.database_url, "postgres://u:p@h/db");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn sources_parse() {
        let cfg = Config::from_toml(
            r#"
            [[sources]]
            type = "file"
            paths = ["/var/log/nginx/access.log"]
            format = "nginx_combined"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.sources[0].format(), FormatKind::NginxCombined);
    }
}
