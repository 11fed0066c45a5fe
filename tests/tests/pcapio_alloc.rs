//! Reading and writing allocate nothing per packet once warmed up.
//!
//! A counting global allocator (this test binary only) counts allocations made by the
//! current thread; after the first packets (which size the reused buffer), the rest of
//! a 2000-packet capture must be read — and written — with zero allocations.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
// A counting global allocator: GlobalAlloc is an unsafe trait (SAFETY comments inside).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use netdiag_pcapio::{Format, InterfaceDesc, PacketOut, PcapWriter, PcapngWriter, Reader};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged; the only addition is a thread-local counter (const-initialised, no
// destructor, so touching it never allocates or re-enters the allocator).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (via `alloc`/`realloc` above).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Packet sizes: the largest first (warm-up), then a deterministic mix.
fn sizes() -> impl Iterator<Item = usize> {
    std::iter::once(1514)
        .chain((1..2000u32).map(|i| (i.wrapping_mul(2_654_435_761) % 1515) as usize))
}

fn pcapng_bytes() -> Vec<u8> {
    let mut w = PcapngWriter::new(Vec::new()).expect("shb");
    let mut d = InterfaceDesc::new(1, 262_144);
    d.name = Some("eth0".into());
    d.nanos = true;
    w.add_interface(&d).expect("idb");
    w.add_interface(&InterfaceDesc::new(276, 0)).expect("idb");
    let data = vec![0xABu8; 1514];
    for (i, n) in sizes().enumerate() {
        let comments: &[&str] = if i % 3 == 0 { &["a comment"] } else { &[] };
        w.write_packet(&PacketOut {
            interface: (i % 2) as u32,
            timestamp_ns: 1_700_000_000_000_000_000 + i as u64,
            data: &data[..n],
            original_len: n as u32,
            comments,
        })
        .expect("epb");
    }
    w.into_inner().expect("flush")
}

fn pcap_bytes() -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), 1, 262_144, false).expect("header");
    let data = vec![0xCDu8; 1514];
    for (i, n) in sizes().enumerate() {
        w.write_packet(i as u64 * 1000, &data[..n], n as u32)
            .expect("packet");
    }
    w.into_inner().expect("flush")
}

/// Reads all packets; returns (packets, allocations after the first `warm` packets).
fn read_counting(bytes: &[u8], warm: usize) -> (usize, u64) {
    let mut r = Reader::new(bytes).expect("header");
    let mut n = 0usize;
    let mut sum = 0u64;
    let mut before = 0;
    while let Some(p) = r.next_packet().expect("packet") {
        sum += p.data.len() as u64 + u64::from(p.comment.is_some());
        n += 1;
        if n == warm {
            before = allocs();
        }
    }
    std::hint::black_box(sum);
    assert_eq!(
        r.format(),
        if bytes[0] == 0x0a {
            Format::Pcapng
        } else {
            Format::Pcap
        }
    );
    (n, allocs() - before)
}

#[test]
fn no_allocation_per_packet_after_warm_up() {
    for (kind, bytes) in [("pcapng", pcapng_bytes()), ("pcap", pcap_bytes())] {
        let (n, extra) = read_counting(&bytes, 4);
        assert_eq!(n, 2000);
        assert_eq!(
            extra, 0,
            "{kind}: {extra} allocations while reading packets 5..2000"
        );
    }

    // Writers: to a sink, after the first packet.
    let data = vec![0u8; 1514];
    let mut ng = PcapngWriter::new(std::io::sink()).expect("shb");
    ng.add_interface(&InterfaceDesc::new(1, 0)).expect("idb");
    let mut pc = PcapWriter::new(std::io::sink(), 1, 65535, true).expect("header");
    let mut before = 0;
    for (i, n) in sizes().enumerate() {
        ng.write_packet(&PacketOut {
            interface: 0,
            timestamp_ns: i as u64,
            data: &data[..n],
            original_len: n as u32,
            comments: &["c"],
        })
        .expect("epb");
        pc.write_packet(i as u64, &data[..n], n as u32)
            .expect("packet");
        if i == 0 {
            before = allocs();
        }
    }
    assert_eq!(allocs() - before, 0, "writers allocated per packet");
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the test above against a counter that never counts.
    let before = allocs();
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(100));
    drop(v);
    assert!(allocs() > before);
}
