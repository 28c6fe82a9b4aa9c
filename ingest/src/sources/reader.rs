//! Reading a finite byte stream (a file being replayed, stdin) into batches.

use crate::record::{BufferPool, Origin, RecordBatch};
use gatewatch_detector::SourceId;
use std::io::{ErrorKind, Read};
use std::ops::Range;
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

/// Bytes asked of each `read` call.
const READ_CHUNK: usize = 1 << 20;

/// Idle buffers a reader keeps for reuse (the pipeline's queues hold the
/// rest).
const POOL_BUFFERS: usize = 8;

/// Reads `input` to its end, handing full batches to `send` (which returns
/// `false` to stop early, e.g. when the pipeline shut down). Calls
/// `progress` with the bytes read so far. Returns the lines read.
///
/// Bytes are read straight into the buffer a batch is sent in and lines
/// are recorded as ranges of it, so a line is never copied (only the
/// unfinished tail of a buffer moves to the next one); buffers come back
/// through a [`BufferPool`] once the pipeline has parsed them. A read that
/// returns less than asked (a pipe or terminal momentarily empty) sends the
/// lines so far, so a live stream is not held back until a batch fills.
pub fn read_batches(
    mut input: impl Read,
    source: SourceId,
    name: &StreamName,
    shape: BatchShape,
    mut send: impl FnMut(RecordBatch) -> bool,
    mut progress: impl FnMut(u64),
) -> std::io::Result<u64> {
    let mut filler = Filler::new(shape);
    let mut read_total = 0u64;
    loop {
        if filler.is_full() && !send(filler.ship(source, name)) {
            return Ok(filler.lines_shipped);
        }
        let room = filler.room();
        let n = match input.read(room) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let short = n < room.len();
        read_total += n as u64;
        filler.add_read(n);
        while filler.split() {
            if !send(filler.ship(source, name)) {
                return Ok(filler.lines_shipped);
            }
        }
        if short && filler.has_lines() && !send(filler.ship(source, name)) {
            return Ok(filler.lines_shipped);
        }
        progress(read_total);
    }
    filler.finish();
    if filler.has_lines() {
        send(filler.ship(source, name));
    }
    Ok(filler.lines_shipped)
}

/// The batch being filled in place: a buffer, the lines found in it, and
/// the unfinished line at its end.
struct Filler {
    shape: BatchShape,
    pool: Arc<BufferPool>,
    buf: Vec<u8>,
    /// Bytes of `buf` read so far.
    filled: usize,
    /// Start of the line whose newline has not been read yet.
    line_start: usize,
    /// How far the search for that newline got.
    scanned: usize,
    /// That line is longer than the limit: it keeps its first
    /// `max_line_bytes` and the rest, up to its newline, is dropped.
    cut: bool,
    lines: Vec<Range<u32>>,
    truncated: u32,
    lines_shipped: u64,
}

impl Filler {
    fn new(shape: BatchShape) -> Filler {
        let max = shape.max_line_bytes.max(1);
        let shape = BatchShape {
            max_line_bytes: max,
            ..shape
        };
        let pool = Arc::new(BufferPool::new(POOL_BUFFERS));
        Filler {
            buf: pool.take(Self::buffer_len(shape)),
            pool,
            shape,
            filled: 0,
            line_start: 0,
            scanned: 0,
            cut: false,
            lines: Vec::with_capacity(shape.batch_lines.min(1 << 16)),
            truncated: 0,
            lines_shipped: 0,
        }
    }

    /// Room for a batch of typical lines, and always for a read after the
    /// longest unfinished line (which is at most `max_line_bytes`); line
    /// ranges are `u32`.
    fn buffer_len(shape: BatchShape) -> usize {
        let typical = shape.batch_lines.saturating_mul(512);
        typical
            .clamp(READ_CHUNK, 64 << 20)
            .max(shape.max_line_bytes.saturating_add(READ_CHUNK))
            .min(u32::MAX as usize)
    }

    fn is_full(&self) -> bool {
        self.filled == self.buf.len()
    }

    fn has_lines(&self) -> bool {
        !self.lines.is_empty()
    }

    /// Where the next read goes.
    fn room(&mut self) -> &mut [u8] {
        let end = self.buf.len().min(self.filled + READ_CHUNK);
        &mut self.buf[self.filled..end]
    }

    /// Counts `n` more bytes read into `room()`.
    fn add_read(&mut self, n: usize) {
        self.filled += n;
    }

    /// Records the lines completed by the bytes read; `true` when the
    /// batch is full (call again after shipping it: more lines may be
    /// waiting).
    fn split(&mut self) -> bool {
        let max = self.shape.max_line_bytes;
        while self.lines.len() < self.shape.batch_lines {
            let Some(p) = memchr::memchr(b'\n', &self.buf[self.scanned..self.filled]) else {
                self.scanned = self.filled;
                if self.filled - self.line_start > max {
                    // Keep the first `max` bytes; drop the rest as it comes.
                    self.cut = true;
                }
                if self.cut {
                    self.filled = self.line_start + max;
                    self.scanned = self.filled;
                }
                return false;
            };
            let nl = self.scanned + p;
            if self.cut {
                // The newline of a cut line: what follows moves down to
                // the end of the kept part.
                let keep_end = self.line_start + max;
                self.push(self.line_start..keep_end, true);
                self.buf.copy_within(nl + 1..self.filled, keep_end);
                self.filled = keep_end + (self.filled - nl - 1);
                self.line_start = keep_end;
                self.cut = false;
            } else {
                let mut end = nl;
                if end > self.line_start && self.buf[end - 1] == b'\r' {
                    end -= 1;
                }
                let over = end - self.line_start > max;
                self.push(self.line_start..end.min(self.line_start + max), over);
                self.line_start = nl + 1;
            }
            self.scanned = self.line_start;
        }
        true
    }

    /// Ends the stream: a last line without a newline is a line.
    fn finish(&mut self) {
        if self.filled > self.line_start || self.cut {
            let mut end = self.filled;
            if !self.cut && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            self.push(self.line_start..end, self.cut);
            self.line_start = self.filled;
            self.scanned = self.filled;
            self.cut = false;
        }
    }

    fn push(&mut self, line: Range<usize>, truncated: bool) {
        self.lines.push(line.start as u32..line.end as u32);
        self.truncated += u32::from(truncated);
    }

    /// Hands out the lines recorded so far as a batch; the unfinished
    /// line moves to the start of a fresh buffer.
    fn ship(&mut self, source: SourceId, name: &StreamName) -> RecordBatch {
        let mut next = self.pool.take(Self::buffer_len(self.shape));
        let tail = self.line_start..self.filled;
        next[..tail.len()].copy_from_slice(&self.buf[tail.clone()]);
        // The bytes after the last line stay in the batch's buffer
        // (unused): it returns to the pool at full length, so it is
        // never zeroed again.
        let data = std::mem::replace(&mut self.buf, next);
        self.filled = tail.len();
        self.scanned -= self.line_start;
        self.line_start = 0;
        let fresh = Vec::with_capacity(self.lines.capacity());
        let lines = std::mem::replace(&mut self.lines, fresh);
        let origin = name.origin(self.lines_shipped + 1);
        self.lines_shipped += lines.len() as u64;
        RecordBatch::from_parts(
            source,
            origin,
            data,
            lines,
            std::mem::take(&mut self.truncated),
            self.pool.clone(),
        )
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

    /// A reader handing out its bytes in chunks of pseudo-random sizes
    /// (as a pipe does), from a fixed seed.
    struct Chunked<'a> {
        data: &'a [u8],
        state: u64,
        max: usize,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.state = self.state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let want = 1 + (self.state >> 33) as usize % self.max;
            let n = want.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Every line read, and the lines counted as cut.
    fn lines_of(input: impl Read, shape: BatchShape) -> (Vec<Vec<u8>>, u32) {
        let (mut got, mut cut) = (Vec::new(), 0);
        read_batches(
            input,
            0,
            &StreamName::Stdin,
            shape,
            |b| {
                got.extend((0..b.len()).map(|i| b.line(i).to_vec()));
                cut += b.truncated;
                true
            },
            |_| {},
        )
        .unwrap();
        (got, cut)
    }

    /// What the copying [`crate::lines::LineSplitter`] makes of `input`.
    fn expected(input: &[u8], max: usize) -> (Vec<Vec<u8>>, u32) {
        let mut s = crate::lines::LineSplitter::new(max);
        let (mut out, mut cut) = (Vec::new(), 0);
        let mut each = |l: crate::lines::Line<'_>| {
            out.push(l.bytes.to_vec());
            cut += u32::from(l.truncated);
        };
        s.feed(input, &mut each);
        s.finish(&mut each);
        (out, cut)
    }

    #[test]
    fn in_place_lines_match_the_line_splitter_whatever_the_chunks() {
        let mut input = Vec::new();
        for i in 0..3000u32 {
            match i % 7 {
                0 => input.extend_from_slice(b"\n"),
                1 => input.extend_from_slice(format!("crlf line {i}\r\n").as_bytes()),
                2 => input.extend(std::iter::repeat_n(b'x', 150 + i as usize % 90)),
                _ => input.extend_from_slice(format!("a line numbered {i}").as_bytes()),
            }
            input.push(b'\n');
        }
        input.extend_from_slice(b"no newline at the end");
        for (seed, max_chunk) in [(1, 7), (2, 100), (3, 5000), (4, 1 << 21)] {
            let shape = BatchShape {
                max_line_bytes: 200,
                batch_lines: 97,
            };
            let reader = Chunked {
                data: &input,
                state: seed,
                max: max_chunk,
            };
            let got = lines_of(reader, shape);
            assert_eq!(got, expected(&input, 200), "chunks up to {max_chunk}");
        }
    }

    #[test]
    fn a_line_longer_than_the_buffer_is_cut_and_the_next_line_survives() {
        // 3 MiB without a newline, then a normal line: the buffer is
        // 2 MiB here, so the long line spans several reads.
        let shape = BatchShape {
            max_line_bytes: 1000,
            batch_lines: 2,
        };
        let mut input = vec![b'a'; 3 << 20];
        input.extend_from_slice(b"\r\nnext\nlast");
        let (got, cut) = lines_of(&input[..], shape);
        assert_eq!(
            got,
            vec![vec![b'a'; 1000], b"next".to_vec(), b"last".to_vec()]
        );
        assert_eq!(cut, 1);
    }

    #[test]
    fn buffers_come_back_to_the_reader_once_batches_are_dropped() {
        let input: Vec<u8> = (0..200_000)
            .flat_map(|i| format!("{i:0>40}\n").into_bytes())
            .collect();
        let shape = BatchShape {
            max_line_bytes: 100,
            batch_lines: 1000,
        };
        let mut lines = 0;
        let n = read_batches(
            &input[..],
            0,
            &StreamName::Stdin,
            shape,
            |b| {
                lines += b.len();
                assert!(b.data.capacity() >= READ_CHUNK);
                true
            },
            |_| {},
        )
        .unwrap();
        assert_eq!((n, lines), (200_000, 200_000));
    }

    #[test]
    fn a_short_read_sends_the_lines_so_far() {
        // A live pipe: two lines arrive, then the writer pauses (the next
        // read would block); they must be sent without waiting for more.
        let (r, mut w) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut w, b"one\ntwo\n").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let shape = BatchShape {
                max_line_bytes: 100,
                batch_lines: 4096,
            };
            read_batches(
                r,
                0,
                &StreamName::Stdin,
                shape,
                |b| tx.send(b.len()).is_ok(),
                |_| {},
            )
        });
        let first = rx.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(first, Ok(2));
        drop(w);
        assert_eq!(reader.join().unwrap().unwrap(), 2);
    }
}
