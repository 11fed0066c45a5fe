//! resolv.conf text (a container's file: anything at all) through `ResolvConf::parse`, then
//! into the analyzer, whose DNS tracker expands names against the search list.
//!
//! Seeds: every `resolv.conf` in testdata, and the host's `/etc/resolv.conf`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_analyze::{Analyzer, Config, ResolvConf};
use netdiag_fuzz::Seeds;

fn seeds(s: &mut Seeds) -> std::io::Result<()> {
    let mut files = s.files(|p| p.file_name().is_some_and(|n| n == "resolv.conf"));
    files.push("/etc/resolv.conf".into());
    for f in files {
        if let Ok(text) = std::fs::read(&f) {
            s.add(&text)?;
        }
    }
    Ok(())
}

/// A raw IPv4/UDP DNS query from 10.0.0.2:40000 to 10.96.0.10:53 for `name` (A).
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut dns = Vec::new();
    dns.extend_from_slice(&id.to_be_bytes());
    dns.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let l = &label.as_bytes()[..label.len().min(63)];
        dns.push(l.len() as u8);
        dns.extend_from_slice(l);
    }
    dns.extend_from_slice(&[0, 0, 1, 0, 1]);
    let udp_len = (8 + dns.len()).min(usize::from(u16::MAX)) as u16;
    let total = udp_len.saturating_add(20);
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&[10, 0, 0, 2, 10, 96, 0, 10]);
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&53u16.to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&dns);
    p
}

fuzz_target!(
    init: netdiag_fuzz::seed_mode("resolv_conf", seeds),
    |data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        let rc = ResolvConf::parse(&text);
        assert!(rc.ndots <= 15 && rc.timeout_s <= 30 && rc.attempts <= 5, "{rc:?}");
        assert!(rc.search.iter().all(|s| !s.is_empty() && !s.ends_with('.')), "{rc:?}");
        let mut a = Analyzer::new(Config::default().with_max_flows(16));
        a.set_resolv_conf(&text);
        // The application's name, then its first search-list expansions, as glibc sends them.
        let mut ts = 1_000_000_000u64;
        let mut id = 1u16;
        a.feed(ts, 101, &query(id, "web"));
        for s in rc.search.iter().take(4) {
            ts += 5_000_000_000;
            id += 1;
            a.feed(ts, 101, &query(id, &format!("web.{s}")));
        }
        let r = a.finish();
        assert_eq!(r.resolv_conf.as_ref(), Some(&rc));
    }
);
