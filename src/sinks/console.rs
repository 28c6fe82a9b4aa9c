//! Incidents as JSON lines on stdout: `replay`'s output and `run`'s console.

use super::IncidentSink;
use gatewatch_alerting::IncidentChange;
use std::io::Write;

/// Writes each incident change as one JSON object per line.
///
/// JSON escaping makes attacker-controlled strings (paths, user agents)
/// safe on a terminal: control characters become `\u00XX`.
pub struct ConsoleSink {
    out: Box<dyn Write + Send>,
    flush_each: bool,
    /// The reader went away (`gatewatch replay | head`): output stops,
    /// the pipeline (and storing incidents) goes on.
    reader_gone: bool,
}

impl ConsoleSink {
    /// A sink on stdout; `flush_each` for live runs (a reader sees each
    /// incident at once), buffered for replay (throughput).
    pub fn stdout(flush_each: bool) -> ConsoleSink {
        ConsoleSink::new(Box::new(std::io::stdout()), flush_each)
    }

    /// A sink on any writer (tests).
    pub fn new(out: Box<dyn Write + Send>, flush_each: bool) -> ConsoleSink {
        ConsoleSink {
            out: Box::new(std::io::BufWriter::new(out)),
            flush_each,
            reader_gone: false,
        }
    }

    /// Turns a closed pipe into a quiet end of output; other errors stay.
    fn settle(&mut self, result: std::io::Result<()>) -> anyhow::Result<()> {
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.reader_gone = true;
                tracing::info!("stdout was closed by its reader; no more incidents are printed.");
                Ok(())
            }
            other => Ok(other?),
        }
    }
}

impl IncidentSink for ConsoleSink {
    fn emit(&mut self, change: &IncidentChange) -> anyhow::Result<()> {
        if self.reader_gone {
            return Ok(());
        }
        let written = serde_json::to_writer(&mut self.out, &change.incident)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .and_then(|()| {
                if self.flush_each {
                    self.out.flush()
                } else {
                    Ok(())
                }
            });
        self.settle(written)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.reader_gone {
            return Ok(());
        }
        let flushed = self.out.flush();
        self.settle(flushed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that has gone away.
    struct ClosedPipe;
    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_closed_pipe_ends_output_quietly() {
        let mut sink = ConsoleSink::new(Box::new(ClosedPipe), true);
        assert!(sink.flush().is_ok());
        assert!(sink.flush().is_ok(), "and stays quiet");
    }
}
