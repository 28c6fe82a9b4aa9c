//! Sources: where raw lines come from.
//!
//! A source reads its input (a Kafka consumer group, syslog listeners, files
//! being followed, stdin) and hands [`RecordBatch`]es to the pipeline over a
//! bounded channel shared by all sources. Each source is one file here, one
//! cargo feature (`kafka`, `syslog`, `file`; stdin needs none), one
//! `XxxConfig` struct that the binary embeds in its closed `SourceConfig`
//! enum, and one `build` function that validates the configuration before
//! any I/O.
//!
//! # The contract ([`Source::run`])
//!
//! * Run until `stop` is cancelled, or, for a finite input (stdin), until its
//!   end. Return `Ok(())` then.
//! * Never close the shared channel (sources hold clones of one `Sender`);
//!   if the channel is closed, the pipeline is gone: return `Ok(())`.
//! * Do not retry inside: on a failure (a listener that cannot bind, a Kafka
//!   client that cannot be created) return the [`SourceError`]; the
//!   supervisor in the binary restarts the source with backoff.
//! * Apply backpressure: a full channel stops reading (TCP, files, Kafka)
//!   or, where the sender cannot be slowed (UDP), drops and counts.
//! * A batch that needs an acknowledgement carries one; the pipeline calls
//!   it once the batch's effects are durable, in delivery order per source.
//!   Only then does a source commit (Kafka offsets, file checkpoints), so a
//!   crash replays and never skips.
//!
//! This crate knows nothing of incidents; it depends on `gatewatch-detector`
//! only for [`gatewatch_detector::SourceId`].

pub mod reader;
pub mod stdin;

#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka")]
pub mod repartition;
#[cfg(feature = "syslog")]
pub mod syslog;

mod metrics;

pub use metrics::{MetricsSnapshot, PartitionLag, SourceMetrics};
pub use reader::{BatchShape, StreamName};

use crate::record::RecordBatch;
use async_trait::async_trait;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

/// A live input of raw log lines; see the module documentation for the
/// contract every implementation keeps.
///
/// Built by a source module's `build` function, which validated the
/// configuration, so `run` only does I/O. A source that failed is built and
/// run again by the binary's supervisor; `run` consumes the source so that
/// a restart always starts from a fresh, validated value.
#[async_trait]
pub trait Source: Send {
    /// Reads the input and sends batches to `out` until `stop` is cancelled
    /// or a finite input ends.
    async fn run(
        self: Box<Self>,
        out: Sender<RecordBatch>,
        stop: CancellationToken,
    ) -> Result<(), SourceError>;
}

/// Why a source could not be built or stopped running.
///
/// `InvalidConfig` comes from `build` and is permanent (restarting does not
/// help); the others come from `run` and are worth a restart with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The configuration breaks a rule that serde cannot check (an empty
    /// topic list, a zero batch size, a glob that does not parse).
    #[error("invalid source configuration: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A listener could not bind its address (in use, no permission).
    #[error("cannot listen for syslog over {protocol} on {address}")]
    Bind {
        /// `udp`, `tcp` or `tls`.
        protocol: &'static str,
        /// The configured address.
        address: SocketAddr,
        /// The operating system's error.
        #[source]
        error: std::io::Error,
    },
    /// A listening socket failed while accepting or receiving.
    #[error("syslog {protocol} listener on {address} failed")]
    Listener {
        /// `udp`, `tcp` or `tls`.
        protocol: &'static str,
        /// The listening address.
        address: SocketAddr,
        /// The operating system's error.
        #[source]
        error: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("cannot load the TLS {what} from {path}: {reason}")]
    Tls {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The configured PEM file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Reading a followed file, its directory or the checkpoint state failed.
    #[error("I/O error on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        error: std::io::Error,
    },
    /// The checkpoint state file exists but cannot be understood; refusing to
    /// guess positions (which would skip or duplicate lines).
    #[error("corrupt checkpoint state in {path}")]
    CorruptState {
        /// The state file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        error: serde_json::Error,
    },
    /// Reading standard input failed.
    #[error("reading standard input failed")]
    Stdin(#[source] std::io::Error),
    /// The Kafka client failed (creation, subscription, a fatal error).
    #[cfg(feature = "kafka")]
    #[error("Kafka {operation} failed")]
    Kafka {
        /// What was being done.
        operation: &'static str,
        /// librdkafka's error.
        #[source]
        error: rdkafka::error::KafkaError,
    },
    /// The source's worker thread panicked (a bug).
    #[error("the {source_kind} source's worker thread panicked")]
    Panicked {
        /// `kafka`, `file`, `stdin`.
        source_kind: &'static str,
    },
}

/// Checks a size that must be at least 1, for `build` functions.
pub(crate) fn require_positive(field: &'static str, value: u64) -> Result<(), SourceError> {
    if value == 0 {
        return Err(SourceError::InvalidConfig {
            field,
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// Checks the batch shape handed in by the binary.
pub(crate) fn check_shape(shape: &BatchShape) -> Result<(), SourceError> {
    require_positive("max_line_bytes", shape.max_line_bytes as u64)?;
    require_positive("batch_lines", shape.batch_lines as u64)?;
    // Line ranges in a batch are u32 offsets.
    if shape.max_line_bytes > (u32::MAX as usize) / 4 {
        return Err(SourceError::InvalidConfig {
            field: "max_line_bytes",
            reason: "must be below 1 GiB".into(),
        });
    }
    Ok(())
}

/// Sends `batch` from a blocking worker thread, waiting while the pipeline
/// is full (backpressure) but not past cancellation. `false` means: stop,
/// either cancelled or the pipeline is gone.
pub(crate) fn send_blocking(
    handle: &tokio::runtime::Handle,
    out: &Sender<RecordBatch>,
    stop: &CancellationToken,
    batch: RecordBatch,
) -> bool {
    handle.block_on(async {
        tokio::select! {
            biased;
            _ = stop.cancelled() => false,
            sent = out.send(batch) => sent.is_ok(),
        }
    })
}
