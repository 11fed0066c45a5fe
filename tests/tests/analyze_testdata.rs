//! Every lab recording in `testdata/` yields the finding kinds its manifest entry expects
//! and none it forbids; healthy baselines yield none.
//!
//! Each scenario is analyzed twice through the library: with everything the lab recorded
//! (every capture, pod and node counters, resolv.conf) — `expect` and `forbid` both
//! hold — and from `pod.pcap` alone, where `forbid` must still hold (fewer inputs may
//! lower confidence or miss a node-only signature, never invent another diagnosis).
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag::analyze::{Analyzer, Config, Counters, Kind, Moment, NetnsRole, Report};
use std::path::Path;

struct Scenario {
    name: String,
    expect: Vec<String>,
    forbid: Vec<String>,
}

/// Reads the `[[scenario]]` entries of testdata/manifest.toml (names and kind lists only).
fn manifest() -> Vec<Scenario> {
    let path = netdiag_tests::testdata_dir().join("manifest.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the lab recordings are part of the repo)",
            path.display()
        )
    });
    let mut out: Vec<Scenario> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line == "[[scenario]]" {
            out.push(Scenario {
                name: String::new(),
                expect: Vec::new(),
                forbid: Vec::new(),
            });
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let Some(s) = out.last_mut() else { continue };
        let list = || -> Vec<String> {
            value
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .map(|k| k.trim().trim_matches('"').to_string())
                .filter(|k| !k.is_empty())
                .collect()
        };
        match key.trim() {
            "name" => s.name = value.trim().trim_matches('"').to_string(),
            "expect" => s.expect = list(),
            "forbid" => s.forbid = list(),
            _ => {}
        }
    }
    assert!(!out.is_empty(), "no scenarios in {}", path.display());
    out
}

fn counters(dir: &Path) -> Counters {
    let snap = netdiag::kernel::Snapshot::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    netdiag::counters(&snap)
}

fn feed(a: &mut Analyzer, file: &Path) {
    let mut r = netdiag::pcapio::Reader::open(file).unwrap_or_else(|e| panic!("{e}"));
    a.begin_source(file.display().to_string());
    while let Some(p) = r.next_packet().unwrap_or_else(|e| panic!("{e}")) {
        a.feed(p.timestamp_ns, p.link_type, p.data);
    }
}

fn analyze(dir: &Path, everything: bool) -> Report {
    let mut a = Analyzer::new(Config::default());
    if everything {
        if let Ok(rc) = std::fs::read_to_string(dir.join("resolv.conf")) {
            a.set_resolv_conf(&rc);
        }
        for (role, name) in [(NetnsRole::Pod, "pod"), (NetnsRole::Node, "node")] {
            for (moment, when) in [(Moment::Before, "before"), (Moment::After, "after")] {
                let d = dir.join("counters").join(name).join(when);
                if d.is_dir() {
                    a.observe_counters(role, moment, &counters(&d));
                }
            }
        }
    }
    feed(&mut a, &dir.join("pod.pcap"));
    if everything && dir.join("node.pcap").is_file() {
        feed(&mut a, &dir.join("node.pcap"));
    }
    a.finish()
}

fn kinds(r: &Report) -> Vec<&'static str> {
    r.kinds().into_iter().map(Kind::as_str).collect()
}

#[test]
fn every_recording_yields_its_expected_kinds_and_no_forbidden_one() {
    let mut failures = Vec::new();
    let scenarios = manifest();
    for s in &scenarios {
        let dir = netdiag_tests::testdata_dir().join(&s.name);
        let full = analyze(&dir, true);
        let pod_only = analyze(&dir, false);
        for k in &s.expect {
            assert!(
                Kind::from_str_opt(k).is_some(),
                "{}: unknown kind {k} in manifest",
                s.name
            );
            if !kinds(&full).contains(&k.as_str()) {
                failures.push(format!("{}: expected {k}, got {:?}", s.name, kinds(&full)));
            }
        }
        for (what, r) in [("all inputs", &full), ("pod.pcap only", &pod_only)] {
            for k in &s.forbid {
                if kinds(r).contains(&k.as_str()) {
                    let f = r.findings.iter().find(|f| f.kind.as_str() == k);
                    failures.push(format!(
                        "{} ({what}): forbidden {k}: {:?}",
                        s.name,
                        f.map(|f| &f.summary)
                    ));
                }
            }
        }
        if s.expect.is_empty() {
            assert!(
                full.findings.is_empty(),
                "{}: healthy baseline has findings {:?}",
                s.name,
                kinds(&full)
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The manifest covers all five diagnoses and at least one healthy baseline.
    for k in Kind::ALL {
        // Recorded by tests/tests/lab_resolver_udp_mtu.rs, outside the manifest; their
        // expectations live in tests/tests/analyze_resolver_udp_mtu.rs.
        if matches!(k, Kind::UdpReceiveBufferOverflow | Kind::PathMtuBlackhole) {
            continue;
        }
        assert!(
            scenarios
                .iter()
                .any(|s| s.expect.iter().any(|e| e == k.as_str())),
            "no recording expects {k}"
        );
    }
    assert!(scenarios.iter().any(|s| s.expect.is_empty()));
}

#[test]
fn counters_raise_confidence_to_confirmed_where_the_lab_recorded_them() {
    // With the lab's own counter snapshots, each kernel-provable diagnosis is confirmed.
    for (scenario, kind) in [
        ("accept_overflow_syn", Kind::AcceptQueueOverflow),
        ("accept_overflow_ack", Kind::AcceptQueueOverflow),
        ("snat_exhaustion", Kind::SnatPortExhaustion),
        ("conntrack_invalid", Kind::ConntrackInvalid),
        ("conntrack_table_full", Kind::ConntrackTableFull),
        ("ephemeral_port_exhaustion", Kind::EphemeralPortExhaustion),
        ("connection_refused", Kind::ConnectionRefused),
        ("connection_refused_going_away", Kind::ConnectionRefused),
        ("syn_queue_overflow", Kind::AcceptQueueOverflow),
        ("nat_idle_timeout", Kind::NatIdleTimeout),
    ] {
        let r = analyze(&netdiag_tests::testdata_dir().join(scenario), true);
        let f = r
            .findings
            .iter()
            .find(|f| f.kind == kind)
            .unwrap_or_else(|| panic!("{scenario}: no {kind}"));
        assert_eq!(
            f.confidence,
            netdiag::analyze::Confidence::Confirmed,
            "{scenario}: {}",
            f.summary
        );
        assert!(
            !f.evidence.counters.is_empty(),
            "{scenario}: no counter evidence"
        );
    }
}

/// Every recording replayed through `watch`'s engine (`analyze::watch::Watch`) as a live
/// watch would see it — packets of every capture point in time order, the counters before
/// at the start and after at the end, a poll every 2 s of capture time — hands out an
/// episode of each kind the whole recording's analysis expects, and never a forbidden one.
#[test]
fn watch_replay_hands_out_the_expected_kinds_and_no_forbidden_one() {
    use netdiag::analyze::watch::{Watch, WatchConfig};
    let mut failures = Vec::new();
    for s in &manifest() {
        let dir = netdiag_tests::testdata_dir().join(&s.name);
        let mut w = Watch::new(WatchConfig::default());
        if let Ok(rc) = std::fs::read_to_string(dir.join("resolv.conf")) {
            w.set_resolv_conf(&rc);
        }
        let mut packets = Vec::new();
        for file in ["pod.pcap", "node.pcap"] {
            let path = dir.join(file);
            if !path.is_file() {
                continue;
            }
            let source = w.add_source(file);
            let mut r = netdiag::pcapio::Reader::open(&path).unwrap_or_else(|e| panic!("{e}"));
            while let Some(p) = r.next_packet().unwrap_or_else(|e| panic!("{e}")) {
                packets.push((
                    p.timestamp_ns,
                    source,
                    p.link_type,
                    p.original_len,
                    p.data.to_vec(),
                ));
            }
        }
        packets.sort_by_key(|p| p.0);
        let (Some(first), Some(last)) = (packets.first().map(|p| p.0), packets.last().map(|p| p.0))
        else {
            continue;
        };
        let snapshot = |role: &str, when: &str| {
            let d = dir.join("counters").join(role).join(when);
            d.is_dir().then(|| counters(&d))
        };
        for (role, name) in [(NetnsRole::Pod, "pod"), (NetnsRole::Node, "node")] {
            if let Some(c) = snapshot(name, "before") {
                w.observe_counters(role, first, c);
            }
        }
        let mut kinds: Vec<&'static str> = Vec::new();
        let mut next = first + 2_000_000_000;
        for (ts, source, link, orig, data) in &packets {
            if *ts >= next {
                kinds.extend(w.poll(*ts).episodes.iter().map(|e| e.finding.kind.as_str()));
                next = ts + 2_000_000_000;
            }
            w.record(*source, *ts, *link, *orig, data);
        }
        for (role, name) in [(NetnsRole::Pod, "pod"), (NetnsRole::Node, "node")] {
            if let Some(c) = snapshot(name, "after") {
                w.observe_counters(role, last, c);
            }
        }
        kinds.extend(
            w.finish(last + 1)
                .episodes
                .iter()
                .map(|e| e.finding.kind.as_str()),
        );
        for k in &s.expect {
            if !kinds.contains(&k.as_str()) {
                failures.push(format!("{}: expected {k}, watch gave {kinds:?}", s.name));
            }
        }
        for k in &s.forbid {
            if kinds.contains(&k.as_str()) {
                failures.push(format!("{}: forbidden {k}, watch gave {kinds:?}", s.name));
            }
        }
        if s.expect.is_empty() && !kinds.is_empty() {
            failures.push(format!("{}: healthy, watch gave {kinds:?}", s.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
