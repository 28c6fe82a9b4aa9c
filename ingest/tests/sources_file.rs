//! The file source against a real file system: appends while running,
//! rotation by rename, truncation, files that appear later, restarts from
//! the checkpoint, and partial last lines.
#![cfg(feature = "file")]

use gatewatch_ingest::sources::file::{build, FileConfig, StartAt, CHECKPOINT_FILE};
use gatewatch_ingest::sources::{BatchShape, SourceError, SourceMetrics};
use gatewatch_ingest::{Origin, RecordBatch};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SHAPE: BatchShape = BatchShape {
    max_line_bytes: 100,
    batch_lines: 4,
};

struct Tail {
    rx: mpsc::Receiver<RecordBatch>,
    metrics: Arc<SourceMetrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), SourceError>>,
}

/// One received line: (path, line number, text).
type Line = (String, u64, String);

impl Tail {
    fn start(config: FileConfig) -> Tail {
        let metrics = SourceMetrics::new();
        let src = build(config, 5, SHAPE, metrics.clone()).unwrap();
        let (tx, rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let task = tokio::spawn(src.run(tx, stop.clone()));
        Tail {
            rx,
            metrics,
            stop,
            task,
        }
    }

    /// Lines until `n` arrived or `within` passed, acknowledged when `ack`.
    async fn take(&mut self, n: usize, within: Duration, ack: bool) -> Vec<Line> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while out.len() < n {
            let Ok(Some(mut b)) = tokio::time::timeout_at(deadline, self.rx.recv()).await else {
                break;
            };
            let Origin::File { path, first_line } = &b.origin else {
                panic!("origin {:?}", b.origin);
            };
            for i in 0..b.len() {
                out.push((
                    path.to_string(),
                    first_line + i as u64,
                    String::from_utf8_lossy(b.line(i)).into_owned(),
                ));
            }
            let a = b.ack.take().expect("file batches carry an acknowledgement");
            if ack {
                a.ack();
            }
        }
        out
    }

    async fn texts(&mut self, n: usize, ack: bool) -> Vec<String> {
        self.take(n, Duration::from_secs(10), ack)
            .await
            .into_iter()
            .map(|l| l.2)
            .collect()
    }

    /// Nothing more arrives for a while.
    async fn quiet(&mut self) {
        let more = self.take(1, Duration::from_millis(800), true).await;
        assert_eq!(more, vec![], "no more lines");
    }

    async fn stop(self) -> Arc<SourceMetrics> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("source stops")
            .unwrap()
            .unwrap();
        self.metrics
    }
}

fn config(dir: &Path, pattern: &str) -> FileConfig {
    let mut c = FileConfig::new(
        vec![dir.join(pattern).display().to_string()],
        dir.join("state"),
    );
    c.poll_interval_ms = 20;
    c.discover_interval_ms = 50;
    c.rotate_wait_ms = 300;
    c.checkpoint_interval_ms = 50;
    c.shutdown_ack_timeout_ms = 200;
    c
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn lines(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("{prefix} {i}\n")).collect()
}

fn want(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_appends_and_holds_a_partial_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &lines("line", 0..6));
    let mut t = Tail::start(config(dir.path(), "*.log"));
    let got = t.take(6, Duration::from_secs(10), true).await;
    assert_eq!(
        got.iter().map(|l| l.2.clone()).collect::<Vec<_>>(),
        want("line", 0..6)
    );
    assert_eq!(got[5].1, 6, "line numbers");
    assert_eq!(got[0].0, log.display().to_string());
    append(&log, "partial ");
    t.quiet().await;
    append(&log, "now complete\r\n");
    append(&log, &lines("line", 6..8));
    assert_eq!(
        t.texts(3, true).await,
        vec!["partial now complete", "line 6", "line 7"]
    );
    // An over-long line is cut and counted.
    append(&log, &format!("{}\nshort\n", "x".repeat(500)));
    let got = t.texts(2, true).await;
    assert_eq!((got[0].len(), got[1].as_str()), (100, "short"));
    let m = t.stop().await.snapshot();
    assert_eq!((m.lines, m.truncated), (11, 1), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_rename_reads_the_old_file_to_its_end_then_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &lines("old", 0..3));
    let mut t = Tail::start(config(dir.path(), "*.log"));
    assert_eq!(t.texts(3, true).await, want("old", 0..3));
    // The writer keeps its descriptor: it writes once more after the
    // rename, then reopens the path.
    let mut writer = OpenOptions::new().append(true).open(&log).unwrap();
    std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    writer.write_all(b"old late\nold unterminated").unwrap();
    append(&log, &lines("new", 0..3));
    let got = t.take(5, Duration::from_secs(10), true).await;
    let texts: Vec<&str> = got.iter().map(|l| l.2.as_str()).collect();
    // The old file's unterminated last line is a line once the old file
    // is closed, `rotate_wait_ms` after its last write.
    assert_eq!(
        texts,
        vec!["old late", "new 0", "new 1", "new 2", "old unterminated"],
        "{got:?}"
    );
    assert!(got[0].0.ends_with("access.log") || got[0].0.ends_with("access.log.1"));
    assert_eq!(
        (got[3].1, got[4].1),
        (3, 5),
        "each file numbers its own lines"
    );
    t.quiet().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_starts_over_at_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &lines("before truncation", 0..5));
    let mut t = Tail::start(config(dir.path(), "*.log"));
    assert_eq!(t.texts(5, true).await.len(), 5);
    // copytruncate: same inode, shorter content.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(&log, &lines("after", 0..2));
    let got = t.take(2, Duration::from_secs(10), true).await;
    assert_eq!(
        got.iter().map(|l| l.2.clone()).collect::<Vec<_>>(),
        want("after", 0..2)
    );
    assert_eq!(got[0].1, 1);
    t.quiet().await;
    // Rewritten in place with more than was read: the size alone does not
    // show it, the first bytes do.
    std::fs::write(&log, lines("rewritten", 0..20)).unwrap();
    assert_eq!(t.texts(20, true).await, want("rewritten", 0..20));
    t.quiet().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_picks_up_files_created_later_from_their_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "*.log");
    // Existing content is skipped, but a file that appears later is new.
    cfg.start_at = StartAt::End;
    append(&dir.path().join("a.log"), &lines("existing", 0..3));
    append(&dir.path().join("ignored.txt"), "not matched\n");
    let mut t = Tail::start(cfg);
    t.quiet().await;
    append(&dir.path().join("a.log"), "appended\n");
    assert_eq!(t.texts(1, true).await, vec!["appended"]);
    append(&dir.path().join("b.log"), &lines("b", 0..3));
    let got = t.take(3, Duration::from_secs(10), true).await;
    assert_eq!(
        got.iter().map(|l| l.2.clone()).collect::<Vec<_>>(),
        want("b", 0..3)
    );
    assert!(got[0].0.ends_with("b.log"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_skips_a_partial_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "*.log");
    cfg.start_at = StartAt::End;
    append(&dir.path().join("a.log"), "whole\nhalf of a li");
    let mut t = Tail::start(cfg);
    t.quiet().await;
    append(&dir.path().join("a.log"), "ne\nnext\n");
    assert_eq!(t.texts(1, true).await, vec!["next"]);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_at_the_last_acknowledged_line_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &lines("first", 0..10));
    append(&log, "held back");

    let mut t = Tail::start(config(dir.path(), "*.log"));
    assert_eq!(t.texts(10, true).await, want("first", 0..10));
    t.stop().await;
    let state = std::fs::read_to_string(dir.path().join("state").join(CHECKPOINT_FILE)).unwrap();
    assert!(state.contains("access.log"), "{state}");

    // Written while stopped: the rest of the partial line, and more.
    append(&log, " until now\n");
    append(&log, &lines("second", 0..5));
    let mut t = Tail::start(config(dir.path(), "*.log"));
    // Received but not acknowledged: must come again after a restart.
    let got = t.take(6, Duration::from_secs(10), false).await;
    assert_eq!(got[0].2, "held back until now");
    assert_eq!(got[0].1, 11, "line numbers continue from the checkpoint");
    assert_eq!(
        got[1..].iter().map(|l| l.2.clone()).collect::<Vec<_>>(),
        want("second", 0..5)
    );
    t.stop().await;

    let mut t = Tail::start(config(dir.path(), "*.log"));
    let got = t.texts(6, true).await;
    assert_eq!(got[0], "held back until now");
    assert_eq!(got[1..], want("second", 0..5)[..]);
    t.quiet().await;
    t.stop().await;

    let mut t = Tail::start(config(dir.path(), "*.log"));
    t.quiet().await;
    append(&log, "third\n");
    assert_eq!(t.texts(1, true).await, vec!["third"]);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_file_at_a_checkpointed_inode_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &lines("original", 0..4));
    let mut t = Tail::start(config(dir.path(), "*.log"));
    assert_eq!(t.texts(4, true).await.len(), 4);
    t.stop().await;
    // Same inode, different first bytes, longer than the checkpoint: only
    // the fingerprint tells it is not the file that was read.
    std::fs::write(&log, lines("replacement", 0..8)).unwrap();
    let mut t = Tail::start(config(dir.path(), "*.log"));
    assert_eq!(t.texts(8, true).await, want("replacement", 0..8));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_holds_reading_and_cancellation_still_stops() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("big.log");
    append(&log, &lines("l", 0..10_000));
    let metrics = SourceMetrics::new();
    let src = build(config(dir.path(), "*.log"), 1, SHAPE, metrics.clone()).unwrap();
    // A pipeline of one batch that is never read.
    let (tx, _rx) = mpsc::channel(1);
    let stop = CancellationToken::new();
    let task = tokio::spawn(src.run(tx, stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(metrics.snapshot().batches <= 3, "{:?}", metrics.snapshot());
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops while blocked")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_checkpoint_is_an_error_not_a_guess() {
    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join(CHECKPOINT_FILE), "{not json").unwrap();
    let src = build(config(dir.path(), "*.log"), 1, SHAPE, SourceMetrics::new()).unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let err = src.run(tx, CancellationToken::new()).await.unwrap_err();
    assert!(matches!(err, SourceError::CorruptState { .. }), "{err}");
}
