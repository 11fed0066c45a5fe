//! The flow table never exceeds its cap, and the analyzer's memory stops growing with the
//! input: a generated capture of 1M distinct TCP flows (plus DNS queries from many
//! clients) through an analyzer capped at 10 000 flows, with every allocation counted.

#![allow(unsafe_code)]

use netdiag::analyze::{Analyzer, Config};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live and peak heap bytes of the whole test process.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged; the counters are plain atomics and do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const LINKTYPE_RAW: u32 = 101;

/// A raw IPv4 packet: 20-byte header (no options) + `l4`.
fn ipv4(buf: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) {
    buf.clear();
    let total = (20 + l4.len()) as u16;
    buf.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ]);
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&dst);
    buf.extend_from_slice(l4);
}

fn tcp_syn(sport: u16, dport: u16, seq: u32, flags: u8) -> [u8; 20] {
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t
}

fn dns_query(sport: u16, id: u16, label: u32) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    let name = format!("h{label}");
    q.push(name.len() as u8);
    q.extend_from_slice(name.as_bytes());
    q.extend_from_slice(&[7]);
    q.extend_from_slice(b"example");
    q.extend_from_slice(&[4]);
    q.extend_from_slice(b"test");
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&53u16.to_be_bytes());
    u.extend_from_slice(&((8 + q.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(&q);
    u
}

#[test]
fn one_million_flows_stay_under_the_cap_and_memory_stops_growing() {
    const FLOWS: u32 = 1_000_000;
    const CAP: usize = 10_000;
    // Small DNS caps too, so every table reaches its cap in the first half of the input.
    let mut config = Config::default().with_max_flows(CAP);
    config.max_dns_transactions = 4096;
    config.max_dns_clients = 1024;
    let mut a = Analyzer::new(config);
    let mut buf = Vec::with_capacity(128);
    let server = [192, 0, 2, 1];
    let mut ts = 1_700_000_000_000_000_000u64;
    let mut live_at_half = 0usize;
    let mut max_flows_seen = 0usize;
    for i in 0..FLOWS {
        let client = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let sport = 1024 + (i % 60_000) as u16;
        ipv4(&mut buf, client, server, 6, &tcp_syn(sport, 80, i, 0x02));
        a.feed(ts, LINKTYPE_RAW, &buf);
        ts += 1_000;
        if i % 10 == 0 {
            // every tenth attempt is answered, so destinations get statistics
            ipv4(&mut buf, server, client, 6, &tcp_syn(80, sport, !i, 0x12));
            a.feed(ts, LINKTYPE_RAW, &buf);
            ts += 1_000;
        }
        if i % 50 == 0 {
            ipv4(
                &mut buf,
                client,
                [192, 0, 2, 53],
                17,
                &dns_query(sport, i as u16, i),
            );
            a.feed(ts, LINKTYPE_RAW, &buf);
        }
        max_flows_seen = max_flows_seen.max(a.flow_count());
        if i == FLOWS / 2 {
            live_at_half = LIVE.load(Ordering::Relaxed);
        }
    }
    let live_at_end = LIVE.load(Ordering::Relaxed);
    assert!(
        max_flows_seen <= CAP,
        "flow table held {max_flows_seen} > cap {CAP}"
    );
    assert_eq!(
        max_flows_seen, CAP,
        "the generated input should fill the table"
    );
    let table = a.flow_table_bytes();
    assert!(
        table <= 2 * CAP * Config::bytes_per_flow(),
        "flow table allocates {table} bytes for {CAP} flows of ~{} bytes",
        Config::bytes_per_flow()
    );
    // Steady state: the second half of the input (500 000 more flows) adds < 1 MiB.
    assert!(
        live_at_end < live_at_half + (1 << 20),
        "memory grew from {live_at_half} to {live_at_end} bytes over the second half"
    );
    let peak = PEAK.load(Ordering::Relaxed);
    assert!(peak < 256 << 20, "peak heap {peak} bytes");
    let r = a.finish();
    assert_eq!(r.capture.flows_peak, CAP as u64);
    assert!(r.capture.flows_evicted_full >= u64::from(FLOWS) - CAP as u64);
    assert!(r.capture.flows >= u64::from(FLOWS));
    eprintln!(
        "1M flows: {} packets, flow table {} KiB, live heap {} KiB at half, {} KiB at end, peak {} KiB, ~{} bytes/flow",
        r.capture.packets,
        table / 1024,
        live_at_half / 1024,
        live_at_end / 1024,
        peak / 1024,
        Config::bytes_per_flow()
    );
}
