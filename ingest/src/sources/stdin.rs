//! Standard input as a source: `tail -F access.log | gatewatch run`, or a
//! log piped in once.
//!
//! Reading happens on a dedicated thread with [`super::reader::read_batches`]
//! because reads from stdin block and cannot be cancelled. The source ends at
//! EOF. On cancellation `run` returns at once and leaves the thread behind
//! (it may be stuck in a `read` on a terminal or an idle pipe; joining it
//! would hang shutdown); the thread exits at its next read or send. The
//! thread hands batches to `run` over a channel of its own, never holding
//! the pipeline's sender: the pipeline drains and stops when its senders
//! are gone, and a thread stuck in `read` must not keep one alive.
//!
//! Stdin cannot be replayed, so batches carry no acknowledgement.

use super::reader::{read_batches, BatchShape, StreamName};
use super::{check_shape, send_blocking, Source, SourceError, SourceMetrics};
use crate::record::RecordBatch;
use async_trait::async_trait;
use gatewatch_detector::SourceId;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

/// Configuration of the stdin source. It has no settings yet; the struct
/// exists so that the binary's `SourceConfig` names every source the same
/// way and a future setting is not a breaking change.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {}

/// Builds the stdin source.
pub fn build(
    _config: StdinConfig,
    source: SourceId,
    shape: BatchShape,
    metrics: Arc<SourceMetrics>,
) -> Result<Box<dyn Source>, SourceError> {
    from_reader(std::io::stdin(), source, shape, metrics)
}

/// A source reading any blocking reader the way stdin is read: for tests,
/// and for inputs such as a named pipe that the binary opens itself.
pub fn from_reader(
    input: impl Read + Send + 'static,
    source: SourceId,
    shape: BatchShape,
    metrics: Arc<SourceMetrics>,
) -> Result<Box<dyn Source>, SourceError> {
    check_shape(&shape)?;
    Ok(Box::new(StdinSource {
        input: Box::new(input),
        source,
        shape,
        metrics,
    }))
}

/// Reads a blocking stream on its own thread until EOF.
struct StdinSource {
    input: Box<dyn Read + Send>,
    source: SourceId,
    shape: BatchShape,
    metrics: Arc<SourceMetrics>,
}

#[async_trait]
impl Source for StdinSource {
    async fn run(
        self: Box<Self>,
        out: Sender<RecordBatch>,
        stop: CancellationToken,
    ) -> Result<(), SourceError> {
        let StdinSource {
            input,
            source,
            shape,
            metrics,
        } = *self;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (handoff, mut batches) = tokio::sync::mpsc::channel::<RecordBatch>(1);
        let handle = tokio::runtime::Handle::current();
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("gatewatch-stdin".into())
            .spawn(move || {
                let result = read_batches(
                    input,
                    source,
                    &StreamName::Stdin,
                    shape,
                    |batch| {
                        metrics.received(batch.len() as u64, batch.bytes() as u64);
                        metrics.delivered(batch.len(), batch.truncated);
                        send_blocking(&handle, &handoff, &thread_stop, batch)
                    },
                    |_| {},
                );
                let _ = done_tx.send(result);
            })
            .map_err(SourceError::Stdin)?;
        // Forward until the thread hangs up (EOF or error), or until asked
        // to stop; then `out` is dropped here whatever the thread is doing.
        loop {
            tokio::select! {
                batch = batches.recv() => match batch {
                    Some(batch) => {
                        tokio::select! {
                            sent = out.send(batch) => if sent.is_err() { return Ok(()) },
                            _ = stop.cancelled() => return Ok(()),
                        }
                    }
                    None => break,
                },
                // Do not join: the thread may be blocked in a read for ever.
                _ = stop.cancelled() => return Ok(()),
            }
        }
        match done_rx.await {
            Ok(Ok(lines)) => {
                tracing::info!(source, lines, "Standard input ended.");
                Ok(())
            }
            Ok(Err(error)) => Err(SourceError::Stdin(error)),
            Err(_) => Err(SourceError::Panicked {
                source_kind: "stdin",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> BatchShape {
        BatchShape {
            max_line_bytes: 16,
            batch_lines: 2,
        }
    }

    #[tokio::test]
    async fn reads_to_the_end_in_batches_without_acks() {
        let metrics = SourceMetrics::new();
        let input = b"a\nb\nc\nthis line is far too long\n".to_vec();
        let src = from_reader(std::io::Cursor::new(input), 4, shape(), metrics.clone()).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        src.run(tx, CancellationToken::new()).await.unwrap();
        let mut lines = Vec::new();
        while let Ok(b) = rx.try_recv() {
            assert!(b.ack.is_none());
            lines.extend((0..b.len()).map(|i| b.line(i).to_vec()));
        }
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3], b"this line is far");
        let m = metrics.snapshot();
        assert_eq!((m.lines, m.truncated, m.batches), (4, 1, 2));
    }

    /// A reader that never returns, like an idle terminal.
    struct Blocked;
    impl Read for Blocked {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Ok(0)
        }
    }

    #[tokio::test]
    async fn cancellation_does_not_wait_for_a_blocked_read() {
        let src = from_reader(Blocked, 1, shape(), SourceMetrics::new()).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let stop = CancellationToken::new();
        let task = tokio::spawn(src.run(tx, stop.clone()));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(2), task)
            .await
            .expect("run returned promptly")
            .unwrap()
            .unwrap();
        // The pipeline drains until its senders are gone: the thread still
        // stuck in `read` must not hold one.
        let closed = tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv()).await;
        assert!(
            matches!(closed, Ok(None)),
            "the pipeline's sender is still held"
        );
    }
}
