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
        }
    }
}

impl IncidentSink for ConsoleSink {
    fn emit(&mut self, change: &IncidentChange) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, &change.incident)?;
        self.out.write_all(b"\n")?;
        if self.flush_each {
            self.out.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
