//! A pcap or pcapng byte stream through the reader into the analyzer, and the report into
//! JSON: what `kubectl netdiag analyze FILE --json` does with a hostile file. Half the
//! inputs are read in place (`Reader::from_bytes` and `for_each_packet`, the way
//! `analyze` reads a regular file), half from a stream in batches (a pipe, stdin).
//!
//! Seeds: every capture file of the tcpdump corpus and testdata (the first 64 KiB).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_analyze::{Analyzer, Config};
use netdiag_fuzz::Seeds;
use netdiag_pcapio::{Packet, Reader};

fn seeds(s: &mut Seeds) -> std::io::Result<()> {
    for path in s.capture_files() {
        let bytes = std::fs::read(&path)?;
        s.add(&bytes)?;
    }
    Ok(())
}

/// Feeds every packet `reader` gives until its end or its error: in place through
/// `for_each_packet`, or in batches of `max`.
fn feed_all<R: std::io::Read>(
    mut reader: Reader<R>,
    in_place: bool,
    max: usize,
    mut feed: impl FnMut(&Packet<'_>),
) {
    if in_place {
        while let Ok(1..) = reader.for_each_packet(max, |p| feed(&p)) {}
        return;
    }
    while let Ok(b) = reader.next_batch(max) {
        if b.is_empty() {
            break;
        }
        for p in b.iter() {
            feed(&p);
        }
    }
}

fuzz_target!(
    init: netdiag_fuzz::seed_mode("pcap_analyze", seeds),
    |data: &[u8]| {
        let in_place = data.len().is_multiple_of(2);
        let (streamed, held) = if in_place {
            (None, Reader::from_bytes(data.to_vec(), "fuzz").ok())
        } else {
            (Reader::new(data).ok(), None)
        };
        if streamed.is_none() && held.is_none() {
            return;
        }
        // Small caps, so that eviction and the full-table paths run too.
        let mut config = Config::default().with_max_flows(64);
        config.max_dns_transactions = 32;
        config.max_dns_clients = 8;
        config.max_destinations = 32;
        let mut analyzer = Analyzer::new(config);
        analyzer.set_resolv_conf("search ns.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n");
        // Each interface of the file is a capture point of its own, fed interleaved as
        // concurrent live captures are.
        let sources: [u16; 2] = [analyzer.add_source("if0"), analyzer.add_source("if1")];
        // The batch size varies with the input.
        let max = 1 + data.len() % 64;
        let mut feed = |p: &Packet<'_>| {
            let source = sources[(p.interface % 2) as usize];
            analyzer.feed_from(source, p.timestamp_ns, p.link_type, p.data);
        };
        if let Some(r) = streamed {
            feed_all(r, false, max, &mut feed);
        }
        if let Some(r) = held {
            feed_all(r, true, max, &mut feed);
        }
        let _ = analyzer.progress();
        let tables = analyzer.tables();
        assert!(tables.flows.len <= tables.flows.cap, "{tables:?}");
        let report = analyzer.finish();
        let json = serde_json::to_string(&report).expect("a report always serializes");
        let back: serde_json::Value = serde_json::from_str(&json).expect("the JSON parses back");
        assert_eq!(back["schema_version"], netdiag_analyze::SCHEMA_VERSION);
    }
);
