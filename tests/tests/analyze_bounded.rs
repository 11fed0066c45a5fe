//! Bounded everything: a hostile mix generated here — 1M distinct flows to 1M distinct
//! destinations, 1M distinct DNS names from up to 16 384 clients that never get an answer, a
//! client re-sending one query forever, TCP streams (HTTP and DNS over TCP) that never
//! end, connections closed client-first or refused, 2 000 connections silent for 6 s then
//! resumed, 131 072 link-type values — fed to an analyzer with the default caps. Every table
//! reaches its cap and never passes it, and the heap never exceeds
//! `Config::memory_bound_bytes` (the bound the analyze crate documents), every allocation
//! of the process counted.
//!
//! Release-agnostic and unprivileged; about 40 s of CPU in a debug build (2.9M packets).
//! Not yet driven to their caps here: the tables main added after this test was written
//! (UDP services, path-MTU directions, resolver hints, overlay pairs); they are in the bound.

#![allow(unsafe_code)]

use netdiag::analyze::{Analyzer, Config, TableFill, Tables};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Live and peak heap bytes of this test process.
struct Counted;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: each method hands its arguments unchanged to the system allocator and only
// updates two atomics, which never allocate.
unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract, which we pass on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Count the new block before freeing the old: a moving realloc holds both.
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static HEAP: Counted = Counted;

const RAW: u32 = 101;

/// Builds raw IPv4 packets into one reused buffer.
struct Pkt(Vec<u8>);

impl Pkt {
    fn ipv4(&mut self, src: [u8; 4], dst: [u8; 4], proto: u8) {
        self.0.clear();
        self.0
            .extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0]);
        self.0.extend_from_slice(&src);
        self.0.extend_from_slice(&dst);
    }
    fn finish_ip(&mut self) -> &[u8] {
        let len = (self.0.len() as u16).to_be_bytes();
        self.0[2..4].copy_from_slice(&len);
        &self.0
    }
    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> &[u8] {
        self.ipv4(src, dst, 6);
        self.0.extend_from_slice(&sport.to_be_bytes());
        self.0.extend_from_slice(&dport.to_be_bytes());
        self.0.extend_from_slice(&seq.to_be_bytes());
        self.0.extend_from_slice(&ack.to_be_bytes());
        self.0
            .extend_from_slice(&[5 << 4, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
        self.0.extend_from_slice(payload);
        self.finish_ip()
    }
    /// A DNS query (A) for `<label>.<label2>.example.test`.
    fn dns_query(&mut self, src: [u8; 4], sport: u16, id: u16, label: u32, label2: u32) -> &[u8] {
        self.ipv4(src, [10, 96, 0, 10], 17);
        let udp_at = self.0.len();
        self.0.extend_from_slice(&sport.to_be_bytes());
        self.0.extend_from_slice(&53u16.to_be_bytes());
        self.0.extend_from_slice(&[0, 0, 0, 0]);
        self.0.extend_from_slice(&id.to_be_bytes());
        self.0.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in [label, label2] {
            let s = format!("n{l:x}");
            self.0.push(s.len() as u8);
            self.0.extend_from_slice(s.as_bytes());
        }
        self.0
            .extend_from_slice(b"\x07example\x04test\x00\x00\x01\x00\x01");
        let udp_len = ((self.0.len() - udp_at) as u16).to_be_bytes();
        self.0[udp_at + 4..udp_at + 6].copy_from_slice(&udp_len);
        self.finish_ip()
    }
}

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const FIN_ACK: u8 = 0x11;
const RST_ACK: u8 = 0x14;

/// The most each table held at any sample.
#[derive(Default)]
struct Peaks(Vec<(&'static str, usize, usize)>);

fn named(t: &Tables) -> [(&'static str, TableFill); 14] {
    [
        ("flows", t.flows),
        ("dns_transactions", t.dns_transactions),
        ("dns_sockets", t.dns_sockets),
        ("dns_clients", t.dns_clients),
        ("dns_lookups", t.dns_lookups),
        ("destinations", t.destinations),
        ("addresses", t.addresses),
        ("unanswered_syn_servers", t.unanswered_syn_servers),
        ("skip_kinds", t.skip_kinds),
        ("closing_destinations", t.closing_destinations),
        ("refused_destinations", t.refused_destinations),
        ("dormant_connections", t.dormant_connections),
        ("resumed_connections", t.resumed_connections),
        ("dns_tcp_streams", t.dns_tcp_streams),
    ]
}

impl Peaks {
    fn sample(&mut self, a: &Analyzer) {
        let t = a.tables();
        let now = named(&t);
        if self.0.is_empty() {
            self.0 = now.iter().map(|(n, f)| (*n, 0, f.cap)).collect();
        }
        for ((name, fill), peak) in now.iter().zip(&mut self.0) {
            assert!(
                fill.len <= fill.cap,
                "table {name} holds {} > its cap {}",
                fill.len,
                fill.cap
            );
            peak.1 = peak.1.max(fill.len);
        }
    }
}

#[test]
fn hostile_mix_fills_every_table_to_its_cap_and_memory_stays_under_the_bound() {
    const FLOWS: u32 = 1_000_000;
    const STREAMS: u32 = 2_600;
    const SAMPLE_EVERY: u32 = 512;
    let config = Config::default();
    let bound = config.memory_bound_bytes();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);

    let started = std::time::Instant::now();
    let mut a = Analyzer::new(config.clone());
    let mut p = Pkt(Vec::with_capacity(256));
    let mut peaks = Peaks::default();
    // 10 µs of packet time per round: the whole mix spans 10 s, so no flow and no DNS
    // transaction idles out — the tables can only fill.
    let mut ts = 1_700_000_000_000_000_000u64;
    let server_of = |i: u32| ([172, 16, (i >> 8) as u8, i as u8], 80 + (i >> 16) as u16);

    // TCP streams that never end: handshakes first, data forever after, never a FIN.
    let stream = |k: u32| {
        let client = [10, 250, (k >> 8) as u8, k as u8];
        let port = if k & 1 == 0 { 8080 } else { 53 };
        (client, 40_000 + k as u16, [10, 251, 0, 1], port)
    };
    let mut stream_seq = vec![1_000u32; STREAMS as usize];
    for k in 0..STREAMS {
        let (c, cp, s, sp) = stream(k);
        a.feed(ts, RAW, p.tcp(c, cp, s, sp, 999, 0, SYN, &[]));
        a.feed(ts, RAW, p.tcp(s, sp, c, cp, 5_000, 1_000, SYN_ACK, &[]));
        a.feed(ts, RAW, p.tcp(c, cp, s, sp, 1_000, 5_001, ACK, &[]));
        ts += 10_000;
    }

    // Connections that fall silent: opened now, resumed once 6 s (of packet time) later.
    const SLEEPERS: u32 = 2_000;
    let sleeper = |k: u32| {
        (
            [10, 252, (k >> 8) as u8, k as u8],
            30_000 + k as u16,
            [10, 253, 0, 1],
            443,
        )
    };
    for k in 0..SLEEPERS {
        let (c, cp, s, sp) = sleeper(k);
        a.feed(ts, RAW, p.tcp(c, cp, s, sp, 99, 0, SYN, &[]));
        a.feed(ts, RAW, p.tcp(s, sp, c, cp, 7_000, 100, SYN_ACK, &[]));
        a.feed(ts, RAW, p.tcp(c, cp, s, sp, 100, 7_001, ACK, &[]));
        ts += 10_000;
    }

    for i in 0..FLOWS {
        // 1. A new flow to a new destination; every 4th is answered, every 7th SYN is
        //    re-sent and never answered.
        let client = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let sport = 1024 + (i % 60_000) as u16;
        let (server, dport) = server_of(i);
        a.feed(ts, RAW, p.tcp(client, sport, server, dport, i, 0, SYN, &[]));
        if i % 4 == 0 {
            a.feed(
                ts + 1_000,
                RAW,
                p.tcp(server, dport, client, sport, !i, i + 1, SYN_ACK, &[]),
            );
            if i % 8 == 0 {
                // closed by the client first: its port would wait in TIME_WAIT
                let fin = p.tcp(client, sport, server, dport, i + 1, !i, FIN_ACK, &[]);
                a.feed(ts + 1_500, RAW, fin);
            }
        } else if i % 4 == 1 {
            // nothing listens there
            let rst = p.tcp(server, dport, client, sport, 0, i + 1, RST_ACK, &[]);
            a.feed(ts + 1_000, RAW, rst);
        } else if i % 7 == 0 {
            a.feed(
                ts + 2_000,
                RAW,
                p.tcp(client, sport, server, dport, i, 0, SYN, &[]),
            );
        }
        // 2. A new DNS name, never answered: first from 4 096 clients (each fills its
        //    lookups), then from 16 384 (clients churn through the full table).
        let dns_client = if i < 1 << 17 {
            [10, 201, ((i >> 8) & 0x0f) as u8, i as u8]
        } else {
            [10, 200, ((i >> 8) & 0x3f) as u8, i as u8]
        };
        a.feed(
            ts + 3_000,
            RAW,
            p.dns_query(dns_client, sport, i as u16, i, i >> 12),
        );
        // 3. One client re-sending the same query forever (from the second phase on, so
        //    that the first phase's 4 096 clients alone fill the client table).
        if i >= 1 << 17 && i % 1_000 == 0 {
            a.feed(
                ts + 4_000,
                RAW,
                p.dns_query([10, 99, 0, 1], 5353, 7, 0xdead, 0xbeef),
            );
        }
        // 4. The endless streams: HTTP bytes, and DNS over TCP announcing 65 535 bytes
        //    that keep coming.
        if i % 10 == 0 {
            let k = (i / 10) % STREAMS;
            let (c, cp, s, sp) = stream(k);
            let seq = &mut stream_seq[k as usize];
            let payload: &[u8] = if sp == 53 && *seq == 1_000 {
                &[
                    0xff, 0xff, 0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 1, b'a',
                ]
            } else {
                &[b'a'; 16]
            };
            a.feed(
                ts + 5_000,
                RAW,
                p.tcp(c, cp, s, sp, *seq, 5_001, PSH_ACK, payload),
            );
            *seq = seq.wrapping_add(payload.len() as u32);
        }
        // 5. The silent connections resume, long after the flow table let them go.
        if (600_000..600_000 + SLEEPERS).contains(&i) {
            let (c, cp, s, sp) = sleeper(i - 600_000);
            let get = p.tcp(c, cp, s, sp, 100, 7_001, PSH_ACK, b"GET / HTTP/1.1\r\n");
            a.feed(ts + 5_500, RAW, get);
        }
        // 6. Frames of 131 072 distinct link-type values: only the low 16 bits name a link
        //    type, so at most 65 536 kinds are counted.
        if i < 1 << 17 {
            a.feed(ts + 6_000, 0x1_0000 + i, &[0u8; 4]);
        }
        ts += 10_000;
        if i % SAMPLE_EVERY == 0 {
            peaks.sample(&a);
        }
    }
    peaks.sample(&a);
    let fed = started.elapsed();
    let r = a.finish();
    let peak = PEAK.load(Ordering::Relaxed) - base;

    eprintln!(
        "hostile mix: {} packets in {:.1} s; peak heap {} MiB, bound {} MiB",
        r.capture.packets,
        fed.as_secs_f64(),
        peak >> 20,
        bound >> 20
    );
    for (name, most, cap) in &peaks.0 {
        eprintln!("  {name:<24} peak {most:>7} cap {cap:>7}");
    }
    for (name, most, cap) in &peaks.0 {
        match *name {
            // Emptied when it reaches its cap: seen within one sampling interval of it.
            "dns_sockets" => assert!(
                most + 4 * SAMPLE_EVERY as usize >= *cap,
                "{name}: peak {most}, cap {cap}"
            ),
            // 65 536 link types less the 10 that parse; the cap leaves room for the
            // other skip kinds.
            "skip_kinds" => assert!(*most >= (1 << 16) - 10, "{name}: peak {most}"),
            _ => assert_eq!(most, cap, "table {name} never reached its cap"),
        }
    }
    assert!(
        peak <= bound,
        "peak heap {peak} bytes exceeds the documented bound {bound}"
    );
    assert_eq!(r.capture.flows_peak, config.max_flows as u64);
    assert!(r.capture.flows >= u64::from(FLOWS));
    assert!(
        r.skipped
            .iter()
            .any(|s| s.what == "DNS queries" && s.count > 0),
        "queries past the full transaction table are counted: {:?}",
        r.skipped
    );
}
