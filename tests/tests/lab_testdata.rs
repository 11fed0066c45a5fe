//! The committed lab recordings (offline, no root): every scenario is recorded, laid out
//! as `testdata/README.md` says, listed in `testdata/manifest.toml`, and its capture
//! actually shows the failure (or, for a baseline, does not) — so an empty or broken
//! recording cannot be committed unnoticed.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag_tests::lab::counters::Snapshot;
use netdiag_tests::lab::pcap;
use netdiag_tests::lab::record;
use netdiag_tests::lab::scenario::{self, Scenario};

#[test]
fn every_scenario_is_recorded_with_the_documented_layout() {
    let td = netdiag_tests::testdata_dir();
    for s in Scenario::ALL {
        let dir = td.join(s.name());
        let pkts = pcap::read(&dir.join("pod.pcap")).expect("pod.pcap");
        assert!(!pkts.is_empty(), "{}: empty pod.pcap", s.name());
        assert_eq!(
            dir.join("node.pcap").is_file(),
            s.needs_node_capture(),
            "{}",
            s.name()
        );
        assert!(dir.join("resolv.conf").is_file(), "{}", s.name());
        for role in ["pod", "node"] {
            for when in ["before", "after"] {
                let snap = Snapshot::read_from(&dir.join("counters").join(role).join(when))
                    .expect("snapshot");
                let flat = snap.flat();
                assert!(
                    flat.contains_key("TcpExt.ListenOverflows") && flat.contains_key("Tcp.OutRsts"),
                    "{}: counters/{role}/{when} lacks netstat/snmp",
                    s.name()
                );
                assert!(
                    flat.contains_key("sysctl.net.ipv4.ip_local_port_range.min"),
                    "{}: counters/{role}/{when} lacks sysctls",
                    s.name()
                );
            }
        }
    }
}

#[test]
fn manifest_matches_the_scenarios() {
    let td = netdiag_tests::testdata_dir();
    let text = std::fs::read_to_string(td.join("manifest.toml")).expect("manifest.toml");
    assert_eq!(
        text,
        record::manifest(&td),
        "manifest.toml is stale: re-run `cargo xtask lab record`"
    );
    for s in Scenario::ALL {
        assert!(
            text.contains(&format!("name = \"{}\"", s.name())),
            "{} not in manifest",
            s.name()
        );
    }
}

fn counters(s: Scenario, role: &str) -> (Snapshot, Snapshot) {
    let dir = netdiag_tests::testdata_dir()
        .join(s.name())
        .join("counters")
        .join(role);
    (
        Snapshot::read_from(&dir.join("before")).expect("before"),
        Snapshot::read_from(&dir.join("after")).expect("after"),
    )
}

#[test]
fn recordings_show_their_failure() {
    let st = |s: Scenario| {
        pcap::structure_of(
            &netdiag_tests::testdata_dir()
                .join(s.name())
                .join("pod.pcap"),
        )
        .expect("structure")
    };
    let syn = st(Scenario::AcceptOverflowSyn);
    assert_eq!(syn.tcp_syn_retransmitted, scenario::ACCEPT_SYN_EXTRA);
    let (b, a) = counters(Scenario::AcceptOverflowSyn, "pod");
    assert!(b.delta(&a, "TcpExt.ListenOverflows") > 0);

    let ack = st(Scenario::AcceptOverflowAck);
    assert_eq!(
        ack.tcp_data_unacked,
        scenario::ACCEPT_ACK_CLIENTS - scenario::ACCEPT_QUEUE_FITS
    );

    let (b, a) = counters(Scenario::SnatExhaustion, "node");
    assert!(b.delta(&a, "conntrack.insert_failed") > 0);
    assert!(b.delta(&a, "conntrack.drop") > 0);

    for s in [
        Scenario::ConntrackInvalid,
        Scenario::ConntrackInvalidService,
    ] {
        let (b, a) = counters(s, "node");
        assert!(b.delta(&a, "conntrack.invalid") > 0, "{}", s.name());
        assert!(st(s).tcp_reset > 0, "{}", s.name());
    }

    assert_eq!(st(Scenario::DnsNdots).dns_queries.len(), 8);
    let lost = st(Scenario::DnsLostReply);
    assert!(!lost.dns_resent_after_s.is_empty());
    assert!(
        lost.dns_resent_after_s
            .iter()
            .all(|&g| g >= scenario::DNS_TIMEOUT_S)
    );

    for s in [
        Scenario::HealthyListener,
        Scenario::HealthySnat,
        Scenario::HealthyHttp,
        Scenario::HealthyDns,
    ] {
        let h = st(s);
        assert_eq!(h.tcp_syn_retransmitted, 0, "{}", s.name());
        assert_eq!(h.tcp_reset, 0, "{}", s.name());
        assert_eq!(h.tcp_data_unacked, 0, "{}", s.name());
        assert!(h.dns_resent_after_s.is_empty(), "{}", s.name());
        assert_eq!(h.dns_responses.get("NXDOMAIN"), None, "{}", s.name());
        let (b, a) = counters(s, "node");
        assert_eq!(b.delta(&a, "conntrack.invalid"), 0, "{}", s.name());
        assert_eq!(b.delta(&a, "conntrack.insert_failed"), 0, "{}", s.name());
        let (b, a) = counters(s, "pod");
        assert_eq!(b.delta(&a, "TcpExt.ListenOverflows"), 0, "{}", s.name());
    }
}
