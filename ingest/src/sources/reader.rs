//! Reading a finite byte stream (a file being replayed, stdin) into batches.

use crate::lines::LineSplitter;
use crate::record::{Origin, RecordBatch};
use gatewatch_detector::SourceId;
use std::io::{ErrorKind, Read};
use std::sync::Arc;

/// How a reader cuts its input into batches.
#[derive(Clone, Copy, Debug)]
pub struct BatchShape {
    /// Lines longer than this are cut.
    pub max_line_bytes: usize,
    /// Lines per batch.
    pub batch_lines: usize,
}

/// Where the lines are read from, for naming lines in errors.
#[derive(Clone, Debug)]
pub enum StreamName {
    /// A file at this path.
    File(Arc<str>),
    /// Standard input.
    Stdin,
}

impl StreamName {
    fn origin(&self, first_line: u64) -> Origin {
        match self {
            StreamName::File(path) => Origin::File {
                path: path.clone(),
                first_line,
            },
            StreamName::Stdin => Origin::Stdin { first_line },
        }
    }
}

/// Reads `input` to its end, handing full batches to `send` (which returns
/// `false` to stop early, e.g. when the pipeline shut down). Calls
/// `progress` with the bytes read so far. Returns the lines read.
pub fn read_batches(
    mut input: impl Read,
    source: SourceId,
    name: &StreamName,
    shape: BatchShape,
    mut send: impl FnMut(RecordBatch) -> bool,
    mut progress: impl FnMut(u64),
) -> std::io::Result<u64> {
    let mut splitter = LineSplitter::new(shape.max_line_bytes);
    let mut buf = vec![0u8; 1 << 20];
    let mut next_line = 1u64;
    let batch_bytes = shape.batch_lines.saturating_mul(256);
    let mut batch = RecordBatch::with_capacity(source, name.origin(next_line), batch_bytes);
    let mut read_total = 0u64;
    let mut stopped = false;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        read_total += n as u64;
        let mut full = Vec::new();
        splitter.feed(&buf[..n], |line| {
            push(&mut batch, line.bytes, line.truncated);
            if batch.len() >= shape.batch_lines {
                next_line += batch.len() as u64;
                let fresh = RecordBatch::with_capacity(source, name.origin(next_line), batch_bytes);
                full.push(std::mem::replace(&mut batch, fresh));
            }
        });
        for b in full {
            if !send(b) {
                stopped = true;
                break;
            }
        }
        if stopped {
            return Ok(next_line - 1);
        }
        progress(read_total);
    }
    splitter.finish(|line| push(&mut batch, line.bytes, line.truncated));
    let total = next_line - 1 + batch.len() as u64;
    if !batch.is_empty() {
        send(batch);
    }
    Ok(total)
}

/// Appends a line the splitter already cut to size, keeping its flag.
fn push(batch: &mut RecordBatch, line: &[u8], truncated: bool) {
    batch.push_line(line, usize::MAX);
    if truncated {
        batch.truncated += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_line_with_the_right_numbers() {
        let input: Vec<u8> = (1..=10)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let mut batches = Vec::new();
        let n = read_batches(
            &input[..],
            3,
            &StreamName::File("a.log".into()),
            BatchShape {
                max_line_bytes: 100,
                batch_lines: 4,
            },
            |b| {
                batches.push(b);
                true
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(n, 10);
        assert_eq!(
            batches.iter().map(RecordBatch::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert_eq!(batches[2].origin.locate(1).to_string(), "a.log:10");
        assert_eq!(batches[2].line(1), b"line 10");
        assert!(batches.iter().all(|b| b.source == 3));
    }
}
