//! The whole analyzer (flow table, TCP and DNS trackers, five detectors, report) over an
//! in-memory capture, beside raw header parsing (netdiag-wire, the same digest the wire
//! bench uses) of the same packets in the same run. BENCH.md: analysis should cost no
//! more than about 10x parsing.
//!
//! Corpora: the deterministic mix of `netdiag_benches::generate_mix` at 1k and 100k
//! flows, plus the lab recordings of `testdata/`. Each iteration builds a fresh analyzer
//! (tables start empty and grow to the corpus' size), feeds every packet and calls
//! `finish`, so the figure includes building the report.
//!
//! `analyze-scale`: the same per-flow packet pattern ([`generate_concurrent`]: every flow
//! open at once, packets round-robin over the flows) at 1k and at 1M concurrent flows,
//! with a flow cap that holds them all, from one contiguous pcap buffer. Issue 10, goal
//! 4: the cost per packet at 1M flows at most 2x the cost at 1k. `cargo xtask bench
//! analyze` prints that ratio from criterion's estimates.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netdiag_analyze::{Analyzer, Config};
use netdiag_benches::{
    GenPacket, PcapBuffer, digest_ours, generate_concurrent, generate_mix, load_testdata,
};
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

/// Flow cap of the scale group: holds every flow of the 1M-flow corpus.
const SCALE_CAP: usize = 1 << 20;
/// Packets per flow in the scale group (SYN, SYN-ACK, ACK, two data segments).
const SCALE_ROUNDS: usize = 5;

fn analyze_buffer_report(buf: &PcapBuffer) -> netdiag_analyze::Report {
    let mut a = Analyzer::new(Config::default().with_max_flows(SCALE_CAP));
    buf.for_each(|ts, data| a.feed(ts, 1, data));
    a.finish()
}

fn analyze_buffer(buf: &PcapBuffer) -> usize {
    let r = analyze_buffer_report(buf);
    r.findings.len() + r.capture.flows as usize
}

fn analyze_scale(c: &mut Criterion) {
    for (name, flows) in [("1k-flows", 1_000), ("1M-flows", 1_000_000)] {
        let buf = generate_concurrent(flows, SCALE_ROUNDS);
        // Every flow is in the table at the end: none was closed out early.
        let r = analyze_buffer_report(&buf);
        assert_eq!(r.capture.flows, flows as u64, "{name}: flows");
        assert_eq!(
            r.capture.flows_peak, flows as u64,
            "{name}: all open at once"
        );
        assert_eq!(r.tcp.handshakes, flows as u64, "{name}: handshakes");
        assert_eq!(r.tcp.retransmissions, 0, "{name}: a well-formed stream");
        let mut g = c.benchmark_group("analyze-scale");
        g.throughput(Throughput::Elements(buf.packets() as u64));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(if flows > 100_000 { 40 } else { 8 }));
        g.bench_function(name, |b| b.iter(|| analyze_buffer(black_box(&buf))));
        g.finish();
    }
}

criterion_group!(benches, analyze, analyze_scale);
criterion_main!(benches);
