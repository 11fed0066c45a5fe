//! Issue 14 in the lab, on the real kernel (root): the resolver the pod runs (musl built
//! at test time next to glibc's getent), a UDP DNS server whose socket buffer overflows,
//! and a path-MTU black hole — each diagnosed from the pod's capture, with its healthy
//! twin yielding nothing. Not root: skipped with a message, or a failure under `CI=true`.
//!
//! `NETDIAG_RECORD_TESTDATA=1` writes the recordings into `testdata/<name>/` (provenance
//! in testdata/README.md) instead of a temporary directory.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag::analyze::{
    Analyzer, Confidence, Config, Finding, Kind, Moment, NetnsRole, Report, Resolver,
    ResolverLibrary, ResolverSource, UdpSocketQueue,
};
use netdiag::netns::{Libc, resolver_identity};
use netdiag_tests::lab::resolver_udp_mtu as r;
use netdiag_tests::lab::{self, Lab, Role};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a recording goes: testdata (when asked) or a directory removed on drop.
struct Out {
    dir: PathBuf,
    temp: bool,
}

impl Drop for Out {
    fn drop(&mut self) {
        if self.temp {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn out(name: &str) -> Out {
    // glibc's twins are recorded by `cargo xtask lab record dns_ndots dns_lost_reply`.
    if std::env::var_os("NETDIAG_RECORD_TESTDATA").is_some() && !name.starts_with("glibc_") {
        Out {
            dir: netdiag_tests::testdata_dir().join(name),
            temp: false,
        }
    } else {
        Out {
            dir: std::env::temp_dir().join(format!(
                "{}dns3-{name}-{}",
                lab::PREFIX,
                std::process::id()
            )),
            temp: true,
        }
    }
}

fn counters(dir: &Path) -> netdiag::analyze::Counters {
    let snap = netdiag::kernel::Snapshot::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    netdiag::counters(&snap)
}

/// Analyzes a recording: pod.pcap, resolv.conf, and (with `with_counters`) the snapshots.
fn analyze(dir: &Path, with_counters: bool, setup: impl FnOnce(&mut Analyzer)) -> Report {
    let mut a = Analyzer::new(Config::default());
    if let Ok(rc) = std::fs::read_to_string(dir.join("resolv.conf")) {
        a.set_resolv_conf(&rc);
    }
    if with_counters {
        for (role, name) in [(NetnsRole::Pod, "pod"), (NetnsRole::Node, "node")] {
            for (moment, when) in [(Moment::Before, "before"), (Moment::After, "after")] {
                a.observe_counters(
                    role,
                    moment,
                    &counters(&dir.join("counters").join(name).join(when)),
                );
            }
        }
    }
    setup(&mut a);
    let mut rd = netdiag::pcapio::Reader::open(dir.join("pod.pcap")).expect("pod.pcap");
    a.begin_source("pod.pcap");
    while let Some(p) = rd.next_packet().expect("packet") {
        a.feed(p.timestamp_ns, p.link_type, p.data);
    }
    a.finish()
}

fn finding(r: &Report, k: Kind) -> Option<&Finding> {
    r.findings.iter().find(|f| f.kind == k)
}

fn up(tag: &str, test: &str) -> Option<Lab> {
    if !netdiag_tests::require_root(test).expect("root check") {
        return None;
    }
    Some(Lab::up(tag).unwrap_or_else(|e| panic!("{test}: {e:#}")))
}

fn resolver_of(pid: u32) -> Resolver {
    let id = resolver_identity(i32::try_from(pid).expect("pid")).expect("resolver identity");
    let lib = match id.libc {
        Libc::Musl => ResolverLibrary::Musl,
        Libc::Glibc => ResolverLibrary::Glibc,
        _ => ResolverLibrary::Unknown,
    };
    let mut res = Resolver::new(lib, ResolverSource::Elf, id.describe());
    if let Some(n) = id.nsswitch_conf {
        res = res.with_nsswitch_conf(n);
    }
    res
}

#[test]
fn lab_resolver_identity_reads_the_elf_interpreter_live() {
    let Some(lab) = up("dns3-id", "lab_resolver_identity") else {
        return;
    };
    let probe = r::build_probe(&lab.scratch().join("probe")).expect("build probe");
    let dynamic = r::spawn_probe_held(&lab, &probe.dynamic_bin, "api.example.test.", 5)
        .expect("dynamic probe");
    let id = resolver_identity(i32::try_from(dynamic).expect("pid")).expect("identity");
    assert_eq!(id.libc, Libc::Musl, "{id:?}");
    assert_eq!(
        id.interpreter.as_deref(),
        Some("/lib/ld-musl-x86_64.so.1"),
        "{id:?}"
    );
    let stat =
        r::spawn_probe_held(&lab, &probe.static_bin, "api.example.test.", 5).expect("static probe");
    let id = resolver_identity(i32::try_from(stat).expect("pid")).expect("identity");
    assert_eq!(id.libc, Libc::Static, "{id:?}");
    assert!(id.interpreter.is_none());
    // The pod process is coreutils' sleep: glibc.
    let id = resolver_identity(i32::try_from(lab.pod_pid()).expect("pid")).expect("identity");
    assert_eq!(id.libc, Libc::Glibc, "{id:?}");
    assert_eq!(
        id.nsswitch_conf,
        Some(Path::new("/etc/nsswitch.conf").exists())
    );
}

#[test]
fn lab_musl_ndots_and_lost_reply_have_musl_patterns_and_remedies() {
    let Some(lab) = up("dns3-musl", "lab_musl_dns") else {
        return;
    };
    let probe = r::build_probe(&lab.scratch().join("probe")).expect("build probe");
    let bin = probe.static_bin.to_string_lossy().into_owned();
    let held = r::spawn_probe_held(&lab, &probe.dynamic_bin, "api.example.test.", 20)
        .expect("dynamic probe");
    let musl = resolver_of(held);
    assert_eq!(musl.library, ResolverLibrary::Musl);

    // ndots: kubelet's resolv.conf, a two-dot name: musl walks the search list.
    let o = out("musl_dns_ndots");
    let rec = r::Recording::start(&lab, &o.dir).expect("record");
    let (answer, _) = r::resolve_in_pod(&lab, &[&bin], "api.example.test").expect("resolve");
    assert!(answer.contains("203.0.113.7"), "{answer}");
    let dir = rec.finish().expect("finish");
    let rep = analyze(&dir, true, |a| a.set_resolver(musl.clone()));
    let f = finding(&rep, Kind::DnsNdotsAmplification).expect("ndots finding");
    assert_eq!(f.confidence, Confidence::Confirmed, "{f:#?}");
    assert!(f.remedy.contains("musl"), "{}", f.remedy);
    assert!(!f.remedy.contains("single-request"), "{}", f.remedy);
    assert!(
        f.evidence.notes.iter().any(|n| n.contains("musl's rule")),
        "{:?}",
        f.evidence.notes
    );
    assert_eq!(
        rep.resolver.as_ref().map(|x| x.library),
        Some(ResolverLibrary::Musl)
    );
    assert_eq!(rep.dns.queries_sent, 8, "{:?}", rep.dns);

    // A lost AAAA reply: musl re-sends only it, after timeout/attempts = 2.5 s; the
    // resolver is inferred from the packets alone.
    r::drop_first_aaaa_reply(&lab).expect("drop rule");
    let o = out("musl_dns_lost_reply");
    let rec = r::Recording::start(&lab, &o.dir).expect("record");
    let (answer, took) = r::resolve_in_pod(&lab, &[&bin], "api.example.test.").expect("resolve");
    assert!(answer.contains("203.0.113.7"), "{answer}");
    assert!(
        (Duration::from_millis(2300)..Duration::from_millis(4000)).contains(&took),
        "{took:?}"
    );
    let dir = rec.finish().expect("finish");
    let rep = analyze(&dir, true, |_| {});
    assert_eq!(
        rep.resolver.as_ref().map(|x| (x.library, x.source)),
        Some((ResolverLibrary::Musl, ResolverSource::Packets)),
        "{:?}",
        rep.resolver
    );
    let f = finding(&rep, Kind::DnsLostReplyTimeout).expect("lost reply finding");
    let gap = f.evidence.timings[0].millis[0];
    assert!((2300.0..2800.0).contains(&gap), "{gap}");
    assert!(
        !f.remedy.contains("{name: single-request-reopen}"),
        "{}",
        f.remedy
    );
    assert!(f.remedy.contains("NodeLocal DNSCache"), "{}", f.remedy);
    assert!(finding(&rep, Kind::UdpReceiveBufferOverflow).is_none());
}

#[test]
fn lab_glibc_ndots_and_lost_reply_have_glibc_patterns_and_remedies() {
    let Some(lab) = up("dns3-glibc", "lab_glibc_dns") else {
        return;
    };
    let glibc = resolver_of(lab.pod_pid());
    assert_eq!(glibc.library, ResolverLibrary::Glibc);
    let o = out("glibc_dns_ndots");
    let rec = r::Recording::start(&lab, &o.dir).expect("record");
    let (answer, _) =
        r::resolve_in_pod(&lab, &["getent", "ahosts"], "api.example.test").expect("getent");
    assert!(answer.contains("203.0.113.7"), "{answer}");
    let dir = rec.finish().expect("finish");
    let rep = analyze(&dir, true, |a| a.set_resolver(glibc.clone()));
    let f = finding(&rep, Kind::DnsNdotsAmplification).expect("ndots finding");
    assert!(f.remedy.contains("ndots"), "{}", f.remedy);
    assert!(!f.remedy.contains("musl"), "{}", f.remedy);
    assert!(
        f.evidence.notes.iter().any(|n| n.contains("glibc's rule")),
        "{:?}",
        f.evidence.notes
    );

    r::drop_first_aaaa_reply(&lab).expect("drop rule");
    let o2 = out("glibc_dns_lost_reply");
    let rec = r::Recording::start(&lab, &o2.dir).expect("record");
    let (answer, took) = r::resolve_in_pod(
        &lab,
        &[
            "env",
            "RES_OPTIONS=ndots:1 timeout:5 attempts:2",
            "getent",
            "ahosts",
        ],
        "api.example.test",
    )
    .expect("getent");
    assert!(answer.contains("203.0.113.7"), "{answer}");
    assert!(took >= Duration::from_millis(4800), "{took:?}");
    let dir = rec.finish().expect("finish");
    let rep = analyze(&dir, true, |_| {});
    assert_eq!(
        rep.resolver.as_ref().map(|x| x.library),
        Some(ResolverLibrary::Glibc),
        "{:?}",
        rep.resolver
    );
    let f = finding(&rep, Kind::DnsLostReplyTimeout).expect("lost reply finding");
    let gap = f.evidence.timings[0].millis[0];
    assert!((4800.0..5300.0).contains(&gap), "{gap}");
    assert!(f.remedy.contains("single-request-reopen"), "{}", f.remedy);
    // The lost reply is not a receive-buffer overflow: with counters, nor without.
    assert!(finding(&rep, Kind::UdpReceiveBufferOverflow).is_none());
    let rep = analyze(&dir, false, |_| {});
    assert!(finding(&rep, Kind::UdpReceiveBufferOverflow).is_none());
}

#[test]
fn lab_flooded_dns_server_overflows_its_receive_buffer() {
    let Some(lab) = up("dns3-udp", "lab_udp_rcvbuf") else {
        return;
    };
    r::start_pod_dns_server(&lab, 2048, Duration::from_millis(1)).expect("server");
    let o = out("udp_rcvbuf_overflow");
    let rec = r::Recording::start(&lab, &o.dir).expect("record");
    let (sent, answered) = r::query_pod_dns(&lab, 1500, Duration::ZERO).expect("flood");
    let sockets = lab
        .in_ns(Role::Pod, || Ok(netdiag::kernel::udp_sockets()?))
        .expect("udp sockets");
    let dir = rec.finish().expect("finish");
    assert!(
        answered < sent,
        "{answered} of {sent} answered: no overflow"
    );
    let sock = sockets
        .iter()
        .find(|s| s.port == r::POD_DNS_PORT)
        .expect("the server socket");
    assert!(sock.drops.unwrap_or(0) > 0, "{sock:?}");
    let rep = analyze(&dir, true, |a| {
        let q: Vec<UdpSocketQueue> = sockets
            .iter()
            .map(|s| {
                UdpSocketQueue::new(s.addr, s.port, s.queued_bytes)
                    .with_memory(s.rcvbuf.unwrap_or(0), s.drops.unwrap_or(0))
            })
            .collect();
        a.observe_udp_sockets(NetnsRole::Pod, &q);
    });
    let f = finding(&rep, Kind::UdpReceiveBufferOverflow).unwrap_or_else(|| {
        panic!(
            "no finding: {answered} of {sent} answered, capture {:?}, dns {:?}",
            rep.capture, rep.dns
        )
    });
    assert_eq!(f.confidence, Confidence::Confirmed, "{f:#?}");
    assert_eq!(f.listeners[0].port, 53);
    assert!(
        f.evidence
            .counters
            .iter()
            .any(|c| c.key == "Udp.RcvbufErrors"),
        "{:?}",
        f.evidence.counters
    );
    assert!(
        f.evidence.notes.iter().any(|n| n.contains("SO_RCVBUF")),
        "{:?}",
        f.evidence.notes
    );
    assert!(f.remedy.contains("rmem_max") && f.remedy.contains("NodeLocal DNSCache"));
    assert!(finding(&rep, Kind::DnsLostReplyTimeout).is_none());
    // Without counters: possible, naming the alternative.
    let rep = analyze(&dir, false, |_| {});
    let f = finding(&rep, Kind::UdpReceiveBufferOverflow).expect("finding");
    assert_eq!(f.confidence, Confidence::Possible);
    assert!(
        f.alternative
            .as_deref()
            .unwrap_or("")
            .contains("conntrack race")
    );
}

#[test]
fn lab_dns_server_that_keeps_up_is_healthy() {
    let Some(lab) = up("dns3-udp-ok", "lab_udp_healthy") else {
        return;
    };
    r::start_pod_dns_server(&lab, 1 << 18, Duration::ZERO).expect("server");
    let o = out("healthy_udp_dns");
    let rec = r::Recording::start(&lab, &o.dir).expect("record");
    let (sent, answered) = r::query_pod_dns(&lab, 300, Duration::from_millis(2)).expect("queries");
    let dir = rec.finish().expect("finish");
    assert_eq!(sent, answered);
    for with in [true, false] {
        let rep = analyze(&dir, with, |_| {});
        assert!(rep.findings.is_empty(), "{:#?}", rep.findings);
    }
}

fn pod_mtu(lab: &Lab) -> u32 {
    lab.in_ns(Role::Pod, || {
        Ok(netdiag::kernel::links()?
            .into_iter()
            .find(|l| l.name == lab::POD_IF)
            .and_then(|l| l.mtu))
    })
    .expect("links")
    .expect("eth0 mtu")
}

#[test]
fn lab_path_mtu_blackhole_with_icmp_dropped() {
    let Some(lab) = up("dns3-pmtu-bh", "lab_pmtu_blackhole") else {
        return;
    };
    r::narrow_path(&lab, true).expect("narrow path");
    let mtu = pod_mtu(&lab);
    let o = out("pmtu_blackhole");
    let rec = r::Recording::start(&lab, &o.dir).expect("record");
    let ok = r::upload_from_pod(&lab, 16 * 1024, Duration::from_secs(5)).expect("upload");
    let dir = rec.finish().expect("finish");
    assert!(!ok, "the upload got through a black hole");
    let rep = analyze(&dir, true, |a| a.set_interface_mtu(lab::POD_IF, mtu));
    let f = finding(&rep, Kind::PathMtuBlackhole).expect("finding");
    assert_eq!(f.confidence, Confidence::Likely);
    let notes = f.evidence.notes.join("\n");
    assert!(
        notes.contains("largest acknowledged segment 100 bytes"),
        "{notes}"
    );
    assert!(notes.contains("MTU 1500"), "{notes}");
    assert!(notes.contains("no ICMP"), "{notes}");
    assert!(f.remedy.contains("--clamp-mss-to-pmtu"));
    assert_eq!(rep.kinds(), [Kind::PathMtuBlackhole]);
}

#[test]
fn lab_path_mtu_discovery_working_is_healthy() {
    let Some(lab) = up("dns3-pmtu-ok", "lab_pmtu_healthy") else {
        return;
    };
    r::narrow_path(&lab, false).expect("narrow path");
    let o = out("healthy_pmtu");
    let rec = r::Recording::start(&lab, &o.dir).expect("record");
    let ok = r::upload_from_pod(&lab, 16 * 1024, Duration::from_secs(5)).expect("upload");
    let dir = rec.finish().expect("finish");
    assert!(ok, "path-MTU discovery should have repaired the path");
    let rep = analyze(&dir, true, |_| {});
    assert!(rep.findings.is_empty(), "{:#?}", rep.findings);
    assert!(rep.capture.packets > 10);
}

/// The library's live diagnosis of a musl process names the resolver from its ELF
/// interpreter and gives the musl remedy for the lost reply it captures.
#[test]
fn lab_live_diagnosis_of_a_musl_pod_names_the_resolver() {
    let Some(lab) = up("dns3-live", "lab_live_musl") else {
        return;
    };
    let probe = r::build_probe(&lab.scratch().join("probe")).expect("build probe");
    // `localhost` comes from /etc/hosts: the held process sends no query of its own.
    let held =
        r::spawn_probe_held(&lab, &probe.dynamic_bin, "localhost", 20).expect("dynamic probe");
    r::drop_first_aaaa_reply(&lab).expect("drop rule");
    let bin = probe.static_bin.to_string_lossy().into_owned();
    let lab_ref = &lab;
    let (diag, lookup) = std::thread::scope(|s| {
        let d = s.spawn(move || {
            netdiag::Diagnosis::pid(held)
                .node_netns(lab_ref.netns_path(Role::Node))
                .duration(Duration::from_secs(5))
                .run()
        });
        // Let the capture open first.
        std::thread::sleep(Duration::from_millis(1200));
        let l = r::resolve_in_pod(lab_ref, &[&bin], "api.example.test.");
        (d.join().expect("diagnosis thread"), l)
    });
    let (answer, _) = lookup.expect("lookup");
    assert!(answer.contains("203.0.113.7"), "{answer}");
    let diag = diag.expect("diagnosis");
    let rep = &diag.report;
    let res = rep.resolver.as_ref().expect("resolver");
    assert_eq!(
        (res.library, res.source),
        (ResolverLibrary::Musl, ResolverSource::Elf),
        "{res:?}"
    );
    assert!(res.detail.contains("ld-musl"), "{}", res.detail);
    let f = finding(rep, Kind::DnsLostReplyTimeout).expect("lost reply finding");
    assert!(
        f.remedy.starts_with("The pod resolves with musl"),
        "{}",
        f.remedy
    );
    assert!(finding(rep, Kind::UdpReceiveBufferOverflow).is_none());
    assert!(diag.warnings.is_empty(), "{:?}", diag.warnings);
}
