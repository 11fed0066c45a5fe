//! The issue-14 recordings in `testdata/` (written by `tests/tests/lab_resolver_udp_mtu.rs`
//! with `NETDIAG_RECORD_TESTDATA=1`) yield exactly their finding, and their healthy twins
//! nothing; the CLI states the resolver and takes `--resolver`.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag::analyze::{
    Analyzer, Confidence, Config, Kind, Moment, NetnsRole, Report, ResolverLibrary,
};

fn analyze(name: &str, with_counters: bool) -> Report {
    let dir = netdiag_tests::testdata_dir().join(name);
    let mut a = Analyzer::new(Config::default());
    let rc = std::fs::read_to_string(dir.join("resolv.conf")).expect("resolv.conf");
    a.set_resolv_conf(&rc);
    if with_counters {
        for (role, r) in [(NetnsRole::Pod, "pod"), (NetnsRole::Node, "node")] {
            for (m, w) in [(Moment::Before, "before"), (Moment::After, "after")] {
                let d = dir.join("counters").join(r).join(w);
                let snap = netdiag::kernel::Snapshot::read_dir(&d).expect("snapshot");
                a.observe_counters(role, m, &netdiag::counters(&snap));
            }
        }
    }
    let mut rd = netdiag::pcapio::Reader::open(dir.join("pod.pcap")).expect("pod.pcap");
    while let Some(p) = rd.next_packet().expect("packet") {
        a.feed(p.timestamp_ns, p.link_type, p.data);
    }
    a.finish()
}

#[test]
fn each_recording_yields_its_finding_and_twins_nothing() {
    for (name, want) in [
        ("musl_dns_ndots", vec![Kind::DnsNdotsAmplification]),
        ("musl_dns_lost_reply", vec![Kind::DnsLostReplyTimeout]),
        ("udp_rcvbuf_overflow", vec![Kind::UdpReceiveBufferOverflow]),
        ("pmtu_blackhole", vec![Kind::PathMtuBlackhole]),
        ("healthy_udp_dns", vec![]),
        ("healthy_pmtu", vec![]),
    ] {
        for with in [true, false] {
            let r = analyze(name, with);
            assert_eq!(
                r.kinds(),
                want,
                "{name} (counters: {with}): {:#?}",
                r.findings
            );
        }
    }
}

#[test]
fn udp_overflow_is_confirmed_by_the_counters_and_possible_without() {
    let r = analyze("udp_rcvbuf_overflow", true);
    assert_eq!(r.findings[0].confidence, Confidence::Confirmed);
    let r = analyze("udp_rcvbuf_overflow", false);
    assert_eq!(r.findings[0].confidence, Confidence::Possible);
    assert!(r.findings[0].alternative.is_some());
}

#[test]
fn musl_retry_interval_names_the_resolver_offline() {
    let r = analyze("musl_dns_lost_reply", false);
    assert_eq!(
        r.resolver.as_ref().map(|x| x.library),
        Some(ResolverLibrary::Musl)
    );
    // The glibc recording of the same failure says glibc.
    let dir = netdiag_tests::testdata_dir().join("dns_lost_reply");
    let mut a = Analyzer::new(Config::default());
    let mut rd = netdiag::pcapio::Reader::open(dir.join("pod.pcap")).expect("pod.pcap");
    while let Some(p) = rd.next_packet().expect("packet") {
        a.feed(p.timestamp_ns, p.link_type, p.data);
    }
    let g = a.finish();
    assert_eq!(
        g.resolver.as_ref().map(|x| x.library),
        Some(ResolverLibrary::Glibc)
    );
    assert!(g.findings[0].remedy.contains("single-request-reopen"));
}

#[test]
fn cli_states_the_given_resolver_and_uses_its_remedy() {
    let bin = netdiag_tests::netdiag_bin().expect("kubectl-netdiag binary");
    let dir = netdiag_tests::testdata_dir().join("musl_dns_ndots");
    let out = std::process::Command::new(bin)
        .arg("analyze")
        .arg(dir.join("pod.pcap"))
        .arg("--resolv-conf")
        .arg(dir.join("resolv.conf"))
        .args(["--resolver", "musl", "--output", "json"])
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["resolver"]["library"], "musl", "{v}");
    assert_eq!(v["resolver"]["source"], "given");
    let remedy = v["findings"][0]["remedy"].as_str().unwrap_or("");
    assert!(
        remedy.contains("musl") && !remedy.contains("single-request"),
        "{remedy}"
    );
}
