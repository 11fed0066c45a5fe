//! A pcap or pcapng byte stream through the reader into the analyzer, and the report into
//! JSON: what `kubectl netdiag analyze FILE --json` does with a hostile file.
//!
//! Seeds: every capture file of the tcpdump corpus and testdata (the first 64 KiB).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_analyze::{Analyzer, Config};
use netdiag_fuzz::Seeds;
use netdiag_pcapio::Reader;

fn seeds(s: &mut Seeds) -> std::io::Result<()> {
    for path in s.capture_files() {
        let bytes = std::fs::read(&path)?;
        s.add(&bytes)?;
    }
    Ok(())
}

fuzz_target!(
    init: netdiag_fuzz::seed_mode("pcap_analyze", seeds),
    |data: &[u8]| {
        let Ok(mut reader) = Reader::new(data) else {
            return;
        };
        // Small caps, so that eviction and the full-table paths run too.
        let mut config = Config::default().with_max_flows(64);
        config.max_dns_transactions = 32;
        config.max_dns_clients = 8;
        config.max_destinations = 32;
        let mut analyzer = Analyzer::new(config);
        analyzer.set_resolv_conf("search ns.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n");
        // Each interface of the file is a capture point of its own, fed interleaved as
        // concurrent live captures are.
        let sources = [analyzer.add_source("if0"), analyzer.add_source("if1")];
        // In batches, as `analyze` reads files; the batch size varies with the input.
        let max = 1 + data.len() % 64;
        while let Ok(b) = reader.next_batch(max) {
            if b.is_empty() {
                break;
            }
            for p in b.iter() {
                let source = sources[(p.interface % 2) as usize];
                analyzer.feed_from(source, p.timestamp_ns, p.link_type, p.data);
            }
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
