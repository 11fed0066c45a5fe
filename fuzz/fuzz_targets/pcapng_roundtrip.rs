//! The pcapng writer (what `capture -w` and annotated output write): whatever interfaces
//! and packets it accepts, the reader reads back identically — link type, snaplen, name,
//! description, timestamp (at the interface's resolution), bytes, original length, the
//! first comment. The classic pcap writer gets the same check with the first interface.
//!
//! Input (see `decode`): interfaces, then packets. Seeds: the first packets of every
//! capture file of the tcpdump corpus and testdata, one interface with the file's link
//! type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_fuzz::{Input, Seeds, put_u16};
use netdiag_pcapio::{InterfaceDesc, PacketOut, PcapWriter, PcapngWriter, Reader};

struct Pkt {
    interface: u32,
    timestamp_ns: u64,
    data: Vec<u8>,
    original_len: u32,
    comments: Vec<String>,
}

/// Interface count (1 + byte % 4); per interface: link type u16, snaplen u32, flags byte
/// (bit 0 nanoseconds, bit 1 name, bit 2 description, bit 3 fcs length), then the name,
/// description (length byte + bytes) and fcs length byte when flagged. Then packets until
/// the input ends: interface byte, timestamp u64, extra original length u16, comment count
/// byte (% 3) with each comment (length byte + bytes), data (u16 length + bytes).
fn decode(data: &[u8]) -> (Vec<InterfaceDesc>, Vec<Pkt>) {
    let mut input = Input::new(data);
    let n = 1 + usize::from(input.u8() % 4);
    let mut ifaces = Vec::new();
    for _ in 0..n {
        let mut d = InterfaceDesc::new(u32::from(input.u16()), input.u32());
        let flags = input.u8();
        d.nanos = flags & 1 != 0;
        if flags & 2 != 0 {
            d.name = Some(input.short_string());
        }
        if flags & 4 != 0 {
            d.description = Some(input.short_string());
        }
        if flags & 8 != 0 {
            d.fcs_len = Some(input.u8());
        }
        ifaces.push(d);
    }
    let mut pkts = Vec::new();
    while !input.is_empty() {
        let interface = u32::from(input.u8()) % n as u32;
        let timestamp_ns = input.u64();
        let extra = u32::from(input.u16());
        let comments = (0..input.u8() % 3).map(|_| input.short_string()).collect();
        let data = input.blob().to_vec();
        pkts.push(Pkt {
            interface,
            timestamp_ns,
            original_len: data.len() as u32 + extra,
            data,
            comments,
        });
    }
    (ifaces, pkts)
}

fn seeds(s: &mut Seeds) -> std::io::Result<()> {
    for path in s.capture_files() {
        let Ok(mut r) = Reader::open(&path) else {
            continue;
        };
        let mut seed = vec![0u8];
        let mut first = true;
        for _ in 0..4 {
            let Ok(Some(p)) = r.next_packet() else { break };
            if first {
                put_u16(&mut seed, p.link_type as u16);
                seed.extend_from_slice(&262_144u32.to_le_bytes());
                seed.push(1 | 2);
                seed.push(4);
                seed.extend_from_slice(b"eth0");
                first = false;
            }
            seed.push(0);
            seed.extend_from_slice(&p.timestamp_ns.to_le_bytes());
            put_u16(&mut seed, 0);
            seed.push(1);
            seed.push(3);
            seed.extend_from_slice(b"SYN");
            let data = &p.data[..p.data.len().min(usize::from(u16::MAX))];
            put_u16(&mut seed, data.len() as u16);
            seed.extend_from_slice(data);
        }
        if !first {
            s.add(&seed)?;
        }
    }
    Ok(())
}

/// Timestamps as the interface stores them: microseconds unless nanoseconds.
fn stored_ns(ts: u64, nanos: bool) -> u64 {
    if nanos { ts } else { ts / 1000 * 1000 }
}

fn check_pcapng(ifaces: &[InterfaceDesc], pkts: &[Pkt]) {
    let Ok(mut w) = PcapngWriter::new(Vec::new()) else {
        return;
    };
    let mut declared = Vec::new();
    for d in ifaces {
        if w.add_interface(d).is_ok() {
            declared.push(d);
        }
    }
    let mut written = Vec::new();
    for p in pkts {
        let comments: Vec<&str> = p.comments.iter().map(String::as_str).collect();
        let out = PacketOut {
            interface: p.interface,
            timestamp_ns: p.timestamp_ns,
            data: &p.data,
            original_len: p.original_len,
            comments: &comments,
        };
        if w.write_packet(&out).is_ok() {
            written.push(p);
        }
    }
    let bytes = w.into_inner().expect("a Vec never fails");
    let mut r = Reader::new(&bytes[..]).expect("our own section header reads back");
    for p in &written {
        let got = r.next_packet();
        let got = got.unwrap_or_else(|e| panic!("reading back a packet we wrote: {e}"));
        let got = got.expect("every written packet reads back");
        let d = declared[p.interface as usize];
        assert_eq!(got.interface, p.interface);
        assert_eq!(got.link_type, d.link_type);
        assert_eq!(got.timestamp_ns, stored_ns(p.timestamp_ns, d.nanos));
        assert_eq!(got.data, &p.data[..]);
        assert_eq!(got.original_len, p.original_len);
        assert_eq!(got.comment, p.comments.first().map(String::as_str));
    }
    assert!(
        matches!(r.next_packet(), Ok(None)),
        "nothing after the last packet"
    );
    assert_eq!(r.interfaces().len(), declared.len());
    for (i, d) in r.interfaces().iter().zip(&declared) {
        assert_eq!((i.link_type, i.snaplen), (d.link_type, d.snaplen));
        assert_eq!((&i.name, &i.description), (&d.name, &d.description));
        assert_eq!(i.fcs_len, d.fcs_len);
        assert_eq!(i.is_nanosecond(), d.nanos);
    }
}

fn check_pcap(d: &InterfaceDesc, pkts: &[Pkt]) {
    let Ok(mut w) = PcapWriter::new(Vec::new(), d.link_type, d.snaplen, d.nanos) else {
        return;
    };
    let mut written = Vec::new();
    for p in pkts.iter().filter(|p| p.interface == 0) {
        if w.write_packet(p.timestamp_ns, &p.data, p.original_len)
            .is_ok()
        {
            written.push(p);
        }
    }
    let bytes = w.into_inner().expect("a Vec never fails");
    let mut r = Reader::new(&bytes[..]).expect("our own file header reads back");
    for p in &written {
        let got = r.next_packet();
        let got = got.unwrap_or_else(|e| panic!("reading back a packet we wrote: {e}"));
        let got = got.expect("every written packet reads back");
        assert_eq!(got.link_type, d.link_type);
        assert_eq!(got.timestamp_ns, stored_ns(p.timestamp_ns, d.nanos));
        assert_eq!(got.data, &p.data[..]);
        assert_eq!(got.original_len, p.original_len);
    }
    assert!(
        matches!(r.next_packet(), Ok(None)),
        "nothing after the last packet"
    );
}

fuzz_target!(
    init: netdiag_fuzz::seed_mode("pcapng_roundtrip", seeds),
    |data: &[u8]| {
        let (ifaces, pkts) = decode(data);
        check_pcapng(&ifaces, &pkts);
        check_pcap(&ifaces[0], &pkts);
    }
);
