//! Detector benchmarks (filled in below).

fn main() {}
