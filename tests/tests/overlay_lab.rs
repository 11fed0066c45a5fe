//! Issue 11 on the real kernel: two "nodes" joined by a kernel VXLAN device (UDP 8472),
//! a pod behind each (`netdiag_tests::lab::overlay`). Accept-queue overflow of pod B
//! driven from pod A, and ndots amplification of pod A against the DNS pod (dnsmasq) on
//! node B, are found by the analyzer in a capture of node B's uplink — the underlay,
//! where every pod packet is inside VXLAN — with the pod addresses and the node
//! addresses in the finding. The same captures re-wrapped in Geneve, IP-in-IP and GRE
//! (which this kernel cannot make) give the same findings, and tshark decodes their inner
//! packets identically to the VXLAN originals. Also: ndots over TCP (`use-vc`), and a
//! truncated (TC) UDP answer followed by the TCP retry counted as one lookup.
//!
//! Root only. With `NETDIAG_RECORD_OVERLAY=1` the captures are written to
//! `testdata/overlay/` (the recipe in `testdata/README.md`); otherwise to a scratch dir.

// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag::analyze::{Analyzer, Config, Report};
use netdiag_tests::lab::overlay::{self, OverlayScenario, Wrap};
use std::path::{Path, PathBuf};
use std::process::Command;

fn analyze(path: &Path, resolv: Option<&str>) -> Report {
    let mut r = netdiag::pcapio::Reader::open(path).expect("open capture");
    let mut a = Analyzer::new(Config::default());
    if let Some(rc) = resolv {
        a.set_resolv_conf(rc);
    }
    a.begin_source(path.display().to_string());
    while let Some(p) = r.next_packet().expect("read capture") {
        a.feed(p.timestamp_ns, p.link_type, p.data);
    }
    a.finish()
}

fn finding<'r>(report: &'r Report, kind: &str) -> &'r netdiag::analyze::Finding {
    report
        .findings
        .iter()
        .find(|f| f.kind.as_str() == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:#?}", report.findings))
}

/// Inner-packet fields tshark shows (last occurrence = innermost), one row per frame.
fn tshark_inner(path: &Path) -> Vec<String> {
    let out = Command::new("tshark")
        .args(["-n", "-d", "udp.port==8472,vxlan", "-r"])
        .arg(path)
        .args(["-T", "fields", "-E", "occurrence=l"])
        .args(["-e", "ip.src", "-e", "ip.dst", "-e", "ip.id"])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.seq_raw",
        ])
        .args(["-e", "tcp.flags", "-e", "tcp.len"])
        .args([
            "-e",
            "dns.id",
            "-e",
            "dns.qry.name",
            "-e",
            "dns.flags.response",
        ])
        .args(["-e", "dns.count.answers", "-e", "arp.src.proto_ipv4"])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark on {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn tshark_count(path: &Path, filter: &str) -> usize {
    let out = Command::new("tshark")
        .args(["-n", "-d", "udp.port==8472,vxlan", "-r"])
        .arg(path)
        .args(["-Y", filter])
        .output()
        .expect("run tshark");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn check_underlay(s: OverlayScenario, report: &Report, tunnel: &str) {
    let via = |f: &netdiag::analyze::Finding| {
        f.flows.iter().any(|fl| {
            fl.contains("10.244.1.10:")
                && fl.contains("10.244.2.10:")
                && fl.contains(&format!("inside {tunnel} 192.168.1.5 → 192.168.1.6"))
        })
    };
    match s {
        OverlayScenario::AcceptOverflow => {
            let f = finding(report, "accept_queue_overflow");
            assert!(via(f), "{tunnel}: {:#?}", f.flows);
            assert!(f.flows.iter().all(|fl| fl.contains("10.244.2.10:8080")));
            assert!(
                f.listeners
                    .iter()
                    .any(|l| l.addr == "10.244.2.10" && l.port == 8080)
            );
        }
        OverlayScenario::Ndots | OverlayScenario::NdotsTcp => {
            let f = finding(report, "dns_ndots_amplification");
            assert!(via(f), "{tunnel}: {:#?}", f.flows);
            assert!(
                f.names.iter().any(|n| n == "api.example.test"),
                "{:?}",
                f.names
            );
            if s == OverlayScenario::NdotsTcp {
                assert!(
                    f.flows.iter().any(|fl| fl.contains(":53/tcp")),
                    "{:?}",
                    f.flows
                );
            }
            assert!(report.dns.queries_sent >= 8, "{:?}", report.dns);
        }
        OverlayScenario::LostReplyTcp => {
            let f = finding(report, "dns_lost_reply_timeout");
            assert!(via(f), "{tunnel}: {:#?}", f.flows);
            assert!(
                f.flows.iter().all(|fl| fl.contains(":53/tcp")),
                "{:?}",
                f.flows
            );
            assert_eq!(f.names, ["api.example.test"]);
            let waited = f.evidence.timings[0].millis[0];
            let want = overlay::HANG_S as f64 * 1000.0;
            assert!(
                (want - 500.0..want + 1000.0).contains(&waited),
                "{waited} ms"
            );
        }
        OverlayScenario::TruncatedRetry => {
            // One UDP query (TC answer) and the same question over TCP: one lookup.
            assert_eq!(report.dns.queries_sent, 2, "{tunnel}: {:?}", report.dns);
            assert_eq!(report.dns.logical_lookups, 1, "{tunnel}: {:?}", report.dns);
            assert_eq!(report.dns.unanswered, 0, "{tunnel}: {:?}", report.dns);
            assert!(report.findings.is_empty(), "{:#?}", report.findings);
        }
    }
}

#[test]
fn overlay_findings_on_the_underlay_and_in_every_tunnel() {
    if !netdiag_tests::require_root("overlay_findings_on_the_underlay_and_in_every_tunnel")
        .expect("root check")
    {
        return;
    }
    let record = std::env::var_os("NETDIAG_RECORD_OVERLAY").is_some();
    let dir: PathBuf = if record {
        netdiag_tests::testdata_dir().join("overlay")
    } else {
        std::env::temp_dir().join(format!("nd-tunnels-overlay-{}", std::process::id()))
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
    let tag = format!("tunnels-ov{}", std::process::id() % 100_000);
    let recorded = overlay::record(&tag, &dir).expect("overlay lab recording");
    let resolv = std::fs::read_to_string(dir.join("resolv.conf")).expect("resolv.conf");
    for r in &recorded {
        eprintln!(
            "{}: {}",
            r.scenario.name(),
            r.outcome.lines().next().unwrap_or("")
        );
        let report = analyze(&r.underlay, None);
        check_underlay(r.scenario, &report, "VXLAN");
        // With the pod's resolv.conf the ndots diagnosis is confirmed.
        if matches!(
            r.scenario,
            OverlayScenario::Ndots | OverlayScenario::NdotsTcp
        ) {
            let with_rc = analyze(&r.underlay, Some(&resolv));
            assert_eq!(
                finding(&with_rc, "dns_ndots_amplification")
                    .confidence
                    .as_str(),
                "confirmed"
            );
            // The pod-side capture (no tunnel) agrees.
            let pod = analyze(&r.pod, Some(&resolv));
            finding(&pod, "dns_ndots_amplification");
        }
        let vxlan_rows = tshark_inner(&r.underlay);
        assert!(tshark_count(&r.underlay, "vxlan") > 0);
        for wrap in Wrap::ALL {
            let out = dir.join(format!(
                "{}-underlay-{}.pcap",
                r.scenario.name(),
                wrap.name()
            ));
            let n = overlay::rewrap(&r.underlay, &out, wrap).expect("rewrap");
            assert!(n > 0, "nothing re-wrapped in {}", out.display());
            let (tunnel, filter) = match wrap {
                Wrap::Geneve => ("Geneve", "geneve"),
                Wrap::IpInIp => ("IP-in-IP", "ip.proto == 4"),
                Wrap::GreIp => ("GRE", "gre.key == 1 && gre.proto == 0x0800"),
                Wrap::GreEthernet => ("GRE", "gre.key == 1 && gre.proto == 0x6558"),
            };
            assert_eq!(tshark_count(&out, filter), n, "{}", out.display());
            // tshark sees the same inner packets as in the VXLAN original.
            let rows = tshark_inner(&out);
            assert_eq!(rows.len(), vxlan_rows.len());
            for (i, (a, b)) in vxlan_rows.iter().zip(&rows).enumerate() {
                assert_eq!(a, b, "{} frame {}", out.display(), i + 1);
            }
            let report = analyze(&out, None);
            check_underlay(r.scenario, &report, tunnel);
        }
    }
}
