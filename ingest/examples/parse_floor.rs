//! The parse-only floor for a whole log file, for `scripts/bench`: read the
//! file line by line (as `gatewatch replay` does) and only parse each line
//! into a minimal borrowed struct, nothing else: for Kong with the JSON
//! library the formats use (`sonic-rs`, the struct of
//! `benches/floor/kong.rs`, shared with `benches/json_floor.rs`), for nginx
//! `combined` with a minimal split parser. `gatewatch replay` lines/s divided by this is how close the whole
//! pipeline gets to the cost of merely reading the log.
//!
//! `cargo run --release -p gatewatch-ingest --example parse_floor -- kong FILE`
//! prints one line: `format=kong lines=… parsed=… secs=… lines_per_sec=…`.

#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::io::BufRead;
use std::time::Instant;

#[path = "../benches/floor/kong.rs"]
mod floor_kong;
use floor_kong::KongFloor;

fn kong(line: &[u8]) -> Option<usize> {
    let f: KongFloor<'_> = sonic_rs::from_slice(line).ok()?;
    Some(f.touch())
}

/// One nginx `combined` line, borrowed.
struct Combined<'a> {
    addr: &'a str,
    user: &'a str,
    time: i64,
    method: &'a str,
    uri: &'a str,
    status: u16,
    bytes: u64,
    user_agent: &'a str,
}

fn split_once<'a>(s: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    s.split_once(sep)
}

/// `02/Mar/2026:08:00:00 +0000` to seconds since the epoch.
fn time_local(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 26 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let day = num(0..2)?;
    let month = match b.get(3..6)? {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    };
    let year = num(7..11)?;
    let (h, m, s) = (num(12..14)?, num(15..17)?, num(18..20)?);
    let off = num(22..24)? * 3600 + num(24..26)? * 60;
    let off = if b[21] == b'-' { -off } else { off };
    // Howard Hinnant's days-from-civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s - off)
}

fn combined(line: &[u8]) -> Option<usize> {
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let (addr, rest) = split_once(line, " ")?;
    let (_ident, rest) = split_once(rest, " ")?;
    let (user, rest) = split_once(rest, " [")?;
    let (time, rest) = split_once(rest, "] \"")?;
    let (request, rest) = split_once(rest, "\" ")?;
    let (status, rest) = split_once(rest, " ")?;
    let (bytes, rest) = split_once(rest, " \"")?;
    let (_referer, rest) = split_once(rest, "\" \"")?;
    let user_agent = rest.strip_suffix('"')?;
    let (method, rest) = split_once(request, " ")?;
    let uri = rest.rsplit_once(' ').map_or(rest, |(u, _)| u);
    let c = Combined {
        addr,
        user,
        time: time_local(time)?,
        method,
        uri,
        status: status.parse().ok()?,
        bytes: bytes.parse().ok()?,
        user_agent,
    };
    Some(
        c.addr.len()
            + c.user.len()
            + c.time as usize
            + c.method.len()
            + c.uri.len()
            + usize::from(c.status)
            + c.bytes as usize
            + c.user_agent.len(),
    )
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(format), Some(path)) = (args.next(), args.next()) else {
        eprintln!("usage: parse_floor <kong|nginx_combined> FILE");
        std::process::exit(2);
    };
    let parse: fn(&[u8]) -> Option<usize> = match format.as_str() {
        "kong" => kong,
        "nginx_combined" => combined,
        other => {
            eprintln!("unknown format {other:?} (kong or nginx_combined)");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
    let mut line = Vec::with_capacity(4096);
    let (mut lines, mut parsed, mut sum) = (0u64, 0u64, 0usize);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        lines += 1;
        if let Some(n) = parse(black_box(&line)) {
            parsed += 1;
            sum = sum.wrapping_add(n);
        }
    }
    black_box(sum);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "format={format} lines={lines} parsed={parsed} secs={secs:.3} lines_per_sec={:.0}",
        lines as f64 / secs
    );
    Ok(())
}
