//! Header slicing: netdiag-wire vs etherparse (`SlicedPacket`, `LaxSlicedPacket`,
//! `PacketHeaders`) on the same in-memory corpora, every contender producing the same
//! digest (see `netdiag_benches`). One group per corpus reports packets/s
//! (`Throughput::Elements`), its `…/bytes` twin reports bytes/s.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netdiag_benches::{
    CONTENDERS, GenPacket, generate_mix, load_corpus_sample, load_testdata, total_bytes,
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

criterion_group!(benches, wire);
criterion_main!(benches);
