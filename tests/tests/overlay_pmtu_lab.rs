//! Issue 14's last must-hold on the real kernel: a path-MTU black hole across the VXLAN
//! overlay (`netdiag_tests::lab::overlay::narrow_underlay`). Pod A (MTU 1500) uploads to
//! pod B on the other node; node A's `vxlan0` takes 1500-byte inner packets but node B's
//! end of the underlay takes only 1400, and ICMP "fragmentation needed" is dropped in
//! both nodes. `path_mtu_blackhole` is found from pod A's capture and from node A's
//! underlay capture (the same TCP segments inside VXLAN); with pod A's MTU lowered to the
//! overlay's real size (1350, the remedy) the upload arrives and there is no finding.
//! With the lab as built (`vxlan0` 1450, ICMP allowed) path-MTU discovery works: node A's
//! frag-needed reaches the pod, which re-sends smaller; no finding either.
//!
//! The root test records into a scratch dir, or with `NETDIAG_RECORD_OVERLAY=1` into
//! `testdata/overlay/` (provenance in `testdata/README.md`); the offline test analyzes
//! those recordings and needs no privilege.

// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag::analyze::{Analyzer, Config, Finding, Kind, Report};
use netdiag_tests::lab::overlay;
use std::path::{Path, PathBuf};

fn analyze(path: &Path) -> Report {
    let mut r = netdiag::pcapio::Reader::open(path).expect("open capture");
    let mut a = Analyzer::new(Config::default());
    a.begin_source(path.display().to_string());
    while let Some(p) = r.next_packet().expect("read capture") {
        a.feed(p.timestamp_ns, p.link_type, p.data);
    }
    a.finish()
}

fn blackhole(report: &Report, what: &str) -> Finding {
    assert_eq!(
        report.kinds(),
        [Kind::PathMtuBlackhole],
        "{what}: {:#?}",
        report.findings
    );
    let f = report.findings[0].clone();
    assert!(
        f.flows
            .iter()
            .any(|fl| fl.contains("10.244.1.10:") && fl.contains("10.244.2.10:9000")),
        "{what}: {:#?}",
        f.flows
    );
    let notes = f.evidence.notes.join("\n");
    assert!(notes.contains("no ICMP"), "{what}: {notes}");
    f
}

/// The black hole from the pod's and the underlay's capture; the remedy's twin is clean.
fn check(pod: &Path, underlay: &Path, remedy_pod: &Path, remedy_underlay: &Path) {
    blackhole(&analyze(pod), "pod capture");
    let f = blackhole(&analyze(underlay), "underlay capture");
    assert!(
        f.flows
            .iter()
            .any(|fl| fl.contains("inside VXLAN 192.168.1.5 → 192.168.1.6")),
        "{:#?}",
        f.flows
    );
    for p in [remedy_pod, remedy_underlay] {
        let r = analyze(p);
        assert!(r.findings.is_empty(), "{}: {:#?}", p.display(), r.findings);
        assert!(r.capture.packets > 10, "{}", p.display());
    }
}

#[test]
fn overlay_path_mtu_blackhole_on_the_kernel_and_its_remedy() {
    if !netdiag_tests::require_root("overlay_path_mtu_blackhole_on_the_kernel_and_its_remedy")
        .expect("root check")
    {
        return;
    }
    let record = std::env::var_os("NETDIAG_RECORD_OVERLAY").is_some();
    let dir: PathBuf = if record {
        netdiag_tests::testdata_dir().join("overlay")
    } else {
        std::env::temp_dir().join(format!("nd-mtuvxlan-{}", std::process::id()))
    };
    struct Cleanup(PathBuf, bool);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if !self.1 {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
    let _cleanup = Cleanup(dir.clone(), record);
    let id = std::process::id() % 100_000;
    let bh = overlay::record_pmtu(&format!("mtuvxlan-bh{id}"), &dir, false)
        .expect("black hole recording");
    assert!(!bh.delivered, "the upload got through the black hole");
    let ok =
        overlay::record_pmtu(&format!("mtuvxlan-ok{id}"), &dir, true).expect("remedy recording");
    assert!(
        ok.delivered,
        "with the pod MTU lowered the upload should arrive"
    );
    check(&bh.pod, &bh.underlay, &ok.pod, &ok.underlay);
    let pd = overlay::record_pmtu_discovery(&format!("mtuvxlan-pd{id}"), &dir)
        .expect("discovery recording");
    assert!(
        pd.delivered,
        "path-MTU discovery should have repaired the path"
    );
    check_discovery(&pd.pod, &pd.underlay);
}

/// ICMP allowed: the pod gets node A's frag-needed and re-sends smaller; no finding.
fn check_discovery(pod: &Path, underlay: &Path) {
    for p in [pod, underlay] {
        let r = analyze(p);
        assert!(r.findings.is_empty(), "{}: {:#?}", p.display(), r.findings);
        assert!(r.capture.packets > 10, "{}", p.display());
    }
}

/// The recordings in testdata/overlay/ (made by the test above), analyzed offline.
#[test]
fn overlay_path_mtu_recordings_offline() {
    let dir = netdiag_tests::testdata_dir().join("overlay");
    check(
        &dir.join("pmtu_blackhole-pod.pcap"),
        &dir.join("pmtu_blackhole-underlay-node_a.pcap"),
        &dir.join("pmtu_remedy-pod.pcap"),
        &dir.join("pmtu_remedy-underlay-node_a.pcap"),
    );
    check_discovery(
        &dir.join("pmtu_discovery-pod.pcap"),
        &dir.join("pmtu_discovery-underlay-node_a.pcap"),
    );
}
