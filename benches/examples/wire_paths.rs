//! Which packets of a corpus take `Frame::parse`'s Ethernet fast path, and why the
//! others do not (by what the general parser found), for the corpora of the
//! `wire-contiguous` bench:
//!
//! `cargo run --release -p netdiag-benches --example wire_paths [testdata|corpus|flows packets seed]`

use std::collections::BTreeMap;

use netdiag_benches::{generate_mix, load_corpus_sample, load_testdata};
use netdiag_wire::{Frame, LinkType, Net, Transport};

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let packets = match raw.first().map(String::as_str) {
        Some("testdata") => load_testdata(),
        Some("corpus") => load_corpus_sample(usize::MAX),
        _ => {
            let n: Vec<usize> = raw.iter().filter_map(|a| a.parse().ok()).collect();
            generate_mix(
                n.first().copied().unwrap_or(100_000),
                n.get(1).copied().unwrap_or(300_000),
                n.get(2).copied().unwrap_or(2) as u64,
            )
        }
    };
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for p in &packets {
        let f = Frame::parse(LinkType::Ethernet, &p.data);
        let net = match &f.net {
            Some(Net::Ipv4(i)) if i.header_len > 20 => "ipv4+options",
            Some(Net::Ipv4(i)) if i.fragment.is_some() => "ipv4 fragment",
            Some(Net::Ipv4(_)) => "ipv4",
            Some(Net::Ipv6(i)) if i.ext_len > 0 => "ipv6+ext",
            Some(Net::Ipv6(_)) => "ipv6",
            Some(Net::Arp) => "arp",
            Some(Net::Other { .. }) => "other ethertype",
            None => "no net",
        };
        let transport = match &f.transport {
            Some(Transport::Tcp(_)) => "tcp",
            Some(Transport::Udp(_)) => "udp",
            Some(Transport::Icmp(_)) => "icmp",
            None => "-",
        };
        let stop = f.stop.map_or(String::new(), |s| {
            format!(" stop {:?}/{:?}", s.layer, s.reason)
        });
        let stop = stop.split('{').next().unwrap_or("").to_string();
        let tunnel = if f.tunnel.is_some() { " tunnel" } else { "" };
        let vlan = if f.vlan.is_some() { " vlan" } else { "" };
        *kinds
            .entry(format!("{net} {transport}{vlan}{tunnel}{stop}"))
            .or_default() += 1;
    }
    let mut v: Vec<_> = kinds.into_iter().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    println!("{} packets", packets.len());
    for (k, n) in v {
        println!(
            "{n:8} {:5.1}%  {k}",
            100.0 * n as f64 / packets.len() as f64
        );
    }
}
