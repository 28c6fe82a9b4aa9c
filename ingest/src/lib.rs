//! gatewatch-ingest: where log lines come from and how they become events.
//!
//! [`formats`] turns one raw line into a [`gatewatch_detector::Event`]; the
//! sources (Kafka, syslog, files, stdin) deliver raw lines with an
//! acknowledgement handle. This crate knows nothing of incidents: it depends
//! on `gatewatch-detector` only for `Event`.

pub mod client_ip;
pub mod formats;
pub mod lines;
pub mod record;
pub mod sources;
pub mod syslog_header;

pub use formats::{Format, FormatKind, ParseError};
pub use lines::LineSplitter;
pub use record::{Acknowledge, Origin, RecordBatch};
pub use sources::{BatchShape, MetricsSnapshot, PartitionLag, Source, SourceError, SourceMetrics};
