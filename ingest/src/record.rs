//! What sources hand to the pipeline: raw lines with an acknowledgement handle.

use gatewatch_detector::SourceId;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Called once the effects of a batch (its incidents) are durable; a source
/// then commits its Kafka offsets or checkpoints its file position. Never
/// called for a batch whose effects might be lost, so a crash replays rather
/// than skips.
pub trait Acknowledge: Send {
    /// Marks the batch as durably processed.
    fn ack(self: Box<Self>);
}

/// Where a batch's lines came from, so that a rejected line can be named
/// precisely (`file.log:1234`, `topic[2]@8812`, `syslog from 10.0.0.7`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Lines of a file; `first_line` is the 1-based number of the first line.
    File {
        /// The file.
        path: Arc<str>,
        /// Number of the batch's first line.
        first_line: u64,
    },
    /// Standard input; `first_line` as for files.
    Stdin {
        /// Number of the batch's first line.
        first_line: u64,
    },
    /// Messages of one Kafka partition; `first_offset` of the first line.
    Kafka {
        /// Topic.
        topic: Arc<str>,
        /// Partition.
        partition: i32,
        /// Offset of the batch's first message.
        first_offset: i64,
        /// Whether the broker already held messages past this batch when it
        /// was cut (a backlog): a consumer merging partitions by event time
        /// must wait for this partition's next batch rather than treat it
        /// as quiet.
        backlog: bool,
        /// An empty batch announcing that the partition is caught up: the
        /// consumer's statistics show nothing at the broker past what it
        /// read. A quiet partition delivers no batch that could say so.
        caught_up: bool,
    },
    /// Syslog messages from one peer.
    Syslog {
        /// The peer address.
        peer: Arc<str>,
    },
}

impl Origin {
    /// A human-readable position of line `index` of the batch.
    pub fn locate(&self, index: usize) -> Located<'_> {
        Located {
            origin: self,
            index,
        }
    }
}

/// Display helper returned by [`Origin::locate`].
pub struct Located<'a> {
    origin: &'a Origin,
    index: usize,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.index as u64;
        match self.origin {
            Origin::File { path, first_line } => write!(f, "{path}:{}", first_line + i),
            Origin::Stdin { first_line } => write!(f, "<stdin>:{}", first_line + i),
            Origin::Kafka {
                topic,
                partition,
                first_offset,
                ..
            } => write!(
                f,
                "{topic}[{partition}]@{}",
                first_offset + self.index as i64
            ),
            Origin::Syslog { peer } => write!(f, "syslog from {peer}"),
        }
    }
}

/// A batch of raw log lines from one source, stored back to back in one
/// buffer so that reading a million lines costs a handful of allocations.
pub struct RecordBatch {
    /// The configured source the lines came from.
    pub source: SourceId,
    /// Where the lines came from, for error messages.
    pub origin: Origin,
    /// The bytes of every line (with anything between and after them, such
    /// as line terminators, when a reader filled it in place).
    pub data: Vec<u8>,
    /// Each line's byte range in `data`.
    pub lines: Vec<Range<u32>>,
    /// Lines that were cut at the maximum line length.
    pub truncated: u32,
    /// Called once the batch's effects are durable; `None` when the source
    /// needs no acknowledgement (replay).
    pub ack: Option<Box<dyn Acknowledge>>,
    /// Where `data` goes back when the batch is dropped, so a reader fills
    /// warm buffers instead of faulting in fresh ones for every batch.
    recycle: Option<Arc<BufferPool>>,
}

impl Drop for RecordBatch {
    fn drop(&mut self) {
        if let Some(pool) = self.recycle.take() {
            pool.give(std::mem::take(&mut self.data));
        }
    }
}

/// Byte buffers handed back by dropped batches, for the reader that made
/// them. Holds at most a few: once the pipeline's queues are full, extra
/// buffers are freed.
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    max_free: usize,
}

impl BufferPool {
    /// A pool keeping at most `max_free` idle buffers.
    pub fn new(max_free: usize) -> BufferPool {
        BufferPool {
            free: Mutex::new(Vec::new()),
            max_free,
        }
    }

    /// A buffer of exactly `len` initialised bytes (a recycled one when
    /// there is one: only its unused tail is zeroed).
    pub fn take(&self, len: usize) -> Vec<u8> {
        let recycled = self.free.lock().ok().and_then(|mut free| free.pop());
        let mut buf = recycled.unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    fn give(&self, buf: Vec<u8>) {
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.max_free {
                free.push(buf);
            }
        }
    }
}

impl RecordBatch {
    /// An empty batch with room for `bytes` bytes of lines.
    pub fn with_capacity(source: SourceId, origin: Origin, bytes: usize) -> RecordBatch {
        RecordBatch {
            source,
            origin,
            data: Vec::with_capacity(bytes),
            lines: Vec::with_capacity(bytes / 128),
            truncated: 0,
            ack: None,
            recycle: None,
        }
    }

    /// A batch over bytes a reader filled in place: `lines` are ranges of
    /// `data`, and `data` returns to `pool` when the batch is dropped.
    pub fn from_parts(
        source: SourceId,
        origin: Origin,
        data: Vec<u8>,
        lines: Vec<Range<u32>>,
        truncated: u32,
        pool: Arc<BufferPool>,
    ) -> RecordBatch {
        RecordBatch {
            source,
            origin,
            data,
            lines,
            truncated,
            ack: None,
            recycle: Some(pool),
        }
    }

    /// Appends one line (without terminator), cutting it at `max_len` bytes.
    pub fn push_line(&mut self, line: &[u8], max_len: usize) {
        let cut = line.len().min(max_len);
        if cut < line.len() {
            self.truncated += 1;
        }
        let start = self.data.len() as u32;
        self.data.extend_from_slice(&line[..cut]);
        self.lines.push(start..self.data.len() as u32);
    }

    /// Line `i`.
    pub fn line(&self, i: usize) -> &[u8] {
        let r = &self.lines[i];
        &self.data[r.start as usize..r.end as usize]
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether the batch holds no line.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Bytes of line data held (up to the end of the last line).
    pub fn bytes(&self) -> usize {
        self.lines.last().map_or(0, |r| r.end as usize)
    }
}

impl fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordBatch")
            .field("source", &self.source)
            .field("origin", &self.origin)
            .field("lines", &self.lines.len())
            .field("bytes", &self.data.len())
            .field("truncated", &self.truncated)
            .field("ack", &self.ack.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stored_back_to_back_and_cut_at_the_limit() {
        let mut b = RecordBatch::with_capacity(0, Origin::Stdin { first_line: 10 }, 64);
        b.push_line(b"hello", 100);
        b.push_line(b"0123456789", 4);
        assert_eq!(b.line(0), b"hello");
        assert_eq!(b.line(1), b"0123");
        assert_eq!(b.truncated, 1);
        assert_eq!(b.origin.locate(1).to_string(), "<stdin>:11");
    }
}
