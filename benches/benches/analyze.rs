//! The whole analyzer (flow table, TCP and DNS trackers, five detectors, report) over an
//! in-memory capture, beside raw header parsing (netdiag-wire, the same digest the wire
//! bench uses) of the same packets in the same run. BENCH.md: analysis should cost no
//! more than about 10x parsing.
//!
//! Corpora: the deterministic mix of `netdiag_benches::generate_mix` at 1k and 100k
//! flows, plus the lab recordings of `testdata/`. Each iteration builds a fresh analyzer
//! (tables start empty and grow to the corpus' size), feeds every packet and calls
//! `finish`, so the figure includes building the report.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netdiag_analyze::{Analyzer, Config};
use netdiag_benches::{GenPacket, digest_ours, generate_mix, load_testdata};
use std::hint::black_box;
use std::time::Duration;

fn analyze_all(packets: &[GenPacket]) -> usize {
    let mut a = Analyzer::new(Config::default());
    for p in packets {
        a.feed(p.timestamp_ns, p.link_type, &p.data);
    }
    let r = a.finish();
    r.findings.len() + r.capture.flows as usize
}

fn analyze(c: &mut Criterion) {
    let mut corpora = vec![
        ("mix-1k-flows", generate_mix(1_000, 200_000, 11)),
        ("mix-100k-flows", generate_mix(100_000, 1_000_000, 12)),
    ];
    let testdata = load_testdata();
    if !testdata.is_empty() {
        corpora.push(("testdata", testdata));
    }
    for (name, packets) in corpora {
        let mut g = c.benchmark_group(format!("analyze/{name}"));
        g.throughput(Throughput::Elements(packets.len() as u64));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(8));
        g.bench_function("wire-parse", |b| {
            b.iter(|| digest_ours(black_box(&packets)))
        });
        g.bench_function("analyze", |b| b.iter(|| analyze_all(black_box(&packets))));
        g.finish();
    }
}

criterion_group!(benches, analyze);
criterion_main!(benches);
