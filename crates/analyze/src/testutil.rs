//! Test helpers: run the analyzer over the lab recordings in `testdata/`.

use crate::{Analyzer, Config, Counters, Finding, Kind, Report};
use std::path::PathBuf;

/// One packet of a capture: timestamp, link type, bytes.
pub(crate) type Pkt = (u64, u32, Vec<u8>);

pub(crate) fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

/// Every packet of a testdata capture (the lab recordings are real kernel captures).
pub(crate) fn packets(rel: &str) -> Vec<Pkt> {
    let path = testdata(rel);
    let mut r = netdiag_pcapio::Reader::open(&path)
        .unwrap_or_else(|e| panic!("testdata capture {} unreadable: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().expect("testdata capture is well-formed") {
        out.push((p.timestamp_ns, p.link_type, p.data.to_vec()));
    }
    out
}

/// Analyzes testdata captures (one source each) after `setup` ran on the analyzer.
pub(crate) fn run(files: &[&str], setup: impl FnOnce(&mut Analyzer)) -> Report {
    let mut a = Analyzer::new(Config::default());
    setup(&mut a);
    for f in files {
        a.begin_source(*f);
        for (ts, link, bytes) in packets(f) {
            a.feed(ts, link, &bytes);
        }
    }
    a.finish()
}

pub(crate) fn finding(r: &Report, kind: Kind) -> Option<&Finding> {
    r.findings.iter().find(|f| f.kind == kind)
}

pub(crate) fn counters(pairs: &[(&str, u64)]) -> Counters {
    Counters {
        values: pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
        ..Counters::default()
    }
}

/// The bytes of evidence packet `number` (1-based) of a capture.
pub(crate) fn packet(pkts: &[Pkt], number: u64) -> &Pkt {
    &pkts[usize::try_from(number - 1).expect("small")]
}
