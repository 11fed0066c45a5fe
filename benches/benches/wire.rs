//! Header slicing: netdiag-wire vs etherparse (`SlicedPacket`, `LaxSlicedPacket`,
//! `PacketHeaders`) on the same in-memory corpora, every contender producing the same
//! digest (see `netdiag_benches`). One group per corpus reports packets/s
//! (`Throughput::Elements`), its `…/bytes` twin reports bytes/s. `wire-contiguous` walks
//! one pcap-file buffer per corpus as the reader reads it; `wire-located` parses the same
//! bytes with each record's place found beforehand.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netdiag_benches::{
    BUFFER_CONTENDERS, CONTENDERS, GenPacket, LOCATED_CONTENDERS, PcapBuffer, buffer_walk_floor,
    generate_mix, load_corpus_sample, load_testdata, located_walk_floor, total_bytes,
};

fn corpora() -> Vec<(String, Vec<GenPacket>)> {
    let mut c = vec![
        ("mix-1k-flows".to_string(), generate_mix(1_000, 100_000, 1)),
        (
            "mix-100k-flows".to_string(),
            generate_mix(100_000, 300_000, 2),
        ),
    ];
    let testdata = load_testdata();
    if !testdata.is_empty() {
        c.push(("testdata".to_string(), testdata));
    }
    let corpus = load_corpus_sample(usize::MAX);
    if !corpus.is_empty() {
        c.push(("tcpdump-corpus-ethernet".to_string(), corpus));
    }
    c
}

fn wire(c: &mut Criterion) {
    for (name, packets) in corpora() {
        let expect = CONTENDERS[0].1(&packets);
        for (contender, f) in CONTENDERS {
            assert_eq!(f(&packets), expect, "{contender} disagrees on {name}");
        }
        for (suffix, throughput) in [
            ("", Throughput::Elements(packets.len() as u64)),
            ("/bytes", Throughput::Bytes(total_bytes(&packets))),
        ] {
            let mut g = c.benchmark_group(format!("wire/{name}{suffix}"));
            g.throughput(throughput);
            // Large corpora take ~0.1-0.4 s per pass: fewer samples keep the run short.
            if packets.len() > 50_000 {
                g.sample_size(20);
            }
            for (contender, f) in CONTENDERS {
                g.bench_function(contender, |b| b.iter(|| f(&packets)));
            }
            g.finish();
        }
    }
}

/// The name of the [`buffer_walk_floor`] measurement in each `wire-contiguous` group, and
/// of [`located_walk_floor`] in each `wire-located` group (`cargo xtask bench wire` reads
/// them back by this name).
const WALK_FLOOR: &str = "walk floor";

/// The same contenders over one contiguous buffer per corpus (the bytes as a pcap file
/// holds them), at 1k, 100k and 1M flows of the generated mix, plus the real captures.
fn wire_contiguous(c: &mut Criterion) {
    let mut buffers: Vec<(String, PcapBuffer)> = vec![
        (
            "mix-1k-flows".to_string(),
            PcapBuffer::new(&generate_mix(1_000, 100_000, 1)),
        ),
        (
            "mix-100k-flows".to_string(),
            PcapBuffer::new(&generate_mix(100_000, 300_000, 2)),
        ),
        (
            "mix-1M-flows".to_string(),
            PcapBuffer::new(&generate_mix(1_000_000, 1_000_000, 3)),
        ),
    ];
    for (name, packets) in [
        ("testdata", load_testdata()),
        ("tcpdump-corpus-ethernet", load_corpus_sample(usize::MAX)),
    ] {
        if !packets.is_empty() {
            buffers.push((name.to_string(), PcapBuffer::new(&packets)));
        }
    }
    for (name, buf) in &buffers {
        let mut walked = 0;
        buf.for_each(|_, _| walked += 1);
        assert_eq!(
            walked,
            buf.packets(),
            "{name}: the buffer holds every packet"
        );
        let expect = BUFFER_CONTENDERS[0].1(buf);
        for (contender, f) in BUFFER_CONTENDERS {
            assert_eq!(f(buf), expect, "{contender} disagrees on {name}");
        }
        for (suffix, throughput) in [
            ("", Throughput::Elements(buf.packets() as u64)),
            ("/bytes", Throughput::Bytes(buf.captured_bytes())),
        ] {
            let mut g = c.benchmark_group(format!("wire-contiguous/{name}{suffix}"));
            g.throughput(throughput);
            if buf.packets() > 50_000 {
                g.sample_size(20);
            }
            for (contender, f) in BUFFER_CONTENDERS {
                // PacketHeaders copies its owned headers (~40k instructions a packet here,
                // callgrind): on the 1M-packet corpus one pass takes ~15 s; the smaller
                // corpora already rank it.
                if buf.packets() > 500_000 && contender == "etherparse PacketHeaders" {
                    continue;
                }
                g.bench_function(contender, |b| b.iter(|| f(buf)));
            }
            g.bench_function(WALK_FLOOR, |b| b.iter(|| buffer_walk_floor(buf)));
            g.finish();
        }

        // The same bytes, each record's place found beforehand (`wire-located`): what
        // the parsers cost when no record waits on the one before it.
        let located = buf.locate();
        assert_eq!(
            located.packets(),
            buf.packets(),
            "{name}: every record located"
        );
        for (contender, f) in LOCATED_CONTENDERS {
            assert_eq!(
                f(&located),
                expect,
                "{contender} disagrees on {name}, located"
            );
        }
        let mut g = c.benchmark_group(format!("wire-located/{name}"));
        g.throughput(Throughput::Elements(buf.packets() as u64));
        if buf.packets() > 50_000 {
            g.sample_size(20);
        }
        for (contender, f) in LOCATED_CONTENDERS {
            g.bench_function(contender, |b| b.iter(|| f(&located)));
        }
        g.bench_function(WALK_FLOOR, |b| b.iter(|| located_walk_floor(&located)));
        g.finish();
    }
}

criterion_group!(benches, wire, wire_contiguous);
criterion_main!(benches);
