//! The parse-only floor for Kong lines: each ~1.8 KB line is only parsed,
//! with the JSON library the formats use (`sonic-rs`) and with
//! `serde_json`, into a minimal borrowed struct (client_ip, started_at,
//! method, uri, status, user-agent) and nothing else. Compare
//! `parse/kong` in `benches/parsers.rs` with these: the gap is what the
//! Kong parser adds on top of the JSON library.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatewatch_ingest::formats::{build, FormatKind, FormatOptions};
use std::hint::black_box;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/");

#[path = "floor/kong.rs"]
mod floor_kong;
use floor_kong::KongFloor;

fn kong_lines(n: usize) -> Vec<Vec<u8>> {
    let data = std::fs::read(format!("{CORPUS}kong-docs/file-log-example-3.4.ndjson")).unwrap();
    let base = String::from_utf8(data).unwrap();
    let base = base.trim_end();
    (0..n)
        .map(|i| {
            base.replace(
                "192.168.144.1",
                &format!("203.0.{}.{}", i % 250, (i * 7) % 250),
            )
            .replace(
                "\"uri\":\"/log\"",
                &format!("\"uri\":\"/log/{i}?page={}\"", i % 9),
            )
            .into_bytes()
        })
        .collect()
}

fn floor(c: &mut Criterion) {
    let lines = kong_lines(2_000);
    let mut g = c.benchmark_group("kong_floor");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("sonic_rs", |b| {
        b.iter(|| {
            let mut n = 0;
            for l in &lines {
                n += sonic_rs::from_slice::<KongFloor>(black_box(l)).map_or(0, |f| f.touch());
            }
            black_box(n)
        })
    });
    g.bench_function("serde_json", |b| {
        b.iter(|| {
            let mut n = 0;
            for l in &lines {
                n += serde_json::from_slice::<KongFloor>(black_box(l)).map_or(0, |f| f.touch());
            }
            black_box(n)
        })
    });
    g.bench_function("utf8_validation_only", |b| {
        b.iter(|| {
            let mut n = 0;
            for l in &lines {
                n += std::str::from_utf8(black_box(l)).map_or(0, str::len);
            }
            black_box(n)
        })
    });
    let kong = build(FormatKind::Kong, &FormatOptions::default()).unwrap();
    g.bench_function("gatewatch_kong_parser", |b| {
        b.iter(|| {
            let mut n = 0;
            for l in &lines {
                n += kong.parse(black_box(l)).map_or(0, |ev| ev.path.len());
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, floor);
criterion_main!(benches);
