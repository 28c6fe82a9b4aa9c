//! gatewatch's configuration: one TOML file, environment variables on top.
//!
//! Every field is documented here and nowhere else; the README's reference
//! is generated from these comments by hand, so keep them the truth.
//! With no file at all, the defaults give the embedded setup: SQLite, a
//! syslog listener and the API on localhost.

use anyhow::{bail, Context};
use gatewatch_alerting::NotificationsConfig;
use gatewatch_detector::DetectionConfig;
use gatewatch_ingest::formats::{FormatKind, FormatOptions};
use gatewatch_ingest::sources::file::FileConfig;
use gatewatch_ingest::sources::kafka::KafkaConfig;
use gatewatch_ingest::sources::stdin::StdinConfig;
use gatewatch_ingest::sources::syslog::SyslogConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where incidents are stored: `sqlite://path/to/file.db` (created when
    /// missing) or `postgres://user:pass@host/db`. Env: `GATEWATCH_DATABASE_URL`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Where logs come from. Empty means the embedded default: a syslog
    /// listener (UDP and TCP) on `GATEWATCH_SYSLOG_ADDR`, 127.0.0.1:5514.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Where sources keep their state (file read positions). Relative
    /// paths are relative to the working directory.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The incident API and web page.
    #[serde(default)]
    pub api: ApiConfig,
    /// Run as an ingest stage publishing to an internal topic instead of
    /// detecting (scale-out without a client-keyed upstream topic).
    #[serde(default)]
    pub repartition: Option<RepartitionConfig>,
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
    /// Slack, email and webhook channels; lifecycle timers.
    #[serde(default)]
    pub notifications: NotificationsConfig,
}

fn default_database_url() -> String {
    "sqlite://gatewatch.db".to_string()
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("gatewatch-state")
}

/// The syslog address of the embedded default.
pub const DEFAULT_SYSLOG_ADDR: &str = "127.0.0.1:5514";

/// One `[[sources]]` entry: where lines come from and how they are parsed.
///
/// In the TOML file each entry is one table with `type` (`syslog`, `kafka`,
/// `file`, `stdin`), an optional `format` (default `auto`), for Kafka an
/// optional `topic_formats` table (`{ "kong-logs" = "kong" }`), and the
/// fields of that source (see `gatewatch_ingest::sources::*Config`).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfig {
    /// The log format of the source's lines.
    pub format: FormatKind,
    /// Kafka only: a format per topic, overriding `format`.
    pub topic_formats: BTreeMap<String, FormatKind>,
    /// The source itself.
    pub kind: SourceKind,
}

/// The source types. A closed list: a new source is one more variant here
/// and one more arm in [`SourceConfig`]'s deserializer.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    /// Syslog listeners (UDP, TCP, TLS).
    Syslog(SyslogConfig),
    /// A Kafka consumer group.
    Kafka(KafkaConfig),
    /// Files followed like `tail -F`.
    File(FileConfig),
    /// Standard input.
    Stdin(StdinConfig),
}

impl SourceConfig {
    /// A source with the given format and no per-topic formats.
    pub fn new(kind: SourceKind, format: FormatKind) -> SourceConfig {
        SourceConfig {
            format,
            topic_formats: BTreeMap::new(),
            kind,
        }
    }

    /// The source type's config name.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            SourceKind::Syslog(_) => "syslog",
            SourceKind::Kafka(_) => "kafka",
            SourceKind::File(_) => "file",
            SourceKind::Stdin(_) => "stdin",
        }
    }

    /// A short human name, for logs and metric labels (no secrets).
    pub fn describe(&self) -> String {
        match &self.kind {
            SourceKind::Syslog(c) => {
                let mut parts = Vec::new();
                if c.udp {
                    parts.push(format!("udp://{}", c.address));
                }
                if c.tcp {
                    parts.push(format!("tcp://{}", c.address));
                }
                if let Some(tls) = &c.tls {
                    parts.push(format!("tls://{}", tls.address));
                }
                format!("syslog {}", parts.join(" "))
            }
            SourceKind::Kafka(c) => format!(
                "kafka {} group {} topics {}",
                c.brokers,
                c.group_id,
                c.topics.join(",")
            ),
            SourceKind::File(c) => format!("file {}", c.paths.join(",")),
            SourceKind::Stdin(_) => "stdin".to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let kind = match table.remove("type") {
            Some(toml::Value::String(s)) => s,
            Some(_) => return Err(D::Error::custom("source `type` must be a string")),
            None => {
                return Err(D::Error::custom(
                    "a source needs `type` (syslog, kafka, file or stdin)",
                ))
            }
        };
        let format = match table.remove("format") {
            Some(v) => FormatKind::deserialize(v).map_err(D::Error::custom)?,
            None => FormatKind::Auto,
        };
        let topic_formats = match table.remove("topic_formats") {
            Some(v) if kind == "kafka" => {
                BTreeMap::<String, FormatKind>::deserialize(v).map_err(D::Error::custom)?
            }
            Some(_) => {
                return Err(D::Error::custom(
                    "`topic_formats` is only for kafka sources",
                ))
            }
            None => BTreeMap::new(),
        };
        if kind == "file" && !table.contains_key("state_dir") {
            // Filled from the top-level `state_dir` once the whole file is read.
            table.insert("state_dir".into(), toml::Value::String(String::new()));
        }
        let rest = toml::Value::Table(table);
        let kind = match kind.as_str() {
            "syslog" => SourceKind::Syslog(rest.try_into().map_err(D::Error::custom)?),
            "kafka" => SourceKind::Kafka(rest.try_into().map_err(D::Error::custom)?),
            "file" => SourceKind::File(rest.try_into().map_err(D::Error::custom)?),
            "stdin" => SourceKind::Stdin(rest.try_into().map_err(D::Error::custom)?),
            other => {
                return Err(D::Error::custom(format!(
                    "unknown source type {other:?} (syslog, kafka, file or stdin)"
                )))
            }
        };
        Ok(SourceConfig {
            format,
            topic_formats,
            kind,
        })
    }
}

/// The `[api]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where the incident API and web page listen. Env: `GATEWATCH_API_ADDR`.
    pub listen: SocketAddr,
    /// Serve the API at all.
    pub enabled: bool,
    /// Serve HTTPS with this certificate and key (PEM) instead of HTTP.
    pub tls: Option<ApiTlsConfig>,
}

/// The `[api.tls]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTlsConfig {
    /// The certificate chain, leaf first (PEM).
    pub cert_path: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            enabled: true,
            tls: None,
        }
    }
}

/// The `[repartition]` section: this instance is an *ingest stage* that
/// parses its sources and publishes normalised events keyed by client to an
/// internal Kafka topic, for detection instances to consume (see the
/// README's scale-out section). Absent: this instance detects.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RepartitionConfig {
    /// Bootstrap brokers of the internal topic.
    pub brokers: String,
    /// The internal topic (create it with as many partitions as you will
    /// run detection instances, or more).
    pub topic: String,
    /// Extra librdkafka producer properties (security, compression).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Producer properties gatewatch sets itself: they carry the delivery
/// guarantee of the internal topic (idempotent, `acks=all`).
const REPARTITION_RESERVED: &[&str] = &["bootstrap.servers", "enable.idempotence", "acks"];

impl RepartitionConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.brokers.trim().is_empty() || self.topic.trim().is_empty() {
            bail!("repartition.brokers and repartition.topic must be set");
        }
        if let Some(k) = self
            .properties
            .keys()
            .find(|k| REPARTITION_RESERVED.contains(&k.as_str()))
        {
            bail!(
                "repartition.properties.{k:?} is set by gatewatch (the internal topic is written idempotently with acks=all); use repartition.brokers for the brokers"
            );
        }
        Ok(())
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
    /// Kafka partitions are merged in event-time order; a partition that
    /// delivers nothing for this many milliseconds stops holding the others
    /// back (bounds the delay a quiet partition adds).
    pub partition_idle_ms: u64,
    /// At most this many events wait in that merge; beyond it they are
    /// released in arrival order (bounds memory).
    pub merge_max_events: usize,
    /// Threads parsing lines (the costliest stage); 0 means one per core.
    /// Detection sees the same events in the same order whatever the count.
    pub parse_threads: usize,
    /// Threads running the per-client detectors, each owning a shard of
    /// the clients. 1 runs them on the detection thread itself; more adds a
    /// thread per shard (worth it when detection, not parsing, is the
    /// bottleneck and there are cores to spare).
    pub detect_threads: usize,
    /// `run` saves what the detectors have learned (baselines, windows,
    /// evidence not yet reported) to `state_dir` when it stops cleanly and
    /// takes it back when it starts, so a restart neither resets every
    /// client to "new" nor cuts an attack's count short. A state saved
    /// under another detection configuration or `detect_threads` is set
    /// aside, not used.
    pub keep_detector_state: bool,
}

impl PipelineConfig {
    /// Parse threads to start: the configured count, or one per core.
    pub fn parse_threads(&self) -> usize {
        match self.parse_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_line_bytes: 64 * 1024,
            batch_lines: 4096,
            queue_batches: 16,
            rejected_samples_per_reason: 5,
            partition_idle_ms: 250,
            merge_max_events: 200_000,
            parse_threads: 0,
            detect_threads: 1,
            keep_detector_state: true,
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
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML document (no environment applied).
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| without_source_line(text, &e))?;
        let state_dir = cfg.state_dir.clone();
        for s in &mut cfg.sources {
            if let SourceKind::File(f) = &mut s.kind {
                if f.state_dir.as_os_str().is_empty() {
                    f.state_dir = state_dir.clone();
                }
            }
        }
        Ok(cfg)
    }

    /// Applies `GATEWATCH_*` environment overrides, read through `var`.
    ///
    /// Addresses and secrets override what the file says; with no sources
    /// in the file, the embedded default syslog listener is added, and
    /// `GATEWATCH_KAFKA_BROKERS` plus `GATEWATCH_KAFKA_TOPICS` add a Kafka
    /// source (or re-point the configured ones).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let var = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        self.notifications.apply_env(var);
        if let Some(url) = var("GATEWATCH_DATABASE_URL") {
            self.database_url = url;
        }
        if let Some(addr) = var("GATEWATCH_API_ADDR") {
            self.api.listen = addr.parse().with_context(|| {
                format!("GATEWATCH_API_ADDR={addr:?} is not an address like 127.0.0.1:8080")
            })?;
        }
        let env_format = match var("GATEWATCH_FORMAT") {
            Some(f) => Some(
                serde_json::from_value::<FormatKind>(serde_json::Value::String(f.clone()))
                    .map_err(|_| anyhow::anyhow!("GATEWATCH_FORMAT={f:?} is not a known format"))?,
            ),
            None => None,
        };
        let syslog_addr = match var("GATEWATCH_SYSLOG_ADDR") {
            Some(a) => Some(a.parse::<SocketAddr>().with_context(|| {
                format!("GATEWATCH_SYSLOG_ADDR={a:?} is not an address like 127.0.0.1:5514")
            })?),
            None => None,
        };
        if self.sources.is_empty() {
            let defaults = SyslogConfig::default();
            let syslog = SyslogConfig {
                address: syslog_addr.unwrap_or(defaults.address),
                ..defaults
            };
            self.sources.push(SourceConfig::new(
                SourceKind::Syslog(syslog),
                env_format.unwrap_or_default(),
            ));
        } else if let Some(addr) = syslog_addr {
            for s in &mut self.sources {
                if let SourceKind::Syslog(c) = &mut s.kind {
                    c.address = addr;
                }
            }
        }
        let brokers = var("GATEWATCH_KAFKA_BROKERS");
        let topics: Option<Vec<String>> = var("GATEWATCH_KAFKA_TOPICS").map(|t| {
            t.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        });
        let group = var("GATEWATCH_KAFKA_GROUP");
        let mut have_kafka = false;
        for s in &mut self.sources {
            if let SourceKind::Kafka(c) = &mut s.kind {
                have_kafka = true;
                if let Some(b) = &brokers {
                    c.brokers = b.clone();
                }
                if let Some(g) = &group {
                    c.group_id = g.clone();
                }
            }
        }
        if !have_kafka {
            if let (Some(brokers), Some(topics)) = (brokers, topics) {
                let group = group.unwrap_or_else(|| "gatewatch".to_string());
                let kafka = KafkaConfig::new(brokers, group, topics);
                self.sources.push(SourceConfig::new(
                    SourceKind::Kafka(kafka),
                    env_format.unwrap_or_default(),
                ));
            }
        }
        Ok(())
    }

    /// Checks cross-field rules before anything is started.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.detection.validate()?;
        self.notifications
            .validate()
            .context("Invalid [notifications]")?;
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
        for (i, s) in self.sources.iter().enumerate() {
            if let SourceKind::File(c) = &s.kind {
                if c.paths.is_empty() {
                    bail!("sources[{i}]: a file source needs at least one path");
                }
            }
            if let SourceKind::Kafka(c) = &s.kind {
                // A misspelt topic would silently fall back to the source's
                // format. Regex subscriptions (`^…`) name topics only at run
                // time, so with one of those any name is allowed.
                let by_pattern = c.topics.iter().any(|t| t.starts_with('^'));
                if let Some(stray) = s
                    .topic_formats
                    .keys()
                    .find(|t| !by_pattern && !c.topics.contains(t))
                {
                    bail!(
                        "sources[{i}]: topic_formats names {stray:?}, which is not one of the source's topics {:?}",
                        c.topics
                    );
                }
            }
        }
        if let Some(r) = &self.repartition {
            r.validate()?;
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

/// A TOML error as line, column and message, without the excerpt of the
/// offending line that `toml` prints: that line may hold a secret (an SMTP
/// password, a webhook URL), and the error ends up in logs.
fn without_source_line(text: &str, e: &toml::de::Error) -> anyhow::Error {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            anyhow::anyhow!(
                "TOML error at line {line}, column {column}: {}",
                e.message()
            )
        }
        None => anyhow::anyhow!("TOML error: {}", e.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(text: &str, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        let mut cfg = Config::from_toml(text)?;
        cfg.apply_env(|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn empty_file_gives_the_embedded_defaults() {
        let cfg = load_with("", &[]).unwrap();
        assert_eq!(cfg.database_url, "sqlite://gatewatch.db");
        assert_eq!(cfg.api.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.sources.len(), 1);
        match &cfg.sources[0].kind {
            SourceKind::Syslog(s) => {
                assert_eq!(s.address.to_string(), DEFAULT_SYSLOG_ADDR);
                assert!(s.udp && s.tcp);
            }
            other => panic!("expected syslog, got {other:?}"),
        }
    }

    #[test]
    fn env_alone_configures_addresses_and_a_kafka_source() {
        let cfg = load_with(
            "",
            &[
                ("GATEWATCH_SYSLOG_ADDR", "127.0.0.1:6514"),
                ("GATEWATCH_API_ADDR", "127.0.0.1:9090"),
                ("GATEWATCH_KAFKA_BROKERS", "127.0.0.1:19092"),
                ("GATEWATCH_KAFKA_TOPICS", "kong, nginx"),
                ("GATEWATCH_KAFKA_GROUP", "soc"),
                ("GATEWATCH_FORMAT", "kong"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.api.listen.to_string(), "127.0.0.1:9090");
        assert_eq!(cfg.sources.len(), 2);
        assert!(
            matches!(&cfg.sources[0].kind, SourceKind::Syslog(s) if s.address.to_string() == "127.0.0.1:6514")
        );
        match &cfg.sources[1].kind {
            SourceKind::Kafka(k) => {
                assert_eq!(k.brokers, "127.0.0.1:19092");
                assert_eq!(k.group_id, "soc");
                assert_eq!(k.topics, vec!["kong".to_string(), "nginx".to_string()]);
            }
            other => panic!("expected kafka, got {other:?}"),
        }
        assert_eq!(cfg.sources[1].format, FormatKind::Kong);
    }

    #[test]
    fn bad_env_values_are_errors_naming_the_variable() {
        let err = load_with("", &[("GATEWATCH_API_ADDR", "localhost")]).unwrap_err();
        assert!(format!("{err:#}").contains("GATEWATCH_API_ADDR"), "{err:#}");
        let err = load_with("", &[("GATEWATCH_FORMAT", "klingon")]).unwrap_err();
        assert!(format!("{err:#}").contains("GATEWATCH_FORMAT"), "{err:#}");
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err = Config::from_toml("databse_url = 'x'").unwrap_err();
        assert!(format!("{err:#}").contains("databse_url"), "{err:#}");
    }

    #[test]
    fn env_overrides_the_database() {
        let cfg = load_with(
            "database_url = 'sqlite://a.db'",
            &[("GATEWATCH_DATABASE_URL", "postgres://u:p@h/db")],
        )
        .unwrap();
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
    fn a_misspelt_topic_in_topic_formats_is_refused() {
        let kafka = |topics: &str, formats: &str| {
            load_with(
                &format!(
                    "[[sources]]\ntype = 'kafka'\nbrokers = 'k:9092'\ngroup_id = 'gw'\n\
                     topics = {topics}\ntopic_formats = {formats}\n"
                ),
                &[],
            )
        };
        let err = kafka("['edge-kong']", "{ edge-kogn = 'kong' }").unwrap_err();
        assert!(format!("{err:#}").contains("\"edge-kogn\""), "{err:#}");
        kafka("['edge-kong']", "{ edge-kong = 'kong' }").unwrap();
        // A pattern subscription names its topics only at run time.
        kafka("['^edge-.*']", "{ edge-kong = 'kong' }").unwrap();
    }

    #[test]
    fn toml_errors_name_the_place_but_never_echo_the_line() {
        let text = "[notifications]\n[[notifications.channels]]\ntype = 'email'\n\
                    smtp_url = \"smtp://u:hunter2@mail.example.org:587\" from = 'a@b.c'\n";
        let err = format!("{:#}", Config::from_toml(text).unwrap_err());
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn sources_parse_with_their_own_fields_and_formats() {
        let cfg = load_with(
            r#"
            [[sources]]
            type = "file"
            paths = ["/var/log/nginx/*.log"]
            state_dir = "/var/lib/gatewatch"
            format = "nginx_combined"

            [[sources]]
            type = "kafka"
            brokers = "k1:9092"
            group_id = "gw"
            topics = ["kong", "envoy"]
            topic_formats = { kong = "kong", envoy = "envoy" }

            [[sources]]
            type = "syslog"
            address = "127.0.0.1:1514"
            "#,
            &[],
        )
        .unwrap();
        assert_eq!(cfg.sources.len(), 3);
        assert_eq!(cfg.sources[0].format, FormatKind::NginxCombined);
        assert_eq!(cfg.sources[1].topic_formats["envoy"], FormatKind::Envoy);
        assert_eq!(cfg.sources[2].format, FormatKind::Auto);
        let cfg = load_with(
            "state_dir = '/srv/gw'\n[[sources]]\ntype = 'file'\npaths = ['a.log']\n",
            &[],
        )
        .unwrap();
        assert!(
            matches!(&cfg.sources[0].kind, SourceKind::File(f) if f.state_dir == Path::new("/srv/gw"))
        );
    }

    #[test]
    fn a_misspelt_source_field_is_rejected_by_name() {
        let err = Config::from_toml("[[sources]]\ntype = \"syslog\"\nadress = \"127.0.0.1:1\"\n")
            .unwrap_err();
        assert!(format!("{err:#}").contains("adress"), "{err:#}");
        let err = Config::from_toml("[[sources]]\ntype = \"carrier-pigeon\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("carrier-pigeon"), "{err:#}");
    }

    #[test]
    fn repartition_section_and_reserved_properties_rejected() {
        let cfg = load_with(
            "[repartition]\nbrokers = \"k:9092\"\ntopic = \"gw-events\"\nproperties = { \"compression.type\" = \"lz4\" }\n",
            &[],
        )
        .unwrap();
        let r = cfg.repartition.unwrap();
        assert_eq!(
            (r.brokers.as_str(), r.topic.as_str()),
            ("k:9092", "gw-events")
        );
        assert_eq!(r.properties["compression.type"], "lz4");

        assert!(load_with("", &[]).unwrap().repartition.is_none());

        assert!(load_with("[repartition]\nbrokers = \"k:9092\"\ntopic = \" \"\n", &[]).is_err());
        for reserved in ["acks", "enable.idempotence", "bootstrap.servers"] {
            let text = format!(
                "[repartition]\nbrokers = \"k:9092\"\ntopic = \"t\"\nproperties = {{ \"{reserved}\" = \"1\" }}\n"
            );
            assert!(load_with(&text, &[]).is_err(), "{reserved}");
        }
    }
}
