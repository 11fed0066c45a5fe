//! The overlay recordings in `testdata/overlay/` (node B's underlay in VXLAN, and the same
//! frames re-wrapped in Geneve, IP-in-IP and GRE) yield their findings offline, keyed by
//! the pod addresses, with the tunnel and the node addresses named in every flow.

// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag::analyze::{Analyzer, Config, Finding, Report};
use std::path::Path;

fn analyze(path: &Path) -> Report {
    let mut r = netdiag::pcapio::Reader::open(path).expect("open capture");
    let mut a = Analyzer::new(Config::default());
    a.begin_source(path.display().to_string());
    while let Some(p) = r.next_packet().expect("read capture") {
        a.feed(p.timestamp_ns, p.link_type, p.data);
    }
    a.finish()
}

fn one<'r>(r: &'r Report, kind: &str, file: &str) -> &'r Finding {
    assert_eq!(r.findings.len(), 1, "{file}: {:#?}", r.findings);
    let f = &r.findings[0];
    assert_eq!(f.kind.as_str(), kind, "{file}");
    f
}

/// Timestamps of the first UDP query to port 53 and of the last TCP segment with payload
/// from port 53 (the answer over TCP), read from the innermost packets.
fn query_to_tcp_answer(path: &Path) -> (u64, u64) {
    use netdiag_wire::{Frame, LinkType, Transport};
    let mut r = netdiag::pcapio::Reader::open(path).expect("open capture");
    let (mut first, mut last) = (None, 0);
    while let Some(p) = r.next_packet().expect("read") {
        let (f, _) = Frame::parse(LinkType::from_linktype(p.link_type), p.data).innermost();
        match f.transport {
            Some(Transport::Udp(u)) if u.dst_port == 53 && first.is_none() => {
                first = Some(p.timestamp_ns)
            }
            Some(Transport::Tcp(t)) if t.src_port == 53 && !t.payload.is_empty() => {
                last = p.timestamp_ns
            }
            _ => {}
        }
    }
    (first.expect("a UDP query"), last)
}

#[test]
fn overlay_recordings_yield_pod_findings_in_every_tunnel() {
    let dir = netdiag_tests::testdata_dir().join("overlay");
    let mut checked = 0;
    for (suffix, tunnel) in [
        ("", "VXLAN"),
        ("-geneve", "Geneve"),
        ("-ipip", "IP-in-IP"),
        ("-gre_ip", "GRE"),
        ("-gre_eth", "GRE"),
    ] {
        let file = |s: &str| dir.join(format!("{s}-underlay{suffix}.pcap"));
        let inside = format!("inside {tunnel} 192.168.1.5 → 192.168.1.6");
        let key = if tunnel == "GRE" {
            ", key 1"
        } else if tunnel == "IP-in-IP" {
            ""
        } else {
            ", VNI 1"
        };

        let p = file("accept_overflow");
        let r = analyze(&p);
        let f = one(&r, "accept_queue_overflow", &p.display().to_string());
        assert_eq!(f.flows.len(), 6, "{:?}", f.flows);
        for fl in &f.flows {
            assert!(fl.starts_with("10.244.1.10:"), "{fl}");
            assert!(fl.contains(" -> 10.244.2.10:8080/tcp ("), "{fl}");
            assert!(fl.ends_with(&format!("{inside}{key})")), "{fl}");
        }

        for s in ["dns_ndots", "dns_ndots_tcp"] {
            let p = file(s);
            let r = analyze(&p);
            let f = one(&r, "dns_ndots_amplification", &p.display().to_string());
            let proto = if s.ends_with("tcp") { "tcp" } else { "udp" };
            assert!(
                f.flows.iter().any(|fl| fl.starts_with("10.244.1.10:")
                    && fl.contains(&format!(" -> 10.244.2.10:53/{proto} ({inside}"))),
                "{:?}",
                f.flows
            );
            assert_eq!(r.dns.queries_sent, 8, "{s}{suffix}: {:?}", r.dns);
            assert_eq!(r.dns.logical_lookups, 1, "{s}{suffix}: {:?}", r.dns);
        }

        let p = file("dns_lost_reply_tcp");
        let r = analyze(&p);
        let f = one(&r, "dns_lost_reply_timeout", &p.display().to_string());
        assert!(
            f.flows.iter().any(|fl| fl.starts_with("10.244.1.10:")
                && fl.contains(&format!(" -> 10.244.2.10:53/tcp ({inside}"))),
            "{:?}",
            f.flows
        );
        assert_eq!(f.names, ["api.example.test"]);
        let waited = f.evidence.timings[0].millis[0];
        assert!((7500.0..9000.0).contains(&waited), "{waited} ms");

        let p = file("dns_truncated_retry");
        let r = analyze(&p);
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
        assert_eq!(
            (r.dns.queries_sent, r.dns.logical_lookups),
            (2, 1),
            "{:?}",
            r.dns
        );
        assert_eq!(r.dns.unanswered, 0);
        // The lookup's latency runs from the UDP query to the TCP answer.
        let p50 = r.dns.latency_p50_ms.expect("latency");
        let (first_query, last_tcp_answer) = query_to_tcp_answer(&p);
        let want = (last_tcp_answer - first_query) as f64 / 1e6;
        assert!((p50 - want).abs() < 0.01, "{p50} ms vs {want} ms");
        checked += 1;
    }
    assert_eq!(checked, 5);
}
