//! `Config::dns_thread` (what `analyze` of capture files uses): the DNS side of the
//! analysis on a thread of its own, fed in batches, gives the report of the DNS side in
//! line (`Report` equality, every field) on every lab recording of testdata and every
//! capture of the tcpdump test suite, one file at a time and all of them in one analyzer
//! (thousands of DNS messages and UDP datagrams, so several batches, with resolv.conf and
//! UDP sockets given between files).
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag::analyze::{Analyzer, Config, NetnsRole, Report, UdpSocketQueue};
use std::path::{Path, PathBuf};

/// Every capture of testdata and the corpus, in a fixed order.
fn captures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(netdiag_tests::testdata_dir())
        .expect("testdata")
        .filter_map(|e| Some(e.ok()?.path().join("pod.pcap")))
        .filter(|p| p.is_file())
        .collect();
    let testdata = files.len();
    if let Some(dir) = netdiag_tests::corpus_dir().expect("corpus") {
        let mut corpus: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("corpus dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        corpus.sort();
        files.extend(corpus);
    }
    files[..testdata].sort();
    assert!(testdata >= 10, "{testdata} testdata recordings");
    files
}

/// Feeds every packet of `file` as a new source (a malformed file up to its error).
fn feed(a: &mut Analyzer, file: &Path) -> u64 {
    let Ok(mut reader) = netdiag::pcapio::Reader::open(file) else {
        return 0;
    };
    a.begin_source(file.display().to_string());
    let mut n = 0;
    while let Ok(Some(p)) = reader.next_packet() {
        a.feed(p.timestamp_ns, p.link_type, p.data);
        n += 1;
    }
    n
}

fn report(files: &[PathBuf], thread: bool) -> (Report, u64) {
    let mut a = Analyzer::new(Config::default().with_dns_thread(thread));
    let mut n = 0;
    for (i, f) in files.iter().enumerate() {
        // Given between files: they reach the DNS side in packet order either way.
        if i % 97 == 5 {
            a.set_resolv_conf("search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5 timeout:2\n");
        }
        if i % 89 == 7 {
            a.observe_udp_sockets(
                NetnsRole::Pod,
                &[
                    UdpSocketQueue::new("0.0.0.0".parse().expect("address"), 53, 0)
                        .with_memory(212_992, i as u32),
                ],
            );
        }
        n += feed(&mut a, f);
    }
    (a.finish(), n)
}

#[test]
fn the_dns_side_on_its_thread_reports_what_it_reports_in_line() {
    let files = captures();
    let mut dns_files = 0;
    for f in &files {
        let one = std::slice::from_ref(f);
        let (want, _) = report(one, false);
        let (got, _) = report(one, true);
        assert_eq!(got, want, "{}", f.display());
        dns_files += usize::from(want.capture.dns_messages > 0);
    }
    let (want, packets) = report(&files, false);
    let (got, _) = report(&files, true);
    assert_eq!(got, want, "all {} files in one analyzer", files.len());
    // Enough to fill several batches of 1,024 pieces of work (a UDP datagram is one).
    assert!(
        want.capture.dns_messages >= 2_000 && want.capture.udp_packets >= 3_000,
        "{} DNS messages, {} UDP packets in {packets} packets",
        want.capture.dns_messages,
        want.capture.udp_packets
    );
    assert!(dns_files >= 20, "{dns_files} files with DNS");
}
