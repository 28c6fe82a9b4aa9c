//! Files as a source: follow log files like `tail -F`, at least once.
//!
//! * `paths` are files or glob patterns (`/var/log/nginx/*.log`), expanded
//!   again every `discover_interval_ms`, so files that appear later are
//!   picked up (from their first byte: everything in a new file is new).
//! * A file is known by its device and inode, not its name. When the name
//!   points to another inode (rotation by rename) or disappears, the old
//!   file is read to its end and kept open `rotate_wait_ms` longer for a
//!   writer that has not reopened yet, then closed; the new file is read
//!   after it. A file that shrinks below the read position was truncated
//!   (`copytruncate`): reading starts over at its beginning.
//! * Read positions are checkpointed in `state_dir/file-checkpoints.json`
//!   (written to a temporary file, synced, renamed over the old one) only
//!   for acknowledged batches, so a restart resumes after the last line
//!   whose effects are durable: no gap, and no duplicate after a clean
//!   shutdown. A checkpoint names the file by device, inode and a
//!   fingerprint of its first bytes, so a new file that reuses an inode is
//!   not mistaken for the old one.
//! * A last line without its newline is held until the newline arrives (a
//!   writer may be in the middle of it); it is delivered when a rotated
//!   file is closed.
//! * Line numbers in [`Origin::File`] are exact while running and best
//!   effort after a restart (they come from the checkpoint).
//!
//! File reads block, so the source runs on a blocking thread and hands
//! batches to the pipeline, waiting while it is full.

use super::reader::BatchShape;
use super::{check_shape, require_positive, send_blocking, Source, SourceError, SourceMetrics};
use crate::lines::LineSplitter;
use crate::record::{Acknowledge, Origin, RecordBatch};
use async_trait::async_trait;
use gatewatch_detector::SourceId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

/// Where to start in a file that has no checkpoint when the source starts.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Read the file from its first byte: nothing already logged is missed.
    #[default]
    Beginning,
    /// Skip what the file holds and read only what is appended, like
    /// `tail -f`; for large old logs that were analysed elsewhere.
    End,
}

/// Configuration of the file-following source (`type = "file"`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Files or glob patterns to follow, e.g. `/var/log/nginx/*.log`.
    pub paths: Vec<String>,
    /// Directory for the checkpoint file `file-checkpoints.json` (created
    /// if missing). Give each file source its own directory.
    pub state_dir: PathBuf,
    /// Where to start in a file found at startup without a checkpoint.
    /// Files that appear while running are always read from the beginning.
    #[serde(default)]
    pub start_at: StartAt,
    /// How often followed files are checked for new data (milliseconds).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How often the patterns are expanded again to find new and rotated
    /// files (milliseconds).
    #[serde(default = "default_discover_interval_ms")]
    pub discover_interval_ms: u64,
    /// How long a rotated or deleted file stays open after its last new
    /// data, for writers that have not reopened their log yet
    /// (milliseconds).
    #[serde(default = "default_rotate_wait_ms")]
    pub rotate_wait_ms: u64,
    /// How often acknowledged positions are written to the checkpoint file
    /// (milliseconds). A crash re-reads at most about this much.
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// How many leading bytes identify a file together with its inode.
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: u32,
    /// On shutdown, how long to wait for batches still in the pipeline to be
    /// acknowledged before the last checkpoint (milliseconds).
    #[serde(default = "default_shutdown_ack_timeout_ms")]
    pub shutdown_ack_timeout_ms: u64,
}

fn default_poll_interval_ms() -> u64 {
    250
}

fn default_discover_interval_ms() -> u64 {
    1000
}

fn default_rotate_wait_ms() -> u64 {
    5000
}

fn default_checkpoint_interval_ms() -> u64 {
    1000
}

fn default_fingerprint_bytes() -> u32 {
    256
}

fn default_shutdown_ack_timeout_ms() -> u64 {
    2000
}

impl FileConfig {
    /// A configuration with the defaults, for tests and programmatic use.
    pub fn new(paths: Vec<String>, state_dir: impl Into<PathBuf>) -> FileConfig {
        FileConfig {
            paths,
            state_dir: state_dir.into(),
            start_at: StartAt::default(),
            poll_interval_ms: default_poll_interval_ms(),
            discover_interval_ms: default_discover_interval_ms(),
            rotate_wait_ms: default_rotate_wait_ms(),
            checkpoint_interval_ms: default_checkpoint_interval_ms(),
            fingerprint_bytes: default_fingerprint_bytes(),
            shutdown_ack_timeout_ms: default_shutdown_ack_timeout_ms(),
        }
    }
}

/// The checkpoint file's name inside `state_dir`.
pub const CHECKPOINT_FILE: &str = "file-checkpoints.json";

/// Validates `config` (no I/O) and builds the file source.
pub fn build(
    config: FileConfig,
    source: SourceId,
    shape: BatchShape,
    metrics: Arc<SourceMetrics>,
) -> Result<Box<dyn Source>, SourceError> {
    check_shape(&shape)?;
    if config.paths.is_empty() {
        return Err(SourceError::InvalidConfig {
            field: "paths",
            reason: "must list at least one file or pattern".into(),
        });
    }
    let mut patterns = Vec::with_capacity(config.paths.len());
    for p in &config.paths {
        let pattern = glob::Pattern::new(p).map_err(|e| SourceError::InvalidConfig {
            field: "paths",
            reason: format!("`{p}` is not a valid pattern: {e}"),
        })?;
        if !Path::new(p).is_absolute() {
            return Err(SourceError::InvalidConfig {
                field: "paths",
                reason: format!(
                    "`{p}` must be absolute (the working directory of a service is arbitrary)"
                ),
            });
        }
        patterns.push(pattern.as_str().to_owned());
    }
    if config.state_dir.as_os_str().is_empty() {
        return Err(SourceError::InvalidConfig {
            field: "state_dir",
            reason: "must name a directory".into(),
        });
    }
    require_positive("poll_interval_ms", config.poll_interval_ms)?;
    require_positive("discover_interval_ms", config.discover_interval_ms)?;
    require_positive("checkpoint_interval_ms", config.checkpoint_interval_ms)?;
    Ok(Box::new(FileSource {
        config,
        patterns,
        source,
        shape,
        metrics,
    }))
}

/// The file source, validated and ready to run.
struct FileSource {
    config: FileConfig,
    patterns: Vec<String>,
    source: SourceId,
    shape: BatchShape,
    metrics: Arc<SourceMetrics>,
}

#[async_trait]
impl Source for FileSource {
    async fn run(
        self: Box<Self>,
        out: Sender<RecordBatch>,
        stop: CancellationToken,
    ) -> Result<(), SourceError> {
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || Tailer::new(*self, handle, out, stop)?.run())
            .await
            .unwrap_or(Err(SourceError::Panicked {
                source_kind: "file",
            }))
    }
}

/// A file's identity on this machine.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct FileKey {
    dev: u64,
    ino: u64,
}

/// A hash of a file's first `len` bytes (FNV-1a, stable across builds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Fingerprint {
    len: u32,
    hash: u64,
}

impl Fingerprint {
    fn of(bytes: &[u8]) -> Fingerprint {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Fingerprint {
            len: bytes.len() as u32,
            hash: h,
        }
    }

    /// The fingerprint of `file`'s first `len` bytes (fewer if it is shorter).
    fn read(file: &File, len: u32) -> std::io::Result<Fingerprint> {
        let mut buf = vec![0u8; len as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        Ok(Fingerprint::of(&buf[..got]))
    }
}

/// One file's checkpoint: where to resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    #[serde(flatten)]
    key: FileKey,
    fingerprint: Fingerprint,
    /// Byte offset just after the last acknowledged line.
    offset: u64,
    /// Number of the line at `offset`.
    line: u64,
    /// The file's name when last seen, for people reading the state.
    path: String,
}

/// The checkpoint file's content.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    files: Vec<Checkpoint>,
}

/// Checkpoints shared between the tailing thread and acknowledgement
/// handles.
#[derive(Debug, Default)]
struct Checkpoints {
    state: Mutex<CheckpointState>,
    settled: Condvar,
}

#[derive(Debug, Default)]
struct CheckpointState {
    files: HashMap<FileKey, Checkpoint>,
    /// Files with a batch dropped unacknowledged: their checkpoint must not
    /// move past it.
    gaps: Vec<FileKey>,
    in_flight: usize,
    dirty: bool,
}

impl Checkpoints {
    fn lock(&self) -> MutexGuard<'_, CheckpointState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The acknowledgement handle of one batch of one file.
struct FileAck {
    checkpoints: Arc<Checkpoints>,
    checkpoint: Option<Checkpoint>,
}

impl Acknowledge for FileAck {
    fn ack(mut self: Box<Self>) {
        let cp = self.checkpoint.take().expect("set until acknowledged");
        let mut st = self.checkpoints.lock();
        // Acknowledgements come in delivery order: the last one wins, which
        // also handles a truncated file whose offsets start over.
        if !st.gaps.contains(&cp.key) {
            if let Some(old) = st.files.get_mut(&cp.key) {
                *old = cp;
                st.dirty = true;
            }
        }
    }
}

impl Drop for FileAck {
    fn drop(&mut self) {
        let mut st = self.checkpoints.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        if let Some(cp) = &self.checkpoint {
            if !st.gaps.contains(&cp.key) {
                st.gaps.push(cp.key);
                tracing::warn!(path = %cp.path, "A batch was dropped without acknowledgement; the checkpoint of this file stays before it until restart.");
            }
        }
        drop(st);
        self.checkpoints.settled.notify_all();
    }
}

/// A file being followed.
struct Tracked {
    key: FileKey,
    path: Arc<str>,
    file: File,
    fingerprint: Fingerprint,
    /// Offset of the next read.
    read_pos: u64,
    /// Offset just after the last complete line.
    line_end: u64,
    /// Number of the next complete line.
    next_line: u64,
    /// Holds the start of a line whose newline has not been written yet.
    splitter: LineSplitter,
    /// Started at the end of a file in the middle of a line: skip to the
    /// next newline.
    skip_partial: bool,
    /// Set when the file is no longer at a watched path: the time of its
    /// last new data.
    rotated: Option<Instant>,
}

impl Tracked {
    /// Reads the file again from its first byte (after a truncation), and
    /// identifies it by its new first bytes.
    fn restart(&mut self, max_line_bytes: usize, fingerprint_bytes: u32) {
        self.read_pos = 0;
        self.line_end = 0;
        self.next_line = 1;
        self.skip_partial = false;
        self.splitter = LineSplitter::new(max_line_bytes);
        // Unreadable now: an empty fingerprint, widened as the file grows.
        self.fingerprint =
            Fingerprint::read(&self.file, fingerprint_bytes).unwrap_or(Fingerprint::of(b""));
    }
}

/// The blocking tailing loop and its state.
struct Tailer {
    cfg: FileConfig,
    patterns: Vec<String>,
    source: SourceId,
    shape: BatchShape,
    metrics: Arc<SourceMetrics>,
    handle: tokio::runtime::Handle,
    out: Sender<RecordBatch>,
    stop: CancellationToken,
    checkpoints: Arc<Checkpoints>,
    state_path: PathBuf,
    tracked: HashMap<FileKey, Tracked>,
    buf: Vec<u8>,
    batch_bytes: usize,
}

impl Tailer {
    fn new(
        src: FileSource,
        handle: tokio::runtime::Handle,
        out: Sender<RecordBatch>,
        stop: CancellationToken,
    ) -> Result<Tailer, SourceError> {
        let dir = &src.config.state_dir;
        std::fs::create_dir_all(dir).map_err(|error| SourceError::Io {
            path: dir.clone(),
            error,
        })?;
        let state_path = dir.join(CHECKPOINT_FILE);
        let files = load_state(&state_path)?;
        let checkpoints = Arc::new(Checkpoints::default());
        checkpoints.lock().files = files.into_iter().map(|c| (c.key, c)).collect();
        Ok(Tailer {
            batch_bytes: src.shape.batch_lines.saturating_mul(256).min(4 << 20),
            cfg: src.config,
            patterns: src.patterns,
            source: src.source,
            shape: src.shape,
            metrics: src.metrics,
            handle,
            out,
            stop,
            checkpoints,
            state_path,
            tracked: HashMap::new(),
            buf: vec![0u8; 256 * 1024],
        })
    }

    fn run(mut self) -> Result<(), SourceError> {
        let poll = Duration::from_millis(self.cfg.poll_interval_ms);
        let discover_every = Duration::from_millis(self.cfg.discover_interval_ms);
        let checkpoint_every = Duration::from_millis(self.cfg.checkpoint_interval_ms);
        self.discover(true);
        // Checkpoints of files not found at startup are gone for good.
        {
            let mut st = self.checkpoints.lock();
            let tracked = &self.tracked;
            st.files.retain(|k, _| tracked.contains_key(k));
            st.dirty = true;
        }
        tracing::info!(source = self.source, patterns = ?self.patterns, files = self.tracked.len(), "Following files.");
        let mut next_discover = Instant::now() + discover_every;
        let mut next_checkpoint = Instant::now();
        let mut result = Ok(());
        // A closed channel means the pipeline is gone: stop as if cancelled.
        while !self.stop.is_cancelled() && !self.out.is_closed() {
            if Instant::now() >= next_discover {
                self.discover(false);
                next_discover = Instant::now() + discover_every;
            }
            match self.read_all() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            if Instant::now() >= next_checkpoint {
                self.write_checkpoint();
                next_checkpoint = Instant::now() + checkpoint_every;
            }
            // A plain sleep in short steps: no dependence on the runtime's
            // timer from this blocking thread.
            let wake = Instant::now() + poll;
            while !self.stop.is_cancelled() && Instant::now() < wake {
                std::thread::sleep(
                    wake.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(20)),
                );
            }
        }
        // Let the pipeline acknowledge what it holds, then checkpoint it.
        let deadline = Instant::now() + Duration::from_millis(self.cfg.shutdown_ack_timeout_ms);
        let mut st = self.checkpoints.lock();
        while st.in_flight > 0 && Instant::now() < deadline {
            st = self
                .checkpoints
                .settled
                .wait_timeout(st, deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let unacknowledged = st.in_flight;
        self.metrics
            .unsettled_at_stop
            .fetch_add(unacknowledged as u64, Relaxed);
        st.dirty = true;
        drop(st);
        if !self.write_checkpoint() {
            self.metrics.unsettled_at_stop.fetch_add(1, Relaxed);
        }
        tracing::info!(
            source = self.source,
            unacknowledged_batches = unacknowledged,
            "Stopped following files."
        );
        result
    }

    /// Expands the patterns; starts following new files and marks those no
    /// longer at a watched path as rotated.
    fn discover(&mut self, startup: bool) {
        let mut found: Vec<(FileKey, PathBuf, std::fs::Metadata)> = Vec::new();
        for pattern in &self.patterns {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for path in paths.flatten() {
                // Follows symlinks: a link to the current log is common.
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let key = FileKey {
                    dev: meta.dev(),
                    ino: meta.ino(),
                };
                if !found.iter().any(|(k, _, _)| *k == key) {
                    found.push((key, path, meta));
                }
            }
        }
        let now = Instant::now();
        for t in self.tracked.values_mut() {
            match found.iter().find(|(k, _, _)| *k == t.key) {
                Some((_, path, _)) => {
                    t.rotated = None;
                    if *t.path != *path.to_string_lossy() {
                        t.path = Arc::from(path.to_string_lossy());
                    }
                }
                None if t.rotated.is_none() => {
                    tracing::info!(source = self.source, path = %t.path, "File rotated or removed; reading it to its end.");
                    t.rotated = Some(now);
                }
                None => {}
            }
        }
        for (key, path, meta) in found {
            if self.tracked.contains_key(&key) {
                continue;
            }
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(error) => {
                    tracing::warn!(source = self.source, path = %path.display(), %error, "Cannot open file to follow.");
                    continue;
                }
            };
            let fingerprint = match Fingerprint::read(&file, self.cfg.fingerprint_bytes) {
                Ok(f) => f,
                Err(error) => {
                    tracing::warn!(source = self.source, path = %path.display(), %error, "Cannot read file to follow.");
                    continue;
                }
            };
            let path_str: Arc<str> = Arc::from(path.to_string_lossy());
            let mut st = self.checkpoints.lock();
            let resume = st.files.get(&key).filter(|cp| {
                cp.fingerprint.len <= fingerprint.len
                    && Fingerprint::read(&file, cp.fingerprint.len).ok() == Some(cp.fingerprint)
            });
            let (offset, line, skip_partial) = match resume {
                Some(cp) if cp.offset <= meta.len() => (cp.offset, cp.line, false),
                Some(_) => {
                    tracing::warn!(source = self.source, path = %path_str, "File is shorter than its checkpoint (truncated while stopped); reading it from the beginning.");
                    (0, 1, false)
                }
                None if startup && self.cfg.start_at == StartAt::End => {
                    let len = meta.len();
                    (len, 1, len > 0 && !ends_with_newline(&file, len))
                }
                None => (0, 1, false),
            };
            st.files.insert(
                key,
                Checkpoint {
                    key,
                    fingerprint,
                    offset,
                    line,
                    path: path_str.to_string(),
                },
            );
            st.dirty = true;
            drop(st);
            tracing::info!(source = self.source, path = %path_str, offset, "Following file.");
            self.tracked.insert(
                key,
                Tracked {
                    key,
                    path: path_str,
                    file,
                    fingerprint,
                    read_pos: offset,
                    line_end: offset,
                    next_line: line,
                    splitter: LineSplitter::new(self.shape.max_line_bytes),
                    skip_partial,
                    rotated: None,
                },
            );
        }
    }

    /// Reads every followed file to its current end, rotated files first
    /// (their lines were written before the new file's). `false` when the
    /// source must stop.
    fn read_all(&mut self) -> Result<bool, SourceError> {
        let mut order: Vec<(bool, Arc<str>, FileKey)> = self
            .tracked
            .values()
            .map(|t| (t.rotated.is_none(), t.path.clone(), t.key))
            .collect();
        order.sort();
        let rotate_wait = Duration::from_millis(self.cfg.rotate_wait_ms);
        for (_, _, key) in order {
            let mut t = self.tracked.remove(&key).expect("listed");
            let got = match self.read_file(&mut t) {
                Ok(Some(got)) => got,
                Ok(None) => return Ok(false),
                Err(error) => {
                    // Vanished under us or unreadable: forget it; if it is
                    // still there, discovery finds it again.
                    tracing::warn!(source = self.source, path = %t.path, %error, "Reading followed file failed; dropping it.");
                    self.checkpoints.lock().files.remove(&key);
                    continue;
                }
            };
            if let Some(since) = &mut t.rotated {
                if got > 0 {
                    *since = Instant::now();
                } else if since.elapsed() >= rotate_wait {
                    if !self.close(t) {
                        return Ok(false);
                    }
                    continue;
                }
            }
            self.tracked.insert(key, t);
        }
        Ok(true)
    }

    /// Reads what was appended to `t`; the bytes read, or `None` when the
    /// source must stop.
    fn read_file(&mut self, t: &mut Tracked) -> std::io::Result<Option<u64>> {
        let len = t.file.metadata()?.len();
        if len < t.read_pos {
            tracing::warn!(source = self.source, path = %t.path, size = len, position = t.read_pos, "File truncated; reading it from the beginning.");
            t.restart(self.shape.max_line_bytes, self.cfg.fingerprint_bytes);
        } else if len > t.read_pos
            && t.fingerprint.len > 0
            && Fingerprint::read(&t.file, t.fingerprint.len)? != t.fingerprint
        {
            // Rewritten in place with other content (truncated and refilled
            // past our position between two polls): the size does not show
            // it, the first bytes do.
            tracing::warn!(source = self.source, path = %t.path, "File rewritten in place; reading it from the beginning.");
            t.restart(self.shape.max_line_bytes, self.cfg.fingerprint_bytes);
        }
        let mut batch: Option<RecordBatch> = None;
        let mut total = 0u64;
        loop {
            let n = match t.file.read_at(&mut self.buf, t.read_pos) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n as u64;
            self.metrics.bytes.fetch_add(n as u64, Relaxed);
            let base = t.read_pos;
            let data = &self.buf[..n];
            let mut start = 0;
            for nl in memchr::memchr_iter(b'\n', data) {
                let piece = &data[start..=nl];
                start = nl + 1;
                t.line_end = base + start as u64;
                if t.skip_partial {
                    t.skip_partial = false;
                    continue;
                }
                let b = batch.get_or_insert_with(|| {
                    new_batch(self.source, &t.path, t.next_line, self.batch_bytes)
                });
                t.splitter.feed(piece, |line| {
                    b.push_line(line.bytes, usize::MAX);
                    if line.truncated {
                        b.truncated += 1;
                    }
                });
                t.next_line += 1;
                self.metrics.messages.fetch_add(1, Relaxed);
                if b.len() >= self.shape.batch_lines || b.bytes() >= self.batch_bytes {
                    let full = batch.take().expect("just filled");
                    if !self.deliver(full, t) {
                        return Ok(None);
                    }
                }
            }
            if t.skip_partial {
                // Still in the partial line we started in: drop it.
            } else {
                t.splitter
                    .feed(&data[start..], |_| unreachable!("no newline left"));
            }
            t.read_pos += n as u64;
        }
        if let Some(b) = batch {
            if !self.deliver(b, t) {
                return Ok(None);
            }
        }
        if t.fingerprint.len < self.cfg.fingerprint_bytes
            && t.read_pos > u64::from(t.fingerprint.len)
        {
            // The file has grown past a short fingerprint: widen it.
            t.fingerprint = Fingerprint::read(&t.file, self.cfg.fingerprint_bytes)?;
        }
        Ok(Some(total))
    }

    /// Closes a rotated file that stayed idle: its unterminated last line,
    /// if any, is a line after all. `false` when the source must stop.
    fn close(&mut self, mut t: Tracked) -> bool {
        let mut batch = new_batch(self.source, &t.path, t.next_line, 256);
        t.splitter.finish(|line| {
            batch.push_line(line.bytes, usize::MAX);
            if line.truncated {
                batch.truncated += 1;
            }
        });
        tracing::info!(source = self.source, path = %t.path, "Closing rotated file.");
        if !batch.is_empty() {
            t.line_end = t.read_pos;
            t.next_line += 1;
            if !self.deliver(batch, &t) {
                return false;
            }
        }
        // Nobody resumes a file that is no longer at a watched path.
        self.checkpoints.lock().files.remove(&t.key);
        true
    }

    /// Sends a batch of `t` with an acknowledgement that checkpoints `t`'s
    /// position after the batch.
    fn deliver(&self, mut batch: RecordBatch, t: &Tracked) -> bool {
        self.checkpoints.lock().in_flight += 1;
        batch.ack = Some(Box::new(FileAck {
            checkpoints: self.checkpoints.clone(),
            checkpoint: Some(Checkpoint {
                key: t.key,
                fingerprint: t.fingerprint,
                offset: t.line_end,
                line: t.next_line,
                path: t.path.to_string(),
            }),
        }));
        self.metrics.delivered(batch.len(), batch.truncated);
        send_blocking(&self.handle, &self.out, &self.stop, batch)
    }

    /// Writes the acknowledged positions, if they changed, atomically.
    /// Writes the checkpoints when they changed; `false` when that failed.
    fn write_checkpoint(&self) -> bool {
        let state = {
            let mut st = self.checkpoints.lock();
            if !st.dirty {
                return true;
            }
            st.dirty = false;
            let mut files: Vec<Checkpoint> = st.files.values().cloned().collect();
            files.sort_by_key(|c| c.key);
            StateFile { version: 1, files }
        };
        match write_atomically(&self.state_path, &state) {
            Ok(()) => {
                self.metrics.commits.fetch_add(1, Relaxed);
                true
            }
            Err(error) => {
                self.checkpoints.lock().dirty = true;
                self.metrics.commit_failures.fetch_add(1, Relaxed);
                tracing::warn!(source = self.source, path = %self.state_path.display(), %error, "Writing file checkpoints failed; retrying.");
                false
            }
        }
    }
}

fn new_batch(source: SourceId, path: &Arc<str>, first_line: u64, bytes: usize) -> RecordBatch {
    RecordBatch::with_capacity(
        source,
        Origin::File {
            path: path.clone(),
            first_line,
        },
        bytes.min(256 * 1024),
    )
}

fn ends_with_newline(file: &File, len: u64) -> bool {
    let mut last = [0u8; 1];
    matches!(file.read_at(&mut last, len - 1), Ok(1) if last[0] == b'\n')
}

fn load_state(path: &Path) -> Result<Vec<Checkpoint>, SourceError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<StateFile>(&bytes)
            .map(|s| s.files)
            .map_err(|error| SourceError::CorruptState {
                path: path.to_owned(),
                error,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(SourceError::Io {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Writes `state` next to `path`, syncs it, and renames it over `path`: a
/// crash leaves either the old or the new state, never half of one.
fn write_atomically(path: &Path, state: &StateFile) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable.
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults() {
        let c: FileConfig = serde_json::from_str(
            r#"{"paths":["/var/log/nginx/*.log"],"state_dir":"/var/lib/gatewatch"}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            FileConfig::new(vec!["/var/log/nginx/*.log".into()], "/var/lib/gatewatch")
        );
        assert!(serde_json::from_str::<FileConfig>(
            r#"{"paths":[],"state_dir":"/x","start":"end"}"#
        )
        .is_err());
        let c: FileConfig =
            serde_json::from_str(r#"{"paths":["/a"],"state_dir":"/x","start_at":"end"}"#).unwrap();
        assert_eq!(c.start_at, StartAt::End);
    }

    #[test]
    fn build_checks_patterns_before_any_io() {
        let shape = BatchShape {
            max_line_bytes: 100,
            batch_lines: 10,
        };
        let m = SourceMetrics::new;
        let bad = |paths: Vec<&str>| {
            build(
                FileConfig::new(
                    paths.into_iter().map(String::from).collect(),
                    "/nonexistent/state",
                ),
                1,
                shape,
                m(),
            )
        };
        assert!(matches!(
            bad(vec![]),
            Err(SourceError::InvalidConfig { field: "paths", .. })
        ));
        assert!(matches!(
            bad(vec!["/var/log/[.log"]),
            Err(SourceError::InvalidConfig { field: "paths", .. })
        ));
        assert!(matches!(
            bad(vec!["relative/*.log"]),
            Err(SourceError::InvalidConfig { field: "paths", .. })
        ));
        assert!(bad(vec!["/var/log/nginx/*.log"]).is_ok());
    }

    #[test]
    fn fingerprint_is_stable() {
        assert_eq!(Fingerprint::of(b"").hash, 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fingerprint::of(b"a").hash, 0xaf63_dc4c_8601_ec8c);
    }
}
