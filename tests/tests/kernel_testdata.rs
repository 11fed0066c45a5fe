//! Every counter snapshot the lab recorded in `testdata/` parses with `netdiag-kernel`
//! into the flat keys of the contract (`testdata/README.md`), and the deltas show what
//! the recipes in `testdata/manifest.toml` say they provoke.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::path::PathBuf;

use netdiag::kernel::Snapshot;

fn snapshot_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for scenario in std::fs::read_dir(netdiag_tests::testdata_dir()).unwrap() {
        let counters = scenario.unwrap().path().join("counters");
        for role in ["pod", "node"] {
            for moment in ["before", "after"] {
                let d = counters.join(role).join(moment);
                if d.is_dir() {
                    dirs.push(d);
                }
            }
        }
    }
    dirs.sort();
    dirs
}

fn snap(scenario: &str, role: &str, moment: &str) -> Snapshot {
    let d = netdiag_tests::testdata_dir()
        .join(scenario)
        .join("counters")
        .join(role)
        .join(moment);
    Snapshot::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()))
}

#[test]
fn every_recorded_snapshot_parses_with_the_contract_keys() {
    let dirs = snapshot_dirs();
    assert!(!dirs.is_empty(), "no counter snapshots under testdata/");
    for d in dirs {
        let s = Snapshot::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        let f = s.flat();
        for key in [
            "TcpExt.ListenOverflows",
            "TcpExt.ListenDrops",
            "TcpExt.TCPSynRetrans",
            "Tcp.RetransSegs",
            "Tcp.OutRsts",
            "Udp.RcvbufErrors",
            "sysctl.net.core.somaxconn",
            "sysctl.net.ipv4.ip_local_port_range.min",
            "sysctl.net.ipv4.ip_local_port_range.max",
        ] {
            assert!(f.contains_key(key), "{}: no {key}", d.display());
        }
        if s.raw("net/stat/nf_conntrack").is_some() {
            for key in [
                "conntrack.invalid",
                "conntrack.insert_failed",
                "conntrack.drop",
                "conntrack.early_drop",
                "conntrack.clash_resolve",
                "conntrack.entries",
            ] {
                assert!(f.contains_key(key), "{}: no {key}", d.display());
            }
        }
    }
}

#[test]
fn recorded_deltas_show_what_the_recipes_provoke() {
    let rise = |scenario: &str, role: &str, key: &str| {
        snap(scenario, role, "after")
            .delta(&snap(scenario, role, "before"))
            .get(key)
            .unwrap_or_else(|| panic!("{scenario}/{role}: no {key}"))
    };
    // listen(backlog=1), never accepted, more connects than fit
    assert!(rise("accept_overflow_syn", "pod", "TcpExt.ListenOverflows") >= 1);
    // the forged out-of-window segment is INVALID in the node's conntrack
    assert!(rise("conntrack_invalid", "node", "conntrack.invalid") >= 1);
    // healthy listener: nothing overflowed
    assert_eq!(rise("healthy_listener", "pod", "TcpExt.ListenOverflows"), 0);
}
