//! The lab, live (root), for issue 13's reproductions: each scenario is recorded into a
//! temporary directory the way `cargo xtask lab record` does, its kernel evidence is
//! asserted, its capture has the structure of the committed recording, nothing is left
//! behind — and the table-full scenario puts the global `nf_conntrack_max` back, also when
//! it fails, and after a run that was killed (the marker file).
//!
//! Not root: skipped with a message, or a failure under `CI=true`.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag_tests::TempDir;
use netdiag_tests::lab::conntrack_max;
use netdiag_tests::lab::more_failures as mf;
use netdiag_tests::lab::pcap::{self, Structure};
use netdiag_tests::lab::scenario::{Evidence, Scenario};
use netdiag_tests::lab::{self, Lab, record};

fn leftovers(tag: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let prefix = format!("{}{tag}-", lab::PREFIX);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

fn reproduce(s: Scenario, short: &str) -> Option<(Evidence, Structure)> {
    let test = format!("lab_more_failures_{}", s.name());
    if !netdiag_tests::require_root(&test).expect("root check") {
        return None;
    }
    let tag = format!("detect5-{short}-{}", std::process::id());
    // Removed also when an assertion fails.
    let dir = TempDir::at(std::env::temp_dir().join(format!("{}{tag}-rec", lab::PREFIX)));
    let ev = record::record(s, &tag, dir.path()).unwrap_or_else(|e| panic!("{test}: {e:#}"));
    assert!(
        leftovers(&tag).is_empty(),
        "{test} left {:?}",
        leftovers(&tag)
    );
    let pod = pcap::structure_of(&dir.path().join("pod.pcap")).expect("pod.pcap");
    let want = pcap::structure_of(
        &netdiag_tests::testdata_dir()
            .join(s.name())
            .join("pod.pcap"),
    )
    .expect("committed pod.pcap");
    assert_eq!(
        pod,
        want,
        "{test}: pod.pcap structure differs from testdata/{} (re-record with `cargo xtask lab record {}` if intended)",
        s.name(),
        s.name()
    );
    eprintln!("{ev}");
    Some((ev, pod))
}

/// The global max as the labs leave it: read under the shared lab lock, so never in the
/// middle of another test's exclusive (lowering) lab.
fn conntrack_max_now() -> u64 {
    let _shared = conntrack_max::lock_labs(false).expect("shared lab lock");
    conntrack_max_unlocked()
}

fn marker_exists() -> bool {
    let _shared = conntrack_max::lock_labs(false).expect("shared lab lock");
    std::path::Path::new(conntrack_max::MARKER_PATH).exists()
}

fn conntrack_max_unlocked() -> u64 {
    std::fs::read_to_string(conntrack_max::SYSCTL_PATH)
        .expect("nf_conntrack_max")
        .trim()
        .parse()
        .expect("number")
}

#[test]
fn lab_conntrack_table_full_drops_new_flows_and_restores_the_max() {
    if !netdiag_tests::require_root("lab_conntrack_table_full").expect("root check") {
        return;
    }
    let before = conntrack_max_now();
    let Some((ev, pod)) = reproduce(Scenario::ConntrackTableFull, "ctfull") else {
        return;
    };
    assert_eq!(conntrack_max_now(), before, "nf_conntrack_max not restored");
    assert!(!marker_exists());
    let tried = mf::TABLE_FULL_PORTS.len() * mf::TABLE_FULL_ATTEMPTS;
    assert_eq!((ev.connected, ev.not_connected), (0, tried), "{ev}");
    assert!(ev.node_delta("conntrack.drop") >= tried as i64, "{ev}");
    assert_eq!(ev.node_delta("conntrack.insert_failed"), 0, "{ev}");
    assert_eq!(pod.tcp_syn_retransmitted, tried);
}

/// A failing test still gets the max back: the guard restores it when the lab (holding
/// it) is dropped during unwinding, and a marker left by a killed run is honoured.
#[test]
fn lab_conntrack_max_is_restored_on_panic_and_from_a_stale_marker() {
    if !netdiag_tests::require_root("lab_conntrack_max_restore").expect("root check") {
        return;
    }
    let before = conntrack_max_now();
    let tag = format!("detect5-ctpanic-{}", std::process::id());
    let t = tag.clone();
    let r = std::panic::catch_unwind(move || {
        let lab = Lab::up_exclusive(&t).expect("up");
        let guard = conntrack_max::lower(mf::TABLE_FULL_MAX).expect("lower");
        lab.stash("conntrack_max", guard);
        assert_eq!(conntrack_max_unlocked(), mf::TABLE_FULL_MAX);
        panic!("a test failing while the max is lowered");
    });
    assert!(r.is_err());
    assert_eq!(conntrack_max_now(), before, "not restored after a panic");
    assert!(leftovers(&tag).is_empty());
    // A killed run: the value lowered, the marker left behind, no guard to restore it.
    {
        let _lock = conntrack_max::lock_labs(true).expect("exclusive lock");
        let guard = conntrack_max::lower(mf::TABLE_FULL_MAX).expect("lower");
        std::mem::forget(guard);
        assert!(std::path::Path::new(conntrack_max::MARKER_PATH).exists());
        assert_eq!(
            conntrack_max::restore_stale().expect("restore"),
            Some(before)
        );
    }
    assert_eq!(conntrack_max_now(), before);
    assert!(!marker_exists());
}

#[test]
fn lab_ephemeral_ports_run_out_with_a_ten_port_range() {
    let Some((ev, pod)) = reproduce(Scenario::EphemeralPortExhaustion, "ephem") else {
        return;
    };
    let range = usize::from(mf::EPHEMERAL_RANGE.1 - mf::EPHEMERAL_RANGE.0 + 1);
    assert_eq!(ev.connected, range, "{ev}");
    assert_eq!(ev.not_connected, mf::SHORT_ATTEMPTS - range, "{ev}");
    // EADDRNOTAVAIL: no SYN for the attempts that found no port.
    assert_eq!(pod.tcp_connections, range);
    let tw = netdiag::kernel::Snapshot::from_files(ev.pod_after.files.clone())
        .expect("snapshot")
        .tcp_sockets()
        .into_iter()
        .filter(|s| s.state == netdiag::kernel::TcpState::TimeWait)
        .count();
    assert_eq!(tw, range, "TIME_WAIT sockets after");
}

#[test]
fn lab_healthy_short_connections_all_succeed() {
    let Some((ev, _)) = reproduce(Scenario::HealthyShortConnections, "short") else {
        return;
    };
    assert_eq!(ev.connected, mf::SHORT_ATTEMPTS, "{ev}");
}

#[test]
fn lab_connection_refused_through_a_service_vip() {
    let Some((ev, pod)) = reproduce(Scenario::ConnectionRefused, "refused") else {
        return;
    };
    assert_eq!(ev.not_connected, mf::REFUSED_ATTEMPTS, "{ev}");
    assert!(
        ev.pod_delta("Tcp.AttemptFails") >= mf::REFUSED_ATTEMPTS as i64,
        "{ev}"
    );
    assert_eq!(pod.tcp_reset, mf::REFUSED_ATTEMPTS);
}

#[test]
fn lab_connection_refused_after_the_backend_went_away() {
    let Some((ev, pod)) = reproduce(Scenario::ConnectionRefusedGoingAway, "goaway") else {
        return;
    };
    assert_eq!(ev.connected, mf::GOING_AWAY_ACCEPTED, "{ev}");
    assert_eq!(ev.not_connected, mf::REFUSED_ATTEMPTS, "{ev}");
    assert_eq!(pod.tcp_synacked, mf::GOING_AWAY_ACCEPTED);
}

#[test]
fn lab_healthy_refused_once() {
    let Some((ev, pod)) = reproduce(Scenario::HealthyRefusedOnce, "once") else {
        return;
    };
    assert_eq!(ev.not_connected, 1, "{ev}");
    assert_eq!(pod.tcp_reset, 1);
}

#[test]
fn lab_syn_queue_overflows_with_half_open_handshakes() {
    let Some((ev, pod)) = reproduce(Scenario::SynQueueOverflow, "synq") else {
        return;
    };
    assert!(ev.pod_delta("TcpExt.TCPReqQFullDrop") > 0, "{ev}");
    assert_eq!(ev.pod_delta("TcpExt.ListenOverflows"), 0, "{ev}");
    assert!(pod.tcp_synack_retransmitted > 0, "{pod:?}");
    assert!(pod.tcp_syn_retransmitted > 0, "{pod:?}");
    assert_eq!(ev.connected + ev.not_connected, mf::SYN_QUEUE_CLIENTS);
}

#[test]
fn lab_nat_idle_timeout_resets_the_resumed_connection() {
    let Some((ev, pod)) = reproduce(Scenario::NatIdleTimeout, "idle") else {
        return;
    };
    assert_eq!(ev.connection_died, Some(true), "{ev}");
    // The connection opened before the capture: no SYN in it.
    assert_eq!(pod.tcp_connections, 0, "{pod:?}");
}

#[test]
fn lab_healthy_idle_below_the_timeout_is_answered() {
    let Some((ev, _)) = reproduce(Scenario::HealthyIdle, "hidle") else {
        return;
    };
    assert_eq!(ev.connection_died, Some(false), "{ev}");
}
